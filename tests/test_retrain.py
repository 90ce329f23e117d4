"""Retraining from reviewed mistakes: promotion rule, backup and rollback, refusals, the acceptance loop, kills."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from singtalk import review
from singtalk.classify import Classifier
from singtalk.errors import DatasetError, ModelError
from singtalk.registry import ModelStore, make_metadata
from singtalk.retrain import LOG_FILE, METRICS_FILE, RUNS_DIR, retrain

from .store_fixtures import Workspace, base_store, make_workspace, workspace  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent
PROBE_CLIPS = 3
SMALL_STORE_REPLAY = 10.0
FLIPPED_PER_CLASS = 10


@dataclass
class Loop:
    ws: Workspace
    first: review.CheckResult
    second: review.CheckResult
    report: object
    events: list
    confirmed: list
    dismissed: str
    before_proba: np.ndarray       # the shipped model on the check set's raw features
    raw: np.ndarray                # those raw features
    before_classified: list        # Classifier probabilities of a few clips before retraining


@pytest.fixture(scope="module")
def loop(base_store, tmp_path_factory) -> Loop:
    """check → review (confirm all but one, dismiss one) → retrain → check again, on a private store."""
    ws = make_workspace(base_store, tmp_path_factory.mktemp("loop"))
    loaded = ws.store.load()
    first = review.check(loaded, ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    wrong = review.read_wrong(ws.wrong)
    dismissed = wrong["path"].iloc[-1]
    confirmed = list(wrong["path"].iloc[:-1])
    for path in confirmed:
        review.review_row(ws.wrong, path, action="confirm", reviewer="test")
    review.review_row(ws.wrong, dismissed, action="dismiss", reviewer="test", note="not a fair example")
    cache = review.FeatureCache(review.features_path_for(ws.wrong), feature_version=loaded.metadata["feature_version"],
                                feature_names=loaded.feature_names)
    raw = np.vstack([cache.get(p) for p in first.predictions["path"]])
    before_proba = loaded.predict_proba(raw)
    classifier = Classifier(loaded)
    before_classified = [classifier.classify_source(p).probabilities for p in first.predictions["path"][:PROBE_CLIPS]]
    events: list = []
    # Judged on the check's predictions file. On this tiny store (82 training rows) replaying 10 rows per mistake with
    # their labels (all 82) is what the verdict promotes: it breaks 1 singing clip of the labelled set, where 3 per
    # mistake broke 3-4 and the default (all rows, the old model's probabilities) 2-3 (docs/model.md).
    report = retrain(ws.store, ws.wrong, progress=events.append, replay_ratio=SMALL_STORE_REPLAY, distill=0.0)
    second = review.check(ws.store.load(), ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    return Loop(ws, first, second, report, events, confirmed, dismissed, before_proba, raw, before_classified)


def test_retrain_promotes_when_not_worse_and_keeps_the_backup(loop):
    report, store = loop.report, loop.ws.store
    assert report.promoted, report.reason
    assert report.backup_version == loop.ws.base.version
    assert store.current_version() == report.new_version != report.backup_version
    versions = {info.version: info for info in store.list_versions()}
    assert set(versions) == {report.backup_version, report.new_version}, "the backup version is kept intact"
    assert store.read_metadata(report.new_version)["parent"] == report.backup_version
    after = report.after["original_test"]["accuracy"]
    verdict = report.verdict
    assert verdict.passed and not verdict.forced and not verdict.failures
    assert report.labelled_path == str(loop.first.predictions_path)
    table = verdict.table().set_index(["set", "group"])
    labelled = table.loc[("labelled set", "all")]
    assert labelled["n"] == loop.first.checked - 1, "every checked clip but the dismissed one"
    assert labelled["errors after"] < labelled["errors before"]
    assert {"original test table", "labelled set", "confirmed reviews"} <= set(verdict.table()["set"])
    assert table.loc[("confirmed reviews", "all"), "n"] == len(loop.confirmed)
    assert report.n_mistakes == len(loop.confirmed)  # the dismissed row is skipped
    assert report.skipped["dismissed"] == 1
    assert report.n_train_mistakes + report.n_test_mistakes == report.n_mistakes
    assert (report.n_test_mistakes > 0) == report.split.startswith("stratified"), report.split
    n_original = len(pd.read_csv(store.root / "tables" / "train_features_scaled.csv"))
    assert report.n_replay == min(n_original, round(SMALL_STORE_REPLAY * report.n_train_mistakes))
    recipe = store.read_metadata(report.new_version)["retrain"]
    assert recipe["distill"] == 0 and recipe["replay_ratio"] == SMALL_STORE_REPLAY and recipe["copies"] == 0
    folder = store.version_dir(report.new_version)
    for name in (LOG_FILE, METRICS_FILE, "history.html"):
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / METRICS_FILE).read_text())
    assert metrics["promoted"] and metrics["after"]["original_test"]["accuracy"] == after
    assert metrics["verdict"]["passed"] and metrics["verdict"]["rows"] == verdict.rows
    assert store.read_metadata(report.new_version)["retrain"]["verdict"]["reasons"] == verdict.reasons
    assert "training started" in (folder / LOG_FILE).read_text()
    kinds = [event["kind"] for event in loop.events]
    assert kinds[0] == "stage" and kinds[-1] == "done" and kinds.count("epoch") == len(report.history["loss"])
    print(f"\n{report.summary()}\nretrain took {report.seconds} s")


def test_acceptance_reviewed_mistakes_now_right_and_no_more_wrong(loop):
    first, second = loop.first, loop.second
    after = review.read_wrong(loop.ws.wrong).set_index("path")
    now_right = [p for p in loop.confirmed if after.loc[p, "status"] == "resolved"]
    print(f"\nwrong before {first.wrong}/{first.checked}, after {second.wrong}/{second.checked}; "
          f"confirmed mistakes now right {len(now_right)}/{len(loop.confirmed)}; new {second.new}")
    assert len(now_right) >= 0.6 * len(loop.confirmed)
    assert second.wrong <= first.wrong
    assert second.resolved == len(now_right)
    assert after.loc[loop.dismissed, "status"] == "dismissed"
    assert (after.loc[loop.confirmed, "reviewer"] == "test").all(), "reviewer fields survive the second check"
    assert set(after.loc[[p for p in loop.confirmed if p not in now_right], "status"]) <= {"confirmed"}


def test_rollback_after_retrain_restores_the_earlier_predictions_exactly(loop, tmp_path):
    shutil.copytree(loop.ws.store.root, tmp_path / "models")
    store = ModelStore(tmp_path / "models")
    assert store.rollback() == loop.report.backup_version
    loaded = store.load()
    np.testing.assert_array_equal(loaded.predict_proba(loop.raw), loop.before_proba)
    classifier = Classifier(loaded)
    again = [classifier.classify_source(p).probabilities for p in loop.first.predictions["path"][:PROBE_CLIPS]]
    assert again == loop.before_classified
    shutil.copyfile(review.features_path_for(loop.ws.wrong), review.features_path_for(tmp_path / "w.csv"))
    rechecked = review.check(loaded, loop.ws.labelled_csv, root=loop.ws.corpus, wrong_path=tmp_path / "w.csv")
    columns = ["path", "label", "predicted", "p_singing", "p_talking"]
    pd.testing.assert_frame_equal(rechecked.predictions[columns], loop.first.predictions[columns])


def flip_right_clips(ws: Workspace, check: review.CheckResult) -> list[str]:
    """A harmful wrong list: the genuine mistakes dismissed, and clips the model gets right reported (not reviewed)
    with the other label, as a careless "This is wrong" would. The labelled set keeps their true labels."""
    for path in review.read_wrong(ws.wrong)["path"]:
        review.review_row(ws.wrong, path, action="dismiss", reviewer="test")
    table = check.predictions
    right = table[(table["label"] == table["predicted"]) & (table["error"] == "")]
    flipped = []
    for label, group in right.groupby("label"):
        other = "talking" if label == "singing" else "singing"
        for path in group["path"].head(FLIPPED_PER_CLASS):
            review.add_report(ws.wrong, path, label=other, predicted=label, confidence=0.9,
                              model_version=check.model_version, origin="test:flipped")
            flipped.append(path)
    return flipped


def test_a_harmful_retrain_is_refused_with_the_reason_then_forced_by_an_expert(workspace, capsys):
    from singtalk.cli import main

    ws = workspace
    check = review.check(ws.store.load(), ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    flipped = flip_right_clips(ws, check)
    shipped = ws.store.current_version()
    wrong_bytes = ws.wrong.read_bytes()
    kept = retrain(ws.store, ws.wrong)
    print(f"\n{kept.summary()}\nretrain took {kept.seconds} s")
    verdict = kept.verdict
    assert not kept.promoted and not verdict.passed and not verdict.forced
    assert ws.store.current_version() == shipped, "CURRENT stays on the serving model"
    assert kept.new_version in {info.version for info in ws.store.list_versions()}, "the new one is kept, unpromoted"
    assert not ws.store.read_metadata(kept.new_version)["retrain"]["promoted"]
    labelled = verdict.table().set_index(["set", "group"]).loc[("labelled set", "all")]
    assert labelled["errors after"] > labelled["errors before"] and labelled["broken"] >= len(flipped) // 3
    assert any(f.startswith("The labelled set did not improve") for f in verdict.failures), verdict.failures
    assert kept.reason == verdict.reason and "did not improve" in kept.reason
    summary = kept.summary()
    assert "Not promoted: the serving model stays" in summary and "errors before" in summary
    assert f"not promoted; current stays {shipped}, new version kept as {kept.new_version}" in summary
    assert kept.run_dir.parent == ws.store.root / RUNS_DIR
    assert (kept.run_dir / METRICS_FILE).is_file() and "[verdict] Not promoted" in (kept.run_dir / LOG_FILE).read_text()
    assert ws.wrong.read_bytes() == wrong_bytes, "retrain only reads the wrong list"

    code = main(["retrain", "--wrong", str(ws.wrong), "--models", str(ws.store.root), "--force", "--jobs", "1"])
    out = capsys.readouterr().out
    forced = ws.store.current_version()
    assert code == 0 and forced not in (shipped, kept.new_version)
    assert "Promoted by force, overriding the verdict, which said no:" in out
    assert "  - The labelled set did not improve" in out and "errors before" in out
    assert f"promoted {forced} by force (backup: {shipped})" in out
    meta = ws.store.read_metadata(forced)["retrain"]
    assert meta["promoted"] and meta["force"] and meta["verdict"]["forced"]


def test_the_labelled_set_is_any_path_label_csv_or_none(workspace, capsys):
    """--labelled with --root takes a plain labelled CSV (features from the check's cache); without the predictions
    file beside the wrong list the verdict says there is no labelled set, and judges on the rest."""
    from singtalk.cli import main

    ws = workspace
    check = review.check(ws.store.load(), ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    check.predictions_path.unlink()
    alone = retrain(ws.store, ws.wrong, force=True)
    assert alone.labelled_path == "" and "labelled set" not in set(alone.verdict.table()["set"])
    assert "No labelled set to measure on." in alone.verdict.reasons
    code = main(["retrain", "--wrong", str(ws.wrong), "--models", str(ws.store.root), "--labelled",
                 str(ws.labelled_csv), "--root", str(ws.corpus), "--force", "--jobs", "1", "--epochs", "3"])
    out = capsys.readouterr().out
    assert code == 0 and f"labelled set: {ws.labelled_csv}\n" in out
    assert re.search(rf"^\s+labelled set\s+all\s+{check.checked}\s", out, re.MULTILINE), out
    with pytest.raises(DatasetError, match="No labelled set at"):
        retrain(ws.store, ws.wrong, labelled=ws.corpus / "nothing.csv")


def test_retrain_refuses_an_incompatible_model(workspace):
    ws = workspace
    review.check(ws.store.load(), ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    loaded = ws.store.load()
    meta = make_metadata(feature_version="st-0-old", feature_names=loaded.feature_names,
                         class_names=loaded.class_names)
    old = ws.store.save(loaded.model, loaded.scaler, meta, promote=True, note="old schema")
    before = sorted(info.version for info in ws.store.list_versions())
    wrong_bytes = ws.wrong.read_bytes()
    with pytest.raises(ModelError, match=r"Cannot retrain: .*feature schema 'st-0-old'"):
        retrain(ws.store, ws.wrong)
    assert ws.store.current_version() == old
    assert sorted(info.version for info in ws.store.list_versions()) == before
    assert ws.wrong.read_bytes() == wrong_bytes
    assert ws.store.lock_info() is None, "the store lock is released after a refusal"


def test_retrain_refuses_without_usable_mistakes_and_other_tables(workspace, tmp_path):
    ws = workspace
    clip = next(iter(pd.read_csv(ws.labelled_csv)["path"]))
    review.add_report(ws.wrong, ws.corpus / clip, label="singing", predicted="talking", p_singing=0.1,
                      confidence=0.9, model_version="x")
    review.review_row(ws.wrong, ws.corpus / clip, action="dismiss")
    with pytest.raises(DatasetError, match=r"No usable mistakes .*'dismissed': 1"):
        retrain(ws.store, ws.wrong)
    review.review_row(ws.wrong, ws.corpus / clip, action="reopen")
    with pytest.raises(DatasetError, match="Retraining replays the original training rows"):
        retrain(ws.store, ws.wrong, tables_dir=tmp_path / "nowhere")


def test_retrain_command_with_few_mistakes_trains_without_a_test_part(workspace, capsys):
    from singtalk.cli import main

    ws = workspace
    check = review.check(ws.store.load(), ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    wrong = review.read_wrong(ws.wrong)
    for path in wrong["path"].iloc[1:]:
        review.review_row(ws.wrong, path, action="dismiss")
    shipped = ws.store.current_version()
    code = main(["retrain", "--wrong", str(ws.wrong), "--models", str(ws.store.root), "--force",
                 "--epochs", "5", "--jobs", "1"])
    out = capsys.readouterr()
    assert code == 0 and check.wrong > 1
    assert "mistakes used: 1 (1 train, 0 test; all train: too few mistakes" in out.out
    assert f"(backup: {shipped})" in out.out and "original test accuracy: before" in out.out
    assert ws.store.current_version() != shipped
    assert "training started" in out.err and "epoch 1/5" in out.err


def test_cancelling_during_training_saves_nothing(workspace):
    ws = workspace
    review.check(ws.store.load(), ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    stop = threading.Event()
    events = []

    def listen(event):
        events.append(event)
        if event["kind"] == "epoch":
            stop.set()

    versions = ws.store.list_versions()
    report = retrain(ws.store, ws.wrong, progress=listen, stop_event=stop)
    assert report.cancelled and not report.promoted and report.new_version is None
    assert [e["kind"] for e in events].count("epoch") == 1 and events[-1]["kind"] == "done"
    assert len(ws.store.list_versions()) == len(versions) and ws.store.lock_info() is None


# -- killed mid-way -------------------------------------------------------------------------------
def _wait_for(predicate, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"retrain ended (code {proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("moment", ["training", "saving"])
def test_sigkill_during_retrain_leaves_a_loadable_store_and_an_intact_wrong_list(workspace, moment):
    ws = workspace
    loaded = ws.store.load()
    review.check(loaded, ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    wrong_bytes, n_rows = ws.wrong.read_bytes(), len(review.read_wrong(ws.wrong))
    current, versions = ws.store.current_version(), [i.version for i in ws.store.list_versions()]
    env = dict(os.environ, SINGTALK_TF_THREADS="2")
    args = [sys.executable, "-m", "singtalk.cli", "retrain", "--wrong", str(ws.wrong), "--models",
            str(ws.store.root), "--jobs", "1"]
    if moment == "training":
        args += ["--epochs", "5000", "--patience", "5000"]
    else:
        args += ["--epochs", "3"]
        env["SINGTALK_TEST_SAVE_PAUSE"] = "model_written:60"
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = ws.store.root / RUNS_DIR

    def log_says(text: str):
        return lambda: any(text in log.read_text() for log in runs.glob(f"*/{LOG_FILE}"))

    try:
        if moment == "training":
            _wait_for(log_says("[epoch] 2/"), 240, proc, "training epochs")
        else:
            _wait_for(log_says("[save] saving"), 240, proc, "the save")
            _wait_for(lambda: any(ws.store.versions_dir.glob(".tmp-*/model.keras")), 30, proc, "the model file")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = ModelStore(ws.store.root)
    assert store.current_version() == current
    assert [i.version for i in store.list_versions()] == versions, "no half-saved version is listed"
    after = store.load()
    prediction = Classifier(after).classify_source(ws.corpus / pd.read_csv(ws.labelled_csv)["path"].iloc[0])
    assert prediction.label in after.class_names and 0.5 <= prediction.confidence <= 1.0
    assert ws.wrong.read_bytes() == wrong_bytes and len(review.read_wrong(ws.wrong)) == n_rows
    with store.lock("after the kill"):  # the dead job's lock does not block the next one
        pass


def test_seed_recipe_adds_identity_layers_and_freezes_the_rest(workspace):
    """--add-layers: new Dense layers before the output start as the identity; earlier layers stay frozen."""
    from singtalk.model import TrainConfig
    from singtalk.retrain import fine_tune_copy

    ws = workspace
    loaded = ws.store.load()
    X = np.random.default_rng(0).random((32, len(loaded.feature_names)), dtype=np.float32)
    copy, trainable = fine_tune_copy(loaded.model, trainable_layers=None, config=TrainConfig(), add_layers=2)
    assert np.allclose(np.asarray(copy(X, training=False)), np.asarray(loaded.model(X, training=False)), atol=1e-6)
    assert trainable[:2] == ["finetune_1", "finetune_2"] and len(trainable) == 3
    frozen = [layer.name for layer in copy.layers if layer.weights and not layer.trainable]
    assert frozen and not set(frozen) & set(trainable)

    review.check(loaded, ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    report = retrain(ws.store, ws.wrong, add_layers=1, force=True)
    tuned = ws.store.load(report.new_version)
    assert len(tuned.model.layers) == len(loaded.model.layers) + 1
    assert "finetune_1" in [layer.name for layer in tuned.model.layers]


def test_seed_ensemble_saves_loads_and_fine_tunes_per_tower(tmp_path):
    """model.average_models: one file whose output is the members' mean; --add-layers and
    --trainable-layers act on every tower, and the copy predicts exactly like the ensemble."""
    import tensorflow as tf

    from singtalk.model import TrainConfig, average_models, build_model, predict_proba, towers
    from singtalk.retrain import fine_tune_copy

    rng = np.random.default_rng(0)
    X = rng.random((40, 12), dtype=np.float32)
    members = []
    for seed in range(3):
        tf.keras.utils.set_random_seed(seed)
        members.append(build_model(12, 2, TrainConfig(hidden_units=(8, 4))))
    ensemble = average_models(members)
    expected = np.mean([predict_proba(m, X) for m in members], axis=0)
    assert np.allclose(predict_proba(ensemble, X), expected, atol=1e-6)
    ensemble.save(tmp_path / "ens.keras")
    loaded = tf.keras.models.load_model(tmp_path / "ens.keras")
    assert np.allclose(predict_proba(loaded, X), expected, atol=1e-6)
    assert [len(t) for t in towers(loaded)] == [5, 5, 5]

    copy, trainable = fine_tune_copy(loaded, trainable_layers=None, config=TrainConfig(), add_layers=1)
    assert np.allclose(predict_proba(copy, X), expected, atol=1e-6)
    assert sorted(trainable) == sorted([f"tower{k}_finetune_1" for k in (1, 2, 3)] +
                                       [f"tower{k}_probabilities" for k in (1, 2, 3)])
    copy, trainable = fine_tune_copy(loaded, trainable_layers=1, config=TrainConfig())
    assert sorted(trainable) == [f"tower{k}_probabilities" for k in (1, 2, 3)]
    assert {layer.name for layer in copy.layers if layer.trainable and layer.weights} == set(trainable)


def test_anchor_penalty_is_zero_at_the_start_and_grows_as_weights_move():
    """L2-SP (``anchor``, measured in docs/model.md and not adopted): strength · Σ‖w − w₀‖² over kernels and biases."""
    import tensorflow as tf

    from singtalk.model import TrainConfig, build_model
    from singtalk.retrain import fine_tune_copy

    tf.keras.utils.set_random_seed(0)
    model = build_model(6, 2, TrainConfig(hidden_units=(4,)))
    copy, trainable = fine_tune_copy(model, trainable_layers=1, config=TrainConfig(), anchor=2.0)
    plain, _ = fine_tune_copy(model, trainable_layers=1, config=TrainConfig())
    start = float(tf.add_n(copy.losses))  # the model's own regularisers, if any, and a zero penalty
    assert start == pytest.approx(float(tf.add_n(plain.losses)) if plain.losses else 0.0, abs=1e-7)
    layer = copy.get_layer(trainable[0])
    layer.bias.assign_add(tf.fill(layer.bias.shape, 0.5))  # biases carry no regulariser of their own
    assert float(tf.add_n(copy.losses)) - start == pytest.approx(2.0 * 0.25 * layer.bias.shape[0], rel=1e-5)


# -- the recipe's pieces (issue 23, item 2; measured in docs/model.md) --------------------------------
def test_replay_by_label_and_source_keeps_every_source_in_proportion():
    from singtalk.retrain import replay_sample

    train = pd.DataFrame({"label": ["singing"] * 60 + ["talking"] * 40,
                          "source": ["a"] * 45 + ["b"] * 15 + ["c"] * 30 + ["d"] * 9 + ["e"]})
    part = replay_sample(train, 20, seed=0, by="label+source")
    assert len(part) == 20 and part.index.is_monotonic_increasing
    counts = part.groupby(["label", "source"]).size()
    expected = {("singing", "a"): 9, ("singing", "b"): 3, ("talking", "c"): 6, ("talking", "d"): 1.8}
    for (label, source), n in expected.items():
        assert abs(counts.get((label, source), 0) - n) <= 1, counts  # in proportion; "e" (one row) joins "c"
    assert replay_sample(train, 500, seed=0, by="label+source") is train


def test_noisy_copies_stay_near_their_row_in_the_unit_range():
    from singtalk.retrain import noisy_copies

    X = np.array([[0.0, 0.5, 1.0], [0.2, 0.4, 0.6]], dtype=np.float32)
    copies = noisy_copies(X, 3, 0.1, np.array([0.1, 0.1, 0.0]), seed=1)
    assert copies.shape == (6, 3) and copies.min() >= 0 and copies.max() <= 1
    assert np.abs(copies[:3] - X[0]).max() < 0.1 and np.abs(copies[3:] - X[1]).max() < 0.1  # row 0's copies first
    assert (copies[:, 2] == np.repeat(X[:, 2], 3)).all(), "a feature with no spread gets no noise"
    np.testing.assert_array_equal(copies, noisy_copies(X, 3, 0.1, np.array([0.1, 0.1, 0.0]), seed=1))
    assert noisy_copies(X, 0, 0.1, np.ones(3), seed=1).shape == (0, 3)


def test_epochs_by_cross_validation_count_the_held_out_mistakes():
    import tensorflow as tf

    from singtalk.model import TrainConfig, build_model
    from singtalk.retrain import cv_epochs, targets

    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(4, 2, TrainConfig(hidden_units=(8,)))
    X_m, y_m = rng.uniform(0, 1, (6, 4)).astype(np.float32), np.array([0, 1, 0, 1, 0, 1])
    X_r = rng.uniform(0, 1, (30, 4)).astype(np.float32)
    chosen, right = cv_epochs(model, X_m, y_m, X_r, targets(rng.integers(0, 2, 30), 2), folds=3,
                              config=TrainConfig(epochs=5, batch_size=8), seed=0)
    assert len(right) == 5 and all(0 <= r <= 6 for r in right)
    assert 1 <= chosen <= 5 and right[chosen - 1] == max(right) and max(right[: chosen - 1], default=-1) < max(right)


def test_the_default_recipe_lowers_the_labelled_set_errors(workspace):
    """Issue 23's scenario at small scale with the default recipe (the whole training table replayed, the old
    model's probabilities as its targets): a labelled set the model never trained on, its mistakes, retrain,
    recheck: errors do not rise, and a refusal says why."""
    ws = workspace
    first = review.check(ws.store.load(), ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    for path in review.read_wrong(ws.wrong)["path"]:
        review.review_row(ws.wrong, path, action="confirm", reviewer="test")
    report = retrain(ws.store, ws.wrong)
    n_original = len(pd.read_csv(ws.store.root / "tables" / "train_features_scaled.csv"))
    assert report.n_replay == n_original and ws.store.read_metadata(report.new_version)["retrain"]["distill"] == 1.0
    new = review.check(ws.store.load(report.new_version), ws.labelled_csv, root=ws.corpus, wrong_path=ws.wrong)
    print(f"\nlabelled set: {first.wrong} → {new.wrong} errors of {first.checked}; {report.reason}")
    assert new.wrong <= 0.7 * first.wrong, "at least 30 % fewer errors"
    assert report.promoted or report.verdict.failures and report.reason == report.verdict.reason
