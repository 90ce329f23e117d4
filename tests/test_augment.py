"""Augmentation: each alteration does what it says, with the real ffmpeg for MP3."""

from __future__ import annotations

import numpy as np

from singtalk import augment
from singtalk.audio import SAMPLE_RATE as SR


def tone(freq: float = 220.0, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(y: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.fft.rfftfreq(y.size, 1.0 / SR)[np.argmax(spectrum)])


def test_speed_moves_pitch_and_length_together():
    y = tone(220.0)
    faster = augment.speed(y, 1.19, SR)
    slower = augment.speed(y, 0.84, SR)
    assert abs(faster.size - y.size / 1.19) <= 2 and abs(slower.size - y.size / 0.84) <= 2
    assert abs(peak_hz(faster) - 220.0 * 1.19) < 3.0
    assert abs(peak_hz(slower) - 220.0 * 0.84) < 3.0


def test_mp3_round_trip_runs_the_real_encoder():
    y = tone(440.0)
    out = augment.mp3_round_trip(y, SR, 32)
    assert out.dtype == np.float32 and 0 <= out.size - y.size < 0.1 * SR  # the codec adds its delay and padding
    n = min(out.size, y.size)
    assert not np.array_equal(out[:n], y[:n])  # it was really encoded
    assert abs(peak_hz(out) - 440.0) < 3.0
    assert 0.3 < np.sqrt(np.mean(out ** 2)) / np.sqrt(np.mean(y ** 2)) < 1.5


def test_noise_colours_and_snr():
    rng = np.random.default_rng(0)
    white, pink = augment.noise(rng, 2 * SR, colour="white"), augment.noise(rng, 2 * SR, colour="pink")
    low = lambda x: np.sum(np.abs(np.fft.rfft(x))[1:200] ** 2) / np.sum(np.abs(np.fft.rfft(x)) ** 2)  # noqa: E731
    assert low(pink) > 20 * low(white)
    y = tone()
    noisy = augment.at_snr(y, white, 10.0)
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((noisy - y) ** 2))
    assert abs(snr - 10.0) < 0.01


def test_telephone_band_removes_low_and_high():
    y = tone(100.0) + tone(1000.0) + tone(6000.0)
    out = augment.telephone(y, SR)
    spectrum = np.abs(np.fft.rfft(out[SR // 2:]))
    freqs = np.fft.rfftfreq(out[SR // 2:].size, 1.0 / SR)
    at = lambda f: spectrum[np.argmin(np.abs(freqs - f))]  # noqa: E731
    assert at(1000.0) > 10 * at(100.0) and at(1000.0) > 10 * at(6000.0)


def test_random_copy_is_seeded_bounded_and_resamples_every_second_copy():
    y = tone(220.0, seconds=1.5)
    a = augment.random_copy(y, np.random.default_rng(5), SR)
    b = augment.random_copy(y, np.random.default_rng(5), SR)
    assert np.array_equal(a, b) and a.dtype == np.float32
    assert np.isfinite(a).all() and np.max(np.abs(a)) <= 1.0 + 1e-6
    plain = [augment.random_copy(y, np.random.default_rng(s), SR) for s in range(6)]
    assert all(p.size == y.size for p in plain)  # a 1.5 s clip is never cropped nor resampled
    resampled = [augment.random_copy(y, np.random.default_rng(s), SR, resample=True) for s in range(6)]
    assert any(r.size != y.size for r in resampled)
    assert all(0.8 * y.size < r.size < 1.25 * y.size for r in resampled)


def test_robustness_script_scores_every_condition(tmp_path, corpus):
    """scripts/robustness.py on 10 test-split clips with the shipped model: every condition scored."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import robustness

    out = tmp_path / "robustness.json"
    assert robustness.main(["--data", str(corpus), "--limit", "10", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["conditions"]) == set(robustness.CONDITIONS)
    for scores in report["conditions"].values():
        assert scores["n"] == 10 and 0.0 <= scores["balanced_accuracy"] <= 1.0
    assert report["conditions"]["clean"]["balanced_accuracy"] >= 0.8  # the shipped model on unheard speakers
