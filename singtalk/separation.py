"""Vocal extraction with Spleeter's pretrained 2stems model.

The computation of Spleeter's ``EstimatorSpecBuilder`` (STFT, two U-Nets, ratio mask, inverse STFT)
runs as :mod:`singtalk.spleeter_net` spells it out: the U-Nets' weights read from the checkpoint in
``config.spleeter_models_dir()``, no Keras graph to build. No weights, no separation: a missing,
partial or unreadable checkpoint raises :class:`SeparationUnavailable` instead of running on
random weights.

Long inputs are processed in overlapping chunks cross-faded together, so
memory stays bounded whatever the duration.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from .config import spleeter_models_dir
from .errors import SeparationUnavailable, SingtalkError

# Spleeter reads MODEL_PATH when spleeter.model.provider is imported: point it
# at our folder before anything of spleeter is imported.
os.environ["MODEL_PATH"] = str(spleeter_models_dir())
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SPLEETER_RATE = 44100
"""Spleeter's working rate (Hz); it separates stereo at this rate."""

MODEL_NAME = "2stems"

CHECKPOINT_BYTES = {"model.data-00000-of-00001": 78614080, "model.index": 5244}
"""Sizes of the checkpoint files (as verified by scripts/fetch_spleeter_weights.py)."""

FIX_HINT = "run `make run` or `python scripts/fetch_spleeter_weights.py` to fetch them"

_SEGMENT = 512 * 1024
"""Samples in one Spleeter segment (T frames of frame_step samples, ~11.9 s)."""

CHUNK_SAMPLES = 2 * _SEGMENT - 4096
"""Most 44.1 kHz samples per graph run: exactly 2 segments once Spleeter prepends a frame (~23.7 s).

Measured on 10 minutes at 44.1 kHz: peak RSS ~1.28 GB with 2 segments, ~1.45 GB with 3, ~1.59 GB
with 4 (same speed)."""

OVERLAP_SECONDS = 2.0
"""Cross-fade between consecutive chunks."""


ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
"""Unless set, the separator imports TensorFlow with oneDNN on: its U-Nets then cost about 40% less CPU on
an AVX2 machine (TensorFlow 2.12 turns oneDNN on by default only for AVX-512 CPUs). Only that import
sees the variable (child processes do not), and a process that imported TensorFlow before keeps its own
setting (docs/performance.md)."""


def _tensorflow():
    """TensorFlow, imported with oneDNN (:data:`ONEDNN_ENV`) when this is the first import; then
    ``model._tf``'s one-time set-up (``$SINGTALK_TF_THREADS`` caps its thread pools, as for the classifier)."""
    import sys

    from .model import _tf

    if "tensorflow" in sys.modules:
        return _tf()
    given = os.environ.get(ONEDNN_ENV)
    os.environ.setdefault(ONEDNN_ENV, "1")
    try:
        import tensorflow  # noqa: F401 - the first import, which alone reads ONEDNN_ENV
    finally:
        if given is None:
            os.environ.pop(ONEDNN_ENV, None)
    return _tf()


def model_dir() -> Path:
    """Folder holding the 2stems checkpoint."""
    return spleeter_models_dir() / MODEL_NAME


def _checkpoint_prefix(folder: Path) -> Optional[Path]:
    """The checkpoint prefix the ``checkpoint`` file of ``folder`` names, when its index is there (what
    ``tf.train.latest_checkpoint`` answers, without importing TensorFlow)."""
    import re

    try:
        text = (folder / "checkpoint").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', text, flags=re.MULTILINE)
    if not found:
        return None
    prefix = folder / found.group(1)  # an absolute path stays as it is
    return prefix if prefix.with_name(prefix.name + ".index").is_file() else None


def weights_status() -> tuple[bool, str]:
    """``(True, where)`` when the checkpoint is complete, else ``(False, what is wrong + fix)``."""
    folder = model_dir()
    if not folder.is_dir():
        return False, f"Spleeter weights not found in {folder}: {FIX_HINT}."
    if _checkpoint_prefix(folder) is None:
        return False, f"No Spleeter checkpoint in {folder}: {FIX_HINT}."
    for name, size in CHECKPOINT_BYTES.items():
        path = folder / name
        actual = path.stat().st_size if path.is_file() else 0
        if actual != size:
            return False, (f"Spleeter weights in {folder} are incomplete ({name}: {actual} of {size} bytes): "
                           f"{FIX_HINT}.")
    return True, f"Spleeter 2stems weights ready in {folder}"


