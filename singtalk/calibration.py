"""Confidence that means what it says: expected calibration error and temperature scaling.

A network trained to a low loss answers "100 %" for nearly everything. Temperature scaling (Guo et al.,
2017) divides the logits before the softmax by one number ``T`` fitted to minimise the log loss on
predictions the network did not train on; the answer (the arg max) is unchanged, only its confidence moves.
The temperature is folded into the weights of the output layer (kernel and bias divided by ``T``), so the
calibrated network is an ordinary network: saved, exported to NumPy and served like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .numpy_net import Dense, NumpyNet

ECE_BINS = 15
T_RANGE = (0.05, 20.0)


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """Top-label ECE: the mean gap between confidence and accuracy over equal-width confidence bins,
    weighted by the share of rows in each bin (Naeini et al., 2015; Guo et al., 2017)."""
    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y)
    if len(proba) == 0:
        return float("nan")
    confidence, right = proba.max(axis=1), proba.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(confidence[inside].mean() - right[inside].mean())
    return float(gap)


def log_loss(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (probabilities floored at 1e-12)."""
    picked = np.asarray(proba, dtype=np.float64)[np.arange(len(y)), np.asarray(y)]
    return float(-np.mean(np.log(np.maximum(picked, 1e-12))))


def with_temperature(net: NumpyNet, temperature: float) -> NumpyNet:
    """``net`` with every tower's output layer divided by ``temperature`` (its softmax made softer for T > 1)."""
    if temperature <= 0:
        raise ValueError(f"a temperature must be positive, got {temperature}")
    towers = []
    for tower in net.towers:
        last = tower[-1]
        if last.activation != "softmax":
            raise ValueError(f"the output layer's activation is {last.activation!r}, not softmax")
        scaled = Dense((last.kernel / temperature).astype(np.float32), (last.bias / temperature).astype(np.float32),
                       last.activation)
        towers.append((*tower[:-1], scaled))
    return replace(net, towers=tuple(towers))


def fit_temperature(net: NumpyNet, X: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the log loss of ``net`` on scaled rows ``X`` with class indices ``y``."""
    from scipy.optimize import minimize_scalar

    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    found = minimize_scalar(lambda log_t: log_loss(with_temperature(net, float(np.exp(log_t)))(X), y),
                            bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


@dataclass
class CalibrationReport:
    """Before/after figures of temperature scaling; ``*_after`` are cross-fitted (see :func:`cross_fitted`)."""

    temperature: float
    n: int
    n_groups: int
    folds: int
    ece_before: float
    ece_after: float
    log_loss_before: float
    log_loss_after: float
    share_over_99_before: float
    share_over_99_after: float
    accuracy: float
    fold_temperatures: list

    def to_dict(self) -> dict:
        return {key: (round(value, 4) if isinstance(value, float) else value) for key, value in self.__dict__.items()}


def cross_fitted(net: NumpyNet, X: np.ndarray, y: np.ndarray, groups: np.ndarray, *, folds: int = 5,
                 seed: int = 0) -> CalibrationReport:
    """Fit the temperature on all rows; measure it honestly by fitting on ``folds - 1`` parts of the
    speaker groups and scoring the part left out, for each part in turn."""
    from sklearn.model_selection import GroupKFold

    y, groups = np.asarray(y), np.asarray(groups)
    order = np.random.default_rng(seed).permutation(len(y))  # GroupKFold is deterministic: shuffle the rows
    X, y, groups = np.asarray(X)[order], y[order], groups[order]
    before = net(X)
    after = np.zeros_like(before)
    temperatures = []
    for fit_rows, held_rows in GroupKFold(n_splits=folds).split(X, y, groups):
        t = fit_temperature(net, X[fit_rows], y[fit_rows])
        temperatures.append(round(t, 4))
        after[held_rows] = with_temperature(net, t)(X[held_rows])
    return CalibrationReport(
        temperature=fit_temperature(net, X, y), n=len(y), n_groups=len(set(groups)), folds=folds,
        ece_before=expected_calibration_error(before, y), ece_after=expected_calibration_error(after, y),
        log_loss_before=log_loss(before, y), log_loss_after=log_loss(after, y),
        share_over_99_before=float((before.max(axis=1) >= 0.99).mean()),
        share_over_99_after=float((after.max(axis=1) >= 0.99).mean()),
        accuracy=float((before.argmax(axis=1) == y).mean()), fold_temperatures=temperatures,
    )


def scale_keras_output(model, temperature: float):
    """A copy of the Keras ``model`` with each tower's output Dense divided by ``temperature``."""
    from .model import _tf, towers

    tf = _tf()
    copy = tf.keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for chain in towers(copy):
        last = [layer for layer in chain if isinstance(layer, tf.keras.layers.Dense)][-1]
        kernel, *bias = last.get_weights()
        last.set_weights([kernel / temperature, *(b / temperature for b in bias)])
    return copy
