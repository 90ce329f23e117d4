"""Audio alterations for training copies and for stress tests.

:func:`random_copy` makes the augmented training copies of ``scripts/train_default.py``
and ``scripts/train_spectro.py``; ``scripts/robustness.py`` applies the single
alterations one at a time. All work on mono float samples and are deterministic
for a given ``numpy.random.Generator``.
"""

from __future__ import annotations

import subprocess

import numpy as np

from . import audio

DESCRIPTION = (
    "per copy: gain ×0.1–1 (features are gain-free), noise (white or pink) at 10–35 dB SNR with p=0.7, "
    "a random 1.5–6 s crop of longer clips, a 300–3400 Hz telephone band with p=0.2, a synthetic room reverb "
    "(RT60 0.2–0.8 s) with p=0.2; every second copy is first played 0.84–1.19× as fast (pitch, formants and "
    "tempo move together, up to ±3 semitones) and 30% of those then go through the MP3 encoder at 32–96 kb/s; "
    "training clips only"
)


def noise(rng: np.random.Generator, n: int, *, colour: str | None = None) -> np.ndarray:
    """``n`` samples of white or pink (1/f power) noise; ``colour`` None picks one at random."""
    white = rng.standard_normal(n)
    if colour is None:
        colour = "white" if rng.random() < 0.5 else "pink"
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    return np.fft.irfft(spectrum, n=n)


def at_snr(y: np.ndarray, added: np.ndarray, snr_db: float) -> np.ndarray:
    """``y`` plus ``added`` scaled to ``snr_db`` below the power of ``y``."""
    power = np.mean(np.asarray(y, dtype=np.float64) ** 2)
    return y + added * np.sqrt(power / max(np.mean(added ** 2), 1e-30) / 10 ** (snr_db / 10))


def room_reverb(y: np.ndarray, rng: np.random.Generator, sr: int, *, rt60: float, direct: float = 1.0) -> np.ndarray:
    """``y`` through a synthetic exponentially decaying room response (``direct``: the dry path's weight)."""
    from scipy.signal import fftconvolve

    t = np.arange(max(int(rt60 * sr), 1)) / sr
    response = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
    response[0] = direct
    return fftconvolve(y, response)[: y.size]


def telephone(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` band-limited to 300–3400 Hz."""
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(4, [300, 3400], btype="band", fs=sr, output="sos"), y)


def speed(y: np.ndarray, rate: float, sr: int) -> np.ndarray:
    """``y`` played ``rate`` times as fast (resampled: pitch, formants and tempo all move)."""
    import librosa

    return librosa.resample(np.asarray(y, dtype=np.float32), orig_sr=int(round(sr * rate)), target_sr=sr,
                            res_type="soxr_hq")


def mp3_round_trip(y: np.ndarray, sr: int, kbps: int) -> np.ndarray:
    """``y`` encoded to MP3 at ``kbps`` and decoded again by ffmpeg (same rate, mono)."""
    encoded = subprocess.run(
        [audio.ffmpeg_binary(), "-v", "error", "-f", "s16le", "-ar", str(sr), "-ac", "1", "-i", "pipe:0",
         "-b:a", f"{int(kbps)}k", "-f", "mp3", "pipe:1"], input=audio.pcm16(y).tobytes(), capture_output=True,
        check=True, timeout=audio.DECODE_TIMEOUT_S).stdout
    return audio.decode(encoded, sr=sr)


def random_copy(y: np.ndarray, rng: np.random.Generator, sr: int, *, resample: bool = False) -> np.ndarray:
    """One randomly altered copy of ``y`` (see :data:`DESCRIPTION`; ``resample`` marks the every-second copy)."""
    y = np.asarray(y, dtype=np.float64)
    if resample:
        y = speed(y, rng.uniform(0.84, 1.19), sr).astype(np.float64)
    crop = rng.uniform(1.5, 6.0)
    if y.size > crop * sr * 1.2:
        length = int(crop * sr)
        start = int(rng.integers(0, y.size - length))
        y = y[start: start + length]
    if rng.random() < 0.2:
        y = room_reverb(y, rng, sr, rt60=rng.uniform(0.2, 0.8), direct=1.0 / max(rng.uniform(0.3, 1.0), 1e-3))
    if rng.random() < 0.2:
        y = telephone(y, sr)
    if rng.random() < 0.7:
        y = at_snr(y, noise(rng, y.size), rng.uniform(10.0, 35.0))
    y = y * rng.uniform(0.1, 1.0) / max(np.max(np.abs(y)), 1e-9)
    if resample and rng.random() < 0.3:
        y = mp3_round_trip(y, sr, int(rng.choice([32, 48, 64, 96])))
    return y.astype(np.float32)
