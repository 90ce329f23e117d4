"""One STFT → every feature; a named, versioned feature schema.

:func:`analyse` turns mono 16 kHz audio into per-frame tracks (:class:`Frames`)
from a single STFT (n_fft 2048, Hann window 1024, hop 160 = 10 ms): MFCC,
ΔMFCC, chroma, spectral contrast, roll-off, centroid, flatness, flux, level,
zero-crossing rate and an autocorrelation pitch track (Boersma's window-normalised
ACF taken from the same power spectrum); beside it, a pretrained voice detector's probability per 32 ms
(Silero VAD, :mod:`singtalk.vad`; schema st-9), which the voice gate leans on. :func:`pool` summarises any frame range
into one vector of :data:`N_FEATURES` numbers named by :data:`FEATURE_NAMES`, so
sliding windows over long audio (:func:`extract_windows`) cost one analysis. The
last three features are learnt: ``spectro_logit``, ``harmonic_logit`` and ``contour_logit`` are
the logits of three small CNNs (:mod:`singtalk.spectro`, shipped weights, run in NumPy) over the
range's sounding frames of the dB mel, of a log-frequency spectrogram (128 bands, 80 Hz–4 kHz) fine
enough to show the voice's harmonics, and of a timbre-free piano roll of the pitch
(:func:`contour_image`); the schema version names those weights.

Every feature is a log, a ratio or a shape measure of a spectrum normalised by the
clip's RMS, so a gain change leaves it unchanged; chroma is rotated so its strongest
pitch class comes first (key-invariant) and no feature carries the absolute F0
(which encodes the speaker's sex more than singing). Undefined quantities (no voiced
frames...) are 0, never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from . import spectro, vad
from .audio import SAMPLE_RATE, SILENCE_PEAK
from .errors import SilentAudio, TooShort

FEATURE_VERSION = "st-9"
"""Stored with every model; a model trained on another version is refused."""

N_FFT = 2048
WIN_LENGTH = 1024
HOP_LENGTH = 160
N_MELS = 64
N_LOGF_BANDS = 128
LOGF_RANGE_HZ = (80.0, 4000.0)
"""The harmonic view: log-spaced triangular bands (~23 per octave), none narrower than ±1 FFT bin."""
N_MFCC = 20
N_CHROMA = 12
N_CONTRAST_BANDS = 6
CONTRAST_FMIN = 200.0
CONTRAST_QUANTILE = 0.02
ROLLOFF_PERCENT = 0.85

SOUNDING_TOP_DB = 20.0
"""Frames within this many dB of the loudest frame are sounding (the seed's 20 dB trim)."""
MIN_SOUND_S = 0.5
"""Least sounding time for a usable clip or window."""

F0_MIN, F0_MAX = 70.0, 1000.0
PITCH_SR = 8000
"""The ACF is taken from the power spectrum below 4 kHz, i.e. sampled at 8 kHz (2× cheaper than 16 kHz)."""
PITCH_TAPER_HZ = (1500.0, 3000.0)
"""The power spectrum fades out between these: smoother ACF peaks, so parabolic heights compare fairly."""
VOICING_THRESHOLD = 0.45
OCTAVE_COST = 0.03
"""Per octave of lag (Praat: 0.01 with sinc interpolation; parabolic heights need more): a longer lag must beat a shorter one by this much."""

STABLE_STEP_ST = 0.3
STABLE_RUN = 5
NOTE_MIN_S = 0.15
NOTE_TOLERANCE_ST = 0.5
SMOOTH_HALF = 9
"""Half-width (frames) of the run-aware moving average that removes 4–8 Hz vibrato: 19 frames ≈ one 5.3 Hz cycle."""
VIBRATO_HALF = 2
LONG_RUN_S = 0.4
ENVELOPE_FLOOR_DB = 50.0
PERIODICITY_QUANTILES = (25, 50, 75, 90)
SLOPE_QUANTILES = (10, 25, 50, 75, 90)
"""Quantiles of |slope| (st/s) of the vibrato-smoothed pitch in voiced frames: notes are flat, speech glides."""
SLOPE_SPAN = 2
"""The slope is the difference over ±2 frames (40 ms) of the smoothed pitch."""
CHANGE_QUANTILES = (25, 50, 75)
"""Quantiles of the spectral change rate (norm of ΔMFCC 1–12) in sounding frames: held vowels change slowly."""
ONSET_RISE_DB = 9.0
ONSET_SPAN = 5
SPECTRO_CLIP = 30.0
CONTOUR_BANDS = 48
CONTOUR_BINS_PER_ST = 2
"""The contour view: a piano roll of ±12 semitones around the range's median pitch, in half-semitone bins."""
CONTOUR_WIDTH_BINS = 0.7
CONTOUR_DB = 20.0
"""A fully periodic frame peaks at this (``spectro.DB_SCALE``, so the network's input peaks near 1)."""
_AMIN = 1e-10
_BLOCK_FRAMES = 512
"""Frames per STFT block: keeps temporaries in cache (≈1.7× faster than one big block) and bounds memory."""


VOICE_PROB_FEATURES = ("voice_prob_mean", "voice_prob_p90", "voice_prob_fraction", "voice_prob_max")
"""Summaries of the pretrained voice detector's track (:mod:`singtalk.vad`, schema st-9) over the sounding frames."""
VIEW_FEATURES = {"mel": "spectro_logit", "harmonic": "harmonic_logit", "contour": "contour_logit"}
"""The feature each spectrogram view's network (:data:`spectro.VIEWS`) gives."""
VIEW_BANDS = {"mel": N_MELS, "harmonic": N_LOGF_BANDS, "contour": CONTOUR_BANDS}
"""The width of each view's input (:func:`spectro_input`)."""


def _names() -> tuple[str, ...]:
    names = [f"mfcc{i}_mean" for i in range(1, N_MFCC)]
    names += [f"mfcc{i}_std" for i in range(N_MFCC)]
    names += [f"dmfcc{i}_std" for i in range(N_MFCC)]
    names += [f"chroma{i}_mean" for i in range(N_CHROMA)]
    names += [f"chroma{i}_std" for i in range(N_CHROMA)]
    names += [f"contrast{i}_mean" for i in range(N_CONTRAST_BANDS + 1)]
    names += [f"contrast{i}_std" for i in range(N_CONTRAST_BANDS + 1)]
    for track in ("log2_rolloff", "log2_centroid", "zcr", "log10_flatness", "flux"):
        names += [f"{track}_mean", f"{track}_std"]
    names += [
        "voiced_fraction", "periodicity_mean", "f0_step_median", "f0_step_p90", "f0_stable_fraction",
        "f0_range", "f0_hist_entropy", "f0_note_fraction", "voiced_run_mean", "voiced_run_p90",
        "voiced_runs_per_s", "vibrato_extent", "vibrato_ratio",
        "env_mod_syllabic", "env_mod_slow", "env_std_db", "pause_fraction",
    ]
    names += [f"periodicity_p{p}" for p in PERIODICITY_QUANTILES] + ["periodicity_voiced_mean"]
    names += [f"f0_slope_p{p}" for p in SLOPE_QUANTILES] + ["f0_flat_fraction_2", "f0_flat_fraction_5"]
    names += ["f0_residual_std", "note_residual_std", "note_dur_mean", "note_dur_max", "note_time_fraction"]
    names += [f"spectral_change_p{p}" for p in CHANGE_QUANTILES] + ["spectral_change_voiced_median"]
    names += [f"voiced_contrast{i}_mean" for i in range(N_CONTRAST_BANDS + 1)]
    names += ["voiced_log10_flatness_mean", "voiced_log2_centroid_mean"]
    names += ["long_run_fraction", "voiced_run_p50", "voiced_run_max", "onsets_per_s"]
    names += VOICE_PROB_FEATURES
    names += [VIEW_FEATURES[view] for view in spectro.VIEWS]
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = _names()
N_FEATURES = len(FEATURE_NAMES)


@dataclass(frozen=True)
class Frames:
    """Per-frame tracks of one clip; row ``t`` is centred at ``t * hop / sr`` seconds.

    2-D tracks are ``(n_frames, k)``; 1-D tracks are ``(n_frames,)``.
    """

    sr: int
    hop: int
    mel_db: np.ndarray        # (n, 64) dB mel power (of the RMS-normalised signal)
    logf_db: np.ndarray       # (n, 128) dB power on log-spaced bands 80 Hz–4 kHz (the harmonic view)
    mfcc: np.ndarray          # (n, 20) from dB mel power
    dmfcc: np.ndarray         # (n, 20) regression delta, ±2 frames
    chroma: np.ndarray        # (n, 12) per-frame max-normalised, C first
    contrast: np.ndarray      # (n, 7) dB, librosa's octave bands from 200 Hz
    log2_rolloff: np.ndarray  # log2 Hz of the 85 % magnitude roll-off
    log2_centroid: np.ndarray
    zcr: np.ndarray
    log10_flatness: np.ndarray
    flux: np.ndarray          # mean rise of dB mel bands from the previous frame
    level_db: np.ndarray      # frame energy relative to the loudest frame (≤ 0)
    sounding: np.ndarray      # bool: level_db ≥ −20
    f0: np.ndarray            # Hz, NaN where unvoiced
    periodicity: np.ndarray   # normalised ACF peak in [0, 1]
    voiced: np.ndarray        # bool
    semitones: np.ndarray     # 12·log2(f0/55), NaN unvoiced
    f0_step: np.ndarray       # |Δ semitones| to the next frame, NaN unless both voiced
    f0_stable: np.ndarray     # bool: voiced with |Δ| < 0.3 st over a 50 ms run
    in_note: np.ndarray       # bool: in a ≥150 ms stretch held within ±0.5 st (vibrato smoothed out)
    vibrato: np.ndarray       # ~3–15 Hz band of the detrended pitch (st), 0 unvoiced
    f0_residual: np.ndarray   # pitch minus its 190 ms run-aware mean (st), 0 unvoiced
    long_run: np.ndarray      # bool: voiced frame in a run ≥ 0.4 s
    voice_prob: np.ndarray    # Silero VAD's voice probability of the frame's 32 ms chunk (singtalk.vad)

    @property
    def n_frames(self) -> int:
        return int(self.level_db.shape[0])

    @property
    def frame_rate(self) -> float:
        return self.sr / self.hop

    @property
    def duration(self) -> float:
        return self.n_frames / self.frame_rate


# -- constant matrices ----------------------------------------------------------
def logfreq_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """``(n_fft//2 + 1, N_LOGF_BANDS)`` triangular bands, log-spaced centres in ``LOGF_RANGE_HZ``, each summing to 1."""
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo_hz, hi_hz = LOGF_RANGE_HZ
    centres = lo_hz * (hi_hz / lo_hz) ** (np.arange(N_LOGF_BANDS + 2) / (N_LOGF_BANDS + 1))
    bin_width = sr / n_fft
    bank = np.zeros((len(freqs), N_LOGF_BANDS), dtype=np.float32)
    for k in range(N_LOGF_BANDS):
        centre = centres[k + 1]
        lo, hi = min(centres[k], centre - bin_width), max(centres[k + 2], centre + bin_width)
        bank[:, k] = np.maximum(0.0, np.minimum((freqs - lo) / (centre - lo), (hi - freqs) / (hi - centre)))
    return bank / bank.sum(axis=0, keepdims=True)


FILTERS_FILE = Path(__file__).resolve().parent / "weights" / f"filters-{SAMPLE_RATE}.npz"
"""librosa's window, mel and chroma banks at the working rate, stored so that extracting features needs
no librosa import (about a second); ``tests/test_numpy_paths.py`` checks them against librosa."""


def librosa_filters(sr: int) -> dict[str, np.ndarray]:
    """The Hann window, mel bank and chroma bank, as librosa computes them (float32)."""
    import librosa

    return {
        "window": librosa.filters.get_window("hann", WIN_LENGTH, fftbins=True).astype(np.float32),
        "mel": librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS, fmax=sr / 2).astype(np.float32),
        "chroma": librosa.filters.chroma(sr=sr, n_fft=N_FFT, n_chroma=N_CHROMA, tuning=0.0).astype(np.float32),
    }


