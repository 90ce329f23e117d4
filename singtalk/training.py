"""Feature tables → trained, evaluated model → model store.

Shared by ``singtalk train``/``tune``, the app's Training page and the script
that builds the shipped model: read the scaled tables and their scaler, train
(or tune), evaluate on the test table, save with metrics and history.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from . import dataset
from .errors import DatasetError


@dataclass
class Tables:
    """Scaled train/test tables with their scaler."""

    train: pd.DataFrame
    test: pd.DataFrame
    scaler: Any
    feature_names: list[str]
    folder: Path | None = None

    @property
    def class_names(self) -> list[str]:
        return sorted(set(self.train["label"]) | set(self.test["label"]))

    def X(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[self.feature_names].to_numpy(dtype=np.float32)


def load_tables(folder: str | Path) -> Tables:
    """Read ``train_features_scaled.csv``, ``test_features_scaled.csv`` and ``scaler.json`` from ``folder``."""
    from .scaling import MinMaxScaling

    folder = Path(folder)
    scaler_path = folder / dataset.SCALER_FILE
    if not scaler_path.is_file():
        raise DatasetError(f"No {dataset.SCALER_FILE} in {folder}: build the tables with `singtalk features` first.")
    scaler = MinMaxScaling.load(scaler_path)
    names = list(scaler.feature_names)
    train = dataset.load_table(folder / dataset.TRAIN_TABLE, feature_names=names)
    test = dataset.load_table(folder / dataset.TEST_TABLE, feature_names=names)
    if train["label"].nunique() < 2:
        raise DatasetError(f"The training table of {folder} has fewer than two classes.")
    return Tables(train, test, scaler, names, folder)


@dataclass
class Outcome:
    """A trained model with its evaluation, ready to save."""

    model: Any
    tables: Tables
    config: Any
    history: dict
    metrics: dict
    class_names: list[str]
    trials: list = field(default_factory=list)
    cancelled: bool = False


def evaluate_on(model, tables: Tables, frame: pd.DataFrame, class_names) -> dict:
    from .model import evaluate

    if frame.empty:
        return {"n": 0}
    return evaluate(model, tables.X(frame), frame["label"].to_numpy(), class_names, sources=frame["source"].to_numpy())


def train_tables(tables: Tables, config=None, *, progress: Callable[[dict], None] | None = None,
                 stop_event: threading.Event | None = None) -> Outcome:
    """Train on the train table (validation split grouped by speaker) and evaluate on the test table."""
    from .model import TrainConfig, train

    config = config or TrainConfig()
    class_names = tables.class_names
    groups = dataset.speaker_groups(tables.train)
    result = train(tables.X(tables.train), tables.train["label"].to_numpy(), class_names, config,
                   groups=groups, progress=progress, stop_event=stop_event)
    metrics = {"test": evaluate_on(result.model, tables, tables.test, class_names),
               "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1)}
    return Outcome(result.model, tables, result.config, result.history, metrics, class_names,
                   cancelled=result.cancelled)


def tune_tables(tables: Tables, *, max_trials: int, directory: str | Path, base_config=None,
                progress: Callable[[dict], None] | None = None, stop_event: threading.Event | None = None,
                seed: int = 0) -> Outcome:
    """Keras Tuner search on the train table; the best model is evaluated on the test table."""
    from .model import tune

    class_names = tables.class_names
    result = tune(tables.X(tables.train), tables.train["label"].to_numpy(), class_names, directory=directory,
                  groups=dataset.speaker_groups(tables.train), base_config=base_config, max_trials=max_trials,
                  progress=progress, stop_event=stop_event, seed=seed)
    metrics = {"test": evaluate_on(result.best_model, tables, tables.test, class_names),
               "tuning": {"objective": result.objective, "best_score": result.best_score,
                          "trials": len(result.trials)}}
    return Outcome(result.best_model, tables, result.best_config, {}, metrics, class_names,
                   trials=result.trials, cancelled=result.cancelled)


def headline(metrics: dict) -> str:
    """``'test balanced accuracy 0.987, ROC-AUC 0.999 (n=412)'``."""
    test = metrics.get("test", {})
    if not test.get("n"):
        return "no test rows"
    auc = test.get("roc_auc")
    return (f"test balanced accuracy {test['balanced_accuracy']:.3f}, accuracy {test['accuracy']:.3f}"
            f"{'' if auc is None else f', ROC-AUC {auc:.3f}'} (n={test['n']})")


def run_fraction(event: dict, trials: int | None = None) -> float:
    """How far a run is at an ``epoch`` event, 0 to 1, counting every epoch allowed (early stopping ends sooner);
    with ``trials``, over the whole search (the event's ``trial`` is 1-based)."""
    fraction = event["epoch"] / max(event["epochs"], 1)
    if trials and event.get("trial"):
        fraction = (event["trial"] - 1 + fraction) / trials
    return min(max(fraction, 0.0), 1.0)


def time_left(events: list[dict], trials: int | None = None) -> float | None:
    """Seconds left at most, from the pace of the epochs so far (their ``t``: seconds since the job
    started); None before two epochs."""
    epochs = [e for e in events if e.get("kind") == "epoch" and e.get("t") is not None]
    if len(epochs) < 2:
        return None
    first, last = epochs[0], epochs[-1]
    done = run_fraction(last, trials) - run_fraction(first, trials)
    if done <= 0:
        return None
    return (last["t"] - first["t"]) / done * (1.0 - run_fraction(last, trials))


def save_outcome(store, outcome: Outcome, *, promote: bool, note: str = "", trained_on: dict | None = None,
                 extra_metadata: dict | None = None) -> str:
    """Save the model in the store (atomic; the previous version stays as backup) with metrics and plots."""
    from .features import FEATURE_VERSION
    from .model_plots import plot_history
    from .registry import make_metadata

    tables = outcome.tables
    described = trained_on or {
        "tables": str(tables.folder) if tables.folder else "",
        "train_rows": int(len(tables.train)), "test_rows": int(len(tables.test)),
        "train_counts": tables.train["label"].value_counts().to_dict(),
        "sources": sorted(set(tables.train["source"])),
    }
    config = outcome.config.to_dict() if hasattr(outcome.config, "to_dict") else dict(outcome.config or {})
    metadata = make_metadata(feature_version=FEATURE_VERSION, feature_names=tables.feature_names,
                             class_names=outcome.class_names, metrics=outcome.metrics, trained_on=described,
                             config=config, history=outcome.history, trials=outcome.trials,
                             **(extra_metadata or {}))
    extra = {"history.html": plot_history(outcome.history).to_html(include_plotlyjs="cdn", full_html=True)} \
        if outcome.history else {}
    return store.save(outcome.model, tables.scaler, metadata, promote=promote, note=note, extra_files=extra)
