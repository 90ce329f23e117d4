"""Augmentation: each alteration does what it says, with the real ffmpeg for MP3."""

from __future__ import annotations

import numpy as np
import pytest

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
    low = lambda x: np.sum(np.abs(np.fft.rfft(x))[1:200] ** 2) / np.sum(np.abs(np.fft.rfft(x)) ** 2)
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
    at = lambda f: spectrum[np.argmin(np.abs(freqs - f))]
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


def schroeder_rt60(response: np.ndarray) -> float:
    """RT60 from Schroeder backward integration (T20: the -5 to -25 dB slope, times 3), after the direct path."""
    h = response[augment.IR_LEAD + 40:]  # the reverberant part, as ISO 3382 starts after the direct sound
    edc = 10 * np.log10(np.cumsum(h[::-1] ** 2)[::-1] / np.sum(h ** 2) + 1e-30)
    return 3 * (np.argmax(edc <= -25) - np.argmax(edc <= -5)) / SR


@pytest.mark.parametrize("rt60", [0.3, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_source_room_has_the_asked_reverberation_time(rt60, seed):
    response = augment.room_impulse(np.random.default_rng(seed), SR, rt60=rt60, distance=2.0)
    assert response.size == augment.IR_LEAD + round(rt60 * SR) and np.isfinite(response).all()
    assert abs(schroeder_rt60(response) - rt60) < 0.3 * rt60


@pytest.mark.parametrize("distance", [0.3, 1.0, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_image_source_direct_path_comes_first_at_unit_gain_and_is_strongest(distance, seed):
    response = augment.room_impulse(np.random.default_rng(seed), SR, rt60=0.8, distance=distance)
    direct = int(np.argmax(np.abs(response)))
    assert direct in (augment.IR_LEAD, augment.IR_LEAD + 1)  # the propagation delay is removed
    assert 0.75 < response[direct] < 1.05  # unit gain (a fractional-delay sinc peaks a little below 1)
    assert np.max(np.abs(response[: augment.IR_LEAD - 10])) < 0.05  # before it: its own filter's precursor
    # and the ripple of pyroomacoustics' zero-phase 15 Hz high-pass only


def test_in_room_keeps_the_length_and_the_direct_sound_aligned():
    y = tone(440.0)
    out = augment.in_room(y, np.random.default_rng(0), SR, rt60=0.6, distance=0.5)
    assert out.size == y.size and np.isfinite(out).all()
    lag = np.argmax(np.correlate(out[: SR // 2], y[: SR // 2 - 100], mode="valid"))
    assert lag <= 2  # no propagation delay: the copy is not shifted


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
@pytest.mark.parametrize("seconds", [0.7, 5.0])  # a short clip is looped, a long one cropped
def test_background_is_mixed_at_the_asked_snr(snr_db, seconds):
    y = tone(220.0)
    rng = np.random.default_rng(3)
    clip = (0.3 * rng.standard_normal(int(seconds * SR)) + tone(1000.0, seconds)).astype(np.float32)
    mixed = augment.with_background(y, rng, clip, snr_db)
    assert mixed.size == y.size
    snr = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((mixed - y) ** 2))
    assert abs(snr - snr_db) < 0.5


def test_silent_background_falls_back_to_noise():
    y = tone(220.0)
    mixed = augment.with_background(y, np.random.default_rng(0), np.zeros(SR, dtype=np.float32), 10.0)
    assert abs(10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean((mixed - y) ** 2)) - 10.0) < 0.5


def crest_factor(y: np.ndarray) -> float:
    return float(np.max(np.abs(y)) / np.sqrt(np.mean(np.asarray(y, dtype=np.float64) ** 2)))


def test_compressor_reduces_the_crest_factor():
    y = 0.2 * tone(220.0, seconds=3.0)  # a steady 0.1 tone ...
    for start in (0.3, 0.9, 1.6, 2.4):  # ... with loud 40 ms bursts, as a shout or a plosive into a phone
        y[int(start * SR): int((start + 0.04) * SR)] *= 9.0
    out = augment.compress(y, SR, ratio=4.0, threshold_db=-20.0, attack_ms=2.0, release_ms=100.0)
    assert out.size == y.size and np.isfinite(out).all()
    assert crest_factor(out) < 0.5 * crest_factor(y)
    assert np.max(np.abs(out)) < np.max(np.abs(y))  # no make-up gain
    quiet = slice(int(1.2 * SR), int(1.4 * SR))
    assert np.allclose(out[quiet], y[quiet], rtol=0.05, atol=1e-3)  # below the threshold: untouched


def test_band_limit_and_tilt():
    y = tone(100.0) + tone(1000.0) + tone(6000.0)
    level = lambda x, f: np.abs(np.fft.rfft(x[SR // 2:]))[round(f * 1.5)]  # 1.5 s: 2/3 Hz bins
    limited = augment.band_limit(y, SR, low_hz=400.0, high_hz=3400.0)
    assert level(limited, 1000.0) > 10 * level(limited, 100.0) and level(limited, 1000.0) > 10 * level(limited, 6000.0)
    assert np.allclose(augment.band_limit(y, SR, high_hz=8000.0), y)  # the Nyquist frequency: nothing to cut
    tilted = augment.tilt(y, SR, 2.0)
    assert abs(20 * np.log10(level(tilted, 6000.0) / level(y, 6000.0)) - 2.0 * np.log2(6.0)) < 0.5


def test_phone_line_is_narrowband_mu_law_and_keeps_the_length():
    y = tone(100.0) + tone(1000.0) + tone(6000.0)
    out = augment.phone_line(y, SR)
    assert out.size == y.size and np.isfinite(out).all()
    spectrum = np.abs(np.fft.rfft(out[SR // 2:]))
    at = lambda f: spectrum[round(f * 1.5)]
    assert at(1000.0) > 10 * at(100.0) and at(1000.0) > 100 * at(6000.0)  # 8 kHz: nothing above 4 kHz survives
    clean = augment.telephone(y, SR)
    error = out[SR // 2: -SR // 2] - clean[SR // 2: -SR // 2]
    assert 0 < np.mean(error ** 2) < 0.01 * np.mean(clean ** 2)  # 8-bit μ-law: audible but small error


@pytest.mark.parametrize("codec", ["opus", "gsm"])
def test_phone_codecs_run_the_real_encoders(codec):
    y = tone(440.0)
    out = augment.codec_round_trip(y, SR, codec, 12)
    assert out.dtype == np.float32 and out.size == y.size
    assert not np.allclose(out, y, atol=1e-3) and abs(peak_hz(out) - 440.0) < 3.0
    with pytest.raises(ValueError):
        augment.codec_round_trip(y, SR, "amr")


def test_laptop_keeps_the_length_and_removes_the_lowest_frequencies():
    y = tone(60.0) + tone(1000.0)
    out = augment.laptop(y, np.random.default_rng(0), SR)
    assert out.size == y.size and np.isfinite(out).all()
    spectrum = np.abs(np.fft.rfft(out[SR // 2:]))
    assert spectrum[int(60 * 1.5)] < 0.3 * spectrum[int(1000 * 1.5)]


def backgrounds() -> list[np.ndarray]:
    rng = np.random.default_rng(9)
    return [(0.1 * rng.standard_normal(3 * SR)).astype(np.float32), tone(1000.0, seconds=0.8)]


@pytest.mark.parametrize("seconds", [1.5, 10.0])
def test_random_copy_with_rooms_devices_and_backgrounds(seconds):
    y = tone(220.0, seconds=seconds)
    y[: SR // 4] = 0.0  # a silent lead-in, as RAVDESS clips have
    copies = []
    for seed in range(16):
        a = augment.random_copy(y, np.random.default_rng(seed), SR, resample=seed % 2 == 0, backgrounds=backgrounds())
        b = augment.random_copy(y, np.random.default_rng(seed), SR, resample=seed % 2 == 0, backgrounds=backgrounds())
        assert np.array_equal(a, b) and a.dtype == np.float32 and np.isfinite(a).all()
        assert 0.1 - 1e-6 <= np.max(np.abs(a)) <= 1.0 + 1e-6  # never silent, never clipped
        if seconds < 1.8 and seed % 2:
            assert a.size == y.size  # never cropped, and the codecs keep the length
        elif seconds < 1.8:
            assert 0.8 * y.size < a.size < 1.25 * y.size
        else:
            assert 1.2 * SR <= a.size <= 6.0 * SR / 0.84 + 1  # a 1.5-6 s crop (after any speed change)
        copies.append(a)
    assert len({c.tobytes() for c in copies}) == len(copies)
    # The 1 kHz background tone shows up in some copies (p=0.5 for a background, 1 in 2 of those is the tone).
    def share_at_1khz(c: np.ndarray) -> float:
        spectrum, k = np.abs(np.fft.rfft(c)), round(1000.0 * c.size / SR)
        return spectrum[k - 2: k + 3].sum() / spectrum.sum()

    assert 1 <= sum(share_at_1khz(c) > 0.01 for c in copies) <= 8


def test_random_copy_says_what_it_mixed_in_without_changing_the_copy():
    y = tone(220.0, seconds=2.0)
    kinds = set()
    for seed in range(24):
        added: dict = {}
        a = augment.random_copy(y, np.random.default_rng(seed), SR, backgrounds=backgrounds(), added=added)
        b = augment.random_copy(y, np.random.default_rng(seed), SR, backgrounds=backgrounds())
        assert np.array_equal(a, b)  # recording draws nothing from the generator
        kinds.add(added["kind"])
        low, high = {"background": augment.BACKGROUND_SNR_DB, "noise": augment.NOISE_SNR_DB,
                     "": (np.inf, np.inf)}[added["kind"]]
        assert low <= added["snr_db"] <= high
    assert kinds == {"", "background", "noise"}


def test_random_copy_is_fast_enough_for_training():
    """A bound, not a benchmark: ~7000 copies on 2 cores must stay minutes, not hours."""
    import time

    y = tone(220.0, seconds=4.0)
    augment.random_copy(y, np.random.default_rng(100), SR, resample=True, backgrounds=backgrounds())  # imports
    start = time.perf_counter()
    for seed in range(20):
        augment.random_copy(y, np.random.default_rng(seed), SR, resample=seed % 2 == 0, backgrounds=backgrounds())
    assert (time.perf_counter() - start) / 20 < 0.3

