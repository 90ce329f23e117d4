"""Checking a labelled set and the wrong list: structure errors, upsert semantics, three labels, locking, the CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from singtalk import review
from singtalk.errors import DatasetError

from .store_fixtures import base_store, workspace  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parent.parent
TIMESTAMPS = ["found_at", "reviewed_at"]


def write_csv(path: Path, rows: list[dict] | pd.DataFrame) -> Path:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    frame.to_csv(path, index=False)
    return path


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- structure --------------------------------------------------------------------------------
def test_read_labelled_names_missing_columns(tmp_path):
    csv = write_csv(tmp_path / "set.csv", [{"file": "a.wav", "class": "singing"}])
    with pytest.raises(DatasetError, match=r"lacks column\(s\) path, label.*found: file, class"):
        review.read_labelled(csv)


def test_read_labelled_names_every_problem_with_examples(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        touch(tmp_path / "clips" / name)
    rows = [{"path": "a.wav", "label": "singing"}, {"path": "b.wav", "label": "talking"},
            {"path": "c.wav", "label": "mixture"}, {"path": "d.wav", "label": "rap"},
            {"path": "b.wav", "label": "singing"}, {"path": "e.wav", "label": ""}]
    rows += [{"path": f"gone{i}.wav", "label": "talking"} for i in range(7)]
    csv = write_csv(tmp_path / "set.csv", rows)
    with pytest.raises(DatasetError) as caught:
        review.read_labelled(csv, root=tmp_path / "clips", class_names=["singing", "talking"], max_examples=3)
    message = str(caught.value)
    assert "7 file(s) do not exist" in message and "gone0.wav" in message and "(4 more)" in message
    assert "gone5.wav" not in message  # at most 3 examples
    assert "2 row(s) have label(s) the model does not know" in message and "'mixture': 1" in message
    assert "'rap': 1" in message and "knows singing, talking" in message
    assert "1 row(s) with an empty path or label (lines 7)" in message
    assert "1 file(s) listed with different labels" in message and "b.wav" in message


@pytest.mark.parametrize("text,words", [
    ("these are my songs\nfirst one\nsecond, third\n",
     "set.csv: line 3 has 2 comma-separated values but the first line has 1. A CSV here starts with a line "
     "path,label[,speaker,source]"),
    ('path,label\na.wav,singing\n"b.wav,talking\n', "set.csv: a double quote opened on line 3 is never closed"),
    (bytes(range(256)) * 8, "set.csv is not a text file (it holds binary data)"),
    ("", "set.csv lacks column(s) path, label"),
])
def test_a_bad_labelled_csv_is_described_in_plain_words(tmp_path, text, words):
    csv = tmp_path / "set.csv"
    csv.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DatasetError) as caught:
        review.read_labelled(csv)
    message = str(caught.value)
    assert words in message
    assert "C error" not in message and "tokenizing" not in message and "codec" not in message


def test_a_bad_manifest_is_described_in_plain_words(tmp_path):
    from singtalk import dataset

    csv = tmp_path / "manifest.csv"
    csv.write_text("path,label\na.wav,singing,alice,extra\n")
    with pytest.raises(DatasetError, match="line 2 has 4 comma-separated values but the first line has 2"):
        dataset.from_manifest(csv)


def test_read_labelled_resolves_relative_paths_and_drops_repeats(tmp_path):
    touch(tmp_path / "clips" / "a.wav")
    csv = write_csv(tmp_path / "set.csv", [{"path": "a.wav", "label": "singing"}] * 2)
    frame = review.read_labelled(csv, root=tmp_path / "clips", class_names=["singing", "talking"])
    assert list(frame["path"]) == [str((tmp_path / "clips" / "a.wav").resolve())]
    assert list(frame.columns[:4]) == ["path", "label", "speaker", "source"]


def test_read_wrong_refuses_a_damaged_list_and_normalises_an_old_one(tmp_path):
    damaged = tmp_path / "damaged.csv"
    damaged.write_text('path,label\n"unterminated,singing\n')
    with pytest.raises(DatasetError, match="left untouched") as caught:
        review.read_wrong(damaged)
    assert "a double quote opened on line 2 is never closed" in str(caught.value)
    assert "C error" not in str(caught.value)
    touch(tmp_path / "a.wav")
    old = write_csv(tmp_path / "old.csv", [{"path": "a.wav", "label": "singing", "predicted": "talking"},
                                           {"path": str(tmp_path / "a.wav"), "label": "singing", "predicted": "talking"}])
    frame = review.read_wrong(old)
    assert list(frame.columns) == review.WRONG_COLUMNS
    assert len(frame) == 1 and frame.loc[0, "path"] == str((tmp_path / "a.wav").resolve())
    assert frame.loc[0, "status"] == "open"


def test_a_list_from_before_three_labels_loads_and_the_next_write_adds_the_columns(tmp_path):
    """A wrong list written when it had only ``p_singing``: read as is, and the next upsert writes every
    column, keeping the old row's values."""
    assert review.WRONG_COLUMNS[2:6] == ["predicted", "p_singing", "p_talking", "p_no_voice"]
    old_columns = ["path", "label", "predicted", "p_singing", "confidence", "status", "found_at", "model_version",
                   "reviewed_at", "reviewer", "note", "origin"]
    a, b = touch(tmp_path / "a.wav"), touch(tmp_path / "b.wav")
    wrong = write_csv(tmp_path / "wrong_audios.csv", pd.DataFrame(
        [[str(a), "singing", "talking", "0.2000", "0.8000", "confirmed", "t0", "v1", "t1", "ana", "sure", "app"]],
        columns=old_columns))
    frame = review.read_wrong(wrong)
    assert frame.loc[0, "p_singing"] == "0.2000" and frame.loc[0, "p_talking"] == frame.loc[0, "p_no_voice"] == ""
    review.add_report(wrong, b, label="no_voice", predicted="singing", confidence=0.7, model_version="v2",
                      probabilities={"singing": 0.7, "talking": 0.1, "no_voice": 0.2})
    on_disk = pd.read_csv(wrong, dtype=str, keep_default_na=False)
    assert list(on_disk.columns) == review.WRONG_COLUMNS
    first, second = on_disk.iloc[0], on_disk.iloc[1]
    assert (first.p_singing, first.p_talking, first.status, first.reviewer) == ("0.2000", "", "confirmed", "ana")
    assert (second.label, second.predicted) == ("no_voice", "singing")
    assert (second.p_singing, second.p_talking, second.p_no_voice) == ("0.7000", "0.1000", "0.2000")


