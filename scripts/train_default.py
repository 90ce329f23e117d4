"""Build the shipped default model (singing vs talking) from ../shared/data.

    .venv/bin/python scripts/train_spectro.py --view mel        # first: the three CNNs
    .venv/bin/python scripts/train_spectro.py --view harmonic   # (features schema st-8; their fold networks
    .venv/bin/python scripts/train_spectro.py --view contour    #  are committed in models/spectro-folds/)
    .venv/bin/python scripts/train_default.py [--models models] [--head max|logit-sum|linear|stack] [--C 0.002]
                                              [--L-features dynamic|all] [--jobs 2] [--copies 2] [--ensemble 5]
                                              [--no-loso]

Steps: read the manifest's singing and talking rows; split by speaker
(``dataset.split_by_speaker(test_size=0.2, seed=0)``); decode every clip once and
extract its features; for TRAINING clips only add ``--copies`` augmented versions
each (``augment.random_copy``: random gain, white/pink noise, a random crop, sometimes a
telephone band or a room reverb; every second copy also played 0.84–1.19× as fast,
some of those through MP3). The
``spectro_logit``, ``harmonic_logit`` and ``contour_logit`` features of training rows come from the fold
networks of ``train_spectro.py`` that never heard the speaker (stacking without
leakage); test rows get the shipped networks'. The head (:data:`HEADS`): ``max`` (default) is
a Keras MLP computing exactly sigmoid(max(J, S)), S the sum of the three logits and J = L + ¼ · the
contour logit, L logistic regressions on the hand-crafted features (less the long-term spectral shape:
:data:`L_FEATURES`) averaged over fits that each leave one corpus out (:func:`max_model`,
:func:`judge_weights`, :func:`hand_crafted_logit`); ``logit-sum`` sigmoid(S) and ``linear`` sigmoid(J) likewise; ``stack`` trains ``--ensemble`` MLPs on all
features (seeds 0..k-1) with ``model.train`` (validation grouped by speaker) and averages them into one model.
Evaluate on the test split (overall, per source, and its RAVDESS part: actors never seen in
training) and, unless ``--no-loso``, leave-one-source-out (train without corpus S, with every
learnt logit from networks trained without S; test on S; ``dataset.corpus_of``).

Writes ``<models>/versions/<ts>/`` + ``CURRENT`` through ``ModelStore.save(promote=True)``
and ``<models>/tables/``: ``train_features_scaled.csv`` (un-augmented training rows),
``test_features_scaled.csv``, ``scaler.json`` (the model's scaler, fitted on the
training rows including augmented ones) and ``features_raw.csv`` (un-augmented, with a
``split`` column). Paths in the tables are relative to the data dir (``config.data_dir()``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from singtalk import atomic, augment, config, dataset  # noqa: E402
from singtalk.features import VIEW_FEATURES  # noqa: E402

CLASSES = ("singing", "talking")
HOLDOUT_SOURCE = "ravdess"
SPECTRO_FOLDS = Path(__file__).resolve().parent.parent / "models" / "spectro-folds"
"""``<view>/``: the fold and leave-one-source-out networks ``train_spectro.py`` writes and :func:`main` reads.
Committed with the shipped model: they take hours to train on two cores, and only they give training rows
logits from networks that never heard the speaker."""


def analysed_copies(task: tuple[str, int, int], *, require_sound: bool = True) -> tuple[list, str]:
    """``(path, copies, seed)`` → ([``features.Frames`` of the clip, of each augmented copy...], error).

    The clip is decoded once; augmented copies that fail are skipped, and so are those with too little
    sound unless ``require_sound`` is False (``train_spectro.py`` keeps them, as its shipped weights did).
    """
    from singtalk import audio, features
    from singtalk.errors import SingtalkError

    path, copies, seed = task
    try:
        y = audio.decode(path)
        audio.prepare(y)
        check = features.require_sound if require_sound else (lambda frames: frames)
        analysed = [check(features.analyse(y, audio.SAMPLE_RATE))]
    except SingtalkError as err:
        return [], str(err)
    rng = np.random.default_rng(seed)
    for copy in range(1, copies + 1):
        try:
            altered = augment.random_copy(y, rng, audio.SAMPLE_RATE, resample=copy % 2 == 0)
            analysed.append(check(features.analyse(altered)))
        except SingtalkError:
            pass
    return analysed, ""


def _replaced_later(spec_db: np.ndarray) -> float:
    """Stand-in network for training rows, whose logits ``main`` sets from the fold networks."""
    return 0.0


def clip_features(task: tuple[str, int, int], test: bool) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], str]:
    """``(path, copies, seed)`` → ([clean vector, augmented vectors...], {view: their spectrogram-network
    inputs}, error). Only ``test`` clips run the shipped networks; training rows get fold-network logits later."""
    from singtalk import features, spectro

    analysed, error = analysed_copies(task)
    nets = None if test else {view: _replaced_later for view in spectro.VIEWS}
    return ([features.pool(f, nets=nets) for f in analysed],
            {view: [features.spectro_input(f, view=view).astype(np.float16) for f in analysed]
             for view in spectro.VIEWS}, error)


def set_spectro_logits(table: pd.DataFrame, inputs: list[np.ndarray], rows: np.ndarray, net, view: str) -> None:
    """Recompute the ``view`` network's column of ``rows`` (positions in ``table``) with ``net``."""
    from singtalk.features import spectro_feature

    column = table.columns.get_loc(VIEW_FEATURES[view])
    table.iloc[rows, column] = [spectro_feature(inputs[r].astype(np.float32), net, view=view) for r in rows]