def check_weights() -> Path:
    """The checkpoint prefix to read, or :class:`SeparationUnavailable` naming the fix."""
    ok, message = weights_status()
    if not ok:
        raise SeparationUnavailable(message)
    return _checkpoint_prefix(model_dir())


def _resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return y
    import soxr

    return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def resampled(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """``y`` at ``sr_out``, ``ceil(n * sr_out / sr_in)`` samples: librosa's ``resample(res_type="soxr_hq")``
    without importing librosa (about a second)."""
    if sr_in == sr_out:
        return y
    return _fit_length(_resample(y, sr_in, sr_out), -(-y.size * sr_out // sr_in))


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    if y.size >= n:
        return y[:n]
    return np.pad(y, (0, n - y.size))


def _chunk_starts(n: int, chunk: int, overlap: int) -> list[int]:
    """Start of each chunk; all but the last are ``chunk`` long, the last is longer than ``overlap``."""
    hop = chunk - overlap
    starts = [0]
    while starts[-1] + chunk < n:
        starts.append(starts[-1] + hop)
    return starts


class VocalSeparator:
    """Spleeter 2stems (:mod:`singtalk.spleeter_net`: its U-Nets from the checkpoint, the STFT in NumPy);
    share one instance across threads.

    Raises :class:`SeparationUnavailable` at construction when the weights are missing, partial or
    unreadable: every variable of both U-Nets comes from the checkpoint, none is ever initialised.
    """

    def __init__(self) -> None:
        checkpoint = check_weights()
        tf = _tensorflow()
        from .spleeter_net import UNets

        try:
            self._nets = UNets(checkpoint)
        except (KeyError, ValueError, tf.errors.OpError) as err:
            raise SeparationUnavailable(f"Spleeter weights in {checkpoint.parent} cannot be read "
                                        f"({type(err).__name__}: {err}): {FIX_HINT}.") from err
        self._lock = threading.Lock()

    def _run(self, y: np.ndarray) -> np.ndarray:
        """One chunk: mono ``(n,)`` float32 at 44.1 kHz → its vocals, ``(n,)`` (one chunk at a time)."""
        from .spleeter_net import separate

        if y.size == 0:
            return np.zeros(0, dtype=np.float32)
        with self._lock:
            return separate(self._nets, y)

    def vocals(self, y: np.ndarray, sr: int) -> np.ndarray:
        """Mono float32 ``(n,)`` at ``sr`` Hz → the extracted vocals, ``(n,)`` float32 at ``sr`` Hz.

        The input is cut into overlapping chunks at its own rate; each chunk is
        resampled to 44.1 kHz, separated, resampled back and cross-faded
        in, so memory is bounded by the chunk size, not by the input length.
        """
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1:
            raise ValueError(f"expected mono audio of shape (n,), got {y.shape}")
        sr = int(sr)
        n = y.size
        out = np.zeros(n, dtype=np.float32)
        chunk = max(1, int((CHUNK_SAMPLES - 64) * sr / SPLEETER_RATE))  # margin: resampling may round up
        overlap = min(int(OVERLAP_SECONDS * sr), chunk // 4)
        for start in _chunk_starts(n, chunk, overlap):
            piece = y[start:start + chunk]
            high = _resample(piece, sr, SPLEETER_RATE)
            vocals = self._run(high)
            vocals = _fit_length(_resample(vocals, SPLEETER_RATE, sr), piece.size)
            ramp = min(overlap, piece.size)
            if start > 0:  # fade in under the previous chunk's fade-out: the two ramps sum to 1
                vocals[:ramp] *= np.linspace(0.0, 1.0, ramp + 2, dtype=np.float32)[1:-1]
            if start + piece.size < n:
                vocals[-ramp:] *= np.linspace(1.0, 0.0, ramp + 2, dtype=np.float32)[1:-1]
            out[start:start + piece.size] += vocals
        return out


_instance: Optional[VocalSeparator] = None
_instance_lock = threading.Lock()


def get_separator() -> VocalSeparator:
    """The process-wide separator, built on first use (thread-safe)."""
    global _instance
    if _instance is None:
        with _instance_lock:
            if _instance is None:
                _instance = VocalSeparator()
    return _instance


def output_path(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``out_dir/<input stem>.vocals.wav``."""
    return Path(out_dir) / f"{Path(path).stem}.vocals.wav"


def separate_file(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Extract the vocals of one file into ``out_dir/<stem>.vocals.wav`` (44.1 kHz mono)."""
    from .audio import decode, write_wav

    separator = get_separator()
    y = decode(path, sr=SPLEETER_RATE)
    vocals = separator.vocals(y, SPLEETER_RATE)
    del y  # bound peak memory on long files: write_wav makes its own copies
    return write_wav(output_path(path, out_dir), vocals, SPLEETER_RATE)


@dataclass(frozen=True)
class SeparationResult:
    """One file of a batch: ``output`` on success, else ``error`` (a user-facing message)."""

    source: Path
    output: Optional[Path] = None
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


def separate_files(
    paths: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    on_error: Optional[Callable[[Path, Exception], None]] = None,
) -> list[SeparationResult]:
    """Separate each file; a bad file gives an error entry (and ``on_error(path, exc)``), not a stop.

    Missing weights raise :class:`SeparationUnavailable` before any file is read.
    """
    get_separator()
    results = []
    for raw in paths:
        path = Path(raw)
        try:
            results.append(SeparationResult(path, output=separate_file(path, out_dir)))
        except (SingtalkError, OSError) as err:
            if isinstance(err, SeparationUnavailable):
                raise
            if on_error is not None:
                on_error(path, err)
            results.append(SeparationResult(path, error=str(err) or type(err).__name__))
    return results


NO_VOICE_DB = -20.0
"""Below this :func:`vocal_level_db`, the extracted vocals are taken for leakage, not a voice.

Measured with Spleeter 2stems: the 51 songs of the corpus's ``mixture/`` (MIR-1K karaoke at 0 dB and two
produced songs) give −4.7 to +3.3 dB, clean speech and singing +0.5 to +4.3 dB, an instrumental excerpt
(demucs' test file) −22.7 dB. MIR-1K's backing tracks alone spread from −77 to +0.9 dB: a melody instrument
doubling the tune goes to the vocal stem, so this check catches about half of instrumental music, not all."""
LEVEL_FRAME_S = 0.05


def _frame_rms(y: np.ndarray, sr: int) -> np.ndarray:
    """RMS of consecutive ``LEVEL_FRAME_S`` frames (a partial last frame is dropped)."""
    n = max(1, int(LEVEL_FRAME_S * sr))
    k = len(y) // n
    if k == 0:
        return np.zeros(0)
    frames = np.asarray(y[:k * n], dtype=np.float64).reshape(k, n)
    return np.sqrt(np.mean(frames ** 2, axis=1))


def vocal_level_db(vocals: np.ndarray, vocals_sr: int, mixture: np.ndarray, mixture_sr: int) -> float:
    """How loud the extracted vocals are next to their mixture, in dB.

    The loudest 1% of the vocals' 50 ms frames against the loudest 5% of the mixture's, so a voice heard
    for two seconds of a three-minute track still counts. 0.0 when either is too short or silent to judge."""
    v, m = _frame_rms(vocals, vocals_sr), _frame_rms(mixture, mixture_sr)
    if not len(v) or not len(m):
        return 0.0
    v99, m95 = float(np.percentile(v, 99)), float(np.percentile(m, 95))
    if m95 <= 1e-9:
        return 0.0
    return float(20 * np.log10(max(v99, 1e-12) / m95))


def si_snr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SNR in dB of ``estimate`` against ``reference`` (zero-mean, cut to the shorter)."""
    n = min(len(estimate), len(reference))
    est = np.asarray(estimate[:n], dtype=np.float64)
    ref = np.asarray(reference[:n], dtype=np.float64)
    est = est - est.mean()
    ref = ref - ref.mean()
    eps = 1e-12
    target = (np.dot(est, ref) / (np.dot(ref, ref) + eps)) * ref
    noise = est - target
    return float(10 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))
