"""Build, train, tune, evaluate and predict with the dense classifier (its figures: :mod:`singtalk.model_plots`).

Works on generic feature tables: ``X`` is a float array ``(n_rows, n_features)``
already scaled (see :mod:`singtalk.scaling`), ``y`` holds class names (or
indices into ``class_names``). TensorFlow and Keras Tuner are imported inside
the functions, so ``import singtalk.model`` stays cheap.

Progress is reported to an optional callable receiving plain dict events, so a
UI thread can store them and draw live plots:

* ``{"kind": "start", "n_train", "n_val", "train_counts", "val_counts", "imbalance", "epochs"}``
* ``{"kind": "epoch", "epoch": i (1-based), "epochs": n, "loss", "accuracy", "val_loss", "val_accuracy", "elapsed_s"}``
  (during tuning also ``"trial"``: the 1-based trial number)
* ``{"kind": "trial", "trial": i, "trials": n, "trial_id", "hyperparameters", "score", "best_score", "status"}``
* ``{"kind": "end", "epochs_run", "best_epoch", "stopped_early", "cancelled", "elapsed_s"}``
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .errors import DatasetError, ModelError

ProgressCallback = Callable[[dict], None]
"""Receives one dict event at a time (see the module docstring)."""

OPTIMIZERS = ("adam", "rmsprop", "sgd")
IMBALANCE_MODES = ("class_weight", "smote", "none")
PREDICT_CHUNK = 1024
POSITIVE_CLASS = "singing"


# ---------------------------------------------------------------------------
# configuration and results
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run; ``to_dict`` is stored in model metadata."""

    hidden_units: tuple[int, ...] = (128, 64)
    dropout: float = 0.3
    l2: float = 1e-4
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 100
    patience: int = 10
    imbalance: str = "class_weight"
    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "hidden_units", tuple(int(u) for u in self.hidden_units))
        problems = []
        if not self.hidden_units or any(u < 1 for u in self.hidden_units):
            problems.append(f"hidden_units must be positive integers, got {self.hidden_units}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.l2 < 0:
            problems.append(f"l2 must be >= 0, got {self.l2}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1 or self.epochs < 1 or self.patience < 0:
            problems.append("batch_size and epochs must be >= 1, patience >= 0")
        if self.imbalance not in IMBALANCE_MODES:
            problems.append(f"imbalance must be one of {IMBALANCE_MODES}, got {self.imbalance!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            problems.append(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hidden_units"] = list(self.hidden_units)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


@dataclass
class TrainResult:
    """A trained model, its per-epoch history (lists of floats) and what happened."""

    model: Any
    history: dict[str, list[float]]
    config: TrainConfig
    class_names: list[str] = field(default_factory=list)
    epochs_run: int = 0
    best_epoch: int | None = None  # 1-based epoch whose weights the model holds
    stopped_early: bool = False
    cancelled: bool = False
    n_train: int = 0  # training rows after resampling
    n_val: int = 0
    train_counts: dict[str, int] = field(default_factory=dict)  # after resampling
    val_counts: dict[str, int] = field(default_factory=dict)
    validation_indices: np.ndarray | None = None  # rows of X_train used for validation (split mode)
    seconds: float = 0.0


@dataclass
class TuneResult:
    best_model: Any
    best_config: TrainConfig
    trials: list[dict]
    best_score: float | None = None
    objective: str = "val_loss"
    cancelled: bool = False


# ---------------------------------------------------------------------------
# TensorFlow plumbing
# ---------------------------------------------------------------------------
_TF_LOCK = threading.Lock()
_TF_CONFIGURED = False


def _tf():
    """Import TensorFlow once; ``$SINGTALK_TF_THREADS`` caps its thread pools."""
    global _TF_CONFIGURED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    with _TF_LOCK:
        if not _TF_CONFIGURED:
            _TF_CONFIGURED = True
            threads = int(os.environ.get("SINGTALK_TF_THREADS", "0") or 0)
            if threads > 0:
                try:
                    tf.config.threading.set_intra_op_parallelism_threads(threads)
                    tf.config.threading.set_inter_op_parallelism_threads(threads)
                except RuntimeError:  # runtime already initialised by someone else
                    pass
    return tf


def _seed_everything(seed: int) -> None:
    _tf().keras.utils.set_random_seed(int(seed))


def _make_optimizer(name: str, learning_rate: float):
    tf = _tf()
    if name == "adam":
        return tf.keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "rmsprop":
        return tf.keras.optimizers.RMSprop(learning_rate=learning_rate)
    if name == "sgd":
        return tf.keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}")


def build_model(n_features: int, n_classes: int, config: TrainConfig | None = None):
    """Dense ReLU layers with L2 and dropout, softmax over ``n_classes``; compiled."""
    config = config or TrainConfig()
    if n_features < 1 or n_classes < 2:
        raise ValueError(f"need >= 1 feature and >= 2 classes, got {n_features} and {n_classes}")
    tf = _tf()
    regularizer = tf.keras.regularizers.l2(config.l2) if config.l2 > 0 else None
    inputs = tf.keras.Input(shape=(n_features,), name="features")
    x = inputs
    for i, units in enumerate(config.hidden_units, start=1):
        x = tf.keras.layers.Dense(units, activation="relu", kernel_regularizer=regularizer, name=f"dense_{i}")(x)
        if config.dropout > 0:
            x = tf.keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    outputs = tf.keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    model = tf.keras.Model(inputs, outputs, name="singtalk_classifier")
    model.compile(
        optimizer=_make_optimizer(config.optimizer, config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def average_models(models: Sequence, config: TrainConfig | None = None):
    """One compiled model whose output is the mean of ``models``' class probabilities (a seed ensemble).

    The models must be chains over the same input, as :func:`build_model` makes them. Tower ``k``'s
    layers are renamed ``tower{k}_<name>`` and keep their weights; the output is an ``Average`` layer
    named ``probabilities``. Saved, loaded and fine-tuned like any single model.
    """
    if len(models) < 2:
        raise ValueError("average_models needs at least two models")
    config = config or TrainConfig()
    tf = _tf()
    inputs = tf.keras.Input(shape=tuple(models[0].inputs[0].shape[1:]), name="features")
    outputs = []
    for k, member in enumerate(models, start=1):
        x = inputs
        for layer in member.layers:
            if isinstance(layer, tf.keras.layers.InputLayer):
                continue
            settings = layer.get_config()
            settings["name"] = f"tower{k}_{layer.name}"
            clone = layer.__class__.from_config(settings)
            x = clone(x)
            clone.set_weights(layer.get_weights())
        outputs.append(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Average(name="probabilities")(outputs), name="singtalk_classifier")
    model.compile(optimizer=_make_optimizer(config.optimizer, config.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def towers(model) -> list[list]:
    """The layer chains of ``model`` from its input to each output Dense: one for a single network,
    one per member for :func:`average_models` (grouped by their ``tower{k}_`` names)."""
    import re

    tf = _tf()
    body = [layer for layer in model.layers
            if not isinstance(layer, (tf.keras.layers.InputLayer, tf.keras.layers.Average))]
    numbers = sorted({int(m.group(1)) for layer in body if (m := re.match(r"tower(\d+)_", layer.name))})
    if not numbers:
        return [body]
    return [[layer for layer in body if layer.name.startswith(f"tower{n}_")] for n in numbers]


def _keras_callbacks(
    *,
    epochs: int,
    patience: int,
    monitor: str,
    progress: ProgressCallback | None,
    stop_event: threading.Event | None,
    context: dict | None = None,
) -> list:
    """Early stopping (best weights restored even without an early stop), progress and cancel adapters."""
    tf = _tf()

    class BestWeightsEarlyStopping(tf.keras.callbacks.EarlyStopping):
        def on_train_end(self, logs=None):
            super().on_train_end(logs)
            # Keras 2.12 restores only when it stopped early: also do it at the last epoch / on cancel.
            if self.stopped_epoch == 0 and self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    class SharedRefs(tf.keras.callbacks.Callback):
        # Keras Tuner deep-copies callbacks; the listener and the event must stay shared.
        def __deepcopy__(self, memo):
            clone = copy.copy(self)
            clone.__dict__ = dict(self.__dict__)
            return clone

    class ProgressAdapter(SharedRefs):
        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            event = {"kind": "epoch", "epoch": epoch + 1, "epochs": epochs}
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                event[key] = float(logs[key]) if key in logs else None
            event["elapsed_s"] = time.perf_counter() - self.started
            if context:
                event.update(context)
            progress(event)

    class StopAdapter(SharedRefs):
        stopped = False

        def _check(self):
            if stop_event.is_set():
                self.stopped = True
                self.model.stop_training = True

        def on_train_batch_end(self, batch, logs=None):
            self._check()

        def on_epoch_end(self, epoch, logs=None):
            self._check()

    callbacks = [BestWeightsEarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True)]
    if progress is not None:
        callbacks.append(ProgressAdapter())
    if stop_event is not None:
        callbacks.append(StopAdapter())
    return callbacks


# ---------------------------------------------------------------------------
# data preparation
# ---------------------------------------------------------------------------
def as_matrix(X) -> np.ndarray:
    """A float32 2-D array from an array or DataFrame; refuses NaN/inf."""
    values = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X, dtype=np.float32)
    if values.ndim != 2:
        raise DatasetError(f"Features must be a 2-D table, got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise DatasetError("Features contain NaN or infinite values.")
    return values


def encode_labels(y, class_names: Sequence[str]) -> np.ndarray:
    """Class indices (int64) from class names or indices; unknown labels raise DatasetError."""
    values = np.asarray(y)
    n = len(class_names)
    if values.dtype.kind in "iu":
        if values.size and (values.min() < 0 or values.max() >= n):
            raise DatasetError(f"Label indices must lie in [0, {n}), got {values.min()}..{values.max()}.")
        return values.astype(np.int64)
    lookup = {str(name): i for i, name in enumerate(class_names)}
    unknown = sorted({str(v) for v in values.tolist()} - set(lookup))
    if unknown:
        raise DatasetError(f"Unknown label(s) {unknown[:5]}; expected one of {list(class_names)}.")
    return np.array([lookup[str(v)] for v in values.tolist()], dtype=np.int64)


def class_counts(y_idx: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(y_idx, dtype=np.int64), minlength=len(class_names))
    return {str(name): int(counts[i]) for i, name in enumerate(class_names)}


def class_weights(y_idx: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced weights ``n_rows / (n_present_classes * count)``; absent classes get 1.0.

    Same values as ``sklearn.utils.class_weight.compute_class_weight("balanced")``.
    """
    counts = np.bincount(np.asarray(y_idx, dtype=np.int64), minlength=n_classes)
    present = int((counts > 0).sum())
    total = int(counts.sum())
    return {i: (total / (present * int(c)) if c else 1.0) for i, c in enumerate(counts)}


def oversample_smote(X: np.ndarray, y_idx: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE on (training) rows; falls back to random oversampling when a class has < 2 rows."""
    from imblearn.over_sampling import SMOTE, RandomOverSampler

    counts = np.bincount(y_idx)
    present = counts[counts > 0]
    if len(present) < 2:
        return X, y_idx
    smallest = int(present.min())
    if smallest >= 2:
        sampler = SMOTE(k_neighbors=min(5, smallest - 1), random_state=seed)
    else:
        sampler = RandomOverSampler(random_state=seed)
    X_res, y_res = sampler.fit_resample(X, y_idx)
    return np.asarray(X_res, dtype=np.float32), np.asarray(y_res, dtype=np.int64)


def validation_split(
    y_idx: np.ndarray, *, groups=None, fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, validation)``; no group (speaker) is on both sides.

    With groups: one fold of a shuffled StratifiedGroupKFold (≈ ``fraction`` of
    the rows, classes balanced as far as groups allow), or a GroupShuffleSplit
    when there are too few groups. Without groups: a stratified row split.
    """
    from sklearn.model_selection import (
        GroupShuffleSplit,
        ShuffleSplit,
        StratifiedGroupKFold,
        StratifiedShuffleSplit,
    )

    y_idx = np.asarray(y_idx)
    rows = np.arange(len(y_idx))
    if fraction <= 0 or len(rows) < 2:
        return rows, rows[:0]
    if groups is not None:
        groups = np.asarray(groups)
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise DatasetError("A speaker-disjoint validation split needs at least two speakers (groups).")
        n_splits = max(2, int(round(1.0 / fraction)))
        if n_groups >= n_splits:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            train_rows, val_rows = next(splitter.split(rows, y_idx, groups))
        else:
            splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
            train_rows, val_rows = next(splitter.split(rows, y_idx, groups))
        return np.sort(train_rows), np.sort(val_rows)
    try:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        train_rows, val_rows = next(splitter.split(rows, y_idx))
    except ValueError:  # a class too small to stratify
        splitter = ShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        train_rows, val_rows = next(splitter.split(rows))
    return np.sort(train_rows), np.sort(val_rows)


def _prepare(X_train, y_train, class_names, config, X_val, y_val, groups):
    """Split off validation rows, then rebalance the training rows only."""
    X = as_matrix(X_train)
    y = encode_labels(y_train, class_names)
    if len(X) != len(y):
        raise DatasetError(f"{len(X)} feature rows but {len(y)} labels.")
    if len(X) == 0:
        raise DatasetError("No training rows.")
    val_rows = None
    if X_val is not None:
        Xv, yv = as_matrix(X_val), encode_labels(y_val, class_names)
        Xt, yt = X, y
    else:
        train_rows, val_rows = validation_split(y, groups=groups, fraction=config.validation_fraction, seed=config.seed)
        Xt, yt = X[train_rows], y[train_rows]
        Xv, yv = (X[val_rows], y[val_rows]) if len(val_rows) else (None, None)
    weights = None
    if config.imbalance == "smote":
        Xt, yt = oversample_smote(Xt, yt, seed=config.seed)
    elif config.imbalance == "class_weight":
        weights = class_weights(yt, len(class_names))
    return Xt, yt, Xv, yv, weights, val_rows


def _emit(progress, event):
    if progress is not None:
        progress(event)


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------
def train(
    X_train,
    y_train,
    class_names: Sequence[str],
    config: TrainConfig | None = None,
    *,
    X_val=None,
    y_val=None,
    groups=None,
    progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Train a fresh model, reproducibly for a given ``config.seed``.

    Validation rows are ``X_val``/``y_val`` when given, else a split of the
    training rows (speaker-disjoint when ``groups`` is given). SMOTE or class
    weights touch the training rows only. Early stopping watches ``val_loss``
    (``loss`` without validation) and the best epoch's weights are kept, also
    when the last epoch is reached. When ``stop_event`` is set, training ends
    after the current batch, the result has ``cancelled=True`` and the model
    holds the best weights seen so far.
    """
    config = config or TrainConfig()
    class_names = [str(c) for c in class_names]
    started = time.perf_counter()
    Xt, yt, Xv, yv, weights, val_rows = _prepare(X_train, y_train, class_names, config, X_val, y_val, groups)
    has_val = Xv is not None and len(Xv) > 0

    _seed_everything(config.seed)
    model = build_model(Xt.shape[1], len(class_names), config)
    train_counts, val_counts = class_counts(yt, class_names), (class_counts(yv, class_names) if has_val else {})
    _emit(progress, {
        "kind": "start", "n_train": int(len(Xt)), "n_val": int(len(Xv)) if has_val else 0,
        "train_counts": train_counts, "val_counts": val_counts,
        "imbalance": config.imbalance, "epochs": config.epochs,
    })
    callbacks = _keras_callbacks(
        epochs=config.epochs, patience=config.patience, monitor="val_loss" if has_val else "loss",
        progress=progress, stop_event=stop_event,
    )
    fitted = model.fit(
        Xt, yt,
        validation_data=(Xv, yv) if has_val else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=weights,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    early = callbacks[0]
    history = {key: [float(v) for v in values] for key, values in fitted.history.items()}
    cancelled = any(getattr(cb, "stopped", False) for cb in callbacks)
    epochs_run = len(history.get("loss", []))
    result = TrainResult(
        model=model,
        history=history,
        config=config,
        class_names=class_names,
        epochs_run=epochs_run,
        best_epoch=(early.best_epoch + 1) if early.best_weights is not None else None,
        stopped_early=bool(early.stopped_epoch > 0),
        cancelled=cancelled,
        n_train=int(len(Xt)),
        n_val=int(len(Xv)) if has_val else 0,
        train_counts=train_counts,
        val_counts=val_counts,
        validation_indices=val_rows,
        seconds=time.perf_counter() - started,
    )
    _emit(progress, {
        "kind": "end", "epochs_run": epochs_run, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early, "cancelled": cancelled, "elapsed_s": result.seconds,
    })
    return result


# ---------------------------------------------------------------------------
# prediction and evaluation
# ---------------------------------------------------------------------------
def predict_proba(model, X) -> np.ndarray:
    """Class probabilities ``(n_rows, n_classes)``; calls the model directly, in chunks of 1024 rows."""
    values = as_matrix(X)
    n_classes = int(model.outputs[0].shape[-1])
    if len(values) == 0:
        return np.zeros((0, n_classes), dtype=np.float32)
    parts = [
        np.asarray(model(values[start:start + PREDICT_CHUNK], training=False))
        for start in range(0, len(values), PREDICT_CHUNK)
    ]
    return np.concatenate(parts, axis=0)


def positive_index(class_names: Sequence[str]) -> int:
    """The class whose probability is the binary score: "singing" if present, else the last."""
    names = [str(c) for c in class_names]
    return names.index(POSITIVE_CLASS) if POSITIVE_CLASS in names else len(names) - 1


def evaluate(model, X, y, class_names: Sequence[str], *, sources=None, proba: np.ndarray | None = None) -> dict:
    """Accuracy, balanced accuracy, confusion matrix, ROC AUC, per-class recall, per-source accuracy.

    ``confusion_matrix[i][j]`` counts rows of true class ``labels[i]`` predicted as ``labels[j]``.
    ``roc_auc`` is None when it is undefined (a single class present).
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

    class_names = [str(c) for c in class_names]
    y_idx = encode_labels(y, class_names)
    proba = predict_proba(model, X) if proba is None else np.asarray(proba)
    if len(proba) != len(y_idx):
        raise DatasetError(f"{len(proba)} predictions but {len(y_idx)} labels.")
    n = int(len(y_idx))
    pred = proba.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    labels = list(range(len(class_names)))
    result: dict[str, Any] = {
        "n": n,
        "labels": class_names,
        "accuracy": float((pred == y_idx).mean()) if n else None,
        "balanced_accuracy": float(balanced_accuracy_score(y_idx, pred)) if n else None,
        "confusion_matrix": confusion_matrix(y_idx, pred, labels=labels).tolist() if n else
        [[0] * len(labels) for _ in labels],
        "roc_auc": None,
        "per_class_recall": {},
    }
    for i, name in enumerate(class_names):
        mask = y_idx == i
        result["per_class_recall"][name] = float((pred[mask] == i).mean()) if mask.any() else None
    present = np.unique(y_idx)
    if len(present) >= 2:
        try:
            if len(class_names) == 2:
                pos = positive_index(class_names)
                result["positive_class"] = class_names[pos]
                result["roc_auc"] = float(roc_auc_score(y_idx == pos, proba[:, pos]))
            else:
                result["roc_auc"] = float(roc_auc_score(y_idx, proba, multi_class="ovr", average="macro", labels=labels))
        except ValueError:
            result["roc_auc"] = None
    if sources is not None:
        sources = np.asarray([str(s) for s in sources])
        if len(sources) != n:
            raise DatasetError(f"{len(sources)} sources but {n} rows.")
        result["per_source"] = {
            src: {"n": int((sources == src).sum()), "accuracy": float((pred[sources == src] == y_idx[sources == src]).mean())}
            for src in sorted(set(sources.tolist()))
        }
    return result


# ---------------------------------------------------------------------------
# tuning
# ---------------------------------------------------------------------------
UNIT_CHOICES = (32, 64, 128, 256)


def _config_from_hp(values: dict, base: TrainConfig) -> TrainConfig:
    n_layers = int(values["n_layers"])
    return base.replace(
        hidden_units=tuple(int(values[f"units_{i}"]) for i in range(1, n_layers + 1)),
        dropout=float(values["dropout"]),
        learning_rate=float(values["learning_rate"]),
        optimizer=str(values["optimizer"]),
    )


def _active_hp(values: dict) -> dict:
    n_layers = int(values["n_layers"])
    return {
        k: (v.item() if hasattr(v, "item") else v)
        for k, v in values.items()
        if not (k.startswith("units_") and int(k.split("_")[1]) > n_layers)
    }


def tune(
    X,
    y,
    class_names: Sequence[str],
    *,
    directory: str | os.PathLike,
    groups=None,
    X_val=None,
    y_val=None,
    base_config: TrainConfig | None = None,
    max_trials: int = 10,
    executions_per_trial: int = 1,
    project_name: str = "singtalk_tune",
    progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
    seed: int = 0,
) -> TuneResult:
    """Random search over layers (1–3), units, dropout, learning rate (log) and optimizer.

    Validation rows are fixed for all trials (split like :func:`train`);
    ``base_config`` supplies epochs, patience, batch size, L2 and the imbalance
    handling. Trials are scored by ``val_loss``. Setting ``stop_event`` ends the
    current trial after its batch and starts no new one.
    """
    import keras_tuner as kt

    base = (base_config or TrainConfig()).replace(seed=seed)
    class_names = [str(c) for c in class_names]
    Xt, yt, Xv, yv, weights, _ = _prepare(X, y, class_names, base, X_val, y_val, groups)
    has_val = Xv is not None and len(Xv) > 0
    objective = "val_loss" if has_val else "loss"
    n_features, n_classes = Xt.shape[1], len(class_names)

    def build(hp):
        n_layers = hp.Int("n_layers", 1, 3)
        values = {"n_layers": n_layers}
        for i in range(1, n_layers + 1):
            values[f"units_{i}"] = hp.Choice(f"units_{i}", list(UNIT_CHOICES))
        values["dropout"] = hp.Float("dropout", 0.0, 0.5, step=0.1)
        values["learning_rate"] = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
        values["optimizer"] = hp.Choice("optimizer", list(OPTIMIZERS))
        return build_model(n_features, n_classes, _config_from_hp(values, base))

    context: dict[str, Any] = {}

    class Search(kt.RandomSearch):
        def pre_create_trial(self):
            if stop_event is not None and stop_event.is_set():
                self.oracle.max_trials = len(self.oracle.trials)  # the oracle answers STOPPED

        def on_trial_begin(self, trial):
            super().on_trial_begin(trial)
            context["trial"] = len(self.oracle.trials)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            best = self.oracle.get_best_trials(1)
            _emit(progress, {
                "kind": "trial",
                "trial": context.get("trial"),
                "trials": max_trials,
                "trial_id": trial.trial_id,
                "hyperparameters": _active_hp(trial.hyperparameters.values),
                "score": None if trial.score is None else float(trial.score),
                "best_score": float(best[0].score) if best and best[0].score is not None else None,
                "status": str(trial.status),
            })

    _seed_everything(seed)
    tuner = Search(
        build,
        objective=kt.Objective(objective, direction="min"),
        max_trials=max_trials,
        executions_per_trial=executions_per_trial,
        seed=seed,
        directory=str(directory),
        project_name=project_name,
        overwrite=True,
    )
    callbacks = _keras_callbacks(
        epochs=base.epochs, patience=base.patience, monitor=objective,
        progress=progress, stop_event=stop_event, context=context,
    )
    tuner.search(
        Xt, yt,
        validation_data=(Xv, yv) if has_val else None,
        epochs=base.epochs,
        batch_size=base.batch_size,
        class_weight=weights,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    trials = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        trials.append({
            "trial_id": trial.trial_id,
            "hyperparameters": _active_hp(trial.hyperparameters.values),
            "score": None if trial.score is None else float(trial.score),
            "best_step": int(trial.best_step) if trial.best_step is not None else None,
            "status": str(trial.status),
        })
    scored = [t for t in trials if t["score"] is not None]
    if not scored:
        messages = [t.message for t in tuner.oracle.trials.values() if getattr(t, "message", None)]
        raise ModelError("No tuning trial finished. " + (messages[0].strip().splitlines()[-1] if messages else ""))
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best_model = tuner.get_best_models(1)[0]
    return TuneResult(
        best_model=best_model,
        best_config=_config_from_hp(best_trial.hyperparameters.values, base),
        trials=trials,
        best_score=float(best_trial.score),
        objective=objective,
        cancelled=bool(stop_event is not None and stop_event.is_set()),
    )