# -- training and evaluation ----------------------------------------------------
HEADS = ("max", "logit-sum", "linear", "stack")
"""``max`` (the default, chosen by leave-one-source-out; see the README): p(singing) = sigmoid(max(J, S)), S
the sum of the three networks' logits, J = L + :data:`JUDGE_WEIGHT` × the contour network's logit, L strongly
regularised logistic regressions on the hand-crafted features, averaged over fits that each leave one corpus
out: singing when either says so. ``logit-sum``:
sigmoid(S) alone (the best in speaker cross-validation, the worst on sources it never heard); ``linear``:
sigmoid(J) alone; ``stack``: MLPs trained on all 161 features. All are Keras models over the scaled
features, fine-tuned by retraining like any other."""
S_VIEWS = ("mel", "harmonic", "contour")
"""The networks summed into S: all three."""
JUDGE_VIEWS = ("contour",)
"""The timbre-free networks whose logits join L in the judge J (``max`` head: max(J, S))."""
JUDGE_WEIGHT = 0.25
"""J = L + JUDGE_WEIGHT × the :data:`JUDGE_VIEWS` logits. The contour network, timbre-free, is both a third
network in S and, at a quarter, a voice in the judge: chosen by speaker cross-validation and leave-one-source-out
among seven ways to add it (README)."""
LINEAR_C = 0.002
"""Inverse L2 strength of L's logistic regressions (class-balanced, on standardised features)."""
STATIC_TIMBRE = re.compile(r"(voiced_)?(mfcc\d+|contrast\d+|log2_rolloff|log2_centroid|log10_flatness|zcr)_mean")
"""The long-term spectral shape summaries: means of the MFCCs, spectral contrast, roll-off, centroid,
flatness and ZCR. They carry the microphone, the room, the speaker and the corpus more than singing."""
L_FEATURES = {"dynamic": lambda name: not STATIC_TIMBRE.fullmatch(name), "all": lambda name: True}
"""Which hand-crafted features L reads. ``dynamic`` (the default) leaves out :data:`STATIC_TIMBRE` and keeps how
the voice moves (pitch, rhythm, modulation, variability), as the per-band CNNs ignore the long-term spectrum:
in leave-one-corpus-out it recognised more unheard singing (README)."""


def hand_crafted_logit(train: pd.DataFrame, scaler, names: list[str], C: float = LINEAR_C,
                       features: str = "dynamic") -> tuple[np.ndarray, float]:
    """L: weights over the scaled features (0 for the networks' logits and for features :data:`L_FEATURES`
    ``[features]`` leaves out) and a bias. L is the average of class-balanced logistic regressions with L2
    strength 1/``C`` on standardised hand-crafted features, one per corpus of ``train`` (``dataset.corpus_of``
    of its ``source`` column) fitted without that corpus, so no corpus's peculiarities carry L alone; one fit on
    all rows when fewer than two such fits have both classes."""
    from sklearn.linear_model import LogisticRegression

    hand = [i for i, name in enumerate(names) if name not in VIEW_FEATURES.values() and L_FEATURES[features](name)]
    X = scaler.transform(train[names].to_numpy())[:, hand]
    y = (train["label"] == "singing").to_numpy()
    corpora = (np.array([dataset.corpus_of(s) for s in train["source"]]) if "source" in train
               else np.zeros(len(train), dtype=str))
    subsets = [corpora != c for c in np.unique(corpora)]
    subsets = [m for m in subsets if 0 < y[m].sum() < m.sum()]
    if len(subsets) < 2:
        subsets = [np.ones(len(train), dtype=bool)]
    weights, bias = np.zeros(len(names)), 0.0
    for m in subsets:
        mean, std = X[m].mean(axis=0), X[m].std(axis=0)
        std[std < 1e-9] = 1.0
        lr = LogisticRegression(C=C, class_weight="balanced", max_iter=10000).fit((X[m] - mean) / std, y[m])
        weights[hand] += lr.coef_[0] / std / len(subsets)
        bias += float(lr.intercept_[0] - (lr.coef_[0] / std * mean).sum()) / len(subsets)
    return weights, bias


