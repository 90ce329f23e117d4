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
    return _best_temperature(lambda t: log_loss(with_temperature(net, t)(X), y))


def scale_probabilities(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``proba ** (1 / T)`` renormalised: for a softmax output exactly the softmax of the logits / T, so the
    temperature of :func:`with_temperature` applied to answers already given (rows of ``proba``)."""
    if temperature <= 0:
        raise ValueError(f"a temperature must be positive, got {temperature}")
    logp = np.log(np.maximum(np.asarray(proba, dtype=np.float64), 1e-300)) / temperature
    scaled = np.exp(logp - logp.max(axis=1, keepdims=True))
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit_temperature_to_answers(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the log loss of answers already given (:func:`scale_probabilities`)."""
    return _best_temperature(lambda t: log_loss(scale_probabilities(proba, t), y))


def _best_temperature(loss) -> float:
    from scipy.optimize import minimize_scalar

    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    found = minimize_scalar(lambda log_t: loss(float(np.exp(log_t))), bounds=(lo, hi), method="bounded",
                            options={"xatol": 1e-4})
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


@dataclass
class GroupCalibration:
    """Calibration figures for the answers given on one left-out group (e.g. a corpus never trained on)."""

    group: str
    n: int
    accuracy: float
    mean_confidence: float
    ece_before: float
    ece_after: float
    temperature: float
    """Fitted on every other group's answers, applied to this group's (``ece_after``)."""


@dataclass
class LeftOutReport:
    """ECE of answers on groups left out of training, before and after a temperature; ``*_after`` figures are
    cross-fitted: each group is scaled by the temperature fitted on the other groups' answers only."""

    temperature: float
    """Fitted on every group's answers (what would ship)."""
    n: int
    accuracy: float
    ece_before: float
    ece_after: float
    log_loss_before: float
    log_loss_after: float
    groups: list

    def to_dict(self) -> dict:
        rounded = {key: (round(value, 4) if isinstance(value, float) else value) for key, value in self.__dict__.items()}
        rounded["groups"] = [{k: round(v, 4) if isinstance(v, float) else v for k, v in g.__dict__.items()}
                             for g in self.groups]
        return rounded


def cross_fitted_by_group(proba: np.ndarray, y: np.ndarray, groups: np.ndarray) -> LeftOutReport:
    """Temperature scaling of answers ``proba`` (rows given by models that never trained on the row's group,
    e.g. leave-one-corpus-out) judged the same way: for each group, a temperature fitted on all the other
    groups' answers is applied to this group's, so the "after" figures say what a temperature would do on a
    corpus never heard."""
    proba, y, groups = np.asarray(proba, dtype=np.float64), np.asarray(y), np.asarray(groups)
    after = np.zeros_like(proba)
    rows = []
    for group in sorted(set(groups.tolist())):
        inside = groups == group
        t = fit_temperature_to_answers(proba[~inside], y[~inside]) if (~inside).any() else 1.0
        after[inside] = scale_probabilities(proba[inside], t)
        rows.append(GroupCalibration(
            group=str(group), n=int(inside.sum()), accuracy=float((proba[inside].argmax(1) == y[inside]).mean()),
            mean_confidence=float(proba[inside].max(1).mean()),
            ece_before=expected_calibration_error(proba[inside], y[inside]),
            ece_after=expected_calibration_error(after[inside], y[inside]), temperature=round(t, 4)))
    return LeftOutReport(
        temperature=fit_temperature_to_answers(proba, y), n=len(y), accuracy=float((proba.argmax(1) == y).mean()),
        ece_before=expected_calibration_error(proba, y), ece_after=expected_calibration_error(after, y),
        log_loss_before=log_loss(proba, y), log_loss_after=log_loss(after, y), groups=rows)
