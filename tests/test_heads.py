"""The heads of scripts/train_default.py: Keras MLPs that compute sigmoid(max(J, S)) (``max``, shipped) or
sigmoid(S) (``logit-sum``), S the sum of the three CNNs' logits, J = L + w × the contour network's logit,
L logistic regressions on hand-crafted features averaged over fits that each leave one corpus out."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("SINGTALK_TF_THREADS", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import train_default  # noqa: E402

from singtalk import dataset  # noqa: E402
from singtalk.features import FEATURE_NAMES, VIEW_BANDS, VIEW_FEATURES  # noqa: E402
from singtalk.model import TrainConfig, predict_proba  # noqa: E402
from singtalk.registry import ModelStore  # noqa: E402
from singtalk.retrain import fine_tune_copy  # noqa: E402
from singtalk.scaling import MinMaxScaling  # noqa: E402

NAMES = list(FEATURE_NAMES)
LOGITS = list(VIEW_FEATURES.values())
S_LOGITS = [VIEW_FEATURES[view] for view in train_default.S_VIEWS]
JUDGE_LOGITS = [VIEW_FEATURES[view] for view in train_default.JUDGE_VIEWS]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Random raw features; the logit columns spread over ±20 like the networks' outputs."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(0, 3, (300, len(NAMES))), columns=NAMES)
    for column in LOGITS:
        frame[column] = rng.uniform(-20, 20, len(frame))
    return frame


@pytest.fixture(scope="module")
def labelled(table) -> pd.DataFrame:
    """The random table labelled by two hand-crafted features L reads (so it has something to learn)."""
    frame = table.copy()
    frame["label"] = np.where(frame["mfcc0_std"] + frame["f0_range"] > 0, "singing", "talking")
    return frame


def hand_crafted_reference(frame: pd.DataFrame, fit_rows: pd.DataFrame, features: str = "dynamic") -> np.ndarray:
    """L computed independently: scikit-learn's own pipeline on the raw (unscaled) hand-crafted features
    (``dynamic``: all but the static timbre means, listed here by hand)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    static = {f"mfcc{k}_mean" for k in range(1, 20)}
    static |= {f"{v}contrast{k}_mean" for k in range(7) for v in ("", "voiced_")}
    static |= {"log2_rolloff_mean", "log2_centroid_mean", "zcr_mean", "log10_flatness_mean",
               "voiced_log10_flatness_mean", "voiced_log2_centroid_mean"}
    hand = [n for n in NAMES if n not in LOGITS and (features == "all" or n not in static)]
    assert len(hand) == (158 if features == "all" else 119)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=train_default.LINEAR_C, class_weight="balanced",
                                                              max_iter=10000))
    pipe.fit(fit_rows[hand].to_numpy(), fit_rows["label"] == "singing")
    return pipe.decision_function(frame[hand].to_numpy())


def test_hand_crafted_logit_averages_fits_that_each_leave_a_corpus_out(labelled):
    """With sources, L is the mean of the fits without each corpus (AISHELL-1's two collections are one corpus);
    a corpus whose absence leaves one class only is not left out."""
    frame = labelled.iloc[:240].copy()
    frame["source"] = np.repeat(["ravdess", "librispeech", "aishell1_qianz", "aishell1_wjunneng"], 60)
    frame["label"] = np.where(frame["source"] == "ravdess", "singing", "talking")  # without ravdess: talking only
    scaler = MinMaxScaling(NAMES).fit(frame[NAMES].to_numpy())
    weights, bias = train_default.hand_crafted_logit(frame, scaler, NAMES)
    L = scaler.transform(frame[NAMES].to_numpy()) @ weights + bias
    corpus = frame["source"].str.split("_").str[0]
    expected = np.mean([hand_crafted_reference(frame, frame[corpus != c]) for c in ("librispeech", "aishell1")],
                       axis=0)
    np.testing.assert_allclose(L, expected, atol=1e-4)
    assert np.abs(L - hand_crafted_reference(frame, frame)).max() > 1e-3  # not the single fit


def test_dynamic_L_ignores_the_static_timbre_means_and_all_reads_them(labelled):
    """``dynamic`` (the default) gives the long-term spectral shape means weight 0, so shifting them (another
    microphone, another voice) leaves L unchanged; ``all`` is the same fit over every hand-crafted feature."""
    scaler = MinMaxScaling(NAMES).fit(labelled[NAMES].to_numpy())
    for features in ("dynamic", "all"):
        weights, bias = train_default.hand_crafted_logit(labelled, scaler, NAMES, features=features)
        L = scaler.transform(labelled[NAMES].to_numpy()) @ weights + bias
        np.testing.assert_allclose(L, hand_crafted_reference(labelled, labelled, features), atol=1e-4)
        static = [i for i, n in enumerate(NAMES) if train_default.STATIC_TIMBRE.fullmatch(n)]
        assert len(static) == 39
        assert (weights[static] == 0).all() == (features == "dynamic")


