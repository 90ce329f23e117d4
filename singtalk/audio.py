"""Decode anything ffmpeg reads to mono float32, trim quiet parts, write WAV.

All decoding goes through one ffmpeg subprocess that resamples and downmixes,
so a file is decoded once, at the working rate, whatever its format, channel
count or sample rate (WAV and FLAC are read in-process). Uploaded bytes are
decoded from a private temporary copy, exactly as the same file from its path.
Errors are :mod:`singtalk.errors` with messages a user can act on.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path
from typing import Union

import numpy as np

from . import atomic
from .errors import NoAudioStream, SilentAudio, TooLong, TooShort, UnreadableAudio

SAMPLE_RATE = 16000
"""The working rate of the whole pipeline (Hz)."""

MIN_DURATION_S = 0.5
"""Least sounding audio, after trimming, that the classifier accepts."""

MAX_DURATION_S = float(os.environ.get("SINGTALK_MAX_DURATION_S", "1800"))
"""Most audio decoded from one input; longer inputs are refused."""

TRIM_TOP_DB = 20.0
"""Parts more than this many dB below the peak are trimmed (the seed's "below 20 dB")."""

SILENCE_PEAK = 1e-4
"""A signal whose absolute peak stays below this (-80 dBFS) is silence."""

Source = Union[str, os.PathLike, bytes]

log = logging.getLogger(__name__)


def ffmpeg_binary() -> str:
    """Path of ffmpeg, or :class:`UnreadableAudio` explaining how to install it."""
    found = shutil.which("ffmpeg")
    if not found:
        raise UnreadableAudio("ffmpeg is not installed: run `make run` (or `apt-get install ffmpeg`).")
    return found


def format_seconds(seconds: float) -> str:
    """``75.0`` → ``'1 min 15 s'``; ``2.5`` → ``'2.5 s'``."""
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


_FFMPEG_REASONS = (
    ("moov atom not found", "the file is incomplete (its index is missing: an interrupted recording or download)"),
    ("Unsafe file name", "it lists other files to read, which is not allowed"),
    ("not on whitelist", "it lists other files or links to read, which is not allowed"),
    ("Operation not permitted", "it lists other files or links to read, which is not allowed"),
    ("End of file", "the file ends too early (truncated)"),
    ("Invalid data found", "its contents are not in any audio or video format ffmpeg knows"),
    ("Invalid argument", "its contents are not in any audio or video format ffmpeg knows"),
)


def _plain_reason(stderr: str) -> str:
    """What ffmpeg's error output means, in words a user can act on (never ffmpeg's own text)."""
    for needle, reason in _FFMPEG_REASONS:
        if needle in stderr:
            return reason
    return "it is damaged or in a format ffmpeg cannot decode"


DECODE_TIMEOUT_S = float(os.environ.get("SINGTALK_DECODE_TIMEOUT_S", "300"))
"""Wall-clock limit of one decode; a file that takes longer is refused as unreadable."""

_STDERR_KEEP = 64 * 1024
_READ_CHUNK = 1 << 20


def _run_bounded(cmd: list[str], *, budget: int, timeout: float):
    """Run ffmpeg, reading at most ``budget`` bytes of its output.

    Returns ``(pcm bytearray, stderr tail, return code, over_budget, timed_out)``.
    The process is killed as soon as the budget is exceeded or the timeout
    passes, so memory never exceeds the budget and nothing outlives the call.
    """
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_tail = bytearray()
    state = {"timed_out": False}

    def drain_stderr() -> None:
        for line in iter(lambda: proc.stderr.read1(65536), b""):
            err_tail.extend(line)
            if len(err_tail) > 2 * _STDERR_KEEP:
                del err_tail[:-_STDERR_KEEP]

    def expire() -> None:
        state["timed_out"] = True
        proc.kill()

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    pcm, over = bytearray(), False
    try:
        while True:
            chunk = proc.stdout.read1(_READ_CHUNK)
            if not chunk:
                break
            pcm.extend(chunk)
            if len(pcm) > budget:
                over = True
                proc.kill()
                break
    finally:
        timer.cancel()
        if proc.poll() is None and (over or state["timed_out"]):
            proc.kill()
        proc.stdout.close()
        returncode = proc.wait()
        reader.join(timeout=5)
        proc.stderr.close()
    return pcm, err_tail[-_STDERR_KEEP:].decode("utf-8", "replace"), returncode, over, state["timed_out"]


def decode(
    source: Source,
    *,
    sr: int = SAMPLE_RATE,
    max_duration: float | None = None,
    min_duration: float = 0.0,
    name: str | None = None,
) -> np.ndarray:
    """Decode a file path or raw bytes to mono float32 at ``sr`` Hz.

    Returns a 1-D array of shape ``(n_samples,)``. Non-finite samples become 0.
    Raises :class:`UnreadableAudio`, :class:`NoAudioStream`, :class:`TooLong`
    (more than ``max_duration`` seconds, default :data:`MAX_DURATION_S`; the
    decoder is killed one sample past the limit, so an hours-long stream costs
    no more time or memory than the limit) or :class:`TooShort` (less than
    ``min_duration``). A decode running longer than :data:`DECODE_TIMEOUT_S` is
    killed and reported as :class:`UnreadableAudio`.
    """
    max_duration = MAX_DURATION_S if max_duration is None else float(max_duration)
    label = name or (Path(source).name if not isinstance(source, bytes) else "the upload")
    too_long = f"{label} is longer than {format_seconds(max_duration)}; cut it shorter."
    y = _read_with_soundfile(source, sr, max_duration, too_long)
    if y is None:
        y = _decode_with_ffmpeg(source, sr, max_duration, label, too_long, name)
    np.nan_to_num(y, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(y, -1.0, 1.0, out=y)
    duration = y.size / sr
    if duration < min_duration:
        raise TooShort(f"{label} lasts {format_seconds(duration)}; at least {format_seconds(min_duration)} is needed.")
    return y


SOUNDFILE_SUFFIXES = {".wav", ".flac"}
"""Read in-process by libsndfile (no ffmpeg start-up per file); everything else goes through ffmpeg."""

SOUNDFILE_MAX_SAMPLES = 30_000_000
"""Above this many samples (all channels; 120 MB as float32) ffmpeg's streaming downmix uses less memory."""


def _read_with_soundfile(source: Source, sr: int, max_duration: float, too_long: str) -> np.ndarray | None:
    """Mono float32 at ``sr`` from WAV/FLAC (a path, or bytes with a RIFF/fLaC header), or None to let ffmpeg
    try (other formats, damaged files)."""
    import io

    import soundfile as sf

    if isinstance(source, bytes):
        if not source.startswith((b"RIFF", b"fLaC")):
            return None
        opened = lambda: io.BytesIO(source)  # noqa: E731 - libsndfile reads a fresh stream each time
    else:
        path = Path(source)
        if path.suffix.lower() not in SOUNDFILE_SUFFIXES or not path.is_file():
            return None
        opened = lambda: str(path)  # noqa: E731
    try:
        info = sf.info(opened())
        if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
            return None
        if info.frames / info.samplerate > max_duration:
            raise TooLong(too_long)
        if info.frames * info.channels > SOUNDFILE_MAX_SAMPLES:
            return None  # long multichannel/high-rate input: ffmpeg downmixes and resamples while streaming
        data, rate = sf.read(opened(), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, ValueError):
        return None  # truncated or odd: ffmpeg recovers what it can and names the problem
    if data.shape[0] == 0:
        return None
    y = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate != sr:
        import soxr

        y = soxr.resample(y, rate, sr, quality="HQ")
    return np.array(y, dtype=np.float32)  # own, writable, contiguous


def _decode_with_ffmpeg(source: Source, sr: int, max_duration: float, label: str, too_long: str,
                        name: str | None = None) -> np.ndarray:
    """Mono float32 at ``sr`` through one bounded ffmpeg subprocess.

    Bytes are first written to a private temporary file named like the upload (``name``'s suffix):
    ffmpeg then seeks in them as in any file, so an MP4/M4A whose index comes last (phones',
    ffmpeg's default) decodes exactly as from its path. The file is removed whatever happens. An
    upload may not be a playlist or list of other files (:func:`upload_demuxers`).
    """
    if isinstance(source, bytes):
        if not source:
            raise UnreadableAudio(f"{label} is empty.")
        with tempfile.TemporaryDirectory(prefix="singtalk-upload-") as folder:
            path = Path(folder) / f"upload{_upload_suffix(name)}"
            try:
                path.write_bytes(source)
            except OSError as err:
                raise UnreadableAudio(f"{label} could not be decoded: the server has no room for a temporary "
                                      "copy of it; try again later.") from err
            return _decode_path_with_ffmpeg(path, sr, max_duration, label, too_long,
                                            ("-format_whitelist", upload_demuxers()))
    path = Path(source)
    if not path.is_file():
        raise UnreadableAudio(f"{label}: no such file.")
    if path.stat().st_size == 0:
        raise UnreadableAudio(f"{label} is empty.")
    return _decode_path_with_ffmpeg(path, sr, max_duration, label, too_long)


REFERENCING_DEMUXERS = frozenset({
    "hls", "applehttp", "dash", "concat", "imf", "webm_dash_manifest", "ffmetadata", "image2", "image2pipe",
    "sdp", "rtp", "rtsp", "sap", "avisynth", "vapoursynth", "lavfi",
})
"""Demuxers that open other files, hosts or scripts named inside the input (playlists, concat lists, manifests,
filter graphs); an upload may not use them."""


@functools.lru_cache(maxsize=1)
def upload_demuxers() -> str:
    """ffmpeg's ``-format_whitelist`` for uploads: every file format this ffmpeg reads, without capture devices
    and :data:`REFERENCING_DEMUXERS`."""
    def names(option: str) -> set[str]:
        out = subprocess.run([ffmpeg_binary(), "-hide_banner", option], capture_output=True, text=True).stdout
        return {name for line in out.splitlines() if line[:3].strip().startswith("D") and len(line.split()) > 1
                for name in line.split()[1].split(",")}

    allowed = names("-demuxers") - names("-devices") - REFERENCING_DEMUXERS
    return ",".join(sorted(allowed))


_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def _upload_suffix(name: str | None) -> str:
    """``'memo.M4A'`` → ``'.M4A'``; ``''`` for a name without a plain extension (ffmpeg then probes only)."""
    suffix = Path(str(name or "").replace("\\", "/")).suffix
    return suffix if _SUFFIX.match(suffix) else ""


def _decode_path_with_ffmpeg(path: Path, sr: int, max_duration: float, label: str, too_long: str,
                             input_options: tuple[str, ...] = ()) -> np.ndarray:
    """Mono float32 at ``sr`` from ``path`` through one bounded ffmpeg subprocess (``input_options`` before ``-i``)."""
    cmd = [
        ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error",
        # Only local files: a crafted playlist/concat file must not make ffmpeg fetch anything.
        "-protocol_whitelist", "file", *input_options,
        "-i", str(path), "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-t", f"{max_duration + 0.5:.3f}",
        "-ac", "1", "-ar", str(int(sr)), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1",
    ]
    # One sample past the limit is enough to refuse: reading stops there, whatever the stream claims.
    budget = int(max_duration * sr) * 4
    pcm, stderr, returncode, over, timed_out = _run_bounded(cmd, budget=budget, timeout=DECODE_TIMEOUT_S)
    if timed_out:
        raise UnreadableAudio(f"{label}: decoding took more than {format_seconds(DECODE_TIMEOUT_S)}; "
                              "the file is damaged or too complex.")
    if over:
        raise TooLong(too_long)
    if returncode != 0:
        if "matches no streams" in stderr or "does not contain any stream" in stderr:
            raise NoAudioStream(f"{label} has no audio track.")
        log.info("ffmpeg could not decode %s: %s", label, stderr.strip()[-500:])
        raise UnreadableAudio(f"{label} is not audio singtalk can read: {_plain_reason(stderr)}.")
    y = np.frombuffer(pcm, dtype="<f4", count=len(pcm) // 4)  # writable view of the bytearray: no copy
    if y.size == 0:
        raise UnreadableAudio(f"{label} is not audio singtalk can read: it holds no sound "
                              "(the file is damaged or cut short).")
    return y


def loud_intervals(y: np.ndarray, *, top_db: float = TRIM_TOP_DB, frame_length: int = 1024,
                   hop_length: int = 256) -> np.ndarray:
    """``(k, 2)`` sample intervals louder than ``top_db`` below the peak.

    ``librosa.effects.split``'s answer, computed in NumPy (centred frames, zero padding, frame RMS in
    dB against the loudest frame) so that classifying does not import librosa.
    """
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if y.size == 0:
        return np.zeros((0, 2), dtype=int)
    half = frame_length // 2
    padded = np.pad(y, (half, half))
    n_frames = 1 + (padded.size - frame_length) // hop_length
    if n_frames < 1:
        return np.zeros((0, 2), dtype=int)
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length][:n_frames]
    rms = np.sqrt(np.mean(frames.astype(np.float32) ** 2, axis=1, dtype=np.float32))
    amin = 1e-10
    power = rms.astype(np.float32) ** 2
    db = 10.0 * np.log10(np.maximum(amin, power)) - 10.0 * np.log10(max(amin, float(rms.max()) ** 2))
    loud = db > -top_db
    edges = [np.flatnonzero(np.diff(loud.astype(int))) + 1]
    if loud[0]:
        edges.insert(0, np.array([0]))
    if loud[-1]:
        edges.append(np.array([loud.size]))
    samples = np.minimum(np.concatenate(edges) * hop_length, y.size)
    return samples.reshape((-1, 2)).astype(int)


def trim_quiet(y: np.ndarray, *, top_db: float = TRIM_TOP_DB) -> np.ndarray:
    """Remove everything more than ``top_db`` below the peak: leading, trailing and inside.

    Raises :class:`SilentAudio` when the signal is digital silence. Non-finite
    samples count as 0; the loudness analysis runs on a peak-normalised copy, so
    any finite amplitude works (no float32 overflow when squaring).
    """
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if y.size and not np.isfinite(y).all():
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak < SILENCE_PEAK:
        raise SilentAudio("The audio is silent: nothing to classify.")
    spans = loud_intervals(y / np.float32(peak) if peak > 1.0 else y, top_db=top_db)
    if len(spans) == 0:
        raise SilentAudio("The audio is silent: nothing to classify.")
    return np.concatenate([y[a:b] for a, b in spans]).astype(np.float32, copy=False)


def prepare(y: np.ndarray, *, sr: int = SAMPLE_RATE, min_duration: float = MIN_DURATION_S) -> np.ndarray:
    """Trim quiet parts and check that enough sound remains for the classifier."""
    trimmed = trim_quiet(y)
    if trimmed.size / sr < min_duration:
        raise TooShort(
            f"Only {format_seconds(trimmed.size / sr)} of sound after removing silence; "
            f"at least {format_seconds(min_duration)} is needed."
        )
    return trimmed


def pcm16(y: np.ndarray) -> np.ndarray:
    """Float samples as little-endian 16-bit PCM (clipped to ±1, NaN as 0)."""
    return (np.clip(np.nan_to_num(y), -1.0, 1.0) * 32767.0).astype("<i2")


def write_wav(path: str | os.PathLike, y: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write mono 16-bit PCM WAV atomically (temp file in the same folder, then rename)."""
    pcm = pcm16(y)
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as handle, wave.open(handle, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(int(sr))
            out.writeframes(pcm.tobytes())
    return Path(path)
