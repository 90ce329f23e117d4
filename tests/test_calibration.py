"""Confidence that means what it says: the calibration error measure, the temperature fit, the shipped model."""

from __future__ import annotations

import sys

import numpy as np

from singtalk import calibration
from singtalk.config import REPO_ROOT, models_dir
from singtalk.numpy_net import Dense, NumpyNet
from singtalk.registry import ModelStore

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import calibrate  # noqa: E402

ECE_BOUND = 0.03
"""The shipped model's expected calibration error on speakers it never heard (README's model card)."""


def test_calibration_error_is_small_for_honest_confidence_and_large_for_overconfidence():
    rng = np.random.default_rng(0)
    n = 20000
    confidence = rng.uniform(0.34, 1.0, n)
    right = rng.uniform(size=n) < confidence
    y = np.where(right, 0, 1)
    proba = np.column_stack([confidence, (1 - confidence) / 2, (1 - confidence) / 2])
    assert calibration.expected_calibration_error(proba, y) < 0.02
    sure = np.tile([0.99, 0.005, 0.005], (n, 1))
    y_sure = np.where(rng.uniform(size=n) < 0.7, 0, 2)
    assert abs(calibration.expected_calibration_error(sure, y_sure) - 0.29) < 0.02


def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with():
    rng = np.random.default_rng(1)
    net = NumpyNet(((Dense(rng.normal(0, 3, (5, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax"),),))
    X = rng.normal(size=(20000, 5)).astype(np.float32)
    truth = calibration.with_temperature(net, 2.0)(X)
    y = np.array([rng.choice(3, p=p / p.sum()) for p in truth.astype(np.float64)])
    assert abs(calibration.fit_temperature(net, X, y) - 2.0) < 0.15
    assert np.array_equal(calibration.with_temperature(net, 2.0)(X).argmax(1), net(X).argmax(1))


def test_shipped_model_is_calibrated_on_speakers_it_never_heard():
    """ECE within the stated bound before any scaling, and a fitted temperature near 1: scaling would
    change nothing (the decision recorded in docs/model.md). The Keras and NumPy scalings agree."""
    store = ModelStore(models_dir())
    loaded, report, (X, y, _) = calibrate.calibrate(store)
    assert report.n > 500 and report.n_groups > 50
    assert report.ece_before <= ECE_BOUND, calibrate.markdown(report, loaded.version)
    assert 0.8 <= report.temperature <= 1.25
    scaled = calibration.scale_keras_output(loaded.model, 1.7)
    np.testing.assert_allclose(np.asarray(scaled(X[:50], training=False)),
                               calibration.with_temperature(loaded.net, 1.7)(X[:50]), atol=1e-5)