def test_reports_take_any_class_and_the_old_p_singing_keyword(tmp_path):
    wrong = tmp_path / "wrong.csv"
    clip, other = touch(tmp_path / "clip.wav"), touch(tmp_path / "other.wav")
    row = review.add_report(wrong, clip, label="singing", predicted="talking", p_singing=0.3, confidence=0.7,
                            model_version="v1")
    assert (row["p_singing"], row["p_talking"], row["p_no_voice"]) == ("0.3000", "", "")
    # a two-class model's answer: p_no_voice stays empty, and an earlier three-class value is cleared
    review.add_report(wrong, other, label="talking", predicted="no_voice", confidence=0.6, model_version="v3",
                      probabilities={"singing": 0.1, "talking": 0.3, "no_voice": 0.6},
                      class_names=["singing", "talking", "no_voice"])
    row = review.add_report(wrong, other, label="talking", predicted="singing", confidence=0.8, model_version="v2",
                            probabilities={"singing": 0.8, "talking": 0.2})
    assert (row["p_singing"], row["p_talking"], row["p_no_voice"]) == ("0.8000", "0.2000", "")
    assert row["model_version"] == "v2"
    with pytest.raises(DatasetError, match="'no_voice' is not a class of the model"):
        review.add_report(wrong, clip, label="no_voice", predicted="singing", confidence=0.9, model_version="v2",
                          probabilities={"singing": 0.9, "talking": 0.1}, class_names=["singing", "talking"])
    with pytest.raises(DatasetError, match="needs a different, true label"):
        review.add_report(wrong, clip, label="no_voice", predicted="no_voice", confidence=0.9, model_version="v3")
    # relabel: to any class of the model, and only to one when the classes are given
    row = review.review_row(wrong, clip, action="relabel", label="no_voice", reviewer="ana",
                            class_names=["singing", "talking", "no_voice"])
    assert (row["label"], row["status"]) == ("no_voice", "relabelled")
    with pytest.raises(DatasetError, match="'rap' is not a class of the model.*singing, talking, no_voice"):
        review.review_row(wrong, clip, action="relabel", label="rap", class_names=["singing", "talking", "no_voice"])
    assert review.read_wrong(wrong).set_index("path").loc[str(clip.resolve()), "label"] == "no_voice"


