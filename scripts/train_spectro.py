"""Train one of the CNNs whose logits are learnt features of schema st-8.

    .venv/bin/python scripts/train_spectro.py --view mel       [--epochs 30] [--folds 5] [--out DIR] [--loso-only]
    .venv/bin/python scripts/train_spectro.py --view harmonic  [--epochs 30] [--folds 5] [--out DIR] [--loso-only]
    .venv/bin/python scripts/train_spectro.py --view contour   [--epochs 25] [--folds 5] [--out DIR] [--loso-only]
    .venv/bin/python scripts/train_spectro.py --view mel --loso-only --from-features --left-out ravdess,mir1k --out DIR
    .venv/bin/python scripts/train_spectro.py --view mel --from-features --resume --out DIR --weights DIR/all-training.npz

Same clips and split as ``scripts/train_default.py`` (manifest singing/talking rows,
the speaker sides of ``models/split.json``), same augmentation (two copies
per training clip, ``augment.random_copy``). The network (``spectro.build_keras``) sees random 1–3 s crops of
the sounding frames' dB spectrogram of its view (``mel``: 64 mel bands; ``harmonic``: 128 log-spaced bands
80 Hz–4 kHz; ``contour``: the 48-bin pitch piano roll, ``features.contour_image``), with a frequency mask
(< 1/8 of the bands), a time mask and a shift of ±1/32 of the bands, class-balanced weights, Adam with cosine
decay, a fixed number of epochs (:data:`EPOCHS`). Each band's mean over the clip is removed from the
spectrogram views (``spectro.normalise(per_band=True)``, recorded in the weights; the piano roll keeps its one
mean: ``spectro.PER_BAND``). ``--global-mean`` removes one mean instead (schema st-6; measured and replaced:
README) and writes to ``var/spectro-<view>-global-mean/``, its all-training network as ``all-training.npz``
there, leaving the shipped weights alone. ``--resung`` adds, for every training talking clip, a copy re-sung by
``singtalk.resing`` (labelled singing) and one re-synthesised with its own pitch (labelled talking); measured
and not adopted (docs/model.md).

Writes:
- ``spectro.WEIGHTS[view]`` (``singtalk/weights/spectro-st7-mel.npz``, ...): the network trained on every training clip
  (the shipped feature extractor; NumPy weights, batch-norm folded);
- ``<out>/fold<k>.npz`` + ``<out>/folds.json``: networks trained without one fold of
  training speakers each, so ``train_default.py --spectro-folds <out>`` can give
  every training clip the logit of a network that never heard its speaker
  (stacking without leakage). The default ``<out>`` (``train_default.SPECTRO_FOLDS``:
  ``models/spectro-folds/<view>/``) is committed, so rebuilding the head with ``train_default.py``
  does not wait for these networks to train;
- ``<out>/without_<source>.npz`` (unless ``--no-loso``): networks trained on every
  clip (both splits) except one corpus's (``dataset.corpus_of``: AISHELL-1's two
  collections are one), for an honest leave-one-source-out; ``--loso-only`` trains just these;
- ``<out>/report.json``: out-of-fold, test-split and leave-one-source-out scores of
  the CNN alone.

``--from-features`` trains on the inputs ``train_default.py`` extracted into its ``--cache`` instead of
extracting again: the grown corpus's voiced clips with that script's seeds and its room and device recipe, real
no-voice backgrounds included (this script's own extraction adds white or pink noise only). A full run then
belongs in an ``--out`` outside ``models/`` with ``--weights`` beside it (``train_default.py`` reads the
committed folds of all three views, which must agree) until all three views are trained. ``--left-out`` names
the corpora to leave out (default: every one). ``--resume`` keeps the networks an interrupted run of the same
corpus and settings finished (``<out>/progress.json``): on two cores a whole retrain takes 40–60 hours.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from singtalk import atomic, augment, config, dataset, spectro  # noqa: E402
from train_default import SPECTRO_FOLDS  # noqa: E402

CLASSES = ("singing", "talking")
RESUNG_SEED = 7919
EPOCHS = {"mel": 30, "harmonic": 30, "contour": 25}
"""Default training epochs per view (the sparse piano roll was measured at 25)."""


def clip_inputs(task: tuple[str, int, int], view: str = "mel") -> list[np.ndarray]:
    """``(path, copies, seed)`` → the ``view`` network's input (sounding dB spectrogram, float16) of the clip
    and of its augmented copies."""
    from train_default import analysed_copies

    from singtalk import features

    return [features.spectro_input(frames, view=view).astype(np.float16)
            for frames in analysed_copies(task, require_sound=False)[0]]


def resung_inputs(task: tuple[str, int], view: str = "mel") -> list[np.ndarray]:
    """``(path, seed)`` of a talking clip → the ``view`` network's inputs of its re-sung copy (a singing
    example) and of its re-synthesised copy (a talking one), or ``[]`` when the clip cannot be read."""
    from singtalk import audio, features, resing
    from singtalk.errors import SingtalkError

    path, seed = task
    try:
        y = audio.decode(path)
        copies = (resing.resung(y, np.random.default_rng(seed)), resing.resynthesised(y))
        return [features.spectro_input(features.analyse(c), view=view).astype(np.float16) for c in copies]
    except SingtalkError:
        return []


def random_crop(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A ``length``-frame crop (short inputs repeated) with a frequency mask, a time mask and a band shift."""
    bands = x.shape[1]
    if x.shape[0] < length:
        x = np.tile(x, (int(np.ceil(length / x.shape[0])), 1))
    start = int(rng.integers(0, x.shape[0] - length + 1))
    x = x[start: start + length].copy()
    width = int(rng.integers(0, bands // 8))
    f0 = int(rng.integers(0, bands - width))
    x[:, f0: f0 + width] = 0.0
    width = int(rng.integers(0, length // 8))
    t0 = int(rng.integers(0, length - width))
    x[t0: t0 + width] = 0.0
    return np.roll(x, int(rng.integers(-(bands // 32), bands // 32 + 1)), axis=1)


def train_network(inputs: list[np.ndarray], y: np.ndarray, *, epochs: int, seed: int):
    """A Keras ``spectro.build_keras`` network trained on normalised spectrograms ``inputs`` (labels 1 = singing)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = spectro.build_keras(bands=inputs[0].shape[1])
    steps = epochs * int(np.ceil(len(inputs) / 32))
    model.compile(tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  tf.keras.losses.BinaryCrossentropy(from_logits=True))
    positive = float(y.mean())
    weights = np.where(y == 1, 0.5 / positive, 0.5 / (1 - positive)).astype(np.float32)
    for _ in range(epochs):
        order = rng.permutation(len(inputs))
        for b in range(0, len(order), 32):
            batch = order[b: b + 32]
            length = int(rng.integers(100, 301))
            model.train_on_batch(np.stack([random_crop(inputs[i], length, rng) for i in batch]),
                                 y[batch], sample_weight=weights[batch])
    return model


def save_weights(path: str | Path, weights: dict[str, np.ndarray]) -> None:
    """Write a network's weights atomically, so an interrupted run never leaves half a file."""
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **weights)


def scores(y: np.ndarray, logits: np.ndarray, sources: np.ndarray) -> dict:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    if len(np.unique(y)) < 2:  # no clips, or one class: nothing to rank
        return {"n": int(len(y)), "accuracy": float(np.mean((logits > 0) == y)) if len(y) else None}
    out = {"n": int(len(y)), "balanced_accuracy": float(balanced_accuracy_score(y, logits > 0)),
           "roc_auc": float(roc_auc_score(y, logits))}
    for source in np.unique(sources):
        m = sources == source
        out[f"accuracy_{source}"] = float(np.mean((logits[m] > 0) == y[m]))
    return out


@dataclass
class Inputs:
    """The training inputs of one view: per input (a clip or one of its copies) ``raw`` (the dB spectrogram),
    ``clip`` (its clip's number), ``y`` (1 = singing), ``speakers`` (speaker group), ``sources``, ``first`` (the
    clip itself, not a copy); per clip ``test_mask``, ``clip_labels`` and ``clip_groups``."""
    raw: list
    clip: np.ndarray
    y: np.ndarray
    speakers: np.ndarray
    sources: np.ndarray
    first: np.ndarray
    test_mask: np.ndarray
    clip_labels: np.ndarray
    clip_groups: np.ndarray


def extracted_inputs(args) -> Inputs:
    """This script's own extraction of the manifest's singing and talking clips (white or pink noise only in
    the copies; ``--resung`` adds its copies)."""
    data_dir = Path(args.data) if args.data else config.data_dir()
    labelled = dataset.from_manifest(data_dir / "manifest.csv", root=data_dir, classes=list(CLASSES))
    from train_default import SPLIT_FILE, corpus_split

    test_mask = corpus_split(labelled, SPLIT_FILE, args.seed)  # the sides train_default.py uses
    tasks = [(p, 0 if t else args.copies, args.seed * 100003 + i)  # the same seeds as train_default
             for i, (p, t) in enumerate(zip(labelled["path"], test_mask))]
    talking = np.flatnonzero(~test_mask & (labelled["label"].to_numpy() == "talking"))
    resung_tasks = [(labelled["path"].iloc[i], RESUNG_SEED + args.seed * 100003 + i) for i in talking]
    if args.jobs <= 1:  # in this process: no child to start at all
        outputs = [clip_inputs(task, view=args.view) for task in tasks]
        resung = [resung_inputs(task, view=args.view) for task in resung_tasks] if args.resung else []
    else:
        # spawned, not forked: a caller that has run TensorFlow holds threads whose locks a fork copies
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
            outputs = list(pool.map(functools.partial(clip_inputs, view=args.view), tasks, chunksize=8))
            resung = [] if not args.resung else list(pool.map(
                functools.partial(resung_inputs, view=args.view), resung_tasks, chunksize=8))
    clip, raw, label, made = [], [], [], []  # made: 0 the clip, 1 an augmented copy, 2 re-sung/re-synthesised
    for i, out in enumerate(outputs):
        clip += [i] * len(out)
        raw += out
        label += [float(labelled["label"].iloc[i] == "singing")] * len(out)
        made += [min(j, 1) for j in range(len(out))]
    for i, out in zip(talking, resung):
        clip += [i] * len(out)
        raw += out
        label += [1.0, 0.0][: len(out)]  # re-sung: singing; re-synthesised: talking
        made += [2] * len(out)
    clip = np.asarray(clip, dtype=int)
    groups = dataset.speaker_groups(labelled)
    return Inputs(raw=raw, clip=clip, y=np.asarray(label, dtype=np.float32), speakers=groups[clip],
                  sources=labelled["source"].to_numpy()[clip], first=np.asarray(made) == 0, test_mask=test_mask,
                  clip_labels=labelled["label"].to_numpy(), clip_groups=groups)


def cached_inputs(view: str, data: str | None, jobs: int, cache: str) -> Inputs:
    """The voiced rows of ``train_default.features_of``'s table (from its cache): :func:`voiced_inputs`."""
    from train_default import features_of

    table, inputs, _, _ = features_of(data_dir=Path(data) if data else None, jobs=jobs, cache=cache)
    return voiced_inputs(table, inputs[view])


def voiced_inputs(table: pd.DataFrame, view_inputs: list[np.ndarray]) -> Inputs:
    """``train_default``'s feature table (a row per clip and per copy, ``view_inputs`` beside it) → the
    :class:`Inputs` of its singing and talking rows, clips numbered in order of appearance."""
    voiced = np.flatnonzero(table["label"].isin(CLASSES).to_numpy())
    rows = table.iloc[voiced]
    clip = pd.factorize(rows["path"])[0]
    per_clip = np.unique(clip, return_index=True)[1]  # each clip's first row
    return Inputs(raw=[view_inputs[r] for r in voiced], clip=clip,
                  y=(rows["label"] == "singing").to_numpy(np.float32), speakers=rows["group"].to_numpy(),
                  sources=rows["source"].to_numpy(), first=~rows["augmented"].to_numpy(),
                  test_mask=(rows["split"] == "test").to_numpy()[per_clip],
                  clip_labels=rows["label"].to_numpy()[per_clip], clip_groups=rows["group"].to_numpy()[per_clip])


def run_key(args, data: Inputs) -> str:
    """What a network of this run depends on: the view's settings, the training copies' recipe and every
    input's clip, label, side and group, so ``--resume`` never takes a network of another corpus, split or
    recipe."""
    import hashlib

    described = [args.view, args.epochs, args.seed, args.per_band, args.folds, args.copies, args.resung,
                 "train_default cache" if args.from_features else "extracted", augment.DESCRIPTION,
                 data.clip.tolist(), data.y.tolist(), data.test_mask.tolist(), data.clip_groups.tolist()]
    return hashlib.sha256(json.dumps(described, default=str).encode()).hexdigest()[:16]


class Networks:
    """Trains (or, resuming, loads) the run's networks, recording each finished one in ``<out>/progress.json``
    under the run's key, so an interrupted run (a two-core retrain takes hours) goes on where it stopped."""

    def __init__(self, out_dir: Path, key: str, resume: bool, per_band: bool, epochs: int):
        self.path, self.key, self.per_band, self.epochs = out_dir / "progress.json", key, per_band, epochs
        progress = json.loads(self.path.read_text()) if resume and self.path.is_file() else {}
        self.done = set(progress.get("done", [])) if progress.get("key") == key else set()
        if resume and not self.done:
            print("--resume: nothing finished under this run's key; training everything", flush=True)

    def get(self, target: Path, inputs: list, y: np.ndarray, seed: int) -> "spectro.SpectroNet":
        if str(target) in self.done and target.is_file():
            print(f"  {target.name}: kept from the interrupted run", flush=True)
            return spectro.SpectroNet.load(target)
        weights = spectro.export(train_network(inputs, y, epochs=self.epochs, seed=seed), self.per_band)
        save_weights(target, weights)
        self.done.add(str(target))
        atomic.write_json(self.path, {"key": self.key, "done": sorted(self.done)})
        return spectro.SpectroNet(weights)


def main(argv: list[str] | None = None) -> int:
    from sklearn.model_selection import StratifiedGroupKFold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--view", choices=spectro.VIEWS, default="mel")
    parser.add_argument("--out", default=None,
                        help="default: models/spectro-folds/<view> (global mean: var/spectro-<view>-global-mean)")
    parser.add_argument("--weights", default=None, help="default: the shipped file of the view (spectro.WEIGHTS)")
    parser.add_argument("--epochs", type=int, default=None, help="default: EPOCHS of the view")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-loso", action="store_true", help="skip the leave-one-source-out networks")
    parser.add_argument("--loso-only", action="store_true",
                        help="train only the leave-one-source-out networks: the fold networks and the shipped one are "
                             "left as they are, and the scores are merged into <out>/report.json")
    parser.add_argument("--from-features", action="store_true",
                        help="train on train_default.py's cached inputs (its corpus with no-voice backgrounds, seeds "
                             "and room recipe) instead of extracting: see the module's docstring")
    parser.add_argument("--cache", default="var/cache", help="train_default.py's feature cache (--from-features)")
    parser.add_argument("--left-out", default="",
                        help="comma-separated corpora (dataset.corpus_of) to leave out; default every corpus")
    parser.add_argument("--resume", action="store_true",
                        help="keep the networks an interrupted run of the same corpus and settings finished "
                             "(<out>/progress.json)")
    parser.add_argument("--resung", action="store_true",
                        help="add a re-sung (singing) and a re-synthesised (talking) copy of each training talking "
                             "clip (singtalk.resing; measured, not adopted: see docs/model.md)")
    parser.add_argument("--global-mean", action="store_true",
                        help="remove one mean instead of each band's (schema st-6; measured and replaced: see docs/model.md)")
    args = parser.parse_args(argv)
    if args.loso_only and args.no_loso:
        parser.error("--loso-only and --no-loso leave nothing to train")
    if args.from_features and args.resung:
        parser.error("--from-features: the cached inputs have no re-sung copies")
    if args.global_mean and not spectro.PER_BAND[args.view]:
        parser.error(f"--global-mean: the {args.view} view always removes one mean")
    args.per_band = spectro.PER_BAND[args.view] and not args.global_mean
    args.epochs = args.epochs or EPOCHS[args.view]
    args.out = args.out or str(Path("var") / f"spectro-{args.view}-global-mean" if args.global_mean
                               else SPECTRO_FOLDS / args.view)
    args.weights = args.weights or (f"{args.out}/all-training.npz" if args.global_mean else str(spectro.WEIGHTS[args.view]))
    started = time.perf_counter()

    data = (cached_inputs(args.view, args.data, args.jobs, args.cache) if args.from_features
            else extracted_inputs(args))
    raw, clip, y, sources, first = data.raw, data.clip, data.y, data.sources, data.first
    inputs = [spectro.normalise(m, args.per_band) for m in raw]
    is_test = data.test_mask[clip]
    train_idx = np.flatnonzero(~is_test)
    print(f"{len(data.test_mask)} clips, {len(inputs)} inputs; spectrograms in {time.perf_counter() - started:.0f} s",
          flush=True)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    networks = Networks(out_dir, run_key(args, data), args.resume, args.per_band, args.epochs)
    report_path = out_dir / "report.json"
    if args.loso_only:  # keep what the full run reported on the folds and the shipped network
        report = json.loads(report_path.read_text()) if report_path.is_file() else {"view": args.view}
    else:
        train_clips = np.flatnonzero(~data.test_mask)
        groups = data.clip_groups
        splitter = StratifiedGroupKFold(args.folds, shuffle=True, random_state=args.seed)
        fold_of_speaker: dict[str, int] = {}
        for k, (_, held) in enumerate(splitter.split(train_clips, data.clip_labels[train_clips], groups[train_clips])):
            fold_of_speaker.update({str(g): k for g in groups[train_clips][held]})
        fold = np.array([fold_of_speaker.get(str(g), -1) for g in data.speakers])
        oof = np.full(len(inputs), np.nan)
        for k in range(args.folds):
            fit_idx = train_idx[fold[train_idx] != k]
            net = networks.get(out_dir / f"fold{k}.npz", [inputs[i] for i in fit_idx], y[fit_idx], args.seed + k)
            held = train_idx[fold[train_idx] == k]
            oof[held] = [net(raw[i]) for i in held]
            print(f"fold {k}: {time.perf_counter() - started:.0f} s", flush=True)
        atomic.write_json(out_dir / "folds.json", {"folds": args.folds, "seed": args.seed,
                                                   "fold_of_speaker": fold_of_speaker})

        net = networks.get(Path(args.weights), [inputs[i] for i in train_idx], y[train_idx], args.seed)
        test_idx = np.flatnonzero(is_test)
        test_logits = np.array([net(raw[i]) for i in test_idx])
        clean_train = train_idx[first[train_idx]]
        report = {"view": args.view, "epochs": args.epochs, "inputs": len(inputs),
                  "out_of_fold_training_speakers": scores(y[clean_train], oof[clean_train], sources[clean_train]),
                  "test_split": scores(y[test_idx], test_logits, sources[test_idx])}
        atomic.write_json(report_path, report)
    if not args.no_loso:
        losos = report.setdefault("leave_one_source_out", {}) if args.left_out else {}
        report["leave_one_source_out"] = losos
        corpora = np.array([dataset.corpus_of(s) for s in sources])
        chosen = [c for c in args.left_out.split(",") if c] or list(np.unique(corpora))
        unknown = sorted(set(chosen) - set(corpora))
        if unknown:
            parser.error(f"--left-out: no corpus {', '.join(unknown)} (there are {', '.join(np.unique(corpora))})")
        for source in chosen:  # a corpus at a time (dataset.corpus_of)
            fit_idx = np.flatnonzero(corpora != source)
            net = networks.get(out_dir / f"without_{source}.npz", [inputs[i] for i in fit_idx], y[fit_idx], args.seed)
            held = np.flatnonzero((corpora == source) & first)
            logits = np.array([net(raw[i]) for i in held])
            losos[source] = {"n": int(held.size), "accuracy": float(np.mean((logits > 0) == y[held])),
                             "inputs": "train_default cache" if args.from_features else "extracted"}
            if len(np.unique(y[held])) == 2:
                from sklearn.metrics import balanced_accuracy_score

                losos[source]["balanced_accuracy"] = float(balanced_accuracy_score(y[held], logits > 0))
            atomic.write_json(report_path, report)  # a long run keeps what it has finished
            print(f"without {source} ({time.perf_counter() - started:.0f} s): {losos[source]}", flush=True)
    report["loso_seconds" if args.loso_only else "seconds"] = round(time.perf_counter() - started)
    atomic.write_json(report_path, report)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
