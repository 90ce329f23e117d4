#!/usr/bin/env python
"""Measure ways of retraining from a few reviewed mistakes on issue 23's scenario, with the shipped model.

    .venv/bin/python scripts/measure_retrain.py [--models models] [--seeds 0,1,2] [--recipes 2,14] [--markdown OUT]

The scenario: a labelled set no training saw (the shipped model's speaker-disjoint test split, ``tables/
test_features_scaled.csv``, less the MIR-1K backing
tracks, which have no file of their own; its raw features come from ``tables/features_raw.csv``, so nothing is decoded),
``singtalk check`` on it, every mistake confirmed, ``singtalk retrain`` with one recipe and seed, then the
whole set checked again. Each run starts from the shipped model (CURRENT is put back after it) in a copy of
the store in a temporary folder.

Per run: mistakes fixed (all, and the held-aside ones), the labelled set's errors before and after, the clips
it broke (right before, wrong after), the errors on the clips the retrain did not train on, and the verdict
(``singtalk.verdict``). Issue 23's target: at least half of the mistakes fixed **and** the labelled set's
errors down by at least 30 %, never up. Recipes (:data:`RECIPES`, numbered from 1) are ``retrain`` options, plus
two that refit the head from scratch with ``scripts/train_default.py``'s ``fit`` (no verdict: nothing is saved).
The results are in docs/model.md ("Learning from a few mistakes").
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("SINGTALK_TF_THREADS", "2")

from singtalk import review  # noqa: E402
from singtalk.config import data_dir  # noqa: E402
from singtalk.registry import ModelStore  # noqa: E402

ALL = 1e6  # a replay ratio that replays the whole training table
RECIPES = {
    "all layers, replay 3": {"replay_ratio": 3},
    "all layers, replay 10 (the previous default)": {"replay_ratio": 10},
    "all layers, replay all": {"replay_ratio": ALL},
    "last layer, replay 3": {"trainable_layers": 1, "replay_ratio": 3},
    "last layer, replay all": {"trainable_layers": 1, "replay_ratio": ALL},
    "new layer before the output, replay 3": {"add_layers": 1, "replay_ratio": 3},
    "all layers, replay 3, learning rate 1e-4": {"learning_rate": 1e-4, "replay_ratio": 3},
    "L2-SP 0.01, replay 3": {"anchor": 1e-2, "replay_ratio": 3},
    "L2-SP 0.1, replay 3": {"anchor": 0.1, "replay_ratio": 3},
    "L2-SP 1, replay 3": {"anchor": 1.0, "replay_ratio": 3},
    "L2-SP 10, replay 3": {"anchor": 10.0, "replay_ratio": 3},
    # issue 23, item 2, second round
    "replay 10, distilled": {"replay_ratio": 10, "distill": True},
    "replay 30, distilled": {"replay_ratio": 30, "distill": True},
    "replay all, distilled (the default)": {"replay_ratio": ALL, "distill": True},
    "replay 10, 4 noisy copies per mistake": {"replay_ratio": 10, "copies": 4, "copy_noise": 0.1},
    "replay 10 by class and source": {"replay_ratio": 10, "replay_by": "label+source"},
    "replay 30": {"replay_ratio": 30},
    "replay 10, epochs by 5-fold CV": {"replay_ratio": 10, "cv_folds": 5},
    "replay 30, distilled, 4 noisy copies": {"replay_ratio": 30, "distill": True, "copies": 4, "copy_noise": 0.1},
    "replay 30, distilled, epochs by 5-fold CV": {"replay_ratio": 30, "distill": True, "cv_folds": 5},
    "replay 100, distilled": {"replay_ratio": 100, "distill": True},
    "replay all, distilled, 4 noisy copies": {"replay_ratio": ALL, "distill": True, "copies": 4, "copy_noise": 0.1},
    "replay all, half distilled (targets: ½ label + ½ old model)": {"replay_ratio": ALL, "distill": 0.5},
    "replay 10, 4 audio copies per mistake": {"replay_ratio": 10, "augment_copies": 4},
    "replay all, distilled, 4 audio copies per mistake": {"replay_ratio": ALL, "distill": True, "augment_copies": 4},
    "refit the head from scratch (train_default.fit), training mistakes added": {"refit": True},
    "refit the head from scratch, no mistakes (the refit's own drift)": {"refit": True, "no_mistakes": True},
}
CONFIG_KEYS = ("learning_rate", "epochs", "patience")


def scenario(models: Path, corpus: Path, work: Path):
    """A copy of the store, the labelled set (the test split) with its feature cache, checked; mistakes confirmed."""
    store_root = work / "models"
    shutil.copytree(models, store_root, ignore=shutil.ignore_patterns("retrain-runs", "store.lock*", "spectro-folds"))
    store = ModelStore(store_root)
    loaded = store.load()
    raw = pd.read_csv(models / "tables" / "features_raw.csv", keep_default_na=False)
    test = pd.read_csv(models / "tables" / "test_features_scaled.csv", usecols=["path", "label", "source"],
                       keep_default_na=False)
    test = test[~test["path"].str.contains("#")].reset_index(drop=True)  # MIR-1K backing tracks: no file of their own
    raw = raw.set_index("path").loc[test["path"]]
    labelled = test.assign(path=[str((corpus / p).resolve()) for p in test["path"]])
    wrong = work / "review" / "wrong_audios.csv"
    cache = review.FeatureCache(review.features_path_for(wrong), feature_version=loaded.metadata["feature_version"],
                                feature_names=loaded.feature_names)
    for path, vector in zip(labelled["path"], raw[loaded.feature_names].to_numpy(dtype=np.float32)):
        cache.put(path, vector)
    cache.save()
    checked = review.check(loaded, labelled, wrong_path=wrong)
    for path in review.read_wrong(wrong)["path"]:
        review.review_row(wrong, path, action="confirm", reviewer="measure_retrain")
    X = raw[loaded.feature_names].to_numpy(dtype=np.float32)
    return store, wrong, labelled, X, checked


def measure(store, wrong, labelled, X, base: str, recipe: dict, seed: int) -> dict:
    """One retrain from ``base``; the whole labelled set rechecked with the new version; CURRENT put back."""
    from singtalk.retrain import default_config, retrain

    truth = labelled["label"].to_numpy()
    before = np.array(store.load(base).class_names)[store.load(base).predict_proba(X).argmax(axis=1)]
    started = time.perf_counter()
    config = default_config().replace(**{k: v for k, v in recipe.items() if k in CONFIG_KEYS})
    # as the recipe's name says, whatever retrain's defaults
    options = {"distill": False, **{k: v for k, v in recipe.items() if k not in CONFIG_KEYS}}
    report = retrain(store, wrong, seed=seed, jobs=1, config=config, **options)
    seconds = time.perf_counter() - started
    new = store.load(report.new_version)
    after = np.array(new.class_names)[new.predict_proba(X).argmax(axis=1)]
    store.promote(base)
    held = np.isin(labelled["path"].to_numpy(), report.held_aside)
    return outcome(seed, truth, before, after, held, "promote" if report.verdict.passed else "refuse", seconds)


def refit(models: Path, corpus: Path, labelled: pd.DataFrame, X: np.ndarray, mistakes: np.ndarray, loaded,
          seed: int, *, add_mistakes: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """Refit the shipped head from scratch as ``scripts/train_default.py`` builds it (``fit``: gated chain,
    ``stack`` judge of ``ensemble`` MLPs, linear gate, class weights), on the un-augmented training rows of
    ``features_raw.csv`` plus 70 % of the mistakes (``retrain``'s stratified split rule; the rest held aside).
    Returns the answers on ``X``, the held-aside mask over the labelled set and the seconds taken."""
    import dataclasses

    sys.path.insert(0, str(REPO / "scripts"))
    import train_default
    from singtalk.model import TrainConfig, predict_proba
    from singtalk.retrain import split_mistakes

    started = time.perf_counter()
    raw = pd.read_csv(models / "tables" / "features_raw.csv", keep_default_na=False)
    meta = loaded.metadata["config"]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta.items() if k in fields})
    rows = np.flatnonzero(mistakes)
    train_rows, test_rows, _ = split_mistakes(labelled["label"].to_numpy()[rows], test_fraction=0.3, seed=seed)
    table = raw[raw["split"] == "train"]
    if add_mistakes:
        by_path = raw[raw["split"] == "test"].set_index("path")
        relative = [str(Path(p).relative_to(corpus.resolve())) for p in labelled["path"]]
        added = by_path.loc[[relative[i] for i in rows[train_rows]]].reset_index()
        added["label"] = labelled["label"].to_numpy()[rows[train_rows]]
        table = pd.concat([table, added], ignore_index=True)
    result, scaler = train_default.fit(table, loaded.feature_names, config.replace(seed=seed),
                                       ensemble=int(meta.get("ensemble", 1)), head=meta.get("head", "stack"),
                                       gate=meta.get("gate", "linear"), gate_offset=float(meta.get("gate_offset", 0.0)))
    answers = np.array(result.class_names)[predict_proba(result.model, scaler.transform(X)).argmax(axis=1)]
    held = np.zeros(len(labelled), dtype=bool)
    held[rows[test_rows] if add_mistakes else rows] = True  # without the mistakes, none was trained on
    return answers, held, time.perf_counter() - started


def measure_refit(models: Path, corpus: Path, store, labelled, X, base: str, recipe: dict, seed: int) -> dict:
    """Like :func:`measure` for :func:`refit` (no verdict: nothing is saved)."""
    truth = labelled["label"].to_numpy()
    loaded = store.load(base)
    before = np.array(loaded.class_names)[loaded.predict_proba(X).argmax(axis=1)]
    mistakes = before != truth
    after, held, seconds = refit(models, corpus, labelled, X, mistakes, loaded, seed,
                                 add_mistakes=not recipe.get("no_mistakes"))
    return outcome(seed, truth, before, after, held, "n/a", seconds)


def outcome(seed, truth, before, after, held, verdict: str, seconds: float) -> dict:
    mistakes = before != truth
    trained = mistakes & ~held
    e0, e1 = int(mistakes.sum()), int((after != truth).sum())
    return {"seed": seed, "mistakes": e0, "fixed": int((mistakes & (after == truth)).sum()),
            "held aside": int(held.sum()), "held aside fixed": int((held & (after == truth)).sum()),
            "errors before": e0, "errors after": e1, "broken": int((~mistakes & (after != truth)).sum()),
            "untrained errors before": int((mistakes & ~trained).sum()),
            "untrained errors after": int(((after != truth) & ~trained).sum()),
            "verdict": verdict,
            "target met": bool((mistakes & (after == truth)).sum() >= e0 / 2 and e1 <= 0.7 * e0),
            "seconds": round(seconds, 1)}


def markdown(results: pd.DataFrame) -> str:
    """One line per recipe: sums over the seeds, and per seed the mistakes fixed and the errors after."""
    sums = results.groupby("recipe", sort=False).agg(
        runs=("seed", "size"), mistakes=("mistakes", "sum"), fixed=("fixed", "sum"),
        held=("held aside", "sum"), held_fixed=("held aside fixed", "sum"), e0=("errors before", "sum"),
        e1=("errors after", "sum"), broken=("broken", "sum"), u0=("untrained errors before", "sum"),
        u1=("untrained errors after", "sum"),
        promoted=("verdict", lambda v: "n/a" if (v == "n/a").all() else f"{int((v == 'promote').sum())}/{len(v)}"),
        met=("target met", "sum"), seconds=("seconds", "mean"),
        per_seed=("errors after", lambda v: " / ".join(str(int(x)) for x in v)),
        fixed_per_seed=("fixed", lambda v: " / ".join(str(int(x)) for x in v)))
    lines = ["| Recipe | runs | mistakes fixed (per seed) | held-aside fixed | labelled errors before → after | "
             "errors after, per seed | broken | errors on clips not trained on | verdict: promote | target met | "
             "s per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in sums.iterrows():
        r = SimpleNamespace(**{k: v if isinstance(v, str) else int(v) if float(v).is_integer() else v
                               for k, v in r.items()})
        lines.append(f"| {name} | {r.runs} | {r.fixed}/{r.mistakes} ({r.fixed_per_seed}) | {r.held_fixed}/{r.held} | "
                     f"{r.e0} → {r.e1} ({(r.e1 - r.e0) / r.e0:+.0%}) | {r.per_seed} | {r.broken} | "
                     f"{r.u0} → {r.u1} | {r.promoted} | {int(r.met)}/{r.runs} | {r.seconds:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--corpus", type=Path, default=data_dir())
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--recipes", help=f"comma-separated numbers 1-{len(RECIPES)} (default: all)")
    parser.add_argument("--markdown", type=Path, help="also write the summary table here")
    args = parser.parse_args(argv)
    names = list(RECIPES)
    if args.recipes:
        names = [names[int(i) - 1] for i in args.recipes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="measure-retrain-") as tmp:
        store, wrong, labelled, X, checked = scenario(args.models, args.corpus, Path(tmp))
        base = store.current_version()
        print(f"labelled set: {checked.checked} clips of the test split, {checked.wrong} wrong (model {base})",
              file=sys.stderr)
        rows = []
        for name in names:
            for seed in seeds:
                recipe = RECIPES[name]
                if recipe.get("refit"):
                    run = measure_refit(args.models, args.corpus, store, labelled, X, base, recipe, seed)
                else:
                    run = measure(store, wrong, labelled, X, base, recipe, seed)
                row = {"recipe": name, **run}
                print(row, file=sys.stderr, flush=True)
                rows.append(row)
    table = markdown(pd.DataFrame(rows))
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
