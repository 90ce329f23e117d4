"""Issue 22: a three-class train → check → review → retrain round trip through the real ``singtalk`` CLI.

A small real subset of the corpus (8 clips per class from several sources, every clip from its own speaker
group, none shared between the training set and the labelled check set) goes through every headless step into a
fresh model store. The network is trained for a few epochs only, so it makes real mistakes on the check set,
which a reviewer confirms (one relabelled, the way the app's reviewer sets a label), and retraining learns from.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from singtalk import review
from singtalk.config import REPO_ROOT
from singtalk.dataset import speaker_groups
from singtalk.errors import DatasetError
from singtalk.labels import CLASSES

CLI = [sys.executable, "-m", "singtalk.cli"]
P_COLUMNS = ["p_singing", "p_talking", "p_no_voice"]
# (label, source, clips): one clip per speaker group, short clips only (decoding is most of the cost).
TRAIN_PICK = [("singing", "ravdess", 3), ("singing", "m4singer_demo", 3), ("singing", "gtsinger_demo", 2),
              ("talking", "ravdess", 3), ("talking", "librispeech", 3), ("talking", "speechocean762", 2),
              ("no_voice", "olpc_berklee_tonejs", 6), ("no_voice", "tonejs_loops", 2)]
# The check set adds sources the model never heard (MIR-1K, Korean and Mandarin speech).
CHECK_PICK = [("singing", "mir1k", 2), ("singing", "ravdess", 2), ("singing", "gtsinger_demo", 1),
              ("talking", "kr_emotional_emotiontts", 2), ("talking", "ravdess", 2), ("talking", "aishell1_qianz", 1),
              ("no_voice", "olpc_berklee_tonejs", 5)]
MAX_SECONDS = 12.0
ENV = {"SINGTALK_TF_THREADS": os.environ.get("SINGTALK_TF_THREADS", "2")}


def run_cli(*args):
    proc = subprocess.run([*CLI, *map(str, args)], check=False, capture_output=True, text=True, timeout=600,
                          cwd=REPO_ROOT, env=dict(os.environ, **ENV))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def pick(manifest: pd.DataFrame, wanted, used_groups: set) -> pd.DataFrame:
    """The first clips (by path) of each (label, source), one per speaker group not in ``used_groups``."""
    frame = manifest.fillna({"speaker": ""}).sort_values("path")
    frame = frame.assign(group=speaker_groups(frame))
    parts = []
    for label, source, n in wanted:
        pool = frame[(frame.label == label) & (frame.source == source) & (frame.duration_s <= MAX_SECONDS)
                     & ~frame.group.isin(used_groups)].drop_duplicates("group")
        assert len(pool) >= n, f"the corpus has only {len(pool)} short {label} clips of new speakers in {source}"
        parts.append(pool.head(n))
        used_groups |= set(pool.group.head(n))
    return pd.concat(parts, ignore_index=True)[["path", "label", "speaker", "source", "group"]]


def versions_of(store: Path) -> set[str]:
    return {p.name for p in (store / "versions").iterdir() if (p / "metadata.json").is_file()}


def metadata(store: Path, version: str) -> dict:
    return json.loads((store / "versions" / version / "metadata.json").read_text())


def current(store: Path) -> str:
    return (store / "CURRENT").read_text().strip()


@pytest.mark.slow
def test_three_class_train_check_review_retrain_round_trip(corpus, manifest, tmp_path):
    started = time.perf_counter()
    timings = {}
    used: set = set()
    train_set, check_set = pick(manifest, TRAIN_PICK, used), pick(manifest, CHECK_PICK, used)
    assert not set(train_set.group) & set(check_set.group), "no speaker on both sides"
    assert train_set.group.is_unique and check_set.group.is_unique
    train_csv, check_csv = tmp_path / "train.csv", tmp_path / "labelled.csv"
    train_set.drop(columns="group").to_csv(train_csv, index=False)  # paths relative to the corpus: --root
    check_set[["path", "label"]].to_csv(check_csv, index=False)
    tables, store, wrong_csv = tmp_path / "tables", tmp_path / "store", tmp_path / "review" / "wrong.csv"
    classes = sorted(CLASSES)  # a model's class names are its tables' labels, sorted

    # 1. features: three labels in the tables
    t = time.perf_counter()
    proc = run_cli("features", train_csv, "--root", corpus, "--classes", ",".join(CLASSES), "--out", tables,
                   "--jobs", "2", "--test-size", "0.25")
    timings["features"] = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    assert "24 files, classes: {" in proc.stderr and "failed files: 0" in proc.stdout, proc.stdout + proc.stderr
    train_table = pd.read_csv(tables / "train_features_scaled.csv", keep_default_na=False)
    test_table = pd.read_csv(tables / "test_features_scaled.csv", keep_default_na=False)
    assert len(train_table) + len(test_table) == 24
    assert sorted(train_table.label.unique()) == classes, "every class is trained on"
    assert set(test_table.label) <= set(classes) and len(test_table) > 0
    assert not set(speaker_groups(train_table)) & set(speaker_groups(test_table))
    assert (tables / "scaler.json").is_file()

    # 2. train a few epochs into a fresh store: a three-class version, current
    t = time.perf_counter()
    proc = run_cli("train", "--data", tables, "--models", store, "--epochs", "3", "--patience", "3",
                   "--units", "32,16", "--seed", "0", "--promote", "--note", "round trip")
    timings["train"] = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    saved = re.search(r"saved as (\S+) \(now current\)", proc.stdout)
    assert saved, proc.stdout
    first = saved.group(1)
    assert versions_of(store) == {first} and current(store) == first
    meta = metadata(store, first)
    assert meta["class_names"] == classes and "no_voice" in meta["class_names"]
    assert len(re.findall(r"^epoch \d+/3: loss", proc.stderr, re.MULTILINE)) == meta["metrics"]["epochs_run"] <= 3

    # 3. check a labelled set of other speakers: three probabilities per clip, the mistakes upserted
    t = time.perf_counter()
    proc = run_cli("check", check_csv, "--root", corpus, "--wrong", wrong_csv, "--models", store, "--jobs", "2")
    timings["check"] = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    counts = re.search(r"checked (\d+), failed (\d+), wrong (\d+), new (\d+), resolved (\d+) \(model (\S+)\)",
                       proc.stdout)
    assert counts, proc.stdout
    checked, failed, n_wrong, new, resolved = map(int, counts.groups()[:5])
    assert (checked, failed, resolved, counts.group(6)) == (len(check_set), 0, 0, first)
    assert "skipped" not in proc.stdout, "a three-class model checks no_voice rows instead of skipping them"
    assert n_wrong >= 1, f"a {meta['metrics']['epochs_run']}-epoch model should make mistakes:\n{proc.stdout}"
    assert new == n_wrong, "a fresh wrong list: every mistake is new"

    predictions = pd.read_csv(review.predictions_path_for(wrong_csv), keep_default_na=False)
    assert len(predictions) == len(check_set) and (predictions.error == "").all()
    assert sorted(c for c in predictions.columns if c.startswith("p_")) == sorted(P_COLUMNS)
    assert set(predictions.label) == set(classes), "the check set holds all three classes"
    assert set(predictions.predicted) <= set(classes)
    proba = predictions[P_COLUMNS].astype(float)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=2e-3)
    assert (predictions.predicted == proba.idxmax(axis=1).str[2:]).all()
    assert (predictions.model_version == first).all()
    mistaken = set(predictions.path[predictions.predicted != predictions.label])
    assert len(mistaken) == n_wrong

    wrong = pd.read_csv(wrong_csv, keep_default_na=False, dtype=str)
    assert list(wrong.columns) == review.WRONG_COLUMNS
    assert list(wrong.columns[:6]) == ["path", "label", "predicted", *P_COLUMNS]
    assert len(wrong) == n_wrong and set(wrong.path) == mistaken
    assert (wrong.label != wrong.predicted).all() and set(wrong.label) <= set(classes)
    wrong_proba = wrong[P_COLUMNS].astype(float)  # empty cells would fail here: all three are filled
    np.testing.assert_allclose(wrong_proba.sum(axis=1), 1.0, atol=2e-3)
    np.testing.assert_allclose(wrong.confidence.astype(float), wrong_proba.max(axis=1), atol=1e-3)
    assert set(wrong.status) == {"open"} and (wrong.model_version == first).all()
    assert (wrong.origin == "check:labelled.csv").all() and (wrong.reviewed_at == "").all()

    # 4. review every mistake: confirm them, and relabel one with the reviewer's label (no_voice when one of the
    # mistakes is a no_voice clip: a three-class model accepts it). The labels stay the corpus's true labels.
    by_label = wrong.set_index("path").label
    relabelled = next((p for p, label in by_label.items() if label == "no_voice"), by_label.index[0])
    with pytest.raises(DatasetError, match="not a class of the model"):
        review.review_row(wrong_csv, relabelled, action="relabel", label="rap", class_names=meta["class_names"])
    review.review_row(wrong_csv, relabelled, action="relabel", label=by_label[relabelled], reviewer="roundtrip",
                      note="true label set by the reviewer", class_names=meta["class_names"])
    for path in by_label.index.drop(relabelled):
        review.review_row(wrong_csv, path, action="confirm", reviewer="roundtrip", class_names=meta["class_names"])
    reviewed = review.read_wrong(wrong_csv).set_index("path")
    assert len(reviewed) == n_wrong and (reviewed.reviewed_at != "").all() and (reviewed.reviewer == "roundtrip").all()
    assert reviewed.loc[relabelled, "status"] == "relabelled"
    assert reviewed.loc[relabelled, "label"] == by_label[relabelled]
    assert set(reviewed.drop(index=relabelled).status) <= {"confirmed"}
    assert (reviewed[P_COLUMNS] != "").all().all(), "reviewing keeps the three probabilities"

    # 5. retrain on the reviewed mistakes: a new three-class version, promoted or kept with the reason said.
    # `train` leaves the tables where they were, so retrain asks for them (it replays their training rows).
    proc = run_cli("retrain", "--wrong", wrong_csv, "--models", store)
    refusal = proc.stderr.splitlines()[-1]  # after the "load: backup is version ..." stage line
    assert proc.returncode == 2 and refusal.startswith("error: No scaler.json"), proc.stderr
    assert refusal.endswith("or pass tables_dir / --tables.")
    assert versions_of(store) == {first} and current(store) == first, "a refusal saves nothing"
    t = time.perf_counter()
    proc = run_cli("retrain", "--wrong", wrong_csv, "--models", store, "--tables", tables, "--epochs", "15",
                   "--patience", "5", "--jobs", "1")
    timings["retrain"] = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"^mistakes used: {n_wrong} \(", proc.stdout, re.MULTILINE), proc.stdout
    assert "training started" in proc.stderr and "epoch 1/15" in proc.stderr
    verdict = next((line for line in proc.stdout.splitlines() if line.startswith(("promoted ", "not promoted;"))), proc.stdout)
    promoted = re.fullmatch(rf"promoted (\S+) \(backup: {re.escape(first)}\)", verdict)
    kept = re.fullmatch(rf"not promoted; current stays {re.escape(first)}, new version kept as (\S+)", verdict)
    assert promoted or kept, verdict
    assert f"labelled set: {review.predictions_path_for(wrong_csv)}" in proc.stdout, "check's file is judged on"
    assert ("Promoted: the new model is better" if promoted else "Not promoted: the serving model stays") in proc.stdout
    assert re.search(rf"^\s+labelled set\s+all\s+{len(check_set)}\s", proc.stdout, re.MULTILINE), proc.stdout
    second = (promoted or kept).group(1)
    assert versions_of(store) == {first, second} and second != first
    assert current(store) == (second if promoted else first)
    meta2 = metadata(store, second)
    assert meta2["class_names"] == classes and meta2["parent"] == first
    assert meta2["retrain"]["promoted"] == bool(promoted) == meta2["retrain"]["verdict"]["passed"]
    assert meta2["trained_on"]["retrain"]["mistakes"] == n_wrong
    run = json.loads((store / "versions" / second / "retrain.json").read_text())
    assert run["n_mistakes"] == n_wrong and run["skipped"] == {"dismissed": 0, "unknown_label": 0, "missing_file": 0}

    proc = run_cli("models", "--models", store)
    assert proc.returncode == 0, proc.stderr
    listing = proc.stdout.splitlines()
    assert len(listing) == 2, proc.stdout
    assert all(f"  {'/'.join(classes)}  " in line for line in listing), "both versions listed with three classes"
    starred = [line.split()[1] for line in listing if line.startswith("*")]
    assert starred == [current(store)]

    # the new version loads and answers three probabilities (from the check's feature cache: no decoding)
    from singtalk.registry import ModelStore

    loaded = ModelStore(store).load(second)
    assert list(loaded.class_names) == classes
    cache = review.FeatureCache(review.features_path_for(wrong_csv), feature_version=meta2["feature_version"],
                                feature_names=loaded.feature_names)
    raw = [cache.get(p) for p in sorted(mistaken)]
    assert all(v is not None for v in raw), "check cached every clip's features"
    proba2 = loaded.predict_proba(np.vstack(raw))
    assert proba2.shape == (n_wrong, 3)
    np.testing.assert_allclose(proba2.sum(axis=1), 1.0, atol=1e-4)

    # checking again with the current model keeps the reviewers' work and refreshes the three probabilities
    t = time.perf_counter()
    proc = run_cli("check", check_csv, "--root", corpus, "--wrong", wrong_csv, "--models", store, "--jobs", "1")
    timings["check again"] = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    again = re.search(r"checked (\d+), failed 0, wrong (\d+), new (\d+), resolved (\d+) \(model (\S+)\)", proc.stdout)
    assert again and again.group(5) == current(store), proc.stdout
    checked2, wrong2, new2, resolved2 = map(int, again.groups()[:4])
    after = review.read_wrong(wrong_csv).set_index("path")
    assert checked2 == len(check_set) and len(after) == n_wrong + new2
    assert resolved2 == (after.status == "resolved").sum() == len(mistaken) - (wrong2 - new2)
    assert (after.loc[sorted(mistaken), "reviewer"] == "roundtrip").all(), "reviewer fields survive a check"
    still_wrong = after.loc[sorted(mistaken)].query("status != 'resolved'")
    assert set(still_wrong.status) <= {"confirmed", "relabelled"}
    assert (after.model_version == current(store)).all() and (after[P_COLUMNS] != "").all().all()
    if promoted:
        assert resolved2 >= 1, "the promoted model gets some reviewed mistake right"

    timings["total"] = time.perf_counter() - started
    print(f"\n{verdict}; mistakes {n_wrong}/{checked}, after retraining {wrong2} ({resolved2} resolved); "
          + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
