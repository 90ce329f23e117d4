"""Decode anything ffmpeg reads to mono float32, trim quiet parts, write WAV.

All decoding goes through one ffmpeg subprocess that resamples and downmixes,
so a file is decoded once, at the working rate, whatever its format, channel
count or sample rate. Errors are :mod:`singtalk.errors` with messages a user
can act on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Union

import numpy as np

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


def _ffmpeg_message(stderr: str) -> str:
    """The most telling line of ffmpeg's error output."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Invalid" in line or "error" in line:
            return line[-200:]
    return lines[-1][-200:] if lines else "no output"


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
    decoder stops reading just past the limit, so an hours-long stream costs
    no more than the limit) or :class:`TooShort` (less than ``min_duration``).
    """
    max_duration = MAX_DURATION_S if max_duration is None else float(max_duration)
    label = name or (Path(source).name if not isinstance(source, bytes) else "the upload")
    if isinstance(source, bytes):
        if not source:
            raise UnreadableAudio(f"{label} is empty.")
        stdin, input_arg = source, "pipe:0"
    else:
        path = Path(source)
        if not path.is_file():
            raise UnreadableAudio(f"{label}: no such file.")
        if path.stat().st_size == 0:
            raise UnreadableAudio(f"{label} is empty.")
        stdin, input_arg = None, str(path)
    cmd = [
        ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error",
        # Only local files and pipes: a crafted playlist/concat upload must not make ffmpeg fetch anything.
        "-protocol_whitelist", "file,pipe",
        "-i", input_arg, "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-t", f"{max_duration + 0.5:.3f}",
        "-ac", "1", "-ar", str(int(sr)), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1",
    ]
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=600)
    except subprocess.TimeoutExpired as err:
        raise UnreadableAudio(f"{label}: decoding took too long.") from err
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        if "matches no streams" in stderr or "does not contain any stream" in stderr:
            raise NoAudioStream(f"{label} has no audio track.")
        raise UnreadableAudio(f"{label} is not audio ffmpeg can read ({_ffmpeg_message(stderr)}).")
    y = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)  # one writable copy
    del proc
    if y.size == 0:
        raise UnreadableAudio(f"{label} decodes to no samples (corrupt or truncated file).")
    np.nan_to_num(y, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(y, -1.0, 1.0, out=y)
    duration = y.size / sr
    if duration > max_duration:
        raise TooLong(
            f"{label} is longer than {format_seconds(max_duration)}; cut it shorter "
            f"(the limit is set by SINGTALK_MAX_DURATION_S)."
        )
    if duration < min_duration:
        raise TooShort(f"{label} lasts {format_seconds(duration)}; at least {format_seconds(min_duration)} is needed.")
    return y


def loud_intervals(y: np.ndarray, *, top_db: float = TRIM_TOP_DB, frame_length: int = 1024,
                   hop_length: int = 256) -> np.ndarray:
    """``(k, 2)`` sample intervals louder than ``top_db`` below the peak."""
    import librosa

    if y.size == 0:
        return np.zeros((0, 2), dtype=int)
    return librosa.effects.split(y, top_db=top_db, frame_length=frame_length, hop_length=hop_length)


def trim_quiet(y: np.ndarray, *, top_db: float = TRIM_TOP_DB) -> np.ndarray:
    """Remove everything more than ``top_db`` below the peak: leading, trailing and inside.

    Raises :class:`SilentAudio` when the signal is digital silence.
    """
    if y.size == 0 or float(np.max(np.abs(y))) < SILENCE_PEAK:
        raise SilentAudio("The audio is silent: nothing to classify.")
    spans = loud_intervals(y, top_db=top_db)
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


def write_wav(path: str | os.PathLike, y: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write mono 16-bit PCM WAV atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(np.nan_to_num(y), -1.0, 1.0) * 32767.0).astype("<i2")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle, wave.open(handle, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(int(sr))
            out.writeframes(pcm.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
