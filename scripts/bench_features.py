"""Time feature extraction against one STFT of the same clip.

    .venv/bin/python scripts/bench_features.py [--audio FILE] [--seconds 30] [--repeats 9]

Prints, from one run (warm-up first, then ``--repeats`` interleaved rounds; medians):
  - one STFT (librosa.stft, n_fft 2048, win 1024, hop 160): the reference;
  - singtalk.features.extract (one STFT + every feature, pitch included) and its ratio;
  - analyse + extract_windows (4 s windows, 2 s hop, as the classifier runs);
  - the same without the voice detector (``vad.frame_probabilities`` replaced by zeros: st-8's work) and
    the voice detector alone, with the ratio of the work with it to the work without it (issue 22, item 5);
  - the seed's way (librosa.feature.mfcc, chroma_stft, spectral_contrast, spectral_rolloff,
    zero_crossing_rate, spectral_centroid, each called on y, i.e. one STFT each), at librosa's
    default hop 512 and at the 10 ms hop (160) used here, with their ratios.
Without --audio a deterministic 30 s synthetic voice-like signal is used.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from singtalk import features, vad  # noqa: E402
from singtalk.audio import SAMPLE_RATE, decode  # noqa: E402


def synthetic(seconds: float) -> np.ndarray:
    """Phrases of gliding harmonic tone, pauses and a little noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 150 * 2 ** (4 / 12 * np.sin(2 * np.pi * 0.3 * t) + 0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    y = sum(np.sin(k * phase) * 0.7 ** k for k in range(1, 20))
    y *= (np.mod(t, 1.3) < 1.0)
    y += 0.01 * rng.standard_normal(t.size)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def paired(reference, candidates: dict, repeats: int) -> tuple[float, dict[str, tuple[float, float]]]:
    """Interleaved timing: each repeat runs the reference, then every candidate.

    Returns the reference's median ms and, per candidate, (median ms, median of the
    per-repeat ratios). Pairing keeps the ratios steady when the machine is shared.
    """
    reference()
    for fn in candidates.values():
        fn()  # warm-up
    ref_times, times = [], {name: [] for name in candidates}
    for _ in range(repeats):
        start = time.perf_counter()
        reference()
        ref_times.append(time.perf_counter() - start)
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    result = {name: (1000 * statistics.median(ts), statistics.median(t / r for t, r in zip(ts, ref_times)))
              for name, ts in times.items()}
    return 1000 * statistics.median(ref_times), result


def without_voice_detector(fn):
    """``fn`` run with :func:`singtalk.vad.frame_probabilities` replaced by zeros (the work of schema st-8)."""
    def run():
        real = vad.frame_probabilities
        vad.frame_probabilities = lambda y, n_frames, hop: np.zeros(n_frames, dtype=np.float32)
        try:
            return fn()
        finally:
            vad.frame_probabilities = real
    return run


def seed_way(y: np.ndarray, sr: int, hop: int | None) -> list[np.ndarray]:
    import librosa

    kw = {} if hop is None else {"hop_length": hop}
    return [
        librosa.feature.mfcc(y=y, sr=sr, **kw).mean(axis=1),
        librosa.feature.chroma_stft(y=y, sr=sr, **kw).mean(axis=1),
        librosa.feature.spectral_contrast(y=y, sr=sr, **kw).mean(axis=1),
        librosa.feature.spectral_rolloff(y=y, sr=sr, **kw).mean(axis=1),
        librosa.feature.zero_crossing_rate(y, **kw).mean(axis=1),
        librosa.feature.spectral_centroid(y=y, sr=sr, **kw).mean(axis=1),
    ]


def main(argv: list[str] | None = None) -> int:
    import librosa

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", help="audio file (its first --seconds are used)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    sr = SAMPLE_RATE
    if args.audio:
        y = decode(args.audio, sr=sr)[: int(args.seconds * sr)]
        what = f"{args.audio} ({y.size / sr:.1f} s)"
    else:
        y = synthetic(args.seconds)
        what = f"synthetic voice-like signal ({y.size / sr:.1f} s)"

    stft = lambda: librosa.stft(y, n_fft=features.N_FFT, hop_length=features.HOP_LENGTH,  # noqa: E731
                                win_length=features.WIN_LENGTH)
    reference, fast = paired(stft, {
        "features.extract (incl. pitch)": lambda: features.extract(y, sr),
        "analyse + extract_windows (4 s / 2 s)": lambda: features.extract_windows(features.analyse(y, sr)),
        "  the same without the voice detector": without_voice_detector(
            lambda: features.extract_windows(features.analyse(y, sr))),
        "  the voice detector alone": lambda: vad.chunk_probabilities(y),
    }, args.repeats)
    _, seed = paired(stft, {
        "seed way, librosa defaults (hop 512)": lambda: seed_way(y, sr, None),
        "seed way, hop 160 (same frame rate)": lambda: seed_way(y, sr, features.HOP_LENGTH),
    }, max(3, args.repeats // 3))

    print(f"clip: {what}; {features.N_FEATURES} features, version {features.FEATURE_VERSION}")
    print("medians of interleaved repeats; ratio = median of per-repeat ratios to the STFT")
    print(f"{'one STFT (n_fft 2048, win 1024, hop 160)':42s} {reference:8.1f} ms   1.00x")
    for name, (ms, ratio) in {**fast, **seed}.items():
        print(f"{name:42s} {ms:8.1f} ms   {ratio:.2f}x")
    with_vad = fast["analyse + extract_windows (4 s / 2 s)"][1]
    without = fast["  the same without the voice detector"][1]
    print(f"windows with the voice detector / without it: {with_vad / without:.3f} (goal <= 1.10)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
