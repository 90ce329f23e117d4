"""The model store (versions, CURRENT pointer, rollback, lock) and the JSON scaler."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

os.environ.setdefault("SINGTALK_TF_THREADS", "2")

from singtalk import model as M  # noqa: E402
from singtalk.errors import DatasetError, ModelError, StoreLocked  # noqa: E402
from singtalk.registry import SAVE_PAUSE_ENV, ModelStore, make_metadata  # noqa: E402
from singtalk.scaling import MinMaxScaling  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FV = "test-fv-1"
NAMES = [f"f{i}" for i in range(5)]
CLASSES = ["singing", "talking"]


def raw_table(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(10, 3, (n, len(NAMES)))
    y = np.where(X[:, 0] + X[:, 1] > 20, "singing", "talking")
    return X, y


@pytest.fixture(scope="module")
def two_models():
    """Two small trained models (different seeds) sharing one scaler."""
    X, y = raw_table(200, 0)
    scaler = MinMaxScaling(NAMES, feature_version=FV).fit(X)
    config = M.TrainConfig(hidden_units=(8,), epochs=3, patience=3)
    first = M.train(scaler.transform(X), y, CLASSES, config.replace(seed=1))
    second = M.train(scaler.transform(X), y, CLASSES, config.replace(seed=2))
    return first, second, scaler


@pytest.fixture()
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "models", expected_feature_version=FV, expected_feature_names=NAMES)


def metadata(result, **extra) -> dict:
    return make_metadata(
        feature_version=FV, feature_names=NAMES, class_names=CLASSES,
        metrics={"test": {"accuracy": 0.9, "balanced_accuracy": 0.88}, "n_train": 200},
        trained_on={"description": "synthetic", "counts": {"singing": 100, "talking": 100}},
        config=result.config.to_dict(), **extra,
    )


PROBE = raw_table(50, 9)[0]


# -- round trip, compatibility -------------------------------------------------------------
def test_save_load_round_trip_gives_the_same_predictions(store, two_models):
    first, _, scaler = two_models
    version = store.save(first.model, scaler, metadata(first), promote=True, note="first")
    assert store.current_version() == version
    loaded = store.load()
    assert loaded.version == version and loaded.class_names == CLASSES and loaded.feature_names == NAMES
    expected = M.predict_proba(first.model, scaler.transform(PROBE))
    np.testing.assert_allclose(loaded.predict_proba(PROBE), expected, atol=1e-6)
    meta = loaded.metadata
    assert meta["feature_version"] == FV and meta["parent"] is None and meta["note"] == "first"
    assert meta["created"].endswith("Z") and meta["config"]["hidden_units"] == [8]
    folder = store.versions_dir / version
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.keras", "model.npz", "scaler.json"]
    assert not list(store.root.rglob("*.pkl")) and not list(store.root.rglob("*.pickle"))
    [info] = store.list_versions()
    assert info.is_current and info.metrics == {"test.accuracy": 0.9, "test.balanced_accuracy": 0.88, "n_train": 200}
    assert not store.lock_path.exists()  # the save's lock is released


def test_keras_file_loads_with_plain_tensorflow(store, two_models):
    import tensorflow as tf

    first, _, scaler = two_models
    version = store.save(first.model, scaler, metadata(first), promote=False)
    path = store.versions_dir / version / "model.keras"
    assert zipfile.is_zipfile(path)  # the Keras v3 format, not HDF5 under a .keras name
    assert "config.json" in zipfile.ZipFile(path).namelist()
    model = tf.keras.models.load_model(str(path), compile=False)
    assert model.inputs[0].shape[-1] == len(NAMES)
    assert store.current_version() is None  # promote=False


def test_empty_store_says_what_to_do(store):
    with pytest.raises(ModelError, match="No model is installed"):
        store.load()
    assert store.list_versions() == [] and store.current_version() is None


def test_incompatible_feature_version_is_refused(store, two_models):
    first, _, scaler = two_models
    version = store.save(first.model, scaler, metadata(first), promote=True)
    newer = ModelStore(store.root, expected_feature_version="test-fv-2", expected_feature_names=NAMES)
    with pytest.raises(ModelError) as err:
        newer.load()
    message = str(err.value)
    assert version in message and FV in message and "test-fv-2" in message and "Retrain" in message
    with pytest.raises(ModelError):
        newer.promote(version)
    # per-call expectations override the store's
    assert store.load(expected_feature_version="test-fv-1", expected_feature_names=NAMES).version == version


def test_different_feature_names_are_refused(store, two_models):
    first, _, scaler = two_models
    store.save(first.model, scaler, metadata(first), promote=True)
    with pytest.raises(ModelError, match=r"missing \['f5'\]"):
        store.load(expected_feature_version=FV, expected_feature_names=NAMES + ["f5"])
    with pytest.raises(ModelError, match="different order"):
        store.load(expected_feature_version=FV, expected_feature_names=list(reversed(NAMES)))


def test_a_version_without_classes_is_refused(store, two_models):
    first, _, scaler = two_models
    version = store.save(first.model, scaler, metadata(first), promote=True)
    meta_path = store.versions_dir / version / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["class_names"] = []
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="class"):
        store.load()
    with pytest.raises(ModelError, match="class_names"):
        store.save(first.model, scaler, {**metadata(first), "class_names": []}, promote=False)


def test_save_refuses_a_scaler_that_does_not_match(store, two_models):
    first, _, scaler = two_models
    other = MinMaxScaling(["a", "b", "c", "d", "e"]).fit(np.eye(5))
    with pytest.raises(ModelError, match="scaler"):
        store.save(first.model, other, metadata(first), promote=True)
    assert store.list_versions() == []


# -- promotion, backups, rollback ---------------------------------------------------------
def test_promote_creates_a_new_version_and_keeps_the_old(store, two_models):
    first, second, scaler = two_models
    v1 = store.save(first.model, scaler, metadata(first), promote=True)
    v2 = store.save(second.model, scaler, metadata(second), promote=False, suffix="retrain")
    assert v2 != v1 and v2.endswith("-retrain") and store.current_version() == v1
    assert store.promote(v2) == v2 and store.current_version() == v2
    versions = store.list_versions()
    assert [v.version for v in versions] == [v2, v1]  # newest first
    assert [v.is_current for v in versions] == [True, False]
    assert store.load(v1).version == v1  # the backup is intact and loadable
    assert store.read_metadata(v2)["parent"] == v1
    assert [(h["version"], h["previous"], h["action"]) for h in store.history()] == [
        (v1, None, "save"), (v2, v1, "promote")]
    with pytest.raises(ModelError):
        store.promote("20990101T000000Z")


def test_rollback_restores_the_previous_predictions_exactly(store, two_models):
    first, second, scaler = two_models
    v1 = store.save(first.model, scaler, metadata(first), promote=True)
    before = store.load().predict_proba(PROBE)
    v2 = store.save(second.model, scaler, metadata(second), promote=True)
    after = store.load().predict_proba(PROBE)
    assert np.abs(after - before).max() > 1e-4  # the second model really differs
    assert store.previous_version() == v1
    assert store.rollback() == v1
    assert store.current_version() == v1
    np.testing.assert_array_equal(store.load().predict_proba(PROBE), before)
    assert store.history()[-1]["action"] == "rollback"
    assert store.rollback(v2) == v2 and store.current_version() == v2


def test_rollback_without_an_earlier_version_is_an_error(store, two_models):
    first, _, scaler = two_models
    store.save(first.model, scaler, metadata(first), promote=True)
    with pytest.raises(ModelError, match="roll back"):
        store.rollback()


def test_rollback_falls_back_to_dates_when_history_is_lost(store, two_models):
    first, second, scaler = two_models
    v1 = store.save(first.model, scaler, metadata(first), promote=True)
    store.save(second.model, scaler, metadata(second), promote=True)
    (store.root / "HISTORY.json").unlink()
    assert store.rollback() == v1


def test_delete_refuses_the_serving_version_and_removes_others(store, two_models):
    first, second, scaler = two_models
    v1 = store.save(first.model, scaler, metadata(first), promote=True)
    v2 = store.save(second.model, scaler, metadata(second), promote=False, suffix="retrain")
    with pytest.raises(ModelError, match="serving"):
        store.delete(v1)
    assert store.delete(v2) == v2
    assert [v.version for v in store.list_versions()] == [v1] and store.current_version() == v1
    assert not (store.versions_dir / v2).exists() and not list(store.versions_dir.glob(".tmp-*"))
    assert not store.lock_path.exists()
    with pytest.raises(ModelError, match="not found"):
        store.delete(v2)
    with pytest.raises(ModelError, match="not a model version"):
        store.delete("../CURRENT")


def test_delete_is_refused_while_another_job_holds_the_store(store, two_models):
    first, second, scaler = two_models
    store.save(first.model, scaler, metadata(first), promote=True)
    v2 = store.save(second.model, scaler, metadata(second), promote=False)
    result = {}

    def other_thread():
        try:
            store.delete(v2)
        except StoreLocked as err:
            result["err"] = err

    with store.lock("retrain-job"):
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    assert "retrain-job" in str(result["err"]) and (store.versions_dir / v2).is_dir()


# -- crash safety ---------------------------------------------------------------------------
KILLED_SAVER = textwrap.dedent("""
    import sys
    from singtalk.registry import ModelStore
    store = ModelStore(sys.argv[1], expected_feature_version=sys.argv[2], expected_feature_names=sys.argv[3].split(","))
    loaded = store.load()
    meta = {k: v for k, v in loaded.metadata.items() if k not in ("version", "created", "parent")}
    store.save(loaded.model, loaded.scaler, meta, promote=True, note="killed")
    print("saved", flush=True)