# -- check and upsert ---------------------------------------------------------------------------
def test_check_upserts_mistakes_keeps_reviews_marks_resolved_and_is_idempotent(workspace, tmp_path):
    ws = workspace
    loaded = ws.store.load()
    labelled = review.read_labelled(ws.labelled_csv, root=ws.corpus)
    broken = touch(tmp_path / "broken.flac", b"not audio at all")
    with_broken = pd.concat([labelled, pd.DataFrame([{"path": str(broken), "label": "talking"}])], ignore_index=True)
    labelled_csv = write_csv(tmp_path / "labelled.csv", with_broken[["path", "label"]])

    first = review.check(loaded, labelled_csv, wrong_path=ws.wrong)
    assert (first.checked, first.failed) == (len(labelled), 1)
    assert first.wrong == first.new > 5, "the biased model should make real mistakes"
    assert first.resolved == 0
    predictions = pd.read_csv(first.predictions_path, dtype=str, keep_default_na=False)
    assert first.predictions_path == ws.wrong.with_name("wrong_audios.predictions.csv")
    assert list(predictions.columns) == ["path", "label", "predicted", "p_singing", "p_talking", "error",
                                         "model_version", "checked_at", "source"]
    assert len(predictions) == len(with_broken)
    bad = predictions[predictions["path"] == str(broken.resolve())].iloc[0]
    assert bad["predicted"] == "" and bad["error"], "the failure is logged with its error"
    wrong = review.read_wrong(ws.wrong)
    assert len(wrong) == first.wrong and wrong["path"].is_unique and set(wrong["status"]) == {"open"}
    assert str(broken.resolve()) not in set(wrong["path"])
    assert (wrong["label"] != wrong["predicted"]).all() and (wrong["model_version"] == loaded.version).all()
    mistaken = set(wrong["path"])
    expected = set(predictions.loc[(predictions["label"] != predictions["predicted"]) & (predictions["error"] == ""), "path"])
    assert mistaken == expected
    by_path = predictions.set_index("path")
    for column in ("p_singing", "p_talking"):  # every class of the model; the two-class model has no p_no_voice
        assert (wrong[column] == by_path.loc[wrong["path"], column].to_numpy()).all(), column
    assert (wrong["p_no_voice"] == "").all()

    # reviewer actions: confirm, relabel (to what the model says), dismiss
    confirmed, relabelled, dismissed = wrong["path"].iloc[:3]
    review.review_row(ws.wrong, confirmed, action="confirm", reviewer="ana", note="clearly speech")
    row = review.review_row(ws.wrong, relabelled, action="relabel",
                            label=wrong.loc[wrong["path"] == relabelled, "predicted"].iloc[0], reviewer="bo")
    assert row["status"] == "relabelled" and row["reviewed_at"]
    review.review_row(ws.wrong, dismissed, action="dismiss", reviewer="cy", note="noisy")
    # a user report on a clip the model gets right (wrong "true" label): the labelled set corrects it
    right = predictions[(predictions["label"] == predictions["predicted"]) & (predictions["error"] == "")].iloc[0]
    review.add_report(ws.wrong, right["path"], label="singing" if right["predicted"] == "talking" else "talking",
                      predicted=right["predicted"], confidence=0.9, model_version=loaded.version,
                      probabilities={"singing": float(right["p_singing"]), "talking": float(right["p_talking"])},
                      class_names=loaded.class_names)
    reviewed = review.read_wrong(ws.wrong).set_index("path")

    second = review.check(loaded, labelled_csv, wrong_path=ws.wrong)
    after = review.read_wrong(ws.wrong).set_index("path")
    assert after.index.is_unique and len(after) == first.wrong + 1
    assert second.new == 0 and second.resolved == 2  # the relabelled row and the false report
    assert after.loc[confirmed, "status"] == "confirmed"
    assert after.loc[dismissed, "status"] == "dismissed"
    assert after.loc[relabelled, "status"] == "resolved"
    for path in (confirmed, relabelled, dismissed):
        for column in ("label", "reviewed_at", "reviewer", "note"):
            assert after.loc[path, column] == reviewed.loc[path, column], (path, column)
    assert after.loc[right["path"], "status"] == "resolved"
    assert after.loc[right["path"], "label"] == right["label"] == after.loc[right["path"], "predicted"]
    assert second.wrong == first.wrong - 1  # the relabelled clip now agrees with the model

    third = review.check(loaded, labelled_csv, wrong_path=ws.wrong)
    again = review.read_wrong(ws.wrong).set_index("path")
    assert (third.new, third.resolved, third.wrong) == (0, 0, second.wrong)
    pd.testing.assert_frame_equal(again.drop(columns=TIMESTAMPS), after.drop(columns=TIMESTAMPS))
    assert not list(ws.wrong.parent.glob(".wrong_audios.csv.*.tmp")), "no temp files left"