def _filters(sr: int) -> dict[str, np.ndarray]:
    if sr == SAMPLE_RATE and FILTERS_FILE.is_file():
        with np.load(FILTERS_FILE) as stored:
            return {name: stored[name] for name in ("window", "mel", "chroma")}
    return librosa_filters(sr)


@lru_cache(maxsize=4)
def _constants(sr: int):
    filters = _filters(sr)
    window, mel, chroma = filters["window"], filters["mel"], filters["chroma"]
    dct = scipy.fft.dct(np.eye(N_MELS), type=2, norm="ortho", axis=0)[:N_MFCC].astype(np.float32)  # (20, 64)
    freqs = np.linspace(0, sr / 2, N_FFT // 2 + 1)
    # spectral contrast bands exactly as librosa.feature.spectral_contrast selects them
    octa = np.zeros(N_CONTRAST_BANDS + 2)
    octa[1:] = CONTRAST_FMIN * 2.0 ** np.arange(N_CONTRAST_BANDS + 1)
    bands = []
    for k, (lo, hi) in enumerate(zip(octa[:-1], octa[1:])):
        band = (freqs >= lo) & (freqs <= hi)
        idx = np.flatnonzero(band)
        if k > 0:
            band[idx[0] - 1] = True
        if k == N_CONTRAST_BANDS:
            band[idx[-1] + 1:] = True
        q = max(int(np.rint(CONTRAST_QUANTILE * band.sum())), 1)
        sel = np.flatnonzero(band)
        if k < N_CONTRAST_BANDS:
            sel = sel[:-1]
        bands.append((int(sel[0]), int(sel[-1]) + 1, q))
    # pitch: ACF of the window itself, computed the same way (Boersma 1993)
    n_pitch = N_FFT * PITCH_SR // sr
    win_power = np.abs(np.fft.rfft(window, n=N_FFT)) ** 2
    pitch_freqs = freqs[: n_pitch // 2 + 1]
    pitch_taper = np.clip((PITCH_TAPER_HZ[1] - pitch_freqs) / (PITCH_TAPER_HZ[1] - PITCH_TAPER_HZ[0]), 0.0, 1.0)
    pitch_taper = (0.5 - 0.5 * np.cos(np.pi * pitch_taper)).astype(np.float32)
    win_acf = np.fft.irfft(win_power[: n_pitch // 2 + 1] * pitch_taper, n=n_pitch)
    lag_lo = int(np.floor(PITCH_SR / F0_MAX))
    lag_hi = int(np.ceil(PITCH_SR / F0_MIN))
    win_norm = (win_acf[0] / win_acf[lag_lo - 1: lag_hi + 2]).astype(np.float32)
    lags = np.arange(lag_lo, lag_hi + 1)
    octave_penalty = (OCTAVE_COST * np.log2(lags / lag_lo)).astype(np.float32)
    logf = logfreq_filterbank(sr)
    logf = logf[: int(np.flatnonzero(logf.any(axis=1))[-1]) + 1]  # no weight from 4 kHz up: skip those bins
    return {
        "window": window, "mel": np.ascontiguousarray(mel.T), "logf": logf, "chroma": np.ascontiguousarray(chroma.T),
        "dct": np.ascontiguousarray(dct.T), "freqs": freqs.astype(np.float32), "bands": bands,
        "n_pitch": n_pitch, "lag_lo": lag_lo, "lag_hi": lag_hi, "win_norm": win_norm,
        "octave_penalty": octave_penalty, "pitch_taper": pitch_taper,
    }


# -- per-frame analysis -----------------------------------------------------------
def _spectral_block(frames: np.ndarray, c: dict, sr: int, prev_mel_db: np.ndarray | None) -> dict[str, np.ndarray]:
    """All spectral tracks of a block of raw sample frames ``(n, WIN_LENGTH)``.

    ``prev_mel_db`` is the last dB mel frame of the previous block (for the flux at the block start).
    """
    padded = np.zeros((len(frames), N_FFT), dtype=np.float32)  # windowed straight into the zero-padded buffer
    np.multiply(frames, c["window"], out=padded[:, :WIN_LENGTH])
    spec = scipy.fft.rfft(padded, axis=1)
    del padded
    power = spec.real ** 2
    power += spec.imag ** 2
    del spec
    mag = np.sqrt(power)
    energy = power.sum(axis=1)

    mel_db = 10.0 * np.log10(np.maximum(power @ c["mel"], _AMIN))
    logf_db = 10.0 * np.log10(np.maximum(power[:, : len(c["logf"])] @ c["logf"], _AMIN))
    mfcc = mel_db @ c["dct"]
    previous = mel_db[:1] if prev_mel_db is None else prev_mel_db[None, :]
    flux = np.maximum(np.diff(mel_db, axis=0, prepend=previous), 0.0).mean(axis=1)

    chroma = power @ c["chroma"]
    chroma /= np.maximum(chroma.max(axis=1, keepdims=True), np.finfo(np.float32).tiny)

    contrast = np.empty((len(mag), len(c["bands"])), dtype=np.float32)
    for k, (lo, hi, q) in enumerate(c["bands"]):
        sub = np.sort(mag[:, lo:hi], axis=1)  # faster than np.partition here (SIMD sort of rows)
        peak = sub[:, hi - lo - q:].mean(axis=1)
        valley = sub[:, :q].mean(axis=1)
        contrast[:, k] = 10.0 * (np.log10(np.maximum(peak, _AMIN)) - np.log10(np.maximum(valley, _AMIN)))

    mag_sum = np.maximum(mag.sum(axis=1), _AMIN)
    centroid = (mag @ c["freqs"]) / mag_sum
    # roll-off on 4-bin groups (31 Hz), interpolated inside the group: cumsum over 1025 columns is slow
    groups = mag[:, 1::4] + mag[:, 2::4] + mag[:, 3::4] + mag[:, 4::4]
    cum = np.cumsum(groups, axis=1)
    target = ROLLOFF_PERCENT * mag_sum - mag[:, 0]
    g = np.minimum((cum < target[:, None]).sum(axis=1), cum.shape[1] - 1)
    rows = np.arange(len(mag))
    before = np.where(g > 0, cum[rows, np.maximum(g - 1, 0)], 0.0)
    frac = np.clip((target - before) / np.maximum(groups[rows, g], _AMIN), 0.0, 1.0)
    bin_width = sr / N_FFT
    rolloff = (0.5 + 4 * (g + frac)) * bin_width

    log_power = np.log(power + _AMIN)
    log_flat = (log_power.mean(axis=1) - np.log(power.mean(axis=1) + _AMIN)) / np.log(10.0)
    del log_power

    # pitch: ACF = irfft of the power spectrum (no wraparound: 2048 ≥ 2·1024), tapered off from 1.5 to 3 kHz
    # and cut at 4 kHz, i.e. sampled at 8 kHz; normalised by the window's own ACF (Boersma 1993)
    n_pitch = c["n_pitch"]
    acf = scipy.fft.irfft(power[:, : n_pitch // 2 + 1] * c["pitch_taper"], n=n_pitch, axis=1)
    lo, hi = c["lag_lo"], c["lag_hi"]
    r0 = acf[:, :1]
    r = acf[:, lo - 1: hi + 2] * (c["win_norm"] / np.maximum(r0, _AMIN))  # lags lo-1 .. hi+1
    a, b, cc = r[:, :-2], r[:, 1:-1], r[:, 2:]
    is_peak = (b > a) & (b >= cc)
    # parabolic interpolation of every candidate peak: choosing on sampled values favours octave errors
    denom = a - 2 * b + cc
    shift = np.clip(0.5 * (a - cc) / np.where(denom < 0, denom, -1.0), -0.5, 0.5)
    heights = b - 0.25 * (a - cc) * shift
    score = np.where(is_peak, heights - c["octave_penalty"], -np.inf)
    best = score.argmax(axis=1)
    found = np.isfinite(score[rows, best])
    height = np.clip(heights[rows, best], 0.0, 1.0)
    shift = shift[rows, best]
    lag = lo + best + shift
    periodicity = np.where(found & (r0[:, 0] > 0), height, 0.0)
    f0 = PITCH_SR / lag

    return {
        "energy": energy, "mfcc": mfcc, "flux": flux, "chroma": chroma, "contrast": contrast,
        "log2_centroid": np.log2(np.maximum(centroid, 1.0)), "log2_rolloff": np.log2(np.maximum(rolloff, 1.0)),
        "log10_flatness": log_flat, "f0": f0, "periodicity": periodicity, "mel_db": mel_db,
        "logf_db": logf_db,
    }


def _zcr(y_padded: np.ndarray, n_frames: int) -> np.ndarray:
    """Zero-crossing rate of the same 1024-sample frames, from a cumulative count (O(n))."""
    crossings = np.signbit(y_padded[1:]) != np.signbit(y_padded[:-1])
    cum = np.concatenate([[0], np.cumsum(crossings, dtype=np.int64)])
    starts = np.arange(n_frames) * HOP_LENGTH
    return ((cum[starts + WIN_LENGTH - 1] - cum[starts]) / WIN_LENGTH).astype(np.float32)


def _delta(x: np.ndarray) -> np.ndarray:
    """Regression delta over ±2 frames (edges repeated), along axis 0."""
    p = np.pad(x, ((2, 2), (0, 0)), mode="edge")
    return (p[3:-1] - p[1:-3] + 2.0 * (p[4:] - p[:-4])) / 10.0


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) indices of the True runs of a boolean vector."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def _run_mean(x: np.ndarray, mask: np.ndarray, half: int) -> np.ndarray:
    """Moving average of ``x`` over ±``half`` frames, never crossing the ends of ``mask``'s runs."""
    n = len(x)
    starts, stops = _runs(mask)
    run_lo = np.zeros(n, dtype=np.int64)
    run_hi = np.zeros(n, dtype=np.int64)
    lengths = stops - starts
    run_lo[mask] = np.repeat(starts, lengths)
    run_hi[mask] = np.repeat(stops, lengths)
    idx = np.arange(n)
    lo = np.maximum(idx - half, run_lo)
    hi = np.minimum(idx + half + 1, run_hi)
    cum = np.concatenate([[0.0], np.cumsum(np.where(mask, x, 0.0))])
    out = np.zeros(n)
    count = hi - lo
    ok = mask & (count > 0)
    out[ok] = (cum[hi[ok]] - cum[lo[ok]]) / count[ok]
    return out


def _pitch_tracks(f0: np.ndarray, voiced: np.ndarray, frame_rate: float) -> dict[str, np.ndarray]:
    """Per-frame pitch-stability tracks (see :class:`Frames`)."""
    n = len(f0)
    st = np.where(voiced, 12.0 * np.log2(np.where(voiced, f0, 55.0) / 55.0), np.nan)
    step = np.full(n, np.nan)
    if n > 1:
        both = voiced[1:] & voiced[:-1]
        step[:-1] = np.where(both, np.abs(np.diff(np.nan_to_num(st))), np.nan)
    # stable: the STABLE_RUN - 1 steps spanning frames t-2 .. t+2 all small
    small = np.nan_to_num(step, nan=np.inf) < STABLE_STEP_ST
    k = STABLE_RUN - 1
    ok_windows = np.convolve(small.astype(np.int32), np.ones(k, dtype=np.int32), mode="valid") == k  # steps i..i+k-1
    stable = np.zeros(n, dtype=bool)
    # window starting at step i covers frames i .. i+k; centre frame i + k//2
    stable[np.flatnonzero(ok_windows) + k // 2] = True
    stable &= voiced

    st0 = np.nan_to_num(st)
    smooth = _run_mean(st0, voiced, SMOOTH_HALF)
    note_len = max(int(round(NOTE_MIN_S * frame_rate)), 2)
    in_note = np.zeros(n, dtype=bool)
    if n >= note_len:
        sm = np.where(voiced, smooth, np.nan)
        win = sliding_window_view(sm, note_len)
        all_voiced = sliding_window_view(voiced, note_len).all(axis=1)
        spread = np.where(all_voiced, np.nanmax(np.where(all_voiced[:, None], win, 0.0), axis=1)
                          - np.nanmin(np.where(all_voiced[:, None], win, 0.0), axis=1), np.inf)
        held = (spread <= 2 * NOTE_TOLERANCE_ST).astype(np.int32)
        in_note = np.convolve(held, np.ones(note_len, dtype=np.int32), mode="full")[:n] > 0
        in_note &= voiced
    residual = np.where(voiced, st0 - smooth, 0.0)
    vibrato = _run_mean(residual, voiced, VIBRATO_HALF)
    starts, stops = _runs(voiced)
    long_run = np.zeros(n, dtype=bool)
    for a, b in zip(starts, stops):
        if (b - a) >= LONG_RUN_S * frame_rate:
            long_run[a:b] = True
    return {"semitones": st, "f0_step": step, "f0_stable": stable, "in_note": in_note,
            "vibrato": vibrato, "f0_residual": residual, "long_run": long_run}


def analyse(y: np.ndarray, sr: int = SAMPLE_RATE) -> Frames:
    """Per-frame tracks of mono audio ``y`` (shape ``(n_samples,)``), one STFT for all.

    Other rates are resampled to 16 kHz. Raises :class:`SilentAudio` when nothing
    is audible and :class:`TooShort` for an empty signal.
    """
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if sr != SAMPLE_RATE:
        import librosa

        y = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE).astype(np.float32)
        sr = SAMPLE_RATE
    if y.size == 0:
        raise TooShort("The audio holds no samples.")
    y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    if float(np.max(np.abs(y))) < SILENCE_PEAK:
        raise SilentAudio("The audio is silent: nothing to classify.")
    y = y / np.float32(np.sqrt(np.mean(np.square(y, dtype=np.float64))))  # level: gain-free from here on
    c = _constants(sr)
    y_padded = np.pad(y, WIN_LENGTH // 2)
    n_frames = 1 + y.size // HOP_LENGTH
    all_frames = sliding_window_view(y_padded, WIN_LENGTH)[::HOP_LENGTH][:n_frames]
    blocks = []
    for start in range(0, n_frames, _BLOCK_FRAMES):
        previous = blocks[-1]["mel_db"][-1] if blocks else None
        blocks.append(_spectral_block(all_frames[start: start + _BLOCK_FRAMES], c, sr, previous))
    tracks = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}

    energy = tracks.pop("energy").astype(np.float64)
    if not np.any(energy > 0):
        raise SilentAudio("The audio is silent: nothing to classify.")
    level_db = 10.0 * np.log10(np.maximum(energy / energy.max(), 1e-30))
    sounding = level_db >= -SOUNDING_TOP_DB
    periodicity = np.where(sounding, tracks.pop("periodicity"), 0.0)
    voiced = sounding & (periodicity >= VOICING_THRESHOLD)
    f0 = np.where(voiced, tracks.pop("f0"), np.nan)
    frame_rate = sr / HOP_LENGTH
    pitch = _pitch_tracks(f0, voiced, frame_rate)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Frames(
        sr=sr, hop=HOP_LENGTH, mel_db=f32(tracks["mel_db"]), logf_db=f32(tracks["logf_db"]),
        mfcc=f32(tracks["mfcc"]), dmfcc=f32(_delta(tracks["mfcc"])), chroma=f32(tracks["chroma"]),
        contrast=f32(tracks["contrast"]), log2_rolloff=f32(tracks["log2_rolloff"]),
        log2_centroid=f32(tracks["log2_centroid"]), zcr=_zcr(y_padded, n_frames),
        log10_flatness=f32(tracks["log10_flatness"]), flux=f32(tracks["flux"]),
        level_db=f32(level_db), sounding=sounding, f0=f32(f0), periodicity=f32(periodicity), voiced=voiced,
        semitones=f32(pitch["semitones"]), f0_step=f32(pitch["f0_step"]), f0_stable=pitch["f0_stable"],
        in_note=pitch["in_note"], vibrato=f32(pitch["vibrato"]), f0_residual=f32(pitch["f0_residual"]),
        long_run=pitch["long_run"], voice_prob=vad.frame_probabilities(y, n_frames, HOP_LENGTH),
    )


# -- pooling --------------------------------------------------------------------
def _mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) == 0:
        shape = x.shape[1:]
        return np.zeros(shape), np.zeros(shape)
    x = x.astype(np.float64)
    return x.mean(axis=0), x.std(axis=0)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _pitch_features(fr: Frames, sl: slice, n_sounding: int) -> list[float]:
    voiced = fr.voiced[sl]
    n_voiced = int(voiced.sum())
    sounding_s = n_sounding / fr.frame_rate
    periodicity_mean = float(fr.periodicity[sl][fr.sounding[sl]].mean()) if n_sounding else 0.0
    if n_voiced < 2:
        return [n_voiced / max(n_sounding, 1), periodicity_mean] + [0.0] * 11
    st = fr.semitones[sl][voiced].astype(np.float64)
    steps = fr.f0_step[sl][:-1]
    steps = steps[np.isfinite(steps)].astype(np.float64)
    step_median, step_p90 = (float(np.median(steps)), float(np.percentile(steps, 90))) if steps.size else (0.0, 0.0)
    p5, p95 = np.percentile(st, [5, 95])
    pitch_class = np.floor(np.mod(st, 12.0) * 2).astype(int) % 24
    entropy = _entropy(np.bincount(pitch_class, minlength=24)) / np.log2(24)
    starts, stops = _runs(voiced)
    run_s = (stops - starts) / fr.frame_rate
    long_run = fr.long_run[sl]
    vib = fr.vibrato[sl][long_run].astype(np.float64)
    res = fr.f0_residual[sl][long_run].astype(np.float64)
    vib_extent = float(np.sqrt(np.mean(vib ** 2))) if vib.size else 0.0
    res_energy = float(np.sum(res ** 2))
    vib_ratio = float(np.sum(vib ** 2) / res_energy) if res_energy > 0 else 0.0
    return [
        n_voiced / max(n_sounding, 1), periodicity_mean, step_median, step_p90,
        float(fr.f0_stable[sl].sum() / n_voiced), float(p95 - p5), float(entropy),
        float(fr.in_note[sl].sum() / n_voiced), float(run_s.mean()), float(np.percentile(run_s, 90)),
        float(len(run_s) / sounding_s) if sounding_s > 0 else 0.0, vib_extent, vib_ratio,
    ]


def _rhythm_features(fr: Frames, sl: slice) -> list[float]:
    level = np.maximum(fr.level_db[sl].astype(np.float64), -ENVELOPE_FLOOR_DB)
    pause_fraction = float(1.0 - fr.sounding[sl].mean()) if level.size else 0.0
    if level.size < 4:
        return [0.0, 0.0, 0.0, pause_fraction]
    env = level - level.mean()
    spectrum = np.abs(np.fft.rfft(env * np.hanning(env.size))) ** 2
    freqs = np.fft.rfftfreq(env.size, 1.0 / fr.frame_rate)
    total = spectrum[(freqs >= 0.5) & (freqs <= 16.0)].sum()
    syllabic = spectrum[(freqs >= 3.0) & (freqs <= 6.0)].sum()
    slow = spectrum[(freqs >= 0.5) & (freqs < 2.0)].sum()
    if total <= 0:
        return [0.0, 0.0, float(level.std()), pause_fraction]
    return [float(syllabic / total), float(slow / total), float(level.std()), pause_fraction]


def _quantiles(x: np.ndarray, qs) -> list[float]:
    return [float(v) for v in np.percentile(x, qs)] if len(x) else [0.0] * len(qs)


def _contour_features(fr: Frames, sl: slice, n_sounding: int) -> list[float]:
    """Finer pitch-contour, periodicity, spectral-change and voiced-only spectral statistics (st-3)."""
    voiced, sounding = fr.voiced[sl], fr.sounding[sl]
    rate = fr.frame_rate
    n_voiced = int(voiced.sum())
    periodicity = fr.periodicity[sl].astype(np.float64)
    out = _quantiles(periodicity[sounding], PERIODICITY_QUANTILES)
    out.append(float(periodicity[voiced].mean()) if n_voiced else 0.0)

    st0 = np.nan_to_num(fr.semitones[sl].astype(np.float64))
    smooth = _run_mean(st0, voiced, SMOOTH_HALF)
    k = SLOPE_SPAN
    slopes = np.zeros(0)
    if len(voiced) > 2 * k:
        inner = voiced[k:-k] & voiced[: -2 * k] & voiced[2 * k:]
        slopes = np.abs(smooth[2 * k:] - smooth[: -2 * k])[inner] * rate / (2 * k)
    out += _quantiles(slopes, SLOPE_QUANTILES)
    out += [float((slopes < 2.0).mean()) if slopes.size else 0.0, float((slopes < 5.0).mean()) if slopes.size else 0.0]

    residual = fr.f0_residual[sl].astype(np.float64)
    in_note = fr.in_note[sl]
    out.append(float(residual[voiced].std()) if n_voiced > 2 else 0.0)
    out.append(float(residual[in_note].std()) if in_note.sum() > 2 else 0.0)
    starts, stops = _runs(in_note)
    notes_s = (stops - starts) / rate
    out += [float(notes_s.mean()) if notes_s.size else 0.0, float(notes_s.max()) if notes_s.size else 0.0,
            float(in_note.sum() / max(n_sounding, 1))]

    change = np.linalg.norm(fr.dmfcc[sl][:, 1:13].astype(np.float64), axis=1)
    out += _quantiles(change[sounding], CHANGE_QUANTILES)
    out.append(float(np.median(change[voiced])) if n_voiced else 0.0)

    if n_voiced:
        out += list(fr.contrast[sl][voiced].astype(np.float64).mean(axis=0))
        out += [float(fr.log10_flatness[sl][voiced].mean()), float(fr.log2_centroid[sl][voiced].mean())]
    else:
        out += [0.0] * (N_CONTRAST_BANDS + 3)

    starts, stops = _runs(voiced)
    runs_s = (stops - starts) / rate
    out += [float(fr.long_run[sl].sum() / max(n_voiced, 1)),
            float(np.median(runs_s)) if runs_s.size else 0.0, float(runs_s.max()) if runs_s.size else 0.0]
    level = np.maximum(fr.level_db[sl].astype(np.float64), -ENVELOPE_FLOOR_DB)
    onsets = 0.0
    if level.size > ONSET_SPAN + 1:
        rising = (level[ONSET_SPAN:] - level[:-ONSET_SPAN]) > ONSET_RISE_DB
        onsets = float((rising[1:] & ~rising[:-1]).sum() + rising[0]) / (level.size / rate)
    out.append(onsets)
    return out


def _voice_prob_features(prob: np.ndarray) -> list[float]:
    """:data:`VOICE_PROB_FEATURES` of the sounding frames' voice probabilities (zeros for none)."""
    if prob.size == 0:
        return [0.0] * len(VOICE_PROB_FEATURES)
    prob = prob.astype(np.float64)
    return [float(prob.mean()), float(np.percentile(prob, 90)), float((prob > 0.5).mean()), float(prob.max())]


VIEW_TRACKS = {"mel": "mel_db", "harmonic": "logf_db"}
"""The :class:`Frames` track each spectrogram view (:data:`spectro.VIEWS`) reads; ``contour`` is drawn
from the pitch track by :func:`contour_image`."""


def contour_image(frames: Frames, sl: slice = slice(None)) -> np.ndarray:
    """``(sounding frames, CONTOUR_BANDS)`` piano roll of the pitch in ``sl``, timbre-free: each voiced
    frame is a Gaussian bump (height ``CONTOUR_DB`` × periodicity) at its pitch relative to the range's
    median, clipped to ±12 semitones; unvoiced frames are empty. Held notes, vibrato and gliding speech
    intonation are shapes a convolution learns, in any key and any voice."""
    sounding = frames.sounding[sl]
    semitones = frames.semitones[sl][sounding]
    weight = np.where(frames.voiced[sl][sounding], frames.periodicity[sl][sounding], 0.0)
    image = np.zeros((semitones.size, CONTOUR_BANDS), dtype=np.float32)
    ok = np.isfinite(semitones) & (weight > 0)
    if ok.any():
        centre = np.clip((semitones[ok] - np.median(semitones[ok])) * CONTOUR_BINS_PER_ST + CONTOUR_BANDS / 2,
                         0, CONTOUR_BANDS - 1)
        bins = np.arange(CONTOUR_BANDS)[None, :]
        image[ok] = CONTOUR_DB * weight[ok, None] * np.exp(-0.5 * ((bins - centre[:, None]) / CONTOUR_WIDTH_BINS) ** 2)
    return image


def spectro_input(frames: Frames, start: int = 0, stop: int | None = None, *, view: str = "mel") -> np.ndarray:
    """The ``view`` network's input for frames ``[start, stop)``: that dB spectrogram's (or, for ``contour``,
    the pitch piano roll's) sounding frames."""
    sl = slice(start, frames.n_frames if stop is None else stop)
    if view == "contour":
        return contour_image(frames, sl)
    return getattr(frames, VIEW_TRACKS[view])[sl][frames.sounding[sl]]


def spectro_feature(spec_db: np.ndarray, net=None, *, view: str = "mel") -> float:
    """A learnt feature: the ``view`` network's logit (0 for no frames), clipped to ±SPECTRO_CLIP.

    ``net`` replaces the shipped network of that view (:func:`spectro.default_net`)."""
    if len(spec_db) == 0:
        return 0.0
    return float(np.clip((net or spectro.default_net(view))(spec_db), -SPECTRO_CLIP, SPECTRO_CLIP))


def pool(frames: Frames, start: int = 0, stop: int | None = None, *, nets=None) -> np.ndarray:
    """Summarise frames ``[start, stop)`` into a ``(N_FEATURES,)`` float32 vector (always finite).

    Spectral statistics use only the sounding frames of the range; a range with
    none gives zeros there. ``nets`` (view → network) replaces shipped spectrogram
    networks (:func:`spectro.default_net`); the training script uses it for
    out-of-fold logits, the benchmark for the hand-crafted part alone.
    """
    sl = slice(start, frames.n_frames if stop is None else stop)
    snd = frames.sounding[sl]
    n_sounding = int(snd.sum())
    parts: list = []
    mfcc_mean, mfcc_std = _mean_std(frames.mfcc[sl][snd])
    parts += [mfcc_mean[1:], mfcc_std, _mean_std(frames.dmfcc[sl][snd])[1]]
    chroma_mean, chroma_std = _mean_std(frames.chroma[sl][snd])
    key = int(np.argmax(chroma_mean)) if n_sounding else 0
    parts += [np.roll(chroma_mean, -key), np.roll(chroma_std, -key)]
    parts += list(_mean_std(frames.contrast[sl][snd]))
    for track in (frames.log2_rolloff, frames.log2_centroid, frames.zcr, frames.log10_flatness, frames.flux):
        m, s = _mean_std(track[sl][snd])
        parts.append([m, s])
    parts.append(_pitch_features(frames, sl, n_sounding))
    parts.append(_rhythm_features(frames, sl))
    parts.append(_contour_features(frames, sl, n_sounding))
    parts.append(_voice_prob_features(frames.voice_prob[sl][snd]))
    nets = nets or {}
    parts.append([spectro_feature(spectro_input(frames, start, stop, view=view), nets.get(view), view=view)
                  for view in spectro.VIEWS])
    vector = np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in parts])
    return np.nan_to_num(vector, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def require_sound(frames: Frames) -> Frames:
    """``frames`` unchanged, or :class:`TooShort` when they hold less than ``MIN_SOUND_S`` of sounding frames."""
    sounding_s = frames.sounding.sum() / frames.frame_rate
    if sounding_s < MIN_SOUND_S:
        raise TooShort(f"Only {sounding_s:.2f} s of sound; at least {MIN_SOUND_S} s is needed.")
    return frames


def extract(y: np.ndarray, sr: int = SAMPLE_RATE, *, nets=None) -> np.ndarray:
    """Feature vector ``(N_FEATURES,)`` of a whole clip.

    Raises :class:`SilentAudio` (nothing audible) or :class:`TooShort` (less than
    0.5 s of sounding frames).
    """
    return pool(require_sound(analyse(y, sr)), nets=nets)


def window_bounds(n_frames: int, *, window_s: float = 4.0, hop_s: float = 2.0,
                  frame_rate: float = SAMPLE_RATE / HOP_LENGTH) -> list[tuple[int, int]]:
    """Frame ranges ``[(start, stop), ...]`` of sliding windows covering all ``n_frames``.

    Windows are ``window_s`` long; their starts are spread evenly so that the first
    starts at 0 and the last ends at ``n_frames``, with a hop as close to ``hop_s``
    as that allows (no near-duplicate tail window). A clip no longer than one
    window gives one window covering it, as does one less than half a hop longer.
    """
    width = max(int(round(window_s * frame_rate)), 1)
    step = max(int(round(hop_s * frame_rate)), 1)
    n_frames = int(n_frames)
    count = int(round((n_frames - width) / step)) + 1
    if n_frames <= width or count <= 1:
        return [(0, n_frames)]
    starts = np.rint(np.linspace(0, n_frames - width, count)).astype(int)
    return [(int(a), int(a) + width) for a in starts]


def extract_windows(frames: Frames, *, window_s: float = 4.0, hop_s: float = 2.0, nets=None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of sliding windows: ``spans`` (k, 2) in seconds, ``X`` (k, N_FEATURES), ``ok`` (k,) bool.

    ``ok`` is False for windows with less than 0.5 s of sounding frames.
    """
    bounds = window_bounds(frames.n_frames, window_s=window_s, hop_s=hop_s, frame_rate=frames.frame_rate)
    X = np.stack([pool(frames, a, b, nets=nets) for a, b in bounds])
    spans = np.asarray(bounds, dtype=np.float64) / frames.frame_rate
    min_frames = MIN_SOUND_S * frames.frame_rate
    ok = np.array([frames.sounding[a:b].sum() >= min_frames for a, b in bounds], dtype=bool)
    return spans, X, ok
