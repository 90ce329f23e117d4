#!/usr/bin/env python
"""Stress-test a model on the speaker-disjoint test split under conditions it may meet.

    .venv/bin/python scripts/robustness.py [--models models] [--version V] [--limit N] [--json OUT]

Takes the test split of ``scripts/train_default.py`` (same manifest rows, same
``dataset.split_by_speaker(test_size=0.2, seed=0)``: no speaker was trained on), alters
every clip in one way at a time and classifies it exactly as the app does
(``Classifier.classify`` on 16 kHz samples). Conditions, all deterministic: white
and pink noise at 20 and 5 dB SNR, a room reverb (RT60 0.6 s), a 300–3400 Hz
telephone band, MP3 at 32 kb/s through the real ffmpeg, pitch shifted ±3 semitones
(other singers' and speakers' ranges; a phase vocoder, not the resampling the training
copies use), tempo ×0.85 and ×1.15, only the first 2 s, and −40 dB of gain. Prints balanced accuracy, ROC-AUC and per-source accuracy per
condition; ``--json`` also writes them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from singtalk import atomic, audio, augment, config, dataset  # noqa: E402
from singtalk.errors import SingtalkError  # noqa: E402

SR = audio.SAMPLE_RATE


def _pitch(y: np.ndarray, steps: float) -> np.ndarray:
    import librosa

    return librosa.effects.pitch_shift(y, sr=SR, n_steps=steps)


def _tempo(y: np.ndarray, rate: float) -> np.ndarray:
    import librosa

    return librosa.effects.time_stretch(y, rate=rate)


def _reverb(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = augment.room_reverb(y, rng, SR, rt60=0.6, direct=3.0)
    return out * (np.abs(y).max() / max(np.abs(out).max(), 1e-9))


CONDITIONS = {
    "clean": lambda y, rng: y,
    "white noise 20 dB": lambda y, rng: augment.at_snr(y, augment.noise(rng, y.size, colour="white"), 20),
    "white noise 5 dB": lambda y, rng: augment.at_snr(y, augment.noise(rng, y.size, colour="white"), 5),
    "pink noise 20 dB": lambda y, rng: augment.at_snr(y, augment.noise(rng, y.size, colour="pink"), 20),
    "pink noise 5 dB": lambda y, rng: augment.at_snr(y, augment.noise(rng, y.size, colour="pink"), 5),
    "reverb RT60 0.6 s": _reverb,
    "telephone 300-3400 Hz": lambda y, rng: augment.telephone(y, SR),
    "mp3 32 kb/s": lambda y, rng: augment.mp3_round_trip(y, SR, 32),
    "pitch -3 st": lambda y, rng: _pitch(y, -3),
    "pitch +3 st": lambda y, rng: _pitch(y, 3),
    "tempo x0.85": lambda y, rng: _tempo(y, 0.85),
    "tempo x1.15": lambda y, rng: _tempo(y, 1.15),
    "first 2 s": lambda y, rng: y[: 2 * SR],
    "gain -40 dB": lambda y, rng: y * 0.01,
}


def score(y_true: np.ndarray, p: np.ndarray, sources: np.ndarray) -> dict:
    """Balanced accuracy, ROC-AUC and per-source accuracy; clips that could not be classified count as wrong."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    failed = np.isnan(p)
    guess = np.where(failed, ~y_true, p > 0.5)  # a failure is an error, whichever the class
    out = {"n": int(len(p)), "failed": int(failed.sum()),
           "balanced_accuracy": float(balanced_accuracy_score(y_true, guess)),
           "roc_auc": float(roc_auc_score(y_true, np.where(failed, 0.5, p))),
           "recall_singing": float(np.mean(guess[y_true])), "recall_talking": float(np.mean(~guess[~y_true]))}
    for source in np.unique(sources):
        m = sources == source
        out[f"accuracy_{source}"] = float(np.mean(guess[m] == y_true[m]))
    return out


def main(argv: list[str] | None = None) -> int:
    from singtalk.classify import Classifier
    from singtalk.registry import ModelStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--models", default=str(Path(__file__).resolve().parent.parent / "models"))
    parser.add_argument("--version", default=None, help="model version (default: the current one)")
    parser.add_argument("--limit", type=int, default=0, help="at most N test clips (for a quick look)")
    parser.add_argument("--json", default=None, help="also write the scores here")
    args = parser.parse_args(argv)

    data_dir = Path(args.data) if args.data else config.data_dir()
    labelled = dataset.from_manifest(data_dir / "manifest.csv", root=data_dir, classes=["singing", "talking"])
    test = labelled[dataset.split_by_speaker(labelled, test_size=0.2, seed=0)].reset_index(drop=True)
    if args.limit:
        test = test.sample(min(args.limit, len(test)), random_state=0).reset_index(drop=True)
    classifier = Classifier(ModelStore(args.models).load(args.version))
    y_true = (test["label"] == "singing").to_numpy()
    sources = test["source"].to_numpy()
    clips = [audio.decode(p) for p in test["path"]]  # as the app gets them: classify handles silence itself
    print(f"model {classifier.version}; {len(clips)} test clips (speaker-disjoint)", flush=True)

    results = {}
    for name, alter in CONDITIONS.items():
        started = time.perf_counter()
        p = np.full(len(clips), np.nan)
        for i, y in enumerate(clips):
            rng = np.random.default_rng(i)
            try:
                p[i] = classifier.classify(np.asarray(alter(y, rng), dtype=np.float32)).p_singing
            except SingtalkError:
                pass
        results[name] = score(y_true, p, sources)
        r = results[name]
        per_source = "  ".join(f"{k[9:]} {v:.3f}" for k, v in r.items() if k.startswith("accuracy_"))
        print(f"{name:22s} bal {r['balanced_accuracy']:.3f} auc {r['roc_auc']:.3f} sing {r['recall_singing']:.3f} "
              f"talk {r['recall_talking']:.3f} failed {r['failed']:2d}  "
              f"{per_source}  ({time.perf_counter() - started:.0f} s)", flush=True)
    if args.json:
        atomic.write_json(args.json, {"model": classifier.version, "n": len(clips), "conditions": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
