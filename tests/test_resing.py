"""Speech re-sung by TD-PSOLA (the singing copies of talking clips) and its re-synthesis control."""

from __future__ import annotations

import numpy as np
import pytest

from singtalk import audio, features, resing
from tests.conftest import spoken_buzz


def voiced_semitones(y: np.ndarray) -> np.ndarray:
    frames = features.analyse(y)
    return frames.semitones[frames.voiced].astype(np.float64)


def off_grid(semitones: np.ndarray) -> np.ndarray:
    """Distance of each pitch from the nearest semitone of the grid (55 Hz · 2^(k/12))."""
    return np.abs(semitones - np.round(semitones))


def stable_share(y: np.ndarray) -> float:
    frames = features.analyse(y)
    return float(frames.f0_stable.sum() / max(frames.voiced.sum(), 1))


def test_gliding_speech_becomes_held_notes_on_the_semitone_grid():
    y = spoken_buzz(3.0)
    sung = resing.resung(y, np.random.default_rng(1), vibrato_cents=(0.0, 0.0), stretch_range=(1.5, 1.5))
    before, after = voiced_semitones(y), voiced_semitones(sung)
    # the buzz glides (spread off the grid); the re-sung copy sits on notes apart from the short glides
    assert np.median(off_grid(before)) > 0.15
    assert np.median(off_grid(after)) < 0.08
    assert stable_share(sung) > stable_share(y) + 0.3
    assert sung.size == pytest.approx(1.5 * y.size, rel=0.2)  # the voiced 62 % lengthened 1.5×, pauses kept


def test_vibrato_is_added_after_the_onset():
    y = spoken_buzz(3.0)
    plain = resing.resung(y, np.random.default_rng(2), vibrato_cents=(0.0, 0.0))
    wobbly = resing.resung(y, np.random.default_rng(2), vibrato_cents=(80.0, 80.0))
    plain_off, wobbly_off = np.median(off_grid(voiced_semitones(plain))), np.median(off_grid(voiced_semitones(wobbly)))
    assert plain_off < 0.05 and wobbly_off > 2 * plain_off + 0.05


def test_same_seed_same_copy_and_silence_passes_through():
    y = spoken_buzz(2.0)
    a = resing.resung(y, np.random.default_rng(3))
    b = resing.resung(y, np.random.default_rng(3))
    c = resing.resung(y, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a[: c.size], c[: a.size])
    assert np.all(np.isfinite(a)) and np.max(np.abs(a)) < 1.0


def test_resynthesis_keeps_pitch_timing_and_spectrum_of_real_speech(manifest):
    row = manifest[(manifest.label == "talking") & (manifest.source == "librispeech")].iloc[0]
    y = audio.decode(row.abspath)[: 6 * audio.SAMPLE_RATE]
    copy = resing.resynthesised(y)
    assert copy.size == pytest.approx(y.size, abs=0.02 * audio.SAMPLE_RATE)
    a, b = features.analyse(y), features.analyse(copy[: y.size])
    n = min(len(a.f0), len(b.f0))
    both = a.voiced[:n] & b.voiced[:n]
    assert both.sum() > 0.8 * a.voiced[:n].sum()
    assert np.median(np.abs(a.semitones[:n][both] - b.semitones[:n][both])) < 0.2
    loud = a.level_db[:n] > -30
    assert np.median(np.abs(a.mel_db[:n][loud] - b.mel_db[:n][loud])) < 3.0  # dB, per band


def test_real_speech_resung_is_more_note_like_than_the_original(manifest):
    rows = manifest[(manifest.label == "talking") & (manifest.source == "ravdess")].iloc[:4]
    rng = np.random.default_rng(5)
    gains = []
    for path in rows.abspath:
        y = audio.decode(path)
        held = resing.resung(y, rng, vibrato_cents=(0.0, 0.0))  # vibrato would count as unstable
        gains.append(stable_share(held) - stable_share(y))
    assert min(gains) > 0.0 and np.mean(gains) > 0.1, gains
