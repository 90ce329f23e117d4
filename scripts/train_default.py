"""Build the shipped default model (singing, talking or no voice) from ../shared/data.

    .venv/bin/python scripts/train_spectro.py --view mel        # first: the three CNNs
    .venv/bin/python scripts/train_spectro.py --view harmonic   # (features schema st-8; their fold networks
    .venv/bin/python scripts/train_spectro.py --view contour    #  are committed in models/spectro-folds/)
    .venv/bin/python scripts/train_default.py [--models models] [--head stack|max|learned|linear|logit-sum]
                                              [--gate linear|mlp] [--ensemble 3] [--jobs 2] [--copies 2]
                                              [--no-backgrounds] [--no-loso] [--cache var/cache]
                                              [--judge-copies all|moderate]

Steps: read the manifest's singing, talking and no-voice rows and MIR-1K's backing tracks (no voice,
``dataset.backing_tracks``); split by speaker with the committed sides of ``models/split.json``
(:data:`SPLIT_FILE`: a person who sings and speaks stays on one side, and the speakers the CNNs were trained on
keep their sides); decode every clip once and extract its features; for TRAINING clips only add ``--copies``
augmented versions each (``augment.random_copy``: rooms, devices, real no-voice backgrounds from the training
split, noise, crops, speed; ``augment.DESCRIPTION``). The three CNN logits of a training clip whose speaker the
fold networks of ``train_spectro.py`` heard come from the fold network that never heard them (stacking without
leakage); every other clip (test clips, and speakers added to the corpus since the CNNs were trained) gets the
shipped networks'. The head (:data:`HEADS`) answers three classes when the training rows hold no-voice clips:
a judge between singing and talking behind a voice gate (:data:`GATES`), p(no_voice) = sigmoid(−g),
p(singing) = sigmoid(g)·sigmoid(m), p(talking) = sigmoid(g)·sigmoid(−m), all in one chain of Keras Dense layers
(:func:`gated_mlp`, :func:`relu_head`). ``stack`` (the default, chosen by leave-one-source-out on the grown corpus:
docs/model.md): m the mean logit of ``--ensemble`` MLPs trained on the voiced rows (``model.train``, validation
grouped by speaker). ``max``: st-8's m = max(J, S), S the three CNN logits' sum, J = L + ¼ · the contour logit,
L logistic regressions on the hand-crafted features averaged over fits that each leave one corpus out;
``learned``, ``linear``, ``logit-sum``: K, J or S alone. Evaluate on the test split (overall, per source, and
its RAVDESS part: actors never seen in training; :func:`answer_scores`) and, unless ``--no-loso``,
leave-one-source-out (train without corpus C, every learnt logit from networks that never heard C; test on C;
``dataset.corpus_of``; :func:`left_out_fits`), keeping those heads in ``var/left-out/<version>/`` for
``scripts/robustness.py --left-out`` (``scripts/left_out_store.py``).

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

from singtalk import atomic, augment, config, dataset, labels  # noqa: E402
from singtalk.features import VIEW_FEATURES  # noqa: E402

CLASSES = labels.CLASSES
"""singing, talking, no_voice: the three answers (``singtalk.labels``)."""
VOICED = labels.VOICED
HOLDOUT_SOURCE = "ravdess"
SPECTRO_FOLDS = Path(__file__).resolve().parent.parent / "models" / "spectro-folds"
"""``<view>/``: the fold and leave-one-source-out networks ``train_spectro.py`` writes and :func:`main` reads.
Committed with the shipped model: they take hours to train on two cores, and only they give training rows
logits from networks that never heard the speaker."""


_BACKGROUNDS: list[np.ndarray] = []
"""Real no-voice recordings (training split) that augmented copies may get as background, per worker process."""


def load_backgrounds(paths: list[str]) -> None:
    """Pool initialiser: decode the background clips once per worker (:data:`_BACKGROUNDS`)."""
    from singtalk.errors import SingtalkError

    _BACKGROUNDS.clear()
    for path in paths:
        try:
            _BACKGROUNDS.append(dataset.decode_clip(path))
        except SingtalkError:
            pass


def analysed_copies(task: tuple[str, int, int], *, require_sound: bool = True,
                    added: list | None = None) -> tuple[list, str]:
    """``(path, copies, seed)`` → ([``features.Frames`` of the clip, of each augmented copy...], error).

    The clip is decoded once (``dataset.decode_clip``: MIR-1K backing tracks are rebuilt); augmented copies
    (``augment.random_copy``, with this worker's :data:`_BACKGROUNDS`) that fail are skipped, and so are those
    with too little sound unless ``require_sound`` is False (``train_spectro.py`` keeps them, as its shipped
    weights did). ``added``, when given, gets one ``random_copy`` record per analysed frame list (an empty one
    for the clip itself): what was mixed in and at what SNR.
    """
    from singtalk import audio, features
    from singtalk.errors import SingtalkError

    path, copies, seed = task
    try:
        y = dataset.decode_clip(path)
        audio.prepare(y)
        check = features.require_sound if require_sound else (lambda frames: frames)
        analysed = [check(features.analyse(y, audio.SAMPLE_RATE))]
    except SingtalkError as err:
        return [], str(err)
    records = [{}]
    rng = np.random.default_rng(seed)
    for copy in range(1, copies + 1):
        record: dict = {}
        try:
            altered = augment.random_copy(y, rng, audio.SAMPLE_RATE, resample=copy % 2 == 0,
                                          backgrounds=_BACKGROUNDS or None, added=record)
            analysed.append(check(features.analyse(altered)))
            records.append(record)
        except SingtalkError:
            pass
    if added is not None:
        added[:] = records
    return analysed, ""


def _replaced_later(spec_db: np.ndarray) -> float:
    """Stand-in network for training rows, whose logits ``main`` sets from the fold networks."""
    return 0.0


def clip_features(task: tuple[str, int, int], shipped: bool
                  ) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], str, list[dict]]:
    """``(path, copies, seed)`` → ([clean vector, augmented vectors...], {view: their spectrogram-network
    inputs}, error, [what each copy had mixed in: ``augment.random_copy``'s record]). ``shipped``: the clip's
    logits come from the shipped networks (a test clip, or a training clip of a speaker no network heard); the
    others get fold-network logits later."""
    from singtalk import features, spectro

    added: list[dict] = []
    analysed, error = analysed_copies(task, added=added)
    nets = None if shipped else {view: _replaced_later for view in spectro.VIEWS}
    return ([features.pool(f, nets=nets) for f in analysed],
            {view: [features.spectro_input(f, view=view).astype(np.float16) for f in analysed]
             for view in spectro.VIEWS}, error, added)


def cache_key(tasks: list, shipped: np.ndarray, backgrounds: list[str]) -> str:
    """What :func:`extract_cached`'s features depend on: the tasks, which rows take the shipped networks'
    logits, the backgrounds, the augmentation recipe, the feature schema and those networks' weights."""
    import hashlib

    from singtalk.features import FEATURE_VERSION
    from singtalk.spectro import VIEWS, WEIGHTS

    networks = [hashlib.sha256(WEIGHTS[view].read_bytes()).hexdigest() for view in VIEWS]
    return hashlib.sha256(json.dumps([tasks, shipped.tolist(), backgrounds, augment.DESCRIPTION, FEATURE_VERSION,
                                      "with what each copy had added", networks],
                                     default=str).encode()).hexdigest()[:16]


def extract_cached(tasks: list, shipped: np.ndarray, backgrounds: list[str], jobs: int, cache_dir: Path | None) -> list:
    """:func:`clip_features` of every task in a process pool, kept in ``cache_dir`` under :func:`cache_key`, so
    another head is measured without decoding again."""
    import pickle

    key = cache_key(tasks, shipped, backgrounds)
    path = cache_dir / f"features-{key}.pkl" if cache_dir else None
    if path and path.is_file():
        print(f"features from {path}", flush=True)
        with open(path, "rb") as handle:
            return pickle.load(handle)
    with ProcessPoolExecutor(max_workers=max(1, jobs), initializer=load_backgrounds,
                             initargs=(backgrounds,)) as pool:
        outputs = list(pool.map(clip_features, tasks, shipped, chunksize=8))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{path}.tmp", "wb") as handle:
            pickle.dump(outputs, handle, protocol=5)
        os.replace(f"{path}.tmp", path)
    return outputs


SPLIT_FILE = Path(__file__).resolve().parent.parent / "models" / "split.json"
"""Every speaker group's side (train or test). The groups of the first corpus keep the sides the CNNs' folds
were trained on; groups the corpus gains are split among themselves (``dataset.split_keeping``)."""


def labelled_corpus(data_dir: Path) -> pd.DataFrame:
    """The manifest's singing, talking and no-voice rows plus MIR-1K's backing tracks (no voice), with their
    ``language`` (music / sound for no-voice clips)."""
    manifest = pd.read_csv(data_dir / "manifest.csv", dtype=str, keep_default_na=False)
    labelled = dataset.from_manifest(data_dir / "manifest.csv", root=data_dir, classes=list(CLASSES))
    backing = dataset.backing_tracks(manifest, data_dir).assign(language="music")
    language = dict(zip([str(data_dir / p) for p in manifest["path"]], manifest["language"]))
    labelled["language"] = labelled["path"].map(language).fillna("")
    return dataset.normalise_labelled(pd.concat([labelled, backing], ignore_index=True))


def corpus_split(labelled: pd.DataFrame, split_file: Path, seed: int = 0) -> np.ndarray:
    """Test mask from ``split_file`` (extended and rewritten when the corpus has gained speaker groups)."""
    info = json.loads(split_file.read_text()) if split_file.is_file() else {"side_of_group": {}}
    mask, sides = dataset.split_keeping(labelled, info["side_of_group"], test_size=0.2, seed=seed)
    if sides != info["side_of_group"]:
        print(f"{len(sides) - len(info['side_of_group'])} new speaker groups split; {split_file} updated", flush=True)
        atomic.write_json(split_file, {**info, "test_size": 0.2, "seed": seed, "side_of_group": dict(sorted(sides.items()))})
    return mask


def set_spectro_logits(table: pd.DataFrame, inputs: list[np.ndarray], rows: np.ndarray, net, view: str) -> None:
    """Recompute the ``view`` network's column of ``rows`` (positions in ``table``) with ``net``."""
    from singtalk.features import spectro_feature

    column = table.columns.get_loc(VIEW_FEATURES[view])
    table.iloc[rows, column] = [spectro_feature(inputs[r].astype(np.float32), net, view=view) for r in rows]


# -- training and evaluation ----------------------------------------------------
HEADS = ("max", "logit-sum", "linear", "learned", "stack", "mean")
"""The singing/talking judge m. ``stack`` (the default since 2026-12, chosen on the grown corpus: docs/model.md):
the mean logit of ``--ensemble`` MLPs trained on all 165 features (schema st-9) of the voiced rows. ``max`` (st-8's): m =
max(J, S), S the sum of the three networks' logits, J = L + :data:`JUDGE_WEIGHT` × the contour network's logit,
L strongly regularised logistic regressions on the hand-crafted features, averaged over fits that each leave
one corpus out: singing when either says so. ``logit-sum``: S alone; ``linear``: J alone; ``learned``: K, L's
fits over the logits too; ``mean`` (measured, not shipped: docs/model.md): the mean of the ``max`` and ``stack``
judges' logits. With no-voice rows the judge sits behind the voice gate (:data:`GATES`). All are Keras models
over the scaled features, fine-tuned by retraining like any other."""
S_VIEWS = ("mel", "harmonic", "contour")
"""The networks summed into S: all three."""
JUDGE_VIEWS = ("contour",)
"""The timbre-free networks whose logits join L in the judge J (``max`` head: max(J, S))."""
JUDGE_WEIGHT = 0.25
"""J = L + JUDGE_WEIGHT × the :data:`JUDGE_VIEWS` logits. The contour network, timbre-free, is both a third
network in S and, at a quarter, a voice in the judge: chosen by speaker cross-validation and leave-one-source-out
among seven ways to add it (docs/model.md)."""
MEAN_WEIGHT = 0.5
"""The ``max`` judge's share of the ``mean`` head's judge logit (the ``stack`` judge has the rest)."""
LINEAR_C = 0.002
"""Inverse L2 strength of L's logistic regressions (class-balanced, on standardised features)."""
STATIC_TIMBRE = re.compile(r"(voiced_)?(mfcc\d+|contrast\d+|log2_rolloff|log2_centroid|log10_flatness|zcr)_mean")
"""The long-term spectral shape summaries: means of the MFCCs, spectral contrast, roll-off, centroid,
flatness and ZCR. They carry the microphone, the room, the speaker and the corpus more than singing."""
L_FEATURES = {"dynamic": lambda name: not STATIC_TIMBRE.fullmatch(name), "all": lambda name: True}
"""Which hand-crafted features L reads. ``dynamic`` (the default) leaves out :data:`STATIC_TIMBRE` and keeps how
the voice moves (pitch, rhythm, modulation, variability), as the per-band CNNs ignore the long-term spectrum:
in leave-one-corpus-out it recognised more unheard singing (docs/model.md)."""


def hand_crafted_logit(train: pd.DataFrame, scaler, names: list[str], C: float = LINEAR_C,
                       features: str = "dynamic", with_logits: bool = False) -> tuple[np.ndarray, float]:
    """L: weights over the scaled features (0 for the networks' logits and for features :data:`L_FEATURES`
    ``[features]`` leaves out) and a bias. L is the average of class-balanced logistic regressions with L2
    strength 1/``C`` on standardised hand-crafted features, one per corpus of ``train`` (``dataset.corpus_of``
    of its ``source`` column) fitted without that corpus, so no corpus's peculiarities carry L alone; one fit on
    all rows when fewer than two such fits have both classes."""
    from sklearn.linear_model import LogisticRegression

    hand = [i for i, name in enumerate(names)
            if (with_logits or name not in VIEW_FEATURES.values()) and L_FEATURES[features](name)]
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


def relu_head(units: list[tuple[np.ndarray, float, float]], n_features: int, train_config, gate=None):
    """An exact Keras MLP over the scaled features whose judge logit is m = Σ sign·ReLU(w·x + b) over ``units`` =
    [(w, b, sign)].

    Without ``gate``: input → Dense ReLU → Dense softmax over (singing, talking), "talking" logit 0, so
    p(singing) = sigmoid(m). With ``gate`` (:func:`gate_units`: a voice logit g = v·ReLU(W·x + b) + c), the
    three-class model (:data:`CLASSES`) p(no_voice) = sigmoid(−g), p(singing) = sigmoid(g)·sigmoid(m),
    p(talking) = sigmoid(g)·sigmoid(−m): input → Dense ReLU (the judge's units and the gate's hidden units) →
    Dense softplus (m, −m, g, −g) → Dense softmax with logits −softplus(−m), −softplus(m) and
    softplus(−g) − softplus(g) = −g. One chain of Dense layers, so retraining fine-tunes it like any MLP."""
    from singtalk.model import _make_optimizer, _tf

    tf = _tf()
    judge_w = np.stack([w for w, _, _ in units], axis=1).astype(np.float32)
    judge_b = np.array([b for _, b, _ in units], np.float32)
    signs = np.array([sign for _, _, sign in units], np.float32)
    classes = CLASSES if gate is not None else VOICED
    inputs = tf.keras.Input(shape=(n_features,), name="features")
    if gate is None:
        out = np.zeros((len(units), len(classes)), np.float32)
        out[:, classes.index("singing")] = signs
        layers = [("dense_1", "relu", judge_w, judge_b), ("probabilities", "softmax", out, np.zeros(2, np.float32))]
    else:
        gate_w, gate_b, gate_v, gate_c = gate
        k = len(units)
        hidden_w = np.concatenate([judge_w, gate_w.astype(np.float32)], axis=1)
        hidden_b = np.concatenate([judge_b, gate_b.astype(np.float32)])
        pair = np.zeros((hidden_w.shape[1], 4), np.float32)  # → m, −m, g, −g
        pair[:k, 0], pair[:k, 1] = signs, -signs
        pair[k:, 2], pair[k:, 3] = gate_v, -gate_v
        pair_b = np.array([0.0, 0.0, gate_c, -gate_c], np.float32)
        out = np.zeros((4, 3), np.float32)
        out[1, classes.index("singing")] = -1.0  # −softplus(−m)
        out[0, classes.index("talking")] = -1.0  # −softplus(m)
        out[3, classes.index("no_voice")], out[2, classes.index("no_voice")] = 1.0, -1.0  # −g
        layers = [("dense_1", "relu", hidden_w, hidden_b), ("dense_2", "softplus", pair, pair_b),
                  ("probabilities", "softmax", out, np.zeros(3, np.float32))]
    x = inputs
    for name, activation, w, _ in layers:
        x = tf.keras.layers.Dense(w.shape[1], activation=activation, name=name)(x)
    model = tf.keras.Model(inputs, x, name="singtalk_classifier")
    for name, _, w, b in layers:
        model.get_layer(name).set_weights([w, b])
    model.compile(optimizer=_make_optimizer(train_config.optimizer, train_config.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def gated_mlp(members: list, gate, n_features: int, train_config, *, units: list = (), units_weight: float = 0.0):
    """The three-class ``stack`` model: the judge m = the mean of the singing-minus-talking logits of
    ``members`` (two-class MLPs from ``model.train``, ReLU layers of equal depth), behind the voice ``gate``
    (:func:`gate_units`), exactly as in :func:`relu_head`: p(no_voice) = sigmoid(−g), p(singing) =
    sigmoid(g)·sigmoid(m), p(talking) = sigmoid(g)·sigmoid(−m). One chain of Dense layers: each hidden layer
    holds every member's units side by side (block-diagonal weights) and the gate's, carried through the later
    layers by identity ReLU units; then Dense softplus (m, −m, g, −g) and the softmax. With ``units`` (ReLU
    units [(w, b, sign)] as in :func:`relu_head`, carried like the gate's), m = (1 − ``units_weight``) × the
    members' mean + ``units_weight`` × Σ sign·ReLU(w·x + b) (the ``mean`` head)."""
    from scipy.linalg import block_diag

    from singtalk.model import _make_optimizer, _tf

    tf = _tf()
    stacks = [[layer.get_weights() for layer in m.layers if isinstance(layer, tf.keras.layers.Dense)] for m in members]
    depth = len(stacks[0]) - 1
    if depth < 1 or any(len(st) != depth + 1 for st in stacks):
        raise ValueError("the judges need the same number of hidden layers")
    gate_w, gate_b, gate_v, gate_c = gate
    carried_w = np.concatenate([np.stack([w for w, _, _ in units], axis=1), gate_w], axis=1) if units else gate_w
    carried_b = np.concatenate([np.array([b for _, b, _ in units]), gate_b]) if units else gate_b
    n_gate, n_carried = gate_w.shape[1], carried_w.shape[1]
    layers = []
    for i in range(depth):
        if i == 0:
            w = np.concatenate([st[0][0] for st in stacks] + [carried_w], axis=1)
        else:
            w = block_diag(*[st[i][0] for st in stacks], np.eye(n_carried))
        b = np.concatenate([st[i][1] for st in stacks] + [carried_b if i == 0 else np.zeros(n_carried)])
        layers.append((f"dense_{i + 1}", "relu", w, b))
    s, t = VOICED.index("singing"), VOICED.index("talking")
    share = 1.0 - units_weight if units else 1.0
    m_w = np.concatenate([share * (st[-1][0][:, s] - st[-1][0][:, t]) / len(stacks) for st in stacks]
                         + [units_weight * np.array([sign for _, _, sign in units], float)])
    m_b = share * float(np.mean([st[-1][1][s] - st[-1][1][t] for st in stacks]))
    pair = np.zeros((m_w.size + n_gate, 4))
    pair[: m_w.size, 0], pair[: m_w.size, 1] = m_w, -m_w
    pair[m_w.size:, 2], pair[m_w.size:, 3] = gate_v, -gate_v
    layers.append((f"dense_{depth + 1}", "softplus", pair, np.array([m_b, -m_b, gate_c, -gate_c])))
    out = np.zeros((4, 3))
    out[1, CLASSES.index("singing")] = -1.0
    out[0, CLASSES.index("talking")] = -1.0
    out[3, CLASSES.index("no_voice")], out[2, CLASSES.index("no_voice")] = 1.0, -1.0
    layers.append(("probabilities", "softmax", out, np.zeros(3)))
    inputs = tf.keras.Input(shape=(n_features,), name="features")
    x = inputs
    for name, activation, w, _ in layers:
        x = tf.keras.layers.Dense(w.shape[1], activation=activation, name=name)(x)
    model = tf.keras.Model(inputs, x, name="singtalk_classifier")
    for name, _, w, b in layers:
        model.get_layer(name).set_weights([w.astype(np.float32), np.asarray(b, np.float32)])
    model.compile(optimizer=_make_optimizer(train_config.optimizer, train_config.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def voiced(train: pd.DataFrame) -> pd.DataFrame:
    """The singing and talking rows, which the judge learns from."""
    return train[train["label"].isin(VOICED)]


JUDGE_COPIES = {"all": {}, "moderate": {"background": 0.0, "noise": 10.0}}
"""Which augmented copies the judge learns from, as the lowest SNR (dB) of what a copy had mixed in
(``augment.random_copy``'s record): ``all``; ``moderate``, the ranges of the build before the louder noise
(backgrounds from 0 dB, white or pink noise from 10 dB). The voice gate always learns from every copy."""


def for_the_judge(train: pd.DataFrame, copies: str) -> pd.DataFrame:
    """``train`` without the augmented copies louder than :data:`JUDGE_COPIES` ``[copies]`` allows."""
    floors = JUDGE_COPIES[copies]
    if not floors or "added" not in train:
        return train
    floor = train["added"].map(floors).fillna(-np.inf).to_numpy()
    return train[~(train["added_snr_db"].to_numpy() < floor)]


GATES = ("linear", "mlp")
"""The voice gate g (voice against :data:`labels.NO_VOICE`): ``linear``, class-balanced logistic regression on
every standardised feature; ``mlp``, one hidden ReLU layer of :data:`GATE_UNITS` (scikit-learn, L2
:data:`GATE_ALPHA`, the classes balanced by repeating no-voice rows)."""
GATE_C = 0.01
"""Inverse L2 strength of the linear gate: chosen by leave-one-source-out among 0.5, 0.05 and 0.01 (docs/model.md)."""
GATE_OFFSET = 0.0
"""Added to the gate's logit (below 0, doubtful sounds lean to no voice). −1 was measured: on corpora never heard
it finds more no voice (music 0.93 → 0.95, sounds 0.89 → 0.94) but calls 1.4 % of voiced clips no voice, and
under the robustness conditions it lost twice as many voices (a hall 6 % → 13 %, pink noise at 5 dB 33 % → 66 %;
docs/model.md)."""
GATE_UNITS = 16
GATE_ALPHA = 1e-3


def gate_units(train: pd.DataFrame, scaler, names: list[str], kind: str = "linear", *, C: float = GATE_C,
               seed: int = 0, offset: float = GATE_OFFSET) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The voice gate as (W, b, v, c) over the scaled features: g = v·ReLU(W·x + b) + c, g > 0 for a voice
    (``offset`` is added to c: below 0, doubtful sounds lean to no voice)."""
    X = scaler.transform(train[names].to_numpy())
    y = (train["label"] != labels.NO_VOICE).to_numpy()
    mean, std = X.mean(axis=0), X.std(axis=0)
    std[std < 1e-9] = 1.0
    Z = (X - mean) / std
    if kind == "linear":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=C, class_weight="balanced", max_iter=10000).fit(Z, y)
        w = lr.coef_[0] / std
        b = float(lr.intercept_[0] - (lr.coef_[0] / std * mean).sum())
        return np.stack([w, -w], axis=1), np.array([b, -b]), np.array([1.0, -1.0]), float(offset)
    from sklearn.neural_network import MLPClassifier

    repeat = max(1, int(round((y.sum()) / max((~y).sum(), 1))))
    index = np.concatenate([np.flatnonzero(y)] + [np.flatnonzero(~y)] * repeat)
    mlp = MLPClassifier(hidden_layer_sizes=(GATE_UNITS,), alpha=GATE_ALPHA, max_iter=400, early_stopping=False,
                        random_state=seed).fit(Z[index], y[index])
    W = mlp.coefs_[0] / std[:, None]
    b = mlp.intercepts_[0] - (mean / std) @ mlp.coefs_[0]
    return W, b, mlp.coefs_[1][:, 0], float(mlp.intercepts_[1][0]) + float(offset)


def max_units(train: pd.DataFrame, scaler, names: list[str], *, C: float = LINEAR_C, l_features: str = "dynamic",
              judge_weight: float = JUDGE_WEIGHT) -> list:
    """The ``max`` head's judge m = max(J, S) = ReLU(J − S) + ReLU(S) − ReLU(−S) (see :data:`HEADS`)."""
    wl, bl = judge_weights(voiced(train), scaler, names, C, l_features, judge_weight)
    ws, bs = logit_sum_weights(scaler, names)
    return [(wl - ws, bl - bs, 1.0), (ws, bs, 1.0), (-ws, -bs, -1.0)]


def max_model(train: pd.DataFrame, scaler, names: list[str], train_config, *, C: float = LINEAR_C,
              l_features: str = "dynamic", judge_weight: float = JUDGE_WEIGHT, gate=None):
    """The ``max`` head: sigmoid(max(J, S)), behind the voice ``gate`` when one is given (:func:`relu_head`)."""
    units = max_units(train, scaler, names, C=C, l_features=l_features, judge_weight=judge_weight)
    return relu_head(units, len(names), train_config, gate)


def linear_model(train: pd.DataFrame, scaler, names: list[str], train_config, *, C: float = LINEAR_C,
                 l_features: str = "dynamic", judge_weight: float = JUDGE_WEIGHT, gate=None):
    """The ``linear`` head: sigmoid(J) = sigmoid(ReLU(J) − ReLU(−J)), J the judge (:func:`judge_weights`)."""
    wl, bl = judge_weights(voiced(train), scaler, names, C, l_features, judge_weight)
    return relu_head([(wl, bl, 1.0), (-wl, -bl, -1.0)], len(names), train_config, gate)


def learned_model(train: pd.DataFrame, scaler, names: list[str], train_config, *, C: float = LINEAR_C,
                  l_features: str = "dynamic", judge_weight: float = JUDGE_WEIGHT, gate=None):
    """The ``learned`` head: sigmoid(K), K logistic regressions like L but over the three networks' logits too,
    so the data decide how far to trust each network (``judge_weight`` unused)."""
    wk, bk = hand_crafted_logit(voiced(train), scaler, names, C, l_features, with_logits=True)
    return relu_head([(wk, bk, 1.0), (-wk, -bk, -1.0)], len(names), train_config, gate)


def logit_sum_model(scaler, names: list[str], train_config, gate=None):
    """The ``logit-sum`` head: sigmoid(S) = sigmoid(ReLU(S) − ReLU(−S)), S the sum of the spectrogram networks'
    logits with their MinMax scaling undone; every other feature has weight 0. An ordinary trainable model:
    retraining fine-tunes it like any other (and may give the hand-crafted features weight)."""
    ws, bs = logit_sum_weights(scaler, names)
    return relu_head([(ws, bs, 1.0), (-ws, -bs, -1.0)], len(names), train_config, gate)


def fit(train: pd.DataFrame, names: list[str], train_config, ensemble: int = 1, head: str = "stack",
        C: float = LINEAR_C, l_features: str = "dynamic", judge_weight: float = JUDGE_WEIGHT, gate: str = "linear",
        gate_offset: float = GATE_OFFSET, judge_copies: str = "all"):
    """Scaler + model (``C``, ``l_features``, ``judge_weight``: L's regularisation and features and the contour
    logit's weight in J, for the ``max`` and ``linear`` heads; ``gate``: :data:`GATES`; ``judge_copies``: the
    augmented copies the judge learns from, :data:`JUDGE_COPIES`; the gate learns from all). With no-voice rows in
    ``train`` the model has the three :data:`CLASSES` (the judge behind the voice gate; ``stack``: one
    three-class MLP), else singing and talking. With ``ensemble`` > 1, that many seeds (seed, seed+1, ...)
    averaged into one model (``model.average_models``); the result's history and epochs are the first member's."""
    import dataclasses

    from singtalk.features import FEATURE_VERSION
    from singtalk.model import average_models
    from singtalk.model import train as train_model
    from singtalk.scaling import MinMaxScaling

    scaler = MinMaxScaling(names, feature_version=FEATURE_VERSION).fit(train[names].to_numpy())
    three = (train["label"] == labels.NO_VOICE).any()
    classes = list(CLASSES if three else VOICED)
    judge_train = for_the_judge(train, judge_copies)
    if head in ("max", "logit-sum", "linear", "learned"):
        from singtalk.model import TrainResult

        gate_net = gate_units(train, scaler, names, gate, seed=train_config.seed, offset=gate_offset) if three else None
        build = {"max": max_model, "linear": linear_model, "learned": learned_model}.get(head)
        model = (logit_sum_model(scaler, names, train_config, gate_net) if build is None
                 else build(judge_train, scaler, names, train_config, C=C, l_features=l_features,
                            judge_weight=judge_weight, gate=gate_net))
        return TrainResult(model=model, history={}, config=train_config, class_names=classes,
                           n_train=len(train)), scaler
    judged = voiced(judge_train) if three else judge_train
    X, y = scaler.transform(judged[names].to_numpy()), judged["label"].to_numpy()
    members = [train_model(X, y, list(VOICED), train_config.replace(seed=train_config.seed + k),
                           groups=dataset.speaker_groups(judged)) for k in range(max(1, ensemble))]
    result = members[0]
    if three:
        units = (max_units(judge_train, scaler, names, C=C, l_features=l_features, judge_weight=judge_weight)
                 if head == "mean" else [])
        model = gated_mlp([m.model for m in members],
                          gate_units(train, scaler, names, gate, seed=train_config.seed, offset=gate_offset),
                          len(names), train_config, units=units, units_weight=MEAN_WEIGHT)
        result = dataclasses.replace(result, model=model, class_names=classes, n_train=len(train),
                                     seconds=sum(m.seconds for m in members))
    elif head == "mean":
        raise ValueError("the mean judge is built behind the voice gate: the training rows need no_voice clips")
    elif len(members) > 1:
        result = dataclasses.replace(result, model=average_models([m.model for m in members], train_config),
                                     seconds=sum(m.seconds for m in members))
    return result, scaler


def evaluate(result, scaler, frame: pd.DataFrame, names: list[str]) -> dict:
    """``model.evaluate`` over the model's classes, plus :func:`answer_scores`."""
    from singtalk.model import evaluate as evaluate_model
    from singtalk.model import predict_proba

    if frame.empty:
        return {"n": 0}
    frame = frame[frame["label"].isin(result.class_names)]
    proba = predict_proba(result.model, scaler.transform(frame[names].to_numpy()))
    metrics = evaluate_model(result.model, None, frame["label"].to_numpy(), result.class_names,
                             sources=frame["source"].to_numpy(), proba=proba)
    metrics.update(answer_scores(proba, frame, result.class_names))
    metrics["n"] = int(len(frame))
    return metrics


def answer_scores(proba: np.ndarray, frame: pd.DataFrame, class_names: list[str]) -> dict:
    """The issue's figures: ``voiced_balanced`` (singing vs talking on voiced clips, by the judge alone: p(singing)
    against p(talking)), ``voiced_as_no_voice`` (share of voiced clips answered no voice), ``no_voice_recall``
    overall and per kind (``language`` music / sound), and per source the share answered right."""
    from sklearn.metrics import balanced_accuracy_score

    label = frame["label"].to_numpy()
    pred = np.array(class_names)[proba.argmax(axis=1)]
    out: dict = {}
    is_voiced = np.isin(label, VOICED)
    if is_voiced.any():
        s, t = class_names.index("singing"), class_names.index("talking")
        judged = np.where(proba[is_voiced, s] >= proba[is_voiced, t], "singing", "talking")
        out["voiced_n"] = int(is_voiced.sum())
        out["voiced_accuracy"] = float(np.mean(judged == label[is_voiced]))
        if len(set(label[is_voiced])) == 2:
            out["voiced_balanced"] = float(balanced_accuracy_score(label[is_voiced], judged))
        if labels.NO_VOICE in class_names:
            out["voiced_as_no_voice"] = float(np.mean(pred[is_voiced] == labels.NO_VOICE))
    nv = label == labels.NO_VOICE
    if nv.any():
        out["no_voice_n"] = int(nv.sum())
        out["no_voice_recall"] = float(np.mean(pred[nv] == labels.NO_VOICE))
        if "language" in frame:
            kinds = frame["language"].to_numpy()
            for kind in ("music", "sound"):
                m = nv & (kinds == kind)
                if m.any():
                    out[f"no_voice_recall_{kind}"] = float(np.mean(pred[m] == labels.NO_VOICE))
                    out[f"no_voice_n_{kind}"] = int(m.sum())
    sources = frame["source"].to_numpy()
    out["answers_by_source"] = {src: {"n": int((sources == src).sum()),
                                      "right": float(np.mean(pred[sources == src] == label[sources == src]))}
                                for src in sorted(set(sources))}
    return out


def short(metrics: dict) -> str:
    if not metrics.get("n"):
        return "-"
    parts = [f"acc {metrics['accuracy']:.3f}"]
    if metrics.get("voiced_balanced") is not None:
        parts.append(f"sing/talk bal {metrics['voiced_balanced']:.3f}")
    elif metrics.get("voiced_n"):
        parts.append(f"sing/talk acc {metrics['voiced_accuracy']:.3f}")
    if metrics.get("voiced_as_no_voice") is not None:
        parts.append(f"voiced→no voice {metrics['voiced_as_no_voice']:.3f}")
    if metrics.get("no_voice_n"):
        kinds = "".join(f" {k} {metrics[f'no_voice_recall_{k}']:.3f}" for k in ("music", "sound")
                        if f"no_voice_recall_{k}" in metrics)
        parts.append(f"no-voice recall {metrics['no_voice_recall']:.3f}" + (f" ({kinds.strip()})" if kinds else ""))
    return "  ".join(parts)


def relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path


def prepare(args) -> tuple[pd.DataFrame, dict, dict, dict, list[str]]:
    """The feature table of the corpus (clean and augmented rows, ``split``, ``heard``, CNN logits set), the
    networks' inputs per view (row order), the fold networks' folders and assignment, and the feature names."""
    from singtalk.features import FEATURE_NAMES
    from singtalk.spectro import VIEWS, SpectroNet

    started = time.perf_counter()
    fold_dirs = {view: Path(args.spectro_folds.format(view=view)) for view in VIEWS}
    fold_infos = {}
    for view, folder in fold_dirs.items():
        if not (folder / "folds.json").is_file():
            print(f"error: {folder}/folds.json is missing: run scripts/train_spectro.py --view {view} first",
                  file=sys.stderr)
            raise SystemExit(2)
        fold_infos[view] = json.loads((folder / "folds.json").read_text())
    fold_info = fold_infos[VIEWS[0]]
    if any(info["fold_of_speaker"] != fold_info["fold_of_speaker"] for info in fold_infos.values()):
        print("error: the views' networks were trained on different folds (other data or seed?)", file=sys.stderr)
        raise SystemExit(2)

    data_dir = Path(args.data) if args.data else config.data_dir()
    labelled = labelled_corpus(data_dir)
    test_mask = corpus_split(labelled, Path(args.split), args.seed)
    groups = dataset.speaker_groups(labelled)
    heard = np.array([g in fold_info["fold_of_speaker"] for g in groups])  # by the fold networks
    if (heard & test_mask).any():
        print("error: the spectrogram folds hold test speakers (another split?)", file=sys.stderr)
        raise SystemExit(2)
    tasks = [(p, 0 if test else args.copies, args.seed * 100003 + i)
             for i, (p, test) in enumerate(zip(labelled["path"], test_mask))]
    is_background = ~test_mask & (labelled["label"] == labels.NO_VOICE).to_numpy()
    backgrounds = sorted(labelled["path"][is_background]) if args.backgrounds else []
    print(f"{len(labelled)} clips ({int(test_mask.sum())} test, {len(backgrounds)} no-voice backgrounds); "
          f"extracting with {args.jobs} jobs...", flush=True)
    outputs = extract_cached(tasks, ~heard, backgrounds, args.jobs, Path(args.cache) if args.cache else None)
    print(f"features in {time.perf_counter() - started:.0f} s", flush=True)

    names = list(FEATURE_NAMES)
    rows, failures, inputs = [], [], {view: [] for view in VIEWS}
    for i, (vectors, clip_inputs, error, added) in enumerate(outputs):
        for view in VIEWS:
            inputs[view] += clip_inputs[view]
        meta = labelled.iloc[i]
        if error:
            failures.append({"path": relative(meta["path"], data_dir), "error": error})
            continue
        for copy, vector in enumerate(vectors):
            rows.append({"path": meta["path"], "group": groups[i], "label": meta["label"], "speaker": meta["speaker"],
                         "source": meta["source"], "language": meta["language"],
                         "split": "test" if test_mask[i] else "train", "heard": bool(heard[i]),
                         "augmented": copy > 0, "added": added[copy].get("kind", ""),
                         "added_snr_db": added[copy].get("snr_db", np.inf), **dict(zip(names, vector.tolist()))})
    table = pd.DataFrame(rows)
    table["path"] = [relative(p, data_dir) for p in table["path"]]
    fold = table["group"].map(fold_info["fold_of_speaker"])
    by_fold = table["heard"].to_numpy()
    for view in VIEWS:
        for k in range(int(fold_info["folds"])):  # heard training rows: logits of networks that never heard them
            set_spectro_logits(table, inputs[view], np.flatnonzero(by_fold & (fold == k).to_numpy()),
                               SpectroNet.load(fold_dirs[view] / f"fold{k}.npz"), view)
    table.attrs["failures"] = failures
    return table, inputs, fold_dirs, fold_info, names


def features_of(loaded=None, *, data_dir: Path | None = None, jobs: int = 2, cache: str = "var/cache"):
    """:func:`prepare` with this script's defaults (the recipe of the shipped builds), for measuring heads, or a
    stored version ``loaded`` (its features must be the table's), on the training features: ``(table, inputs,
    fold_dirs, names)``; from ``cache`` when they were extracted before, else about 10 minutes on 2 cores."""
    args = argparse.Namespace(data=str(data_dir) if data_dir else None, copies=2, seed=0, jobs=jobs,
                              backgrounds=True, split=str(SPLIT_FILE), cache=cache,
                              spectro_folds=str(SPECTRO_FOLDS / "{view}"))
    table, inputs, fold_dirs, _, names = prepare(args)
    if loaded is not None and names != list(loaded.feature_names):
        raise SystemExit(f"the feature table's columns are not model {loaded.version}'s features")
    return table, inputs, fold_dirs, names


def head_args_of(metadata: dict, ensemble: int | None = None) -> tuple:
    """:func:`fit`'s head arguments as a stored version's metadata names them (``ensemble`` overrides its
    number of MLPs), so a left-out head is fitted as the served one was."""
    from singtalk.model import TrainConfig

    config = metadata.get("config", {})
    train_config = TrainConfig(**{k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__})
    return (train_config, ensemble or int(config.get("ensemble", 1)), config.get("head", "stack"),
            float(config.get("head_C", LINEAR_C)), config.get("head_L_features", "dynamic"),
            float(config.get("head_judge_weight", JUDGE_WEIGHT)), config.get("gate", "linear"),
            float(config.get("gate_offset", GATE_OFFSET)), config.get("judge_copies", "all"))


def left_out_fits(table: pd.DataFrame, inputs: dict, fold_dirs: dict, names: list[str], head_args: tuple,
                  corpora: list[str] | None = None):
    """Leave-one-source-out: for each corpus C of ``table`` (:func:`prepare`'s; ``corpora``, default all, by
    ``dataset.corpus_of``) yield ``(C, table_C, result, scaler, nets)``: ``table_C`` with every CNN logit from
    the networks trained without C (``nets`` = {view: ``<fold_dirs[view]>/without_C.npz``}; empty for a corpus
    no network heard, whose rows keep the shipped networks' logits), and the head :func:`fit` (``head_args``)
    on every other corpus's clean rows and training-split copies. A corpus the CNNs heard whose left-out
    networks are missing is skipped with a message, and so is one that leaves fewer than two labels."""
    from singtalk.spectro import VIEWS, SpectroNet

    table = table.assign(corpus=[dataset.corpus_of(s) for s in table["source"]])
    heard = set(table["corpus"][table["heard"]])
    for corpus in corpora or sorted(table["corpus"].unique()):
        net_paths = {view: Path(fold_dirs[view]) / f"without_{corpus}.npz" for view in VIEWS}
        missing = [str(path) for path in net_paths.values() if not path.is_file()]
        if missing and corpus in heard:
            print(f"  without {corpus}: {', '.join(missing)} missing (train_spectro.py --no-loso?); skipped",
                  flush=True)
            continue
        table_c = table.copy()
        nets = {} if missing else net_paths
        for view, path in nets.items():
            set_spectro_logits(table_c, inputs[view], np.arange(len(table_c)), SpectroNet.load(path), view)
        train_c = table_c[(table_c["corpus"] != corpus) & ((table_c["split"] == "train") | ~table_c["augmented"])]
        if train_c["label"].nunique() < 2:
            continue
        result, scaler = fit(train_c.reset_index(drop=True), names, *head_args)
        yield corpus, table_c, result, scaler, nets


def main(argv: list[str] | None = None) -> int:
    from singtalk.features import FEATURE_VERSION
    from singtalk.model import TrainConfig
    from singtalk.registry import ModelStore, make_metadata

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data dir with manifest.csv (default: config.data_dir())")
    parser.add_argument("--models", default=str(Path(__file__).resolve().parent.parent / "models"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--copies", type=int, default=2, help="augmented copies per training clip")
    parser.add_argument("--no-loso", action="store_true", help="skip leave-one-source-out runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ensemble", type=int, default=3, help="MLP seeds averaged into the shipped model (stack)")
    parser.add_argument("--head", choices=HEADS, default="stack",
                        help="the classifier over the features (see HEADS); default: chosen by leave-one-source-out")
    parser.add_argument("--C", type=float, default=LINEAR_C,
                        help="max and linear heads: inverse L2 strength of the logistic regressions")
    parser.add_argument("--L-features", dest="l_features", choices=sorted(L_FEATURES), default="dynamic",
                        help="max and linear heads: the hand-crafted features L reads (see L_FEATURES)")
    parser.add_argument("--judge-weight", type=float, default=JUDGE_WEIGHT,
                        help="max and linear heads: weight of the contour network's logit in the judge J "
                             "(0: J = L, the st-7 head)")
    parser.add_argument("--gate", choices=GATES, default="linear",
                        help="the voice gate before the judge (see GATES)")
    parser.add_argument("--gate-offset", type=float, default=GATE_OFFSET,
                        help="added to the gate's logit; below 0 doubtful sounds lean to no voice (see GATE_OFFSET)")
    parser.add_argument("--judge-copies", choices=sorted(JUDGE_COPIES), default="all",
                        help="the augmented copies the singing/talking judge learns from (see JUDGE_COPIES)")
    parser.add_argument("--no-backgrounds", dest="backgrounds", action="store_false",
                        help="augmented copies get synthetic noise only, not the training split's no-voice clips")
    parser.add_argument("--split", default=str(SPLIT_FILE), help="speaker groups' sides (see SPLIT_FILE)")
    parser.add_argument("--cache", default="var/cache", help="folder keeping extracted features between runs ('' off)")
    parser.add_argument("--spectro-folds", default=str(SPECTRO_FOLDS / "{view}"),
                        help="folders written by scripts/train_spectro.py --view VIEW (fold and leave-one-source-out "
                             "networks; default: the committed models/spectro-folds/VIEW); {view} stands for the view")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    table, inputs, fold_dirs, fold_info, names = prepare(args)
    failures = table.attrs["failures"]
    train_all = table[table["split"] == "train"].reset_index(drop=True)
    test = table[table["split"] == "test"].reset_index(drop=True)
    train_config = TrainConfig(hidden_units=(128, 64), dropout=0.3, l2=1e-4, epochs=150, patience=15,
                               imbalance="class_weight", seed=args.seed)

    head_args = (train_config, args.ensemble, args.head, args.C, args.l_features, args.judge_weight, args.gate,
                 args.gate_offset, args.judge_copies)
    result, scaler = fit(train_all, names, *head_args)
    test_metrics = evaluate(result, scaler, test, names)
    holdout = evaluate(result, scaler, test[test["source"] == HOLDOUT_SOURCE], names)
    metrics = {"test": test_metrics, "test_ravdess": holdout,
               "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1)}
    print(f"test split: {short(test_metrics)}   RAVDESS part: {short(holdout)}", flush=True)

    loso, kept_heads = {}, {}
    if not args.no_loso:
        for source, table_s, res_s, scaler_s, nets_s in left_out_fits(table, inputs, fold_dirs, names, head_args):
            held = table_s[~table_s["augmented"] & (table_s["corpus"] == source)]
            loso[source] = evaluate(res_s, scaler_s, held, names)
            kept_heads[source] = (res_s, scaler_s, nets_s)
            print(f"  without {source:18s} → on {source}: {short(loso[source])}", flush=True)
        keep = ("n", "accuracy", "balanced_accuracy", "confusion_matrix", "labels", "voiced_n", "voiced_accuracy",
                "voiced_balanced", "voiced_as_no_voice", "no_voice_n", "no_voice_recall", "no_voice_recall_music",
                "no_voice_recall_sound", "answers_by_source")
        metrics["leave_one_source_out"] = {s: {k: m[k] for k in keep if k in m} for s, m in loso.items()}

    clean_train = train_all[~train_all["augmented"]]
    trained_on = {
        "data": "../shared/data manifest.csv (singing, talking, no_voice rows) + MIR-1K backing tracks "
                "(mixture/mir1k/X_mix.flac#backing = 2 × mixture − vocal); paths relative to the data dir",
        "train_rows": int(len(clean_train)), "train_rows_with_augmented": int(len(train_all)),
        "test_rows": int(len(test)), "train_counts": clean_train["label"].value_counts().to_dict(),
        "train_sources": clean_train["source"].value_counts().to_dict(),
        "test_sources": test["source"].value_counts().to_dict(),
        "split": f"{Path(args.split).name}: no speaker/actor/singer in both (dataset.split_keeping)",
        "cnn_logits": "training rows of speakers the fold networks heard: their out-of-fold network; every other "
                      "row (test, and speakers added since the CNNs were trained): the shipped networks",
        "augmentation": f"{args.copies} copies per training clip; {augment.DESCRIPTION}; the singing/talking "
                        f"judge learns from {args.judge_copies} copies ({JUDGE_COPIES[args.judge_copies] or 'any SNR'})",
        "failures": failures,
    }
    store = ModelStore(args.models)
    metadata = make_metadata(feature_version=FEATURE_VERSION, feature_names=names, class_names=result.class_names,
                             metrics=metrics, trained_on=trained_on, config=train_config.to_dict(),
                             history=result.history)
    metadata["config"]["ensemble"] = args.ensemble if args.head in ("stack", "mean") else 1
    metadata["config"]["head"] = args.head
    if args.head in ("max", "linear", "mean"):
        metadata["config"]["head_C"] = args.C
        metadata["config"]["head_L_features"] = args.l_features
        metadata["config"]["head_judge_weight"] = args.judge_weight
    if args.head == "mean":
        metadata["config"]["head_mean_weight"] = MEAN_WEIGHT
    if labels.NO_VOICE in result.class_names:
        metadata["config"].update(gate=args.gate, gate_C=GATE_C, gate_offset=args.gate_offset,
                                  judge_copies=args.judge_copies)
    version = store.save(result.model, scaler, metadata, promote=True, note="shipped default (scripts/train_default.py)")
    if kept_heads:  # for scripts/robustness.py --left-out
        import left_out_store

        for source, (res_s, scaler_s, nets_s) in kept_heads.items():
            left_out_store.keep(version, metadata["config"], source, res_s, scaler_s, names, nets=nets_s)

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
    print(f"{'confusion (rows true ' + '/'.join(result.class_names) + ')':42s}        {test_metrics.get('confusion_matrix')}")
    for source, m in loso.items():
        print(f"{'leave-one-source-out: ' + source:42s} {m['n']:5d}  {short(m)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
