"""Model training, tuning, evaluation and prediction on small synthetic feature tables (real TensorFlow)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("SINGTALK_TF_THREADS", "2")

from singtalk import model as M  # noqa: E402
from singtalk import model_plots as P  # noqa: E402
from singtalk.errors import DatasetError  # noqa: E402

CLASSES = ["singing", "talking"]
FEATURES = [f"feat_{i}" for i in range(6)]
FAST = M.TrainConfig(hidden_units=(32, 16), dropout=0.1, epochs=40, patience=8, batch_size=32, seed=3)


def feature_table(n: int = 400, *, singing_share: float = 0.5, seed: int = 0, n_speakers: int = 20) -> pd.DataFrame:
    """A table in the dataset builder's format: path,label,speaker,source + scaled features.

    Two informative features separate the classes; the others are noise.
    """
    rng = np.random.default_rng(seed)
    singing = rng.random(n) < singing_share
    X = rng.normal(0.5, 0.15, (n, len(FEATURES)))
    X[:, 0] += np.where(singing, 0.25, -0.25)
    X[:, 1] -= np.where(singing, 0.2, -0.2)
    X = np.clip(X, 0, 1)
    frame = pd.DataFrame({
        "path": [f"clip_{i}.flac" for i in range(n)],
        "label": np.where(singing, "singing", "talking"),
        "speaker": [f"spk{i % n_speakers}" for i in range(n)],
        "source": np.where(np.arange(n) % 3 == 0, "youtube", "corpus"),
    })
    return pd.concat([frame, pd.DataFrame(X.astype(np.float32), columns=FEATURES)], axis=1)


@pytest.fixture(scope="module")
def tables():
    return feature_table(400, seed=0), feature_table(200, seed=1)


@pytest.fixture(scope="module")
def trained(tables):
    train_table, _ = tables
    events: list[dict] = []
    result = M.train(
        train_table[FEATURES], train_table["label"], CLASSES, FAST,
        groups=train_table["speaker"], progress=events.append,
    )
    return result, events


def test_trains_a_separable_table(trained, tables):
    result, _ = trained
    _, test_table = tables
    metrics = M.evaluate(result.model, test_table[FEATURES], test_table["label"], CLASSES, sources=test_table["source"])
    print("held-out metrics", {k: metrics[k] for k in ("accuracy", "balanced_accuracy", "roc_auc")}, f"{result.seconds:.1f}s")
    assert metrics["balanced_accuracy"] > 0.9
    assert metrics["roc_auc"] > 0.95 and metrics["positive_class"] == "singing"
    assert metrics["n"] == 200 and sum(map(sum, metrics["confusion_matrix"])) == 200
    assert metrics["labels"] == CLASSES
    assert set(metrics["per_source"]) == {"youtube", "corpus"}
    assert sum(s["n"] for s in metrics["per_source"].values()) == 200
    assert result.model.outputs[0].shape[-1] == 2


def test_progress_events_arrive_per_epoch(trained):
    result, events = trained
    epochs = [e for e in events if e["kind"] == "epoch"]
    assert events[0]["kind"] == "start" and events[-1]["kind"] == "end"
    assert [e["epoch"] for e in epochs] == list(range(1, result.epochs_run + 1))
    assert len(epochs) == len(result.history["loss"])
    assert all(e["epochs"] == FAST.epochs for e in epochs)
    assert all(isinstance(e[k], float) for e in epochs for k in ("loss", "accuracy", "val_loss", "val_accuracy"))
    assert [e["val_loss"] for e in epochs] == pytest.approx(result.history["val_loss"])
    assert events[0]["n_train"] + events[0]["n_val"] == 400


def test_grouped_validation_split_keeps_speakers_apart(trained, tables):
    result, _ = trained
    speakers = tables[0]["speaker"].to_numpy()
    val = result.validation_indices
    train_rows = np.setdiff1d(np.arange(len(speakers)), val)
    assert 40 <= len(val) <= 140
    assert not set(speakers[val]) & set(speakers[train_rows])


def test_same_seed_same_predictions(tables):
    table, test_table = tables
    config = FAST.replace(epochs=6, patience=6)
    first = M.train(table[FEATURES], table["label"], CLASSES, config)
    second = M.train(table[FEATURES], table["label"], CLASSES, config)
    other = M.train(table[FEATURES], table["label"], CLASSES, config.replace(seed=99))
    p1, p2, p3 = (M.predict_proba(r.model, test_table[FEATURES]) for r in (first, second, other))
    np.testing.assert_allclose(p1, p2, atol=1e-5)
    assert first.history["loss"] == pytest.approx(second.history["loss"], abs=1e-6)
    assert np.abs(p1 - p3).max() > 1e-3  # the seed matters


def test_predict_proba_matches_model_predict_and_chunks(trained):
    model = trained[0].model
    X = np.random.default_rng(5).random((2500, len(FEATURES))).astype(np.float32)  # > 1024: three chunks
    proba = M.predict_proba(model, X)
    assert proba.shape == (2500, 2)
    np.testing.assert_allclose(proba, model.predict(X, verbose=0), atol=1e-5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(M.predict_proba(model, X[:3]), proba[:3], atol=1e-6)
    assert M.predict_proba(model, X[:0]).shape == (0, 2)
    with pytest.raises(DatasetError):
        M.predict_proba(model, np.full((2, len(FEATURES)), np.nan))


def test_class_weights_are_balanced_like_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 90 + [1] * 10 + [2] * 30)
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=y)
    weights = M.class_weights(y, 3)
    assert [weights[i] for i in range(3)] == pytest.approx(expected)
    assert weights[1] == pytest.approx(130 / (3 * 10))
    assert M.class_weights(np.array([0, 0, 1]), 3)[2] == 1.0  # absent class: neutral weight, key present


def _val_loss_of(model, X, y):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.evaluate(X, M.encode_labels(y, CLASSES), verbose=0, batch_size=256)[0]


def test_smote_resamples_training_rows_only_with_explicit_validation(tables):
    table = feature_table(300, singing_share=0.12, seed=4)
    val_table = feature_table(120, singing_share=0.12, seed=5)
    config = FAST.replace(imbalance="smote", epochs=8, patience=8)
    events: list[dict] = []
    result = M.train(
        table[FEATURES], table["label"], CLASSES, config,
        X_val=val_table[FEATURES], y_val=val_table["label"], progress=events.append,
    )
    original = M.class_counts(M.encode_labels(table["label"], CLASSES), CLASSES)
    assert original["singing"] < 60
    # training rows: minority oversampled up to the majority
    assert result.train_counts == {"singing": original["talking"], "talking": original["talking"]}
    assert result.n_train == 2 * original["talking"] == events[0]["n_train"]
    # validation rows: exactly the given ones, untouched
    assert result.val_counts == M.class_counts(M.encode_labels(val_table["label"], CLASSES), CLASSES)
    assert result.n_val == 120
    best = min(result.history["val_loss"])
    assert _val_loss_of(result.model, val_table[FEATURES], val_table["label"]) == pytest.approx(best, abs=1e-4)


def test_smote_leaves_the_split_validation_rows_alone():
    table = feature_table(300, singing_share=0.15, seed=6)
    config = FAST.replace(imbalance="smote", epochs=5, patience=5)
    result = M.train(table[FEATURES], table["label"], CLASSES, config, groups=table["speaker"])
    val = result.validation_indices
    y_idx = M.encode_labels(table["label"], CLASSES)
    assert result.val_counts == M.class_counts(y_idx[val], CLASSES)
    train_counts = M.class_counts(np.delete(y_idx, val), CLASSES)
    assert result.train_counts["singing"] == result.train_counts["talking"] == train_counts["talking"]
    X_val = table[FEATURES].to_numpy(np.float32)[val]
    best = min(result.history["val_loss"])
    assert _val_loss_of(result.model, X_val, table["label"].to_numpy()[val]) == pytest.approx(best, abs=1e-4)


def test_oversample_smote_keeps_originals_and_adds_minority_rows():
    table = feature_table(200, singing_share=0.1, seed=7)
    X = table[FEATURES].to_numpy(np.float32)
    y = M.encode_labels(table["label"], CLASSES)
    X_res, y_res = M.oversample_smote(X, y, seed=0)
    np.testing.assert_array_equal(X_res[: len(X)], X)
    assert (y_res[len(X):] == 0).all() and np.bincount(y_res).tolist() == [np.sum(y == 1)] * 2


def test_early_stopping_stops_and_keeps_the_best_epoch():
    rng = np.random.default_rng(8)
    X, X_val = rng.random((200, 6)).astype(np.float32), rng.random((100, 6)).astype(np.float32)
    y, y_val = rng.choice(CLASSES, 200), rng.choice(CLASSES, 100)  # nothing to learn: val_loss stops improving
    config = M.TrainConfig(hidden_units=(64,), dropout=0.0, learning_rate=3e-3, epochs=300, patience=3, seed=1)
    result = M.train(X, y, CLASSES, config, X_val=X_val, y_val=y_val)
    assert result.stopped_early and not result.cancelled
    assert result.epochs_run < 300
    losses = result.history["val_loss"]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert result.epochs_run >= result.best_epoch + config.patience
    assert _val_loss_of(result.model, X_val, y_val) == pytest.approx(min(losses), abs=1e-4)


def test_stop_event_cancels_at_the_epoch_it_was_set(tables):
    table, _ = tables
    stop = threading.Event()

    def listener(event):
        if event["kind"] == "epoch" and event["epoch"] == 3:
            stop.set()

    result = M.train(table[FEATURES], table["label"], CLASSES, FAST.replace(epochs=500, patience=500),
                     progress=listener, stop_event=stop)
    assert result.cancelled and result.epochs_run == 3


def test_stop_event_from_another_thread_stops_a_long_run(tables):
    table, _ = tables
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    started = time.perf_counter()
    timer.start()
    result = M.train(table[FEATURES], table["label"], CLASSES, FAST.replace(epochs=100_000, patience=100_000),
                     stop_event=stop)
    elapsed = time.perf_counter() - started
    assert result.cancelled and 1 <= result.epochs_run < 100_000
    assert elapsed < 15


def test_tune_runs_trials_and_summarises_them(tables, tmp_path):
    table, test_table = tables
    events: list[dict] = []
    base = FAST.replace(epochs=4, patience=4)
    result = M.tune(
        table[FEATURES], table["label"], CLASSES, groups=table["speaker"], base_config=base,
        max_trials=2, directory=tmp_path / "tuner", progress=events.append, seed=0,
    )
    assert len(result.trials) == 2
    for trial in result.trials:
        hp = trial["hyperparameters"]
        assert {"n_layers", "units_1", "dropout", "learning_rate", "optimizer"} <= set(hp)
        assert not any(k.startswith("units_") and int(k[6:]) > hp["n_layers"] for k in hp)
        assert isinstance(trial["score"], float)
    assert result.best_score == min(t["score"] for t in result.trials)
    best_hp = next(t["hyperparameters"] for t in result.trials if t["score"] == result.best_score)
    assert len(result.best_config.hidden_units) == best_hp["n_layers"]
    assert result.best_config.optimizer == best_hp["optimizer"] and result.best_config.epochs == 4
    assert M.predict_proba(result.best_model, test_table[FEATURES]).shape == (200, 2)
    trial_events = [e for e in events if e["kind"] == "trial"]
    assert [e["trial"] for e in trial_events] == [1, 2]
    assert {e["trial"] for e in events if e["kind"] == "epoch"} == {1, 2}


def test_tune_stops_between_trials(tables, tmp_path):
    table, _ = tables
    stop = threading.Event()

    def listener(event):
        if event["kind"] == "trial":
            stop.set()

    result = M.tune(table[FEATURES], table["label"], CLASSES, base_config=FAST.replace(epochs=2),
                    max_trials=5, directory=tmp_path / "t", progress=listener, stop_event=stop, seed=1)
    assert result.cancelled and len(result.trials) == 1


def test_train_config_validates_and_round_trips():
    config = M.TrainConfig(hidden_units=[64, 32, 8], optimizer="rmsprop", imbalance="none")
    assert M.TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["hidden_units"] == [64, 32, 8]
    for bad in ({"optimizer": "adagrad"}, {"imbalance": "undersample"}, {"dropout": 1.0}, {"hidden_units": ()}):
        with pytest.raises(ValueError):
            M.TrainConfig(**bad)


def test_labels_outside_the_class_list_are_refused():
    with pytest.raises(DatasetError, match="humming"):
        M.encode_labels(["singing", "humming"], CLASSES)
    assert M.encode_labels(np.array([1, 0]), CLASSES).tolist() == [1, 0]


def test_build_model_has_softmax_over_any_class_count():
    model = M.build_model(5, 3, M.TrainConfig(hidden_units=(8, 8, 8)))
    assert [layer.name for layer in model.layers if "dense" in layer.name] == ["dense_1", "dense_2", "dense_3"]
    out = M.predict_proba(model, np.zeros((4, 5), np.float32))
    assert out.shape == (4, 3) and np.allclose(out.sum(axis=1), 1.0)


def test_multiclass_evaluate_uses_ovr_auc():
    model = M.build_model(3, 3, M.TrainConfig(hidden_units=(4,)))
    rng = np.random.default_rng(0)
    y = np.array(["a", "b", "c"] * 10)
    proba = rng.dirichlet(np.ones(3), 30)
    proba[np.arange(30), M.encode_labels(y, ["a", "b", "c"])] += 1.0  # make it informative
    proba /= proba.sum(axis=1, keepdims=True)
    metrics = M.evaluate(model, np.zeros((30, 3)), y, ["a", "b", "c"], proba=proba)
    assert metrics["accuracy"] == 1.0 and metrics["roc_auc"] == pytest.approx(1.0)
    assert np.trace(np.array(metrics["confusion_matrix"])) == 30


def test_figures_are_built_and_saved(trained, tables, tmp_path):
    result, _ = trained
    fig = P.plot_history(result)
    assert {trace.name for trace in fig.data} == {"loss", "val_loss", "accuracy", "val_accuracy"}
    assert len(fig.data[0].y) == result.epochs_run
    path = P.save_history_plot(result.history, tmp_path / "history.html", include_plotlyjs="cdn")
    html = path.read_text()
    assert "val_accuracy" in html and "plotly" in html
    _, test_table = tables
    metrics = M.evaluate(result.model, test_table[FEATURES], test_table["label"], CLASSES)
    heat = P.plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"])
    assert np.array(heat.data[0].customdata).sum() == 200
    assert list(heat.data[0].x) == ["Singing", "Talking"]
    roc = P.plot_roc(test_table["label"], M.predict_proba(result.model, test_table[FEATURES]), CLASSES)
    assert [t.name.split(" (")[0] for t in roc.data] == ["Singing", "chance"], "two classes: one curve, as before"
    trials = P.plot_trials([{"score": 0.5, "hyperparameters": {"n_layers": 1}}])
    assert list(trials.data[0].y) == [0.5]


def test_figures_for_three_classes_are_n_by_n_and_one_vs_rest():
    """Confusion matrix 3×3 with counts and row shares; one ROC curve per class in the class colours.

    A trained model's classes are sorted (no_voice, singing, talking); the figures show them in the
    app's order (singing, talking, no_voice) with their counts moved along.
    """
    from singtalk.eda import CLASS_COLOURS

    classes = ["no_voice", "singing", "talking"]
    y = np.array(classes * 20)
    rng = np.random.default_rng(1)
    proba = rng.dirichlet(np.ones(3), len(y))
    proba[np.arange(len(y)), M.encode_labels(y, classes)] += 0.6
    proba /= proba.sum(axis=1, keepdims=True)
    matrix = [[15, 0, 5], [1, 18, 1], [1, 2, 17]]  # true no_voice: 15 right, 5 taken for talking
    heat = P.plot_confusion_matrix(matrix, classes)
    assert np.array(heat.data[0].z).shape == (3, 3)
    assert list(heat.data[0].x) == list(heat.data[0].y) == ["Singing", "Talking", "No voice"]
    assert np.array(heat.data[0].customdata).tolist() == [[18, 1, 1], [2, 17, 1], [0, 5, 15]]
    assert heat.data[0].text[2][1] == "5<br>25%" and np.array(heat.data[0].z)[2, 2] == pytest.approx(0.75)
    roc = P.plot_roc(y, proba, classes)
    curves = [t for t in roc.data if t.name != "chance"]
    assert [t.name.split(" (")[0] for t in curves] == ["Singing vs rest", "Talking vs rest", "No voice vs rest"]
    assert [t.line.color for t in curves] == [CLASS_COLOURS[c] for c in ("singing", "talking", "no_voice")]
    assert all(0.5 < float(t.name.split("AUC ")[1].rstrip(")")) <= 1.0 for t in curves)
    # a class missing from the labels gets no curve (one-vs-rest is undefined for it)
    two_present = P.plot_roc(y[y != "no_voice"], proba[y != "no_voice"], classes)
    assert [t.name.split(" (")[0] for t in two_present.data] == ["Singing vs rest", "Talking vs rest", "chance"]
