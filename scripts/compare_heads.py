#!/usr/bin/env python
"""Compare voice gates and singing/talking judges of ``train_default.py`` leave-one-source-out (docs/model.md).

    .venv/bin/python scripts/compare_heads.py gate                  # gate kinds × C × offset
    .venv/bin/python scripts/compare_heads.py judge [--corpora mir1k,speechocean762,gtsinger,ravdess,m4singer]
                                                    [--ensemble 1] [--drop voice_prob,...]
    .venv/bin/python scripts/compare_heads.py networks --networks 'var/spectro-grown/{view}' [--corpora ...]

Both read the feature table ``train_default.prepare`` builds (from its ``--cache``: run ``train_default.py``
first, or wait for the extraction). ``gate``: voice against no voice, with the gate refitted without each corpus
(the CNN logits as in training: a corpus the CNNs heard keeps its out-of-fold logits); prints, per offset
added to the gate's logit, (share of voiced clips called no voice, no-voice recall on music, on sounds).
``judge``: singing against talking on the voiced clips of each left-out corpus, every CNN logit from the
networks trained without it (``models/spectro-folds/<view>/without_<corpus>.npz`` where the CNNs heard it),
for the ``max`` judge (st-8), the ``stack`` MLPs on all features, on the dynamic features only, and the mean
of the ``max`` and ``stack`` logits; prints each class's recall. ``networks``: the served model's whole head
(gate and judge, as its metadata names them) refitted without each corpus, once with the CNN logits of the
committed networks trained without it and once with those of the networks in ``--networks`` (``{view}`` stands
for the view; ``train_spectro.py --loso-only --from-features --left-out C`` trains them on the grown corpus);
prints each network's balanced accuracy alone and their sum's, then, for the corpora with all three networks,
what ``train_default.py``'s leave-one-source-out table prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train_default as T  # noqa: E402

from singtalk import dataset  # noqa: E402
from singtalk.scaling import MinMaxScaling  # noqa: E402

OFFSETS = (0.0, -1.0, -2.0, -3.0)
GATES = (("linear", 0.5), ("linear", 0.05), ("linear", 0.01), ("mlp", 0.0))


def gate_scores(g: np.ndarray, rows: pd.DataFrame) -> dict:
    nv = (rows["label"] == "no_voice").to_numpy()
    kind = rows["language"].to_numpy()
    out = {}
    for offset in OFFSETS:
        said_nv = g + offset < 0
        out[offset] = tuple(round(float(said_nv[m].mean()), 4) if m.any() else None
                            for m in (~nv, nv & (kind == "music"), nv & (kind == "sound")))
    return out


def gate_logit(train: pd.DataFrame, rows: pd.DataFrame, names: list[str], kind: str, C: float) -> np.ndarray:
    scaler = MinMaxScaling(names).fit(train[names].to_numpy())
    W, b, v, c = T.gate_units(train, scaler, names, kind, C=C, offset=0.0)
    return np.maximum(scaler.transform(rows[names].to_numpy()) @ W + b, 0) @ v + c


def compare_gates(table: pd.DataFrame, names: list[str]) -> None:
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    print("per offset: (voiced called no voice, no-voice recall music, sounds)")
    for kind, C in GATES:
        print(f"== gate {kind} C={C}")
        print("  test split", gate_scores(gate_logit(train, test, names, kind, C), test), flush=True)
        logits, rows = [], []
        for corpus in sorted(table["corpus"].unique()):
            fit = table[(table["corpus"] != corpus) & ((table["split"] == "train") | ~table["augmented"])]
            held = table[(table["corpus"] == corpus) & ~table["augmented"]]
            logits.append(gate_logit(fit, held, names, kind, C))
            rows.append(held)
        print("  left out, all corpora", gate_scores(np.concatenate(logits), pd.concat(rows)), flush=True)


def judge_logit(kind: str, train: pd.DataFrame, rows: pd.DataFrame, names: list[str], ensemble: int) -> np.ndarray:
    from singtalk.model import TrainConfig, predict_proba
    from singtalk.model import train as train_model

    train = T.voiced(train).reset_index(drop=True)
    if kind == "max":
        scaler = MinMaxScaling(names).fit(train[names].to_numpy())
        X = scaler.transform(rows[names].to_numpy())
        return sum(sign * np.maximum(X @ w + b, 0) for w, b, sign in T.max_units(train, scaler, names))
    columns = names if kind == "stack" else [n for n in names if T.L_FEATURES["dynamic"](n)]
    scaler = MinMaxScaling(columns).fit(train[columns].to_numpy())
    config = TrainConfig(hidden_units=(128, 64), dropout=0.3, l2=1e-4, epochs=150, patience=15,
                         imbalance="class_weight", seed=0)
    logits = []
    for k in range(ensemble):
        member = train_model(scaler.transform(train[columns].to_numpy()), train["label"].to_numpy(), list(T.VOICED),
                             config.replace(seed=k), groups=dataset.speaker_groups(train))
        q = predict_proba(member.model, scaler.transform(rows[columns].to_numpy()))
        logits.append(np.log(q[:, 0] + 1e-12) - np.log(q[:, 1] + 1e-12))
    return np.mean(logits, axis=0)


def compare_judges(table: pd.DataFrame, inputs: dict, fold_dirs: dict, names: list[str], corpora: list[str],
                   ensemble: int) -> None:
    from singtalk.spectro import VIEWS, SpectroNet

    with_cnns = set(T.VIEW_FEATURES.values()) <= set(names)  # the max judge is built on the CNN logits
    kinds = ("max", "stack", "stack-dynamic") if with_cnns else ("stack", "stack-dynamic")
    for corpus in corpora:
        t = table
        if (fold_dirs[VIEWS[0]] / f"without_{corpus}.npz").is_file():
            t = table.copy()
            for view in VIEWS:
                T.set_spectro_logits(t, inputs[view], np.arange(len(t)),
                                     SpectroNet.load(fold_dirs[view] / f"without_{corpus}.npz"), view)
        fit = t[(t["corpus"] != corpus) & ((t["split"] == "train") | ~t["augmented"])]
        held = T.voiced(t[(t["corpus"] == corpus) & ~t["augmented"]])
        m = {kind: judge_logit(kind, fit, held, names, ensemble) for kind in kinds}
        if with_cnns:
            m["mean(max, stack)"] = (m["max"] + m["stack"]) / 2
        y = held["label"].to_numpy()
        for kind, logit in m.items():
            said = np.where(logit >= 0, "singing", "talking")
            recall = {c: round(float(np.mean(said[y == c] == c)), 3) for c in T.VOICED if (y == c).any()}
            print(f"  without {corpus}: {kind:18s} recall {recall}", flush=True)


def network_logits(table: pd.DataFrame, inputs: dict, rows: np.ndarray, folder: Path, corpus: str,
                   view: str) -> np.ndarray | None:
    """The ``view`` logits of ``rows`` from ``folder``'s network trained without ``corpus``; for the committed
    networks of a corpus none of them heard, the table's own (the shipped networks'); None if there is none."""
    from singtalk.features import spectro_feature
    from singtalk.spectro import SpectroNet

    path = folder / f"without_{corpus}.npz"
    if path.is_file():
        net = SpectroNet.load(path)
        return np.array([spectro_feature(inputs[view][r].astype(np.float32), net, view=view) for r in rows])
    if folder == T.SPECTRO_FOLDS / view and not table["heard"].to_numpy()[rows].any():
        return table[T.VIEW_FEATURES[view]].to_numpy()[rows]
    return None


def compare_networks(table: pd.DataFrame, inputs: dict, fold_dirs: dict, names: list[str], corpora: list[str],
                     networks: str, ensemble: int | None) -> None:
    from sklearn.metrics import balanced_accuracy_score

    from singtalk.registry import ModelStore
    from singtalk.spectro import VIEWS

    other = {view: Path(networks.format(view=view)) for view in VIEWS}
    sets = (("committed networks", fold_dirs), (networks, other))
    print("each network alone and their sum S, on the left-out corpus's voiced clips (balanced where it has both):")
    for corpus in corpora:
        rows = np.flatnonzero((table["corpus"] == corpus).to_numpy() & ~table["augmented"].to_numpy()
                              & table["label"].isin(T.VOICED).to_numpy())
        y = (table["label"].to_numpy()[rows] == "singing")
        for label, dirs in sets:
            logits = {view: network_logits(table, inputs, rows, Path(dirs[view]), corpus, view) for view in VIEWS}
            if all(v is not None for v in logits.values()):
                logits["S"] = sum(logits[view] for view in VIEWS)
            scored = {k: round(float(balanced_accuracy_score(y, v > 0)), 3) for k, v in logits.items() if v is not None}
            print(f"  without {corpus:15s} {label}: {scored}", flush=True)
    complete = [c for c in corpora if all((other[v] / f"without_{c}.npz").is_file() for v in VIEWS)]
    if not complete:
        return
    loaded = ModelStore(Path(__file__).resolve().parent.parent / "models").load()
    head_args = T.head_args_of(loaded.metadata, ensemble)
    print(f"the head of {loaded.version} ({head_args[2]}, ensemble {head_args[1]}), refitted without each corpus")
    for label, dirs in sets:
        for corpus, t, result, scaler, nets in T.left_out_fits(table, inputs, dirs, names, head_args, complete):
            held = t[~t["augmented"] & (t["corpus"] == corpus)]
            print(f"  without {corpus:15s} {label}: {T.short(T.evaluate(result, scaler, held, names))}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("gate", "judge", "networks"))
    parser.add_argument("--networks", default="var/spectro-grown/{view}",
                        help="networks: the folder of each view's without_<corpus>.npz ({view} stands for the view)")
    parser.add_argument("--corpora", default="mir1k,speechocean762,gtsinger,ravdess,m4singer")
    parser.add_argument("--ensemble", type=int, default=None,
                        help="MLPs per judge (judge: default 1; networks: default the served model's)")
    parser.add_argument("--cache", default="var/cache")
    parser.add_argument("--drop", default="", metavar="PREFIXES",
                        help="leave out the features whose names start with one of these comma-separated prefixes "
                             "(e.g. voice_prob: the judges without the voice detector's summaries; "
                             "spectro_logit,harmonic_logit,contour_logit: without the CNNs)")
    args = parser.parse_args(argv)
    table, inputs, fold_dirs, names = T.features_of(cache=args.cache)
    if args.drop:
        names = [name for name in names if not name.startswith(tuple(args.drop.split(",")))]
    table["corpus"] = table["source"].map(dataset.corpus_of)
    if args.what == "gate":
        compare_gates(table, names)
    elif args.what == "judge":
        compare_judges(table, inputs, fold_dirs, names, args.corpora.split(","), args.ensemble or 1)
    else:
        compare_networks(table, inputs, fold_dirs, names, args.corpora.split(","), args.networks, args.ensemble)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