def test_max_model_is_the_sigmoid_of_the_larger_logit(labelled):
    """max(J, S): J = L + a weight × the contour network's logit, S = the three networks' summed logits."""
    assert S_LOGITS == LOGITS and JUDGE_LOGITS == ["contour_logit"]
    fit_rows = labelled.iloc[:200]
    scaler = MinMaxScaling(NAMES).fit(fit_rows[NAMES].to_numpy())
    model = train_default.max_model(fit_rows, scaler, NAMES, TrainConfig())
    inside = labelled.iloc[:200]  # rows within the scaler's range: no clipping, so the logits are exact
    L = hand_crafted_reference(inside, fit_rows)
    J = L + train_default.JUDGE_WEIGHT * inside[JUDGE_LOGITS].to_numpy().sum(axis=1)
    S = inside[S_LOGITS].to_numpy().sum(axis=1)
    p = predict_proba(model, scaler.transform(inside[NAMES].to_numpy()))[:, train_default.CLASSES.index("singing")]
    np.testing.assert_allclose(p, sigmoid(np.maximum(J, S)), atol=1e-5)
    assert 20 < np.sum(J > S) < 180  # both branches are exercised
    assert np.mean((L > 0) == (inside["label"] == "singing")) > 0.9  # L learnt the labelling


def test_max_model_fine_tunes_like_any_model(labelled):
    scaler = MinMaxScaling(NAMES).fit(labelled[NAMES].to_numpy())
    model = train_default.max_model(labelled, scaler, NAMES, TrainConfig())
    X = scaler.transform(labelled[NAMES].to_numpy())
    copy, trainable = fine_tune_copy(model, trainable_layers=None, config=TrainConfig(), add_layers=1)
    np.testing.assert_allclose(predict_proba(copy, X), predict_proba(model, X), atol=1e-5)
    copy.fit(X, (labelled["label"] == "talking").astype(int).to_numpy(), epochs=3, batch_size=32, verbose=0)
    assert np.abs(predict_proba(copy, X) - predict_proba(model, X)).max() > 1e-3