""")


@pytest.mark.parametrize("stage", ["writing_files", "before_pointer_swap"])
def test_a_save_killed_midway_leaves_the_store_serving(store, two_models, stage):
    first, second, scaler = two_models
    v1 = store.save(first.model, scaler, metadata(first), promote=True)
    before = store.load().predict_proba(PROBE)
    pause = {"writing_files": "model_written:60", "before_pointer_swap": "renamed:60"}[stage]
    env = {**os.environ, SAVE_PAUSE_ENV: pause, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVER, str(store.root), FV, ",".join(NAMES)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if stage == "writing_files" and list(store.versions_dir.glob(".tmp-*/model.keras")):
                break
            if stage == "before_pointer_swap" and len(list(store.versions_dir.glob("2*"))) == 2:
                break
            assert proc.poll() is None, "the saver exited early"
            time.sleep(0.05)
        else:
            pytest.fail(f"the saver never reached {stage}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert store.current_version() == v1
    assert store.lock_info()["pid"] == proc.pid  # the dead saver's lock is left behind
    np.testing.assert_array_equal(store.load().predict_proba(PROBE), before)
    listed = [v.version for v in store.list_versions()]
    assert listed[-1] == v1 and len(listed) == (1 if stage == "writing_files" else 2)
    # the next writer takes the stale lock over and sweeps the half-written folder
    v3 = store.save(second.model, scaler, metadata(second), promote=True)
    assert store.current_version() == v3 and not list(store.versions_dir.glob(".tmp-*"))
    assert not store.lock_path.exists()


# -- lock ----------------------------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from singtalk.registry import ModelStore
    with ModelStore(sys.argv[1]).lock("retrain-job"):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_a_second_acquirer_is_told_who_holds_the_lock(store, two_models):
    first, _, scaler = two_models
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.root)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLocked) as err:
            with store.lock("ui"):
                pass
        message = str(err.value)
        assert "retrain-job" in message and f"pid {proc.pid}" in message and "since" in message
        with pytest.raises(StoreLocked):
            store.save(first.model, scaler, metadata(first), promote=True)
        assert store.list_versions() == []
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with store.lock("ui") as info:  # the holder died: its lock is stale and taken over
        assert store.lock_info()["holder"] == "ui" and info["pid"] == os.getpid()
    assert not store.lock_path.exists()


def test_a_stale_lock_from_a_dead_pid_is_taken_over(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.root.mkdir(parents=True)
    stale = {"pid": dead.pid, "holder": "crashed-job", "since": "2026-01-01T00:00:00Z",
             "host": socket.gethostname(), "token": "old"}
    store.lock_path.write_text(json.dumps(stale))
    with store.lock("new-job"):
        assert store.lock_info()["holder"] == "new-job"
    assert not store.lock_path.exists()


def test_a_lock_from_another_host_is_not_taken_over(store):
    store.root.mkdir(parents=True)
    store.lock_path.write_text(json.dumps({"pid": 999999, "holder": "far-job", "since": "x", "host": "elsewhere",
                                           "token": "t"}))
    with pytest.raises(StoreLocked, match="far-job"):
        with store.lock("here"):
            pass


def test_the_lock_is_reentrant_in_its_thread_and_exclusive_across_threads(store, two_models):
    first, _, scaler = two_models
    seen: list[BaseException | None] = []

    def other_thread():
        try:
            with store.lock("other"):
                seen.append(None)
        except StoreLocked as err:
            seen.append(err)

    with store.lock("job"):
        version = store.save(first.model, scaler, metadata(first), promote=True)  # re-enters
        assert store.lock_info()["holder"] == "job"
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    assert isinstance(seen[0], StoreLocked) and "'job'" in str(seen[0])
    assert store.current_version() == version and not store.lock_path.exists()


# -- scaler --------------------------------------------------------------------------------
def test_scaler_matches_sklearn_on_the_fitted_range():
    from sklearn.preprocessing import MinMaxScaler

    rng = np.random.default_rng(3)
    train = rng.normal(5, 2, (100, 4))
    train[:, 3] = 7.0  # a constant feature
    inside = rng.uniform(train.min(axis=0), train.max(axis=0), (30, 4))
    ours = MinMaxScaling(list("abcd")).fit(train)
    theirs = MinMaxScaler().fit(train)
    for X in (train, inside):
        np.testing.assert_allclose(ours.transform(X), theirs.transform(X), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 20), st.integers(1, 4)),
              elements=st.floats(-1e6, 1e6, allow_nan=False, width=32)))
def test_scaler_equals_sklearn_then_clips(X):
    from sklearn.preprocessing import MinMaxScaler

    ours = MinMaxScaling([f"c{i}" for i in range(X.shape[1])]).fit(X)
    np.testing.assert_allclose(ours.transform(X), MinMaxScaler().fit_transform(X).astype(np.float32), atol=1e-4)
    far = X.max(axis=0) + 10 * (X.max(axis=0) - X.min(axis=0)) + 1
    assert (ours.transform(far[None, :]) <= 1.5).all()


def test_scaler_clips_far_outliers_only():
    scaler = MinMaxScaling(["a"]).fit(np.array([[0.0], [10.0]]))
    assert scaler.transform(np.array([[-2.0], [12.0], [100.0], [-100.0]])).ravel().tolist() == pytest.approx(
        [-0.2, 1.2, 1.5, -0.5])
    assert MinMaxScaling(["a"], clip=None).fit(np.array([[0.0], [10.0]])).transform([[100.0]])[0, 0] == 10.0


def test_scaler_json_round_trip(tmp_path):
    table = pd.DataFrame({"path": ["x", "y", "z"], "label": ["singing", "talking", "singing"],
                          "b": [1.0, 2.0, 3.0], "a": [10.0, 0.0, 5.0]})
    scaler = MinMaxScaling(["a", "b"], feature_version=FV).fit(table)  # columns picked by name, in its order
    path = scaler.save(tmp_path / "scaler.json")
    data = json.loads(path.read_text())
    assert data["feature_names"] == ["a", "b"] and data["min"] == [0.0, 1.0] and data["max"] == [10.0, 3.0]
    assert data["version"] == 1 and data["feature_version"] == FV and data["clip"] == [-0.5, 1.5]
    again = MinMaxScaling.load(path)
    np.testing.assert_array_equal(again.transform(table), scaler.transform(table))
    assert again.transform(table)[:, 0].tolist() == [1.0, 0.0, 0.5]
    assert MinMaxScaling.from_dict(scaler.to_dict()).to_dict() == scaler.to_dict()


def test_scaler_refuses_bad_input(tmp_path):
    scaler = MinMaxScaling(["a", "b"]).fit(np.array([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(DatasetError, match="NaN"):
        scaler.transform(np.array([[np.nan, 1.0]]))
    with pytest.raises(DatasetError, match="2 feature columns"):
        scaler.transform(np.zeros((1, 3)))
    with pytest.raises(DatasetError, match="lacks"):
        scaler.transform(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ModelError, match="not fitted"):
        MinMaxScaling(["a"]).transform([[1.0]])
    (tmp_path / "bad.json").write_text('{"kind": "minmax", "version": 1, "feature_names": ["a"], "min": []}')
    with pytest.raises(ModelError, match="Malformed"):
        MinMaxScaling.load(tmp_path / "bad.json")


def test_default_expectations_come_from_the_features_module(tmp_path):
    from singtalk import features

    names = list(features.FEATURE_NAMES)
    scaler = MinMaxScaling(names).fit(np.vstack([np.zeros(len(names)), np.ones(len(names))]))
    network = M.build_model(len(names), 2, M.TrainConfig(hidden_units=(4,)))
    writer = ModelStore(tmp_path)
    meta = make_metadata(feature_version=features.FEATURE_VERSION, feature_names=names, class_names=CLASSES)
    version = writer.save(network, scaler, meta, promote=True)
    assert ModelStore(tmp_path).load().version == version
    stale = {**meta, "feature_version": "st-0"}
    old = writer.save(network, scaler, stale, promote=False)
    with pytest.raises(ModelError, match=f"'st-0'.*{features.FEATURE_VERSION}.*{version}"):
        ModelStore(tmp_path).load(old)


def test_extra_files_arrive_with_the_version(store, two_models):
    first, _, scaler = two_models
    version = store.save(first.model, scaler, metadata(first), promote=True,
                         extra_files={"history.html": "<html></html>", "log.txt": b"ok\n"})
    folder = store.versions_dir / version
    assert (folder / "history.html").read_text() == "<html></html>" and (folder / "log.txt").read_bytes() == b"ok\n"
    for bad in ("model.keras", "../escape.txt"):
        with pytest.raises(ValueError):
            store.save(first.model, scaler, metadata(first), promote=False, extra_files={bad: "x"})
    assert store.current_version() == version and not (store.root / "escape.txt").exists()


def test_cli_models_delete(store, two_models):
    first, second, scaler = two_models
    v1 = store.save(first.model, scaler, metadata(first), promote=True)
    v2 = store.save(second.model, scaler, metadata(second), promote=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(version):
        return subprocess.run([sys.executable, "-m", "singtalk.cli", "models", "--delete", version, "--models",
                               str(store.root)], capture_output=True, text=True, env=env, timeout=120)

    refused = cli(v1)
    assert refused.returncode != 0 and "serving" in refused.stderr and "Traceback" not in refused.stderr
    done = cli(v2)
    assert done.returncode == 0 and f"deleted {v2}" in done.stdout
    assert [v.version for v in store.list_versions()] == [v1]
