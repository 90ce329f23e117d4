"""The heads of scripts/train_default.py: Keras MLPs that compute sigmoid(max(J, S)) (``max``, st-8) or
sigmoid(S) (``logit-sum``), S the sum of the three CNNs' logits, J = L + w × the contour network's logit,
L logistic regressions on hand-crafted features averaged over fits that each leave one corpus out; and behind
the voice gate, the three-class models (``stack``, shipped: MLP judges behind a linear gate)."""

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



def one_hot(y, n_classes: int) -> np.ndarray:
    """Probability-row targets, as fine-tuning copies are compiled for (``retrain.fine_tune_copy``)."""
    return np.eye(n_classes, dtype=np.float32)[np.asarray(y)]

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
    assert len(hand) == (162 if features == "all" else 123)
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
    y = (labelled["label"] == "talking").astype(int).to_numpy()
    copy.fit(X, one_hot(y, predict_proba(model, X).shape[1]), epochs=3, batch_size=32, verbose=0)
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
    copy.fit(X, one_hot(y, predict_proba(model, X).shape[1]), epochs=3, batch_size=32, verbose=0)
    assert np.abs(predict_proba(copy, X) - predict_proba(model, X)).max() > 1e-3


@pytest.fixture(scope="module")
def three_labelled(labelled) -> pd.DataFrame:
    """The random table with a third class: rows whose two first logits are both low have no voice."""
    frame = labelled.copy()
    frame.loc[(frame["spectro_logit"] < -5) & (frame["harmonic_logit"] < 0), "label"] = "no_voice"
    frame["source"] = np.tile(["a_x", "b_x", "c_x"], len(frame) // 3 + 1)[: len(frame)]
    return frame


def gate_logit(gate, X):
    W, b, v, c = gate
    return np.maximum(X @ W + b, 0.0) @ v + c


@pytest.mark.parametrize("kind", train_default.GATES)
def test_max_head_behind_the_gate_is_the_product_of_the_two(three_labelled, kind):
    """p(no_voice) = sigmoid(−g), and p(singing) = sigmoid(g) · sigmoid(max(J, S)): the two-class judge, unchanged,
    shares what the gate leaves to a voice."""
    scaler = MinMaxScaling(NAMES).fit(three_labelled[NAMES].to_numpy())
    X = scaler.transform(three_labelled[NAMES].to_numpy())
    gate = train_default.gate_units(three_labelled, scaler, NAMES, kind, C=1.0, offset=0.0)
    gated = train_default.max_model(three_labelled, scaler, NAMES, TrainConfig(), gate=gate)
    judge = train_default.max_model(three_labelled, scaler, NAMES, TrainConfig())
    p, m = predict_proba(gated, X), predict_proba(judge, X)[:, train_default.VOICED.index("singing")]
    g = gate_logit(gate, X)
    order = list(train_default.CLASSES)
    np.testing.assert_allclose(p[:, order.index("no_voice")], sigmoid(-g), atol=1e-5)
    np.testing.assert_allclose(p[:, order.index("singing")], sigmoid(g) * m, atol=1e-5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    found = p.argmax(axis=1) == order.index("no_voice")
    assert np.mean(found == (three_labelled["label"] == "no_voice")) > 0.85  # the gate learnt the third class


def judges_and_gate(frame: pd.DataFrame):
    """The scaler, the scaled features, a small config, two two-class MLPs on the voiced rows and a linear gate."""
    from singtalk.model import train as train_model

    scaler = MinMaxScaling(NAMES).fit(frame[NAMES].to_numpy())
    X = scaler.transform(frame[NAMES].to_numpy())
    voiced = frame["label"] != "no_voice"
    config = TrainConfig(hidden_units=(16, 8), epochs=5, patience=5, dropout=0.0)
    members = [train_model(X[voiced], frame["label"][voiced].to_numpy(), list(train_default.VOICED),
                           config.replace(seed=k)).model for k in range(2)]
    return scaler, X, config, members, train_default.gate_units(frame, scaler, NAMES, "linear")


def test_gated_mlp_is_the_judges_mean_logit_behind_the_gate(three_labelled):
    """The shipped kind of head: two-class MLPs (their mean singing-minus-talking logit) behind the gate, in one
    chain of Dense layers that retraining fine-tunes like any model."""
    _, X, config, members, gate = judges_and_gate(three_labelled)
    model = train_default.gated_mlp(members, gate, len(NAMES), config)
    assert [type(layer).__name__ for layer in model.layers[1:]] == ["Dense"] * 4
    s, t = train_default.VOICED.index("singing"), train_default.VOICED.index("talking")
    m = np.mean([np.log(q[:, s]) - np.log(q[:, t]) for q in (predict_proba(k, X) for k in members)], axis=0)
    g = gate_logit(gate, X)
    p = predict_proba(model, X)
    order = list(train_default.CLASSES)
    np.testing.assert_allclose(p[:, order.index("no_voice")], sigmoid(-g), atol=1e-5)
    np.testing.assert_allclose(p[:, order.index("singing")], sigmoid(g) * sigmoid(m), atol=1e-4)
    copy, _ = fine_tune_copy(model, trainable_layers=None, config=config, add_layers=1)
    np.testing.assert_allclose(predict_proba(copy, X), p, atol=1e-5)
    y = np.array([order.index(label) for label in three_labelled["label"][::-1]])  # another labelling
    copy.fit(X, one_hot(y, len(order)), epochs=3, batch_size=32, verbose=0)
    assert np.abs(predict_proba(copy, X) - p).max() > 1e-3


def test_the_mean_head_averages_the_max_and_stack_judges_behind_the_gate(three_labelled):
    """``--head mean``: the judge logit is half the MLPs' mean logit and half the ``max`` judge's units, carried
    through the MLPs' second layer beside the gate's, still one chain of Dense layers."""
    scaler, X, config, members, gate = judges_and_gate(three_labelled)
    units = train_default.max_units(three_labelled, scaler, NAMES)
    model = train_default.gated_mlp(members, gate, len(NAMES), config, units=units, units_weight=0.5)
    assert [type(layer).__name__ for layer in model.layers[1:]] == ["Dense"] * 4
    s, t = train_default.VOICED.index("singing"), train_default.VOICED.index("talking")
    stack = np.mean([np.log(q[:, s]) - np.log(q[:, t]) for q in (predict_proba(k, X) for k in members)], axis=0)
    most = sum(sign * np.maximum(X @ w + b, 0.0) for w, b, sign in units)
    assert np.abs(most - stack).max() > 0.5  # two different judges, so the test can tell their mean apart
    g = gate_logit(gate, X)
    p = predict_proba(model, X)
    order = list(train_default.CLASSES)
    np.testing.assert_allclose(p[:, order.index("no_voice")], sigmoid(-g), atol=1e-5)
    np.testing.assert_allclose(p[:, order.index("singing")], sigmoid(g) * sigmoid((stack + most) / 2), atol=1e-4)


def test_the_judge_can_leave_out_the_loudest_copies_and_the_gate_still_learns_from_them(three_labelled):
    """``--judge-copies moderate``: voiced copies under a loud background or hiss train the gate, not the judge."""
    frame = three_labelled.copy()
    kinds = np.array(["", "background", "noise"])[np.arange(len(frame)) % 3]
    frame["added"] = kinds
    frame["added_snr_db"] = np.where(kinds == "", np.inf, np.linspace(-3.0, 35.0, len(frame)))
    assert train_default.for_the_judge(frame, "all") is frame
    kept = train_default.for_the_judge(frame, "moderate")
    floors = train_default.JUDGE_COPIES["moderate"]
    loud = np.array([snr < floors.get(kind, -np.inf) for kind, snr in zip(kinds, frame["added_snr_db"])])
    assert 0 < loud.sum() < len(frame) and len(kept) == len(frame) - loud.sum()
    assert (kept["added"] == "").sum() == (kinds == "").sum()  # clean rows all stay
    assert (kept.loc[kept["added"] == "background", "added_snr_db"] >= floors["background"]).all()
    assert (kept.loc[kept["added"] == "noise", "added_snr_db"] >= floors["noise"]).all()


def test_shipped_model_answers_three_classes_and_reproduces_its_figures():
    """The model in models/ answers singing, talking or no voice (the judge behind the gate, as its metadata
    says), and its shipped test table gives back the test-split figures its metadata records (the table's
    float32 rounding may move one borderline clip)."""
    store = ModelStore(Path(__file__).resolve().parent.parent / "models")
    loaded = store.load()
    assert loaded.class_names == list(train_default.CLASSES)
    assert loaded.metadata["config"]["head"] == "stack" and loaded.metadata["config"]["gate"] == "linear"
    raw = pd.read_csv(Path(store.root) / "tables" / dataset.RAW_TABLE)
    test = raw[raw["split"] == "test"]
    p = loaded.predict_proba(test[NAMES].to_numpy(np.float32))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    recorded = loaded.metadata["metrics"]["test"]
    assert recorded["n"] == len(test) and set(test["label"]) == set(train_default.CLASSES)
    pred = np.array(loaded.class_names)[p.argmax(axis=1)]
    assert abs(int((pred == test["label"].to_numpy()).sum()) - round(recorded["accuracy"] * len(test))) <= 1
    found = np.array(recorded["confusion_matrix"])
    ours = pd.crosstab(test["label"], pred).reindex(index=loaded.class_names, columns=loaded.class_names, fill_value=0)
    assert np.abs(ours.to_numpy() - found).sum() <= 2


@pytest.fixture(scope="module")
def corpus_split(corpus):
    """The labelled corpus (singing, talking, no voice, MIR-1K backing tracks), each row's speaker group and
    its side in the committed ``models/split.json``."""
    labelled = train_default.labelled_corpus(corpus)
    labelled["group"] = dataset.speaker_groups(labelled)
    sides = json.loads(train_default.SPLIT_FILE.read_text())["side_of_group"]
    labelled["side"] = labelled["group"].map(sides)
    labelled["corpus"] = labelled["source"].map(dataset.corpus_of)
    return labelled


def test_committed_split_keeps_every_person_on_one_side(corpus_split):
    """Every speaker group of the corpus has a side, a person who sings and speaks (RAVDESS, GTSinger, PJS;
    CSD's singer in two collections) is one group, and the test side holds about a fifth of each class."""
    assert corpus_split["side"].notna().all(), "models/split.json lacks groups: rerun scripts/train_default.py"
    assert corpus_split.groupby("group")["side"].nunique().max() == 1
    both = corpus_split[corpus_split["label"].isin(train_default.VOICED)].groupby("group")["label"].nunique()
    assert {g.split(":")[0] for g in both[both == 2].index} >= {"ravdess", "gtsinger", "pjs"}
    assert corpus_split[corpus_split["source"].str.startswith("csd")]["group"].nunique() == 1
    share = (corpus_split["side"] == "test").groupby(corpus_split["label"]).mean()
    assert set(share.index) == set(train_default.CLASSES)
    assert share.between(0.12, 0.3).all(), share.to_dict()


@pytest.mark.parametrize("view", VIEW_FEATURES)
def test_committed_fold_networks_cover_the_training_speakers_of_the_split(view, corpus_split):
    """``train_default.py`` gives every training clip of a speaker the CNNs heard the logit of a fold network
    that never heard them: each view's folds.json assigns exactly the training-side speakers of the voiced
    clips of the corpora the networks were trained on, every view the same way, no test speaker, and every fold
    network loads as a network of its view, normalised as the view is (``spectro.PER_BAND``)."""
    from singtalk import spectro

    folder = train_default.SPECTRO_FOLDS / view
    info = json.loads((folder / "folds.json").read_text())
    trained_on = set(json.loads((folder / "report.json").read_text())["leave_one_source_out"])
    voiced = corpus_split[corpus_split["label"].isin(train_default.VOICED) & corpus_split["corpus"].isin(trained_on)]
    assert set(info["fold_of_speaker"]) == set(voiced["group"][voiced["side"] == "train"])
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
def test_committed_left_out_networks_cover_every_corpus(view, corpus_split):
    """``train_default.py``'s leave-one-source-out figures need, for every corpus, networks of each view that
    never heard it: for each corpus the networks were trained on, a committed ``without_<corpus>.npz`` that
    loads as a network of the view, scored in the report beside it on that corpus's voiced clips; every other
    corpus of the manifest no network heard (no speaker of it in the folds), so the shipped networks serve."""
    from singtalk import spectro

    folder = train_default.SPECTRO_FOLDS / view
    heard = set(json.loads((folder / "folds.json").read_text())["fold_of_speaker"])
    report = json.loads((folder / "report.json").read_text())["leave_one_source_out"]
    heard_corpora = set(corpus_split["corpus"][corpus_split["group"].isin(heard)])
    assert {p.name for p in folder.glob("without_*.npz")} == {f"without_{c}.npz" for c in heard_corpora}
    voiced = corpus_split[corpus_split["label"].isin(train_default.VOICED)]
    assert {c: r["n"] for c, r in report.items()} == voiced["corpus"][voiced["corpus"].isin(heard_corpora)].value_counts().to_dict()
    unheard = set(corpus_split["corpus"]) - heard_corpora
    assert len(unheard) >= 8 and not corpus_split["group"][corpus_split["corpus"].isin(unheard)].isin(heard).any()
    spec = np.random.default_rng(0).normal(-40, 10, (80, VIEW_BANDS[view])).astype(np.float32)
    logits = []
    for corpus in sorted(heard_corpora):
        net = spectro.SpectroNet.load(folder / f"without_{corpus}.npz")
        assert net.per_band == spectro.PER_BAND[view]
        logits.append(net(spec))
    assert np.all(np.isfinite(logits)) and len(set(logits)) == len(logits)  # different networks