def test_reopen_and_unknown_rows(tmp_path):
    wrong = tmp_path / "wrong.csv"
    clip = touch(tmp_path / "clip.wav")
    review.add_report(wrong, clip, label="singing", predicted="talking", p_singing=0.2, confidence=0.8,
                      model_version="v1")
    review.review_row(wrong, clip, action="dismiss", reviewer="ana")
    row = review.review_row(wrong, clip, action="reopen", reviewer="bo", note="second look")
    assert (row["status"], row["reviewer"], row["note"], row["origin"]) == ("open", "bo", "second look", "app")
    with pytest.raises(DatasetError, match="not in wrong.csv"):
        review.review_row(wrong, tmp_path / "other.wav", action="confirm")
    with pytest.raises(DatasetError, match="needs the true label"):
        review.review_row(wrong, clip, action="relabel")
    with pytest.raises(ValueError, match="action must be one of"):
        review.review_row(wrong, clip, action="delete")
    with pytest.raises(DatasetError, match="already said"):
        review.add_report(wrong, clip, label="talking", predicted="talking", p_singing=0.2, confidence=0.8,
                          model_version="v1")
    assert len(review.read_wrong(wrong)) == 1


# -- three labels ---------------------------------------------------------------------------------
def no_voice_clips(corpus: Path, n: int, *, skip: int = 0) -> list[str]:
    """``n`` corpus no_voice clips (instrument phrases and sounds) long enough to keep sound after the trim."""
    manifest = pd.read_csv(corpus / "manifest.csv", dtype=str, keep_default_na=False)
    pool = manifest[(manifest["label"] == "no_voice") & (manifest["duration_s"].astype(float) >= 3)]
    return [str(corpus / p) for p in pool.sample(n=n + skip, random_state=11)["path"].iloc[skip:]]


