"""The shipped head (scripts/train_default.py --head logit-sum): a Keras MLP that adds the two CNN logits."""

from __future__ import annotations

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
from singtalk.features import FEATURE_NAMES, VIEW_FEATURES  # noqa: E402
from singtalk.model import TrainConfig, predict_proba  # noqa: E402
from singtalk.registry import ModelStore  # noqa: E402
from singtalk.retrain import fine_tune_copy  # noqa: E402
from singtalk.scaling import MinMaxScaling  # noqa: E402

NAMES = list(FEATURE_NAMES)
LOGITS = list(VIEW_FEATURES.values())


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Random raw features; the two logit columns spread over ±20 like the networks' outputs."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(0, 3, (300, len(NAMES))), columns=NAMES)
    for column in LOGITS:
        frame[column] = rng.uniform(-20, 20, len(frame))
    return frame


def test_logit_sum_model_is_the_sigmoid_of_the_summed_logits(table):
    scaler = MinMaxScaling(NAMES).fit(table.iloc[:200].to_numpy())
    model = train_default.logit_sum_model(scaler, NAMES, TrainConfig())
    p = predict_proba(model, scaler.transform(table.to_numpy()))
    z = table[LOGITS].to_numpy().sum(axis=1)
    inside = np.all((table[LOGITS] >= scaler.min_[[NAMES.index(c) for c in LOGITS]]).to_numpy()
                    & (table[LOGITS] <= scaler.max_[[NAMES.index(c) for c in LOGITS]]).to_numpy(), axis=1)
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


def test_shipped_model_adds_the_logits_of_its_test_rows():
    """The model in models/ is the logit-sum head: its p(singing) on the shipped test table is the sigmoid of
    the summed raw logits (features_raw.csv), and its metadata says so."""
    store = ModelStore(Path(__file__).resolve().parent.parent / "models")
    loaded = store.load()
    assert loaded.metadata["config"]["head"] == "logit-sum"
    tables = Path(store.root) / "tables"
    raw = pd.read_csv(tables / dataset.RAW_TABLE)
    test = raw[raw["split"] == "test"]
    p = loaded.predict_proba(test[NAMES].to_numpy(np.float32))[:, loaded.class_names.index("singing")]
    np.testing.assert_allclose(p, sigmoid(test[LOGITS].to_numpy(np.float64).sum(axis=1)), atol=1e-4)