def logit_sum_weights(scaler, names: list[str], views=None, scale: float = 1.0) -> tuple[np.ndarray, float]:
    """``scale`` × the sum of the ``views``' network logits (default: :data:`S_VIEWS`, all three) as weights over
    the scaled features and a bias (undoing the scaling)."""
    weights, bias = np.zeros(len(names)), 0.0
    for view in S_VIEWS if views is None else views:
        i = names.index(VIEW_FEATURES[view])
        span, low = float(scaler.max_[i] - scaler.min_[i]), float(scaler.min_[i])  # logit = scaled · span + low
        weights[i] += scale * span
        bias += scale * low
    return weights, bias


def judge_weights(train: pd.DataFrame, scaler, names: list[str], C: float = LINEAR_C,
                  features: str = "dynamic", weight: float = JUDGE_WEIGHT) -> tuple[np.ndarray, float]:
    """The timbre-free judge J: L (:func:`hand_crafted_logit`) plus ``weight`` × the :data:`JUDGE_VIEWS`
    networks' logits."""
    (wl, bl) = hand_crafted_logit(train, scaler, names, C, features)
    (wc, bc) = logit_sum_weights(scaler, names, JUDGE_VIEWS, weight)
    return wl + wc, bl + bc


def relu_head(units: list[tuple[np.ndarray, float, float]], n_features: int, train_config):
    """A Keras MLP (input → Dense ReLU → Dense softmax) whose "singing" logit is Σ sign·ReLU(w·x + b) over
    ``units`` = [(w, b, sign)] and whose "talking" logit is 0, so p(singing) = sigmoid of that sum."""
    from singtalk.model import _make_optimizer, _tf

    tf = _tf()
    hidden = np.stack([w for w, _, _ in units], axis=1).astype(np.float32)
    hidden_bias = np.array([b for _, b, _ in units], np.float32)
    out = np.zeros((len(units), len(CLASSES)), np.float32)
    out[:, CLASSES.index("singing")] = [sign for _, _, sign in units]
    inputs = tf.keras.Input(shape=(n_features,), name="features")
    x = tf.keras.layers.Dense(len(units), activation="relu", name="dense_1")(inputs)
    outputs = tf.keras.layers.Dense(len(CLASSES), activation="softmax", name="probabilities")(x)
    model = tf.keras.Model(inputs, outputs, name="singtalk_classifier")
    model.get_layer("dense_1").set_weights([hidden, hidden_bias])
    model.get_layer("probabilities").set_weights([out, np.zeros(len(CLASSES), np.float32)])
    model.compile(optimizer=_make_optimizer(train_config.optimizer, train_config.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def max_model(train: pd.DataFrame, scaler, names: list[str], train_config, *, C: float = LINEAR_C,
              l_features: str = "dynamic", judge_weight: float = JUDGE_WEIGHT):
    """The ``max`` head: sigmoid(max(J, S)) = sigmoid(ReLU(J − S) + ReLU(S) − ReLU(−S)) (see :data:`HEADS`)."""
    wl, bl = judge_weights(train, scaler, names, C, l_features, judge_weight)
    ws, bs = logit_sum_weights(scaler, names)
    return relu_head([(wl - ws, bl - bs, 1.0), (ws, bs, 1.0), (-ws, -bs, -1.0)], len(names), train_config)


def linear_model(train: pd.DataFrame, scaler, names: list[str], train_config, *, C: float = LINEAR_C,
                 l_features: str = "dynamic", judge_weight: float = JUDGE_WEIGHT):
    """The ``linear`` head: sigmoid(J) = sigmoid(ReLU(J) − ReLU(−J)), J the judge (:func:`judge_weights`)."""
    wl, bl = judge_weights(train, scaler, names, C, l_features, judge_weight)
    return relu_head([(wl, bl, 1.0), (-wl, -bl, -1.0)], len(names), train_config)


def logit_sum_model(scaler, names: list[str], train_config):
    """The ``logit-sum`` head: sigmoid(S) = sigmoid(ReLU(S) − ReLU(−S)), S the sum of the spectrogram networks'
    logits with their MinMax scaling undone; every other feature has weight 0. An ordinary trainable model:
    retraining fine-tunes it like any other (and may give the hand-crafted features weight)."""
    ws, bs = logit_sum_weights(scaler, names)
    return relu_head([(ws, bs, 1.0), (-ws, -bs, -1.0)], len(names), train_config)


def fit(train: pd.DataFrame, names: list[str], train_config, ensemble: int = 1, head: str = "stack",
        C: float = LINEAR_C, l_features: str = "dynamic", judge_weight: float = JUDGE_WEIGHT):
    """Scaler + model (``C``, ``l_features``, ``judge_weight``: L's regularisation and features and the contour
    logit's weight in J, for the ``max`` and ``linear`` heads); with ``ensemble`` > 1, that many seeds
    (seed, seed+1, ...) averaged into one model
    (``model.average_models``); the result's history and epochs are the first member's."""
    import dataclasses

    from singtalk.features import FEATURE_VERSION
    from singtalk.model import average_models
    from singtalk.model import train as train_model
    from singtalk.scaling import MinMaxScaling

    scaler = MinMaxScaling(names, feature_version=FEATURE_VERSION).fit(train[names].to_numpy())
    if head in ("max", "logit-sum", "linear"):
        from singtalk.model import TrainResult

        model = (logit_sum_model(scaler, names, train_config) if head == "logit-sum"
                 else (max_model if head == "max" else linear_model)(train, scaler, names, train_config, C=C,
                                                                           l_features=l_features,
                                                                           judge_weight=judge_weight))
        return TrainResult(model=model, history={}, config=train_config, class_names=list(CLASSES),
                           n_train=len(train)), scaler
    X, y, groups = scaler.transform(train[names].to_numpy()), train["label"].to_numpy(), dataset.speaker_groups(train)
    members = [train_model(X, y, list(CLASSES), train_config.replace(seed=train_config.seed + k), groups=groups)
               for k in range(max(1, ensemble))]
    result = members[0]
    if len(members) > 1:
        result = dataclasses.replace(result, model=average_models([m.model for m in members], train_config),
                                     seconds=sum(m.seconds for m in members))
    return result, scaler


def evaluate(result, scaler, frame: pd.DataFrame, names: list[str]) -> dict:
    from singtalk.model import evaluate as evaluate_model

    if frame.empty:
        return {"n": 0}
    metrics = evaluate_model(result.model, scaler.transform(frame[names].to_numpy()), frame["label"].to_numpy(),
                             list(CLASSES), sources=frame["source"].to_numpy())
    metrics["n"] = int(len(frame))
    return metrics


def short(metrics: dict) -> str:
    if not metrics.get("n"):
        return "-"
    bal = metrics.get("balanced_accuracy")
    return f"acc {metrics['accuracy']:.3f}  bal {bal:.3f}" if bal is not None else f"acc {metrics['accuracy']:.3f}"


def relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> int:
    from singtalk.features import FEATURE_NAMES, FEATURE_VERSION
    from singtalk.model import TrainConfig
    from singtalk.spectro import VIEWS, SpectroNet
    from singtalk.registry import ModelStore, make_metadata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data dir with manifest.csv (default: config.data_dir())")
    parser.add_argument("--models", default=str(Path(__file__).resolve().parent.parent / "models"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--copies", type=int, default=2, help="augmented copies per training clip")
    parser.add_argument("--no-loso", action="store_true", help="skip leave-one-source-out runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ensemble", type=int, default=5, help="MLP seeds averaged into the shipped model (stack)")
    parser.add_argument("--head", choices=HEADS, default="max",
                        help="the classifier over the features (see HEADS); default: chosen by leave-one-source-out")
    parser.add_argument("--C", type=float, default=LINEAR_C,
                        help="max and linear heads: inverse L2 strength of the logistic regressions")
    parser.add_argument("--L-features", dest="l_features", choices=sorted(L_FEATURES), default="dynamic",
                        help="max and linear heads: the hand-crafted features L reads (see L_FEATURES)")
    parser.add_argument("--judge-weight", type=float, default=JUDGE_WEIGHT,
                        help="max and linear heads: weight of the contour network's logit in the judge J "
                             "(0: J = L, the st-7 head)")
    parser.add_argument("--spectro-folds", default=str(SPECTRO_FOLDS / "{view}"),
                        help="folders written by scripts/train_spectro.py --view VIEW (fold and leave-one-source-out "
                             "networks; default: the committed models/spectro-folds/VIEW); {view} stands for the view")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    fold_dirs = {view: Path(args.spectro_folds.format(view=view)) for view in VIEWS}
    fold_infos = {}
    for view, folder in fold_dirs.items():
        if not (folder / "folds.json").is_file():
            print(f"error: {folder}/folds.json is missing: run scripts/train_spectro.py --view {view} first",
                  file=sys.stderr)
            return 2
        fold_infos[view] = json.loads((folder / "folds.json").read_text())
    fold_info = fold_infos[VIEWS[0]]
    if any(info["fold_of_speaker"] != fold_info["fold_of_speaker"] for info in fold_infos.values()):
        print("error: the views' networks were trained on different folds (other data or seed?)", file=sys.stderr)
        return 2

    data_dir = Path(args.data) if args.data else config.data_dir()
    labelled = dataset.from_manifest(data_dir / "manifest.csv", root=data_dir, classes=list(CLASSES))
    test_mask = dataset.split_by_speaker(labelled, test_size=0.2, seed=args.seed)
    tasks = [(p, 0 if test else args.copies, args.seed * 100003 + i)
             for i, (p, test) in enumerate(zip(labelled["path"], test_mask))]
    print(f"{len(labelled)} clips ({int(test_mask.sum())} test); extracting with {args.jobs} jobs...", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outputs = list(pool.map(clip_features, tasks, test_mask, chunksize=8))
    print(f"features in {time.perf_counter() - started:.0f} s", flush=True)

    names = list(FEATURE_NAMES)
    rows, failures, inputs = [], [], {view: [] for view in VIEWS}
    groups = dataset.speaker_groups(labelled)
    for i, (vectors, clip_inputs, error) in enumerate(outputs):
        for view in VIEWS:
            inputs[view] += clip_inputs[view]
        meta = labelled.iloc[i]
        if error:
            failures.append({"path": relative(meta["path"], data_dir), "error": error})
            continue
        for copy, vector in enumerate(vectors):
            rows.append({"path": meta["path"], "group": groups[i], "label": meta["label"], "speaker": meta["speaker"],
                         "source": meta["source"], "split": "test" if test_mask[i] else "train",
                         "augmented": copy > 0, **dict(zip(names, vector.tolist()))})
    table = pd.DataFrame(rows)
    table["path"] = [relative(p, data_dir) for p in table["path"]]
    fold = table["group"].map(fold_info["fold_of_speaker"])
    is_train = (table["split"] == "train").to_numpy()
    if fold[is_train].isna().any():
        print("error: the spectrogram folds do not cover these training speakers (other data or seed?)", file=sys.stderr)
        return 2
    for view in VIEWS:
        for k in range(int(fold_info["folds"])):  # training rows: logits of networks that never heard the speaker
            set_spectro_logits(table, inputs[view], np.flatnonzero(is_train & (fold == k).to_numpy()),
                               SpectroNet.load(fold_dirs[view] / f"fold{k}.npz"), view)
    train_all = table[table["split"] == "train"].reset_index(drop=True)
    test = table[table["split"] == "test"].reset_index(drop=True)
    train_config = TrainConfig(hidden_units=(128, 64), dropout=0.3, l2=1e-4, epochs=150, patience=15,
                               imbalance="class_weight", seed=args.seed)

    result, scaler = fit(train_all, names, train_config, args.ensemble, args.head, args.C, args.l_features,
                         args.judge_weight)
    test_metrics = evaluate(result, scaler, test, names)
    holdout = evaluate(result, scaler, test[test["source"] == HOLDOUT_SOURCE], names)
    metrics = {"test": test_metrics, "test_ravdess": holdout,
               "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1)}
    print(f"test split: {short(test_metrics)}   RAVDESS part: {short(holdout)}", flush=True)

    loso = {}
    if not args.no_loso:
        table["corpus"] = [dataset.corpus_of(s) for s in table["source"]]
        for source in sorted(table["corpus"].unique()):  # a corpus at a time (dataset.corpus_of)
            net_paths = {view: fold_dirs[view] / f"without_{source}.npz" for view in VIEWS}
            missing = [str(path) for path in net_paths.values() if not path.is_file()]
            if missing:
                print(f"  without {source}: {', '.join(missing)} missing (train_spectro.py --no-loso?); skipped",
                      flush=True)
                continue
            table_s = table.copy()  # every logit from networks that never heard this source
            for view, path in net_paths.items():
                set_spectro_logits(table_s, inputs[view], np.arange(len(table_s)), SpectroNet.load(path), view)
            clean = table_s[~table_s["augmented"]]
            train_s = table_s[(table_s["corpus"] != source)]
            train_s = train_s[(train_s["split"] == "train") | ~train_s["augmented"]]  # all clean rows + train augs
            if train_s["label"].nunique() < 2:
                continue
            res_s, scaler_s = fit(train_s.reset_index(drop=True), names, train_config, args.ensemble,
                                  args.head, args.C, args.l_features, args.judge_weight)
            loso[source] = evaluate(res_s, scaler_s, clean[clean["corpus"] == source], names)
            print(f"  without {source:18s} → on {source}: {short(loso[source])}", flush=True)
        metrics["leave_one_source_out"] = {s: {k: m[k] for k in ("n", "accuracy", "balanced_accuracy",
                                                                  "confusion_matrix", "labels") if k in m}
                                           for s, m in loso.items()}

    clean_train = train_all[~train_all["augmented"]]
    trained_on = {
        "data": "../shared/data manifest.csv (singing, talking rows); paths relative to the data dir",
        "train_rows": int(len(clean_train)), "train_rows_with_augmented": int(len(train_all)),
        "test_rows": int(len(test)), "train_counts": clean_train["label"].value_counts().to_dict(),
        "train_sources": clean_train["source"].value_counts().to_dict(),
        "test_sources": test["source"].value_counts().to_dict(),
        "split": "dataset.split_by_speaker(test_size=0.2, seed=%d): no speaker/actor in both" % args.seed,
        "augmentation": f"{args.copies} copies per training clip; {augment.DESCRIPTION}",
        "failures": failures,
    }
    store = ModelStore(args.models)
    metadata = make_metadata(feature_version=FEATURE_VERSION, feature_names=names, class_names=list(CLASSES),
                             metrics=metrics, trained_on=trained_on, config=train_config.to_dict(),
                             history=result.history)
    metadata["config"]["ensemble"] = args.ensemble if args.head == "stack" else 1
    metadata["config"]["head"] = args.head
    if args.head in ("max", "linear"):
        metadata["config"]["head_C"] = args.C
        metadata["config"]["head_L_features"] = args.l_features
        metadata["config"]["head_judge_weight"] = args.judge_weight
    version = store.save(result.model, scaler, metadata, promote=True, note="shipped default (scripts/train_default.py)")

    tables_dir = Path(args.models) / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    meta_cols = dataset.META_COLUMNS

    def scaled(frame):  # 5 decimals of a [0, 1] range keep the tables small (the model sees float32 anyway)
        values = pd.DataFrame(np.round(scaler.transform(frame[names].to_numpy()), 5), columns=names)
        return pd.concat([frame[meta_cols].reset_index(drop=True), values], axis=1)

    atomic.write_csv(tables_dir / dataset.TRAIN_TABLE, scaled(clean_train))
    atomic.write_csv(tables_dir / dataset.TEST_TABLE, scaled(test))
    raw = table[~table["augmented"]][meta_cols + ["split"] + names].astype({n: np.float32 for n in names})
    atomic.write_csv(tables_dir / dataset.RAW_TABLE, raw)
    scaler.save(tables_dir / dataset.SCALER_FILE)

    print(f"\nsaved version {version} in {args.models} (+ tables/); {len(names)} features {FEATURE_VERSION}; "
          f"{time.perf_counter() - started:.0f} s total")
    print(f"{'evaluation':42s} {'n':>5s}  result")
    print(f"{'test split (speaker-disjoint)':42s} {test_metrics['n']:5d}  {short(test_metrics)}")
    for source, m in (test_metrics.get("per_source") or {}).items():
        print(f"{'  ' + source:42s} {m.get('n', 0):5d}  {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in m.items() if k != 'n'})}")
    print(f"{'RAVDESS actors never trained on':42s} {holdout['n']:5d}  {short(holdout)}")
    print(f"{'confusion (rows true ' + '/'.join(CLASSES) + ')':42s}        {test_metrics.get('confusion_matrix')}")
    for source, m in loso.items():
        print(f"{'leave-one-source-out: ' + source:42s} {m['n']:5d}  {short(m)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