def test_check_with_a_two_class_model_skips_no_voice_rows_and_counts_them(workspace, capsys):
    from singtalk.cli import main

    ws = workspace
    labelled = review.read_labelled(ws.labelled_csv, root=ws.corpus)[["path", "label"]]
    silent_music = no_voice_clips(ws.corpus, 4)
    with_no_voice = pd.concat([labelled, pd.DataFrame({"path": silent_music, "label": "no_voice"})], ignore_index=True)
    labelled_csv = write_csv(ws.wrong.parent / "with_no_voice.csv", with_no_voice)
    result = review.check(ws.store.load(), labelled_csv, wrong_path=ws.wrong)
    assert result.skipped == {"no_voice": 4} and result.checked + result.failed == len(labelled)
    assert "4 labelled no_voice skipped (the model has no such class)" in result.summary()
    seen = set(result.predictions["path"]) | set(review.read_wrong(ws.wrong)["path"])
    assert len(seen) > 100 and not {review.resolve_path(p) for p in silent_music} & seen

    code = main(["check", str(labelled_csv), "--wrong", str(ws.wrong), "--models", str(ws.store.root)])
    assert code == 0
    out = capsys.readouterr().out
    assert "skipped 4 labelled no_voice: the model has no such class (it knows singing, talking)" in out
    only = write_csv(ws.wrong.parent / "only_no_voice.csv", pd.DataFrame({"path": silent_music, "label": "no_voice"}))
    with pytest.raises(DatasetError, match="Nothing to check: every file is labelled with a class the model lacks"):
        review.check(ws.store.load(), only, wrong_path=ws.wrong)
    typo = write_csv(ws.wrong.parent / "typo.csv", pd.DataFrame({"path": silent_music, "label": "no-voice"}))
    with pytest.raises(DatasetError, match="label\\(s\\) the model does not know .*'no-voice': 4"):
        review.check(ws.store.load(), typo, wrong_path=ws.wrong)


@pytest.fixture(scope="module")
def three_class_store(corpus, tmp_path_factory):
    """A small real three-class model (singing, talking, no_voice) trained on corpus clips, and a check set
    of other clips of the three classes."""
    from singtalk import dataset
    from singtalk.model import TrainConfig
    from singtalk.registry import ModelStore
    from singtalk.training import load_tables, save_outcome, train_tables

    manifest = pd.read_csv(corpus / "manifest.csv", dtype=str, keep_default_na=False)
    voiced = manifest[manifest["label"].isin(["singing", "talking"])
                      & manifest["source"].isin(["mir1k", "librispeech", "ravdess"])]
    picked = voiced.groupby(["label", "source"]).sample(n=6, random_state=5)
    nv = no_voice_clips(corpus, 28)
    voiced_rows = picked[["path", "label", "speaker", "source"]].assign(path=[str(corpus / p) for p in picked["path"]])
    train = pd.concat([voiced_rows,
                       pd.DataFrame({"path": nv[:20], "label": "no_voice", "speaker": [f"nv{i}" for i in range(20)],
                                     "source": "no_voice"})], ignore_index=True)
    root = tmp_path_factory.mktemp("three-class") / "models"
    dataset.build_tables(dataset.normalise_labelled(train), root / "tables", test_size=0.2, seed=5, jobs=2)
    tables = load_tables(root / "tables")
    assert set(tables.class_names) == {"singing", "talking", "no_voice"}
    outcome = train_tables(tables, TrainConfig(hidden_units=(32,), epochs=40, patience=8, seed=5))
    store = ModelStore(root)
    save_outcome(store, outcome, promote=True, note="three-class test model")
    rest = voiced[~voiced["path"].isin(picked["path"])].groupby("label").sample(n=6, random_state=6)
    check_set = pd.concat([pd.DataFrame({"path": [str(corpus / p) for p in rest["path"]], "label": rest["label"]}),
                           pd.DataFrame({"path": nv[20:], "label": "no_voice"})], ignore_index=True)
    return store, check_set


