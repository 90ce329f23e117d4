"""Features: schema, pitch accuracy, invariances, robustness, parity with librosa, real clips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from singtalk import features as F
from singtalk.audio import SAMPLE_RATE as SR, decode
from singtalk.errors import SilentAudio, TooShort

RNG_SEED = 1234


def harmonic(f0: np.ndarray, *, n_harmonics: int = 12, rolloff: float = 0.8) -> np.ndarray:
    """A harmonic tone following the per-sample F0 track ``f0`` (Hz)."""
    phase = 2 * np.pi * np.cumsum(f0) / SR
    return sum(np.sin(k * phase) * rolloff ** k for k in range(1, n_harmonics + 1))


def sung_notes(notes=(220.0, 247.0, 294.0), *, note_s: float = 0.6, transpose: float = 0.0) -> np.ndarray:
    """Three held notes of 0.6 s with ±0.3 semitone, 5.5 Hz vibrato and short breaths between."""
    rng = np.random.default_rng(RNG_SEED)
    parts = []
    for note in notes:
        t = np.arange(int(note_s * SR)) / SR
        f0 = note * 2 ** (transpose / 12) * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
        fade = np.minimum(1.0, np.minimum(t, note_s - t) / 0.03)
        parts += [harmonic(f0) * fade, np.zeros(int(0.05 * SR))]
    y = np.concatenate(parts)
    return (0.3 * y / np.abs(y).max() + 1e-4 * rng.standard_normal(y.size)).astype(np.float32)


def spoken_buzz(duration: float = 2.4) -> np.ndarray:
    """Speech-like: 250 ms syllables with 100 ms gaps; the phrase glides 100→180→120 Hz and each
    syllable glides ±2.5 semitones around it; a buzz shaped by changing vowel formants."""
    rng = np.random.default_rng(RNG_SEED)
    n = int(duration * SR)
    t = np.arange(n) / SR
    contour = np.interp(t, [0.0, duration / 3, duration], [100.0, 180.0, 120.0])
    vowels = [(700, 1200), (300, 2300), (500, 900), (400, 2000)]
    y = np.zeros(n)
    syllable, gap = int(0.25 * SR), int(0.10 * SR)
    for i, start in enumerate(range(0, n, syllable + gap)):
        stop = min(start + syllable, n)
        u = np.linspace(-1.0, 1.0, stop - start) * (1 if i % 2 else -1)
        f0 = contour[start:stop] * 2 ** (2.5 * u / 12)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        f1, f2 = vowels[i % len(vowels)]
        src = np.zeros(stop - start)
        for k in range(1, 40):
            fk = k * f0
            gain = (1 + 3 * np.exp(-((fk - f1) / 150) ** 2) + 2 * np.exp(-((fk - f2) / 200) ** 2)) / k
            src += gain * np.sin(k * phase)
        y[start:stop] = src * np.hanning(stop - start) ** 0.5
    return (0.3 * y / np.abs(y).max() + 1e-4 * rng.standard_normal(n)).astype(np.float32)


def named(vector: np.ndarray) -> dict[str, float]:
    return dict(zip(F.FEATURE_NAMES, vector.tolist()))


@pytest.fixture(scope="module")
def sung() -> np.ndarray:
    return sung_notes()


@pytest.fixture(scope="module")
def spoken() -> np.ndarray:
    return spoken_buzz()


# -- schema ------------------------------------------------------------------
def test_schema_is_named_versioned_and_consistent(sung):
    vector = F.extract(sung)
    assert F.FEATURE_VERSION == "st-9"
    assert len(F.FEATURE_NAMES) == F.N_FEATURES == vector.shape[0]
    assert len(set(F.FEATURE_NAMES)) == F.N_FEATURES
    assert vector.dtype == np.float32 and np.all(np.isfinite(vector))
    assert "mfcc0_mean" not in F.FEATURE_NAMES  # level
    assert not any("f0_mean" in n or n.endswith("_hz") for n in F.FEATURE_NAMES)  # no absolute pitch


# -- pitch -------------------------------------------------------------------
@pytest.mark.parametrize("f0", [110.0, 220.0, 440.0])
def test_f0_of_clean_harmonic_tone_within_1_percent(f0):
    frames = F.analyse(harmonic(np.full(SR, f0)).astype(np.float32) * 0.2)
    assert frames.voiced.mean() > 0.95
    estimates = frames.f0[frames.voiced]
    assert np.max(np.abs(estimates / f0 - 1)) < 0.01
    assert abs(np.median(estimates) / f0 - 1) < 0.002
    assert np.all(np.isnan(frames.f0[~frames.voiced]))
    assert frames.periodicity[frames.voiced].min() >= F.VOICING_THRESHOLD


def test_f0_follows_a_missing_fundamental_not_an_octave_below():
    """Harmonics 2–8 of 150 Hz only: the period is still 150 Hz."""
    t = np.arange(SR) / SR
    y = sum(np.sin(2 * np.pi * k * 150.0 * t) / k for k in range(2, 9)).astype(np.float32) * 0.2
    frames = F.analyse(y)
    assert abs(np.median(frames.f0[frames.voiced]) / 150.0 - 1) < 0.01


def test_noise_is_mostly_unvoiced():
    y = np.random.default_rng(RNG_SEED).standard_normal(2 * SR).astype(np.float32) * 0.1
    frames = F.analyse(y)
    assert frames.voiced.mean() < 0.05


def test_pitch_stability_separates_sung_from_spoken(sung, spoken):
    s, t = named(F.extract(sung)), named(F.extract(spoken))
    assert s["f0_note_fraction"] > 0.8 and t["f0_note_fraction"] < s["f0_note_fraction"] - 0.3
    assert s["f0_step_median"] < 0.7 * t["f0_step_median"]
    assert s["f0_stable_fraction"] > t["f0_stable_fraction"] + 0.2
    assert s["voiced_run_mean"] > 2 * t["voiced_run_mean"]
    assert s["voiced_runs_per_s"] < 0.5 * t["voiced_runs_per_s"]
    assert s["vibrato_extent"] > t["vibrato_extent"]
    assert s["pause_fraction"] < t["pause_fraction"]


# -- invariances ---------------------------------------------------------------
def test_contour_features_separate_held_notes_from_glides(sung, spoken):
    """st-3: held notes have a flat smoothed contour, long notes and long voiced runs; speech glides."""
    s, t = named(F.extract(sung)), named(F.extract(spoken))
    assert s["f0_slope_p50"] < 2.0 < 5.0 < t["f0_slope_p50"]
    assert s["f0_flat_fraction_5"] > 0.9 > 0.3 > t["f0_flat_fraction_5"]
    assert s["note_time_fraction"] > 0.8 > 0.3 > t["note_time_fraction"]
    assert s["voiced_run_p50"] > 0.5 > 0.3 > t["voiced_run_p50"]
    assert s["spectral_change_p50"] < t["spectral_change_p50"]
    assert s["onsets_per_s"] < t["onsets_per_s"]


@pytest.mark.parametrize("gain_db", [-20.0, 20.0])
def test_gain_changes_nothing(sung, spoken, gain_db):
    gain = np.float32(10 ** (gain_db / 20))
    for y in (sung, spoken):
        base, scaled = F.extract(y), F.extract(y * gain)
        np.testing.assert_allclose(scaled, base, rtol=1e-3, atol=1e-3)


def test_transposition_keeps_chroma_features(sung):
    chroma = [i for i, n in enumerate(F.FEATURE_NAMES) if n.startswith("chroma")]
    base = F.extract(sung)[chroma]
    up3 = F.extract(sung_notes(transpose=3.0))[chroma]
    other = F.extract(sung_notes(notes=(220.0, 233.0, 330.0)))[chroma]  # another melody
    assert np.abs(up3 - base).max() < 0.05
    assert np.abs(other - base).max() > 2 * np.abs(up3 - base).max()


def test_block_processing_changes_nothing(monkeypatch, sung):
    y = np.tile(sung, 4)  # ~7.6 s: several 512-frame blocks
    blocked = F.extract(y)
    monkeypatch.setattr(F, "_BLOCK_FRAMES", 10**6)
    np.testing.assert_allclose(F.extract(y), blocked, rtol=1e-5, atol=1e-5)


# -- robustness -----------------------------------------------------------------
def odd_signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(RNG_SEED)
    clicks = np.zeros(2 * SR, dtype=np.float32)
    clicks[:: SR // 8] = 0.9
    impulse = np.zeros(SR, dtype=np.float32)
    impulse[SR // 2] = 1.0
    return {
        "white noise": rng.standard_normal(2 * SR).astype(np.float32) * 0.1,
        "clicks": clicks,
        "impulse": impulse,
        "dc offset": np.full(SR, 0.3, dtype=np.float32),
        "clipped square": np.sign(np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32),
    }


@pytest.mark.parametrize("name", list(odd_signals()))
def test_odd_signals_give_finite_features(name):
    y = odd_signals()[name]
    frames = F.analyse(y)
    pooled = F.pool(frames)
    assert pooled.shape == (F.N_FEATURES,) and np.all(np.isfinite(pooled))
    _, X, _ = F.extract_windows(frames)
    assert np.all(np.isfinite(X))
    try:
        assert np.all(np.isfinite(F.extract(y)))
    except TooShort:
        assert frames.sounding.sum() < F.MIN_SOUND_S * frames.frame_rate


def test_pool_over_a_silent_range_is_neutral():
    y = np.concatenate([sung_notes(), np.zeros(5 * SR, dtype=np.float32)])
    frames = F.analyse(y)
    tail = F.pool(frames, frames.n_frames - 300)
    assert np.all(np.isfinite(tail))
    assert named(tail)["pause_fraction"] == 1.0
    assert named(tail)["voiced_fraction"] == 0.0


@pytest.mark.parametrize("y", [np.zeros(SR, dtype=np.float32), np.full(SR, 1e-6, dtype=np.float32)],
                         ids=["zeros", "far below any voice"])
def test_silence_raises_silent_audio(y):
    with pytest.raises(SilentAudio):
        F.extract(y)


def test_empty_and_too_short_raise_too_short():
    with pytest.raises(TooShort):
        F.extract(np.zeros(0, dtype=np.float32))
    with pytest.raises(TooShort):
        F.extract(harmonic(np.full(int(0.3 * SR), 220.0)).astype(np.float32) * 0.2)


def test_other_sample_rates_are_resampled():
    tone = lambda sr: (0.2 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)).astype(np.float32)  # noqa: E731
    frames = F.analyse(tone(44100), 44100)
    assert frames.sr == SR and abs(frames.duration - 1.0) < 0.02
    assert abs(np.median(frames.f0[frames.voiced]) / 220 - 1) < 0.01


# -- windows -----------------------------------------------------------------------
def test_window_bounds_cover_the_clip():
    assert F.window_bounds(250) == [(0, 250)]
    bounds = F.window_bounds(1001)
    assert bounds[0] == (0, 400) and bounds[-1][1] == 1001
    assert all(b - a == 400 for a, b in bounds)
    hops = np.diff([a for a, _ in bounds])
    assert np.all(np.abs(hops - 200) <= 2)


def test_extract_windows_shapes_and_usable_mask(sung):
    y = np.concatenate([np.tile(sung, 3), np.zeros(6 * SR, dtype=np.float32)])  # ~6 s sung, 6 s silence
    frames = F.analyse(y)
    spans, X, ok = F.extract_windows(frames)
    k = len(spans)
    assert spans.shape == (k, 2) and X.shape == (k, F.N_FEATURES) and ok.shape == (k,)
    assert spans[0, 0] == 0.0 and abs(spans[-1, 1] - frames.duration) < 0.02
    assert np.allclose(spans[:, 1] - spans[:, 0], 4.0)
    assert ok[0] and not ok[-1]
    np.testing.assert_allclose(X[0], F.pool(frames, 0, 400))


def test_short_clip_gives_one_window_covering_it(sung):
    frames = F.analyse(sung)
    spans, X, ok = F.extract_windows(frames)
    assert spans.shape == (1, 2) and X.shape == (1, F.N_FEATURES) and ok.tolist() == [True]
    assert spans[0, 0] == 0.0 and abs(spans[0, 1] - frames.duration) < 0.02
    np.testing.assert_allclose(X[0], F.pool(frames))


# -- one STFT, same numbers as librosa's separate calls -----------------------------------
def test_tracks_match_librosa_on_the_shared_stft(spoken):
    import librosa

    rng = np.random.default_rng(RNG_SEED)
    y = spoken + 0.01 * rng.standard_normal(spoken.size).astype(np.float32)
    frames = F.analyse(y)
    y_norm = y / np.sqrt(np.mean(np.square(y, dtype=np.float64)))
    mag = np.abs(librosa.stft(y_norm, n_fft=F.N_FFT, hop_length=F.HOP_LENGTH, win_length=F.WIN_LENGTH))
    power = mag ** 2
    assert mag.shape[1] == frames.n_frames
    mel = librosa.feature.melspectrogram(S=power, sr=SR, n_mels=F.N_MELS, fmax=SR / 2)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=F.N_MFCC)
    np.testing.assert_allclose(frames.mfcc.T, mfcc, atol=0.05)
    chroma = librosa.feature.chroma_stft(S=power, sr=SR, tuning=0.0)
    np.testing.assert_allclose(frames.chroma.T, chroma, atol=1e-3)
    contrast = librosa.feature.spectral_contrast(S=mag, sr=SR)
    np.testing.assert_allclose(frames.contrast.T, contrast, atol=0.01)
    centroid = librosa.feature.spectral_centroid(S=mag, sr=SR)[0]
    np.testing.assert_allclose(2.0 ** frames.log2_centroid, centroid, rtol=1e-3)
    rolloff = librosa.feature.spectral_rolloff(S=mag, sr=SR)[0]
    assert np.median(np.abs(2.0 ** frames.log2_rolloff - rolloff)) < 16  # 4-bin groups, interpolated
    flatness = librosa.feature.spectral_flatness(S=mag, amin=1e-10)[0]
    np.testing.assert_allclose(10.0 ** frames.log10_flatness, flatness, rtol=0.02)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=F.WIN_LENGTH, hop_length=F.HOP_LENGTH)[0]
    np.testing.assert_allclose(frames.zcr[5:-5], zcr[5:-5], atol=2 / F.WIN_LENGTH)


# -- real clips ---------------------------------------------------------------------------
REAL_PLAN = {("singing", "mir1k"): 5, ("singing", "ravdess"): 5,
             ("talking", "librispeech"): 4, ("talking", "aishell1_qianz"): 3, ("talking", "ravdess"): 3}
PITCH_COLUMNS = ["f0_note_fraction", "f0_stable_fraction", "f0_step_median", "periodicity_mean", "voiced_fraction"]


def test_real_clips_are_finite_and_pitch_features_separate_them(manifest):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    picks = []
    for (label, source), count in REAL_PLAN.items():
        pool_ = manifest[(manifest.label == label) & (manifest.source == source)].sample(frac=1, random_state=0)
        distinct = pool_.drop_duplicates("speaker")  # different speakers where the source has them
        picks.append(pd.concat([distinct, pool_]).drop_duplicates("path").head(count))
    chosen = pd.concat(picks)
    assert len(chosen) == 20
    X = np.stack([F.extract(decode(path)) for path in chosen.abspath])
    assert np.all(np.isfinite(X))
    labels = (chosen.label == "singing").to_numpy()
    columns = [F.FEATURE_NAMES.index(c) for c in PITCH_COLUMNS]
    model = make_pipeline(StandardScaler(), LogisticRegression())
    accuracy = cross_val_score(model, X[:, columns], labels, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    print(f"pitch-only logistic regression, 5-fold accuracy on 20 real clips: {accuracy.mean():.2f}")
    assert accuracy.mean() >= 0.7  # chance is 0.5