def test_logit_sum_model_is_the_sigmoid_of_the_summed_logits(table):
    scaler = MinMaxScaling(NAMES).fit(table.iloc[:200].to_numpy())
    model = train_default.logit_sum_model(scaler, NAMES, TrainConfig())
    p = predict_proba(model, scaler.transform(table.to_numpy()))
    z = table[S_LOGITS].to_numpy().sum(axis=1)
    inside = np.all((table[S_LOGITS] >= scaler.min_[[NAMES.index(c) for c in S_LOGITS]]).to_numpy()
                    & (table[S_LOGITS] <= scaler.max_[[NAMES.index(c) for c in S_LOGITS]]).to_numpy(), axis=1)
    np.testing.assert_allclose(p[inside, train_default.CLASSES.index("singing")], sigmoid(z[inside]), atol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    # hand-crafted features have no say: changing them all leaves the output unchanged
    shuffled = table.copy()
    others = [n for n in NAMES if n not in LOGITS]
    shuffled[others] = shuffled[others].to_numpy()[::-1]
    np.testing.assert_allclose(predict_proba(model, scaler.transform(shuffled.to_numpy())), p, atol=1e-6)


def test_logit_sum_model_fine_tunes_like_any_model(table):
    """Retraining's recipes work on it: inserted identity layers keep its predictions until training moves them,
    and training moves them."""
    scaler = MinMaxScaling(NAMES).fit(table.to_numpy())
    model = train_default.logit_sum_model(scaler, NAMES, TrainConfig())
    X = scaler.transform(table.to_numpy())
    copy, trainable = fine_tune_copy(model, trainable_layers=None, config=TrainConfig(), add_layers=1)
    np.testing.assert_allclose(predict_proba(copy, X), predict_proba(model, X), atol=1e-5)
    assert "probabilities" in trainable
    y = (table[LOGITS[0]] < 0).astype(int).to_numpy()  # a labelling the sum disagrees with
    copy.fit(X, y, epochs=3, batch_size=32, verbose=0)
    assert np.abs(predict_proba(copy, X) - predict_proba(model, X)).max() > 1e-3


def test_shipped_model_is_the_max_head_over_its_test_rows():
    """The model in models/ is the ``max`` head (its metadata says so): on the shipped test table its
    p(singing) is never below sigmoid(S), the summed raw CNN logits, and is above it exactly where the judge J
    wins; both happen, and every clip S calls singing stays singing."""
    store = ModelStore(Path(__file__).resolve().parent.parent / "models")
    loaded = store.load()
    assert loaded.metadata["config"]["head"] == "max"
    tables = Path(store.root) / "tables"
    raw = pd.read_csv(tables / dataset.RAW_TABLE)
    test = raw[raw["split"] == "test"]
    p = loaded.predict_proba(test[NAMES].to_numpy(np.float32))[:, loaded.class_names.index("singing")]
    s = sigmoid(test[S_LOGITS].to_numpy(np.float64).sum(axis=1))
    assert np.all(p >= s - 1e-4)
    above = p > s + 1e-3
    assert 0 < above.sum() < len(p)
    assert np.all(p[s > 0.5] > 0.5)


def test_shipped_model_ignores_the_static_timbre_means():
    """The shipped L leaves out the long-term spectral shape (``--L-features dynamic``): giving every test clip
    another clip's 39 static-timbre means changes no prediction, while doing so with the dynamic features does."""
    loaded = ModelStore(Path(__file__).resolve().parent.parent / "models").load()
    assert loaded.metadata["config"]["head_L_features"] == "dynamic"
    raw = pd.read_csv(Path(__file__).resolve().parent.parent / "models" / "tables" / dataset.RAW_TABLE)
    test = raw[raw["split"] == "test"].reset_index(drop=True)
    static = [n for n in NAMES if train_default.STATIC_TIMBRE.fullmatch(n)]
    dynamic = [n for n in NAMES if n not in static and n not in LOGITS]
    shuffled = np.random.default_rng(0).permutation(len(test))

    def p_singing(frame):
        return loaded.predict_proba(frame[NAMES].to_numpy(np.float32))[:, loaded.class_names.index("singing")]

    base = p_singing(test)
    swapped = test.copy()
    swapped[static] = test[static].to_numpy()[shuffled]
    np.testing.assert_allclose(p_singing(swapped), base, atol=1e-5)
    swapped = test.copy()
    swapped[dynamic] = test[dynamic].to_numpy()[shuffled]
    assert np.abs(p_singing(swapped) - base).max() > 0.1


@pytest.mark.parametrize("view", VIEW_FEATURES)
def test_committed_fold_networks_cover_the_training_speakers_of_the_split(view, manifest):
    """``train_default.py`` gives every training clip the logit of a fold network that never heard its speaker;
    the committed networks must fit today's split: each view's folds.json assigns exactly the training-split
    speakers, every view the same way, and every fold network loads as a network of its view, normalised as
    the view is (``spectro.PER_BAND``)."""
    from singtalk import spectro

    folder = train_default.SPECTRO_FOLDS / view
    info = json.loads((folder / "folds.json").read_text())
    labelled = manifest[manifest["label"].isin(train_default.CLASSES)].reset_index(drop=True)
    test_mask = dataset.split_by_speaker(labelled, test_size=0.2, seed=info["seed"])
    groups = dataset.speaker_groups(labelled)
    assert set(info["fold_of_speaker"]) == set(groups[~test_mask])
    assert set(info["fold_of_speaker"].values()) == set(range(info["folds"]))
    for other in VIEW_FEATURES:
        other_info = json.loads((train_default.SPECTRO_FOLDS / other / "folds.json").read_text())
        assert other_info["fold_of_speaker"] == info["fold_of_speaker"]
    rng = np.random.default_rng(0)
    for k in range(info["folds"]):
        net = spectro.SpectroNet.load(folder / f"fold{k}.npz")
        assert net.per_band == spectro.PER_BAND[view]
        assert np.isfinite(net(rng.normal(-40, 10, (80, VIEW_BANDS[view])).astype(np.float32)))


@pytest.mark.parametrize("view", VIEW_FEATURES)
def test_committed_left_out_networks_cover_every_corpus(view, manifest):
    """``train_default.py``'s leave-one-source-out figures need, for every corpus of the manifest, a network of
    each view trained without it: the committed ``without_<corpus>.npz`` load as networks of the view, and the
    report beside them scored each one on the corpus it never heard."""
    from singtalk import spectro

    folder = train_default.SPECTRO_FOLDS / view
    labelled = manifest[manifest["label"].isin(train_default.CLASSES)]
    clips_per_corpus = labelled["source"].map(dataset.corpus_of).value_counts().to_dict()
    corpora = set(clips_per_corpus)
    assert {p.name for p in folder.glob("without_*.npz")} == {f"without_{c}.npz" for c in corpora}
    report = json.loads((folder / "report.json").read_text())["leave_one_source_out"]
    assert {c: r["n"] for c, r in report.items()} == clips_per_corpus
    spec = np.random.default_rng(0).normal(-40, 10, (80, VIEW_BANDS[view])).astype(np.float32)
    logits = []
    for corpus in sorted(corpora):
        net = spectro.SpectroNet.load(folder / f"without_{corpus}.npz")
        assert net.per_band == spectro.PER_BAND[view]
        logits.append(net(spec))
    assert np.all(np.isfinite(logits)) and len(set(logits)) == len(logits)  # four different networks
