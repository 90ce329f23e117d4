"""Checking a labelled set and the wrong list: structure errors, upsert semantics, locking, the CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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


def test_read_labelled_resolves_relative_paths_and_drops_repeats(tmp_path):
    touch(tmp_path / "clips" / "a.wav")
    csv = write_csv(tmp_path / "set.csv", [{"path": "a.wav", "label": "singing"}] * 2)
    frame = review.read_labelled(csv, root=tmp_path / "clips", class_names=["singing", "talking"])
    assert list(frame["path"]) == [str((tmp_path / "clips" / "a.wav").resolve())]
    assert list(frame.columns[:4]) == ["path", "label", "speaker", "source"]


def test_read_wrong_refuses_a_damaged_list_and_normalises_an_old_one(tmp_path):
    damaged = tmp_path / "damaged.csv"
    damaged.write_text('path,label\n"unterminated,singing\n')
    with pytest.raises(DatasetError, match="left untouched"):
        review.read_wrong(damaged)
    touch(tmp_path / "a.wav")
    old = write_csv(tmp_path / "old.csv", [{"path": "a.wav", "label": "singing", "predicted": "talking"},
                                           {"path": str(tmp_path / "a.wav"), "label": "singing", "predicted": "talking"}])
    frame = review.read_wrong(old)
    assert list(frame.columns) == review.WRONG_COLUMNS
    assert len(frame) == 1 and frame.loc[0, "path"] == str((tmp_path / "a.wav").resolve())
    assert frame.loc[0, "status"] == "open"


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
                                         "model_version", "checked_at"]
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
                      predicted=right["predicted"], p_singing=float(right["p_singing"]),
                      confidence=0.9, model_version=loaded.version)
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