def test_check_with_a_three_class_model_takes_no_voice_rows(three_class_store, tmp_path):
    store, check_set = three_class_store
    loaded = store.load()
    assert set(loaded.class_names) == {"singing", "talking", "no_voice"}
    wrong = tmp_path / "wrong_audios.csv"
    result = review.check(loaded, check_set, wrong_path=wrong)
    assert result.skipped == {} and result.checked + result.failed == len(check_set) == 20
    predictions = result.predictions.set_index("path")
    assert {f"p_{c}" for c in loaded.class_names} <= set(predictions.columns)
    heard = predictions[predictions["error"] == ""]
    p = heard[[f"p_{c}" for c in loaded.class_names]].astype(float)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-3)
    no_voice = heard[heard["label"] == "no_voice"]
    assert len(no_voice) >= 6 and (no_voice["predicted"] == "no_voice").mean() >= 0.5, no_voice[["predicted"]]
    listed = review.read_wrong(wrong)
    assert set(listed["path"]) == set(heard.index[heard["label"] != heard["predicted"]])
    assert (listed["p_no_voice"] != "").all() and (listed["p_talking"] != "").all()
    assert list(pd.read_csv(wrong, nrows=0).columns) == review.WRONG_COLUMNS

    # a reviewer relabels a clip to no_voice; the next check keeps the label and marks it right when it is
    target = heard.index[heard["predicted"] == "no_voice"][0]
    if target not in set(listed["path"]):
        review.add_report(wrong, target, label="talking", predicted="no_voice", confidence=0.9,
                          model_version=loaded.version, probabilities={"no_voice": 0.9, "singing": 0.05,
                                                                       "talking": 0.05},
                          class_names=loaded.class_names)
    review.review_row(wrong, target, action="relabel", label="no_voice", reviewer="ana",
                      class_names=loaded.class_names)
    again = review.check(loaded, check_set, wrong_path=wrong)
    row = review.read_wrong(wrong).set_index("path").loc[target]
    assert (row["label"], row["status"], row["predicted"]) == ("no_voice", "resolved", "no_voice")
    assert again.resolved >= 1


# -- concurrency ----------------------------------------------------------------------------------
WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from singtalk import review
    wrong, folder, tag, n = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    for i in range(n):
        clip = folder / f"{tag}-{i}.wav"
        review.add_report(wrong, clip, label="singing", predicted="talking", p_singing=0.1, confidence=0.9,
                          model_version="v1", origin=tag)
        if i % 3 == 0:
            review.review_row(wrong, clip, action="confirm", reviewer=tag)
""")


def test_two_processes_adding_rows_lose_nothing(tmp_path):
    n = 40
    for tag in ("a", "b"):
        for i in range(n):
            touch(tmp_path / "clips" / f"{tag}-{i}.wav")
    wrong = tmp_path / "wrong_audios.csv"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), str(wrong), str(tmp_path / "clips"), tag, str(n)],
                              cwd=REPO, stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    frame = review.read_wrong(wrong)
    assert len(frame) == 2 * n and frame["path"].is_unique
    assert frame["origin"].value_counts().to_dict() == {"a": n, "b": n}
    confirmed = frame[frame["status"] == "confirmed"]
    assert len(confirmed) == 2 * len(range(0, n, 3))
    assert set(confirmed["reviewer"]) == {"a", "b"}


# -- command line ---------------------------------------------------------------------------------
def test_check_command_prints_counts_and_writes_both_files(workspace, capsys):
    from singtalk.cli import main

    ws = workspace
    predictions = ws.wrong.parent / "preds.csv"
    code = main(["check", str(ws.labelled_csv), "--root", str(ws.corpus), "--wrong", str(ws.wrong),
                 "--predictions", str(predictions), "--models", str(ws.store.root), "--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 0
    n_wrong = len(review.read_wrong(ws.wrong))
    assert f"checked {len(pd.read_csv(ws.labelled_csv))}, failed 0, wrong {n_wrong}, new {n_wrong}" in out
    assert len(pd.read_csv(predictions)) == len(pd.read_csv(ws.labelled_csv))
    bad = ws.wrong.parent / "bad.csv"
    write_csv(bad, [{"path": "missing.wav", "label": "singing"}])
    assert main(["check", str(bad), "--wrong", str(ws.wrong), "--models", str(ws.store.root)]) == 2
    assert "do not exist" in capsys.readouterr().err
