"""The Dataset page's table build as a person sees it: count, rate and time left while it runs; Cancel keeps the
features computed so far, and the next build computes only the rest (the same library code as the CLI)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import streamlit_webrtc

from singtalk import dataset
from singtalk.audio import write_wav
from singtalk.jobs import runner
from tests.app_fixtures import fake_webrtc_streamer
from tests.conftest import spoken_buzz, sung_tone
from tests.test_app import fresh_app, wait_for_job

N_PER_CLASS = 8


@pytest.fixture()
def labelled_folder(app_env) -> Path:
    """Class folders of distinct synthetic clips inside the app's work folder (typed paths must be inside)."""
    root = Path(app_env["SINGTALK_WORK"]) / "clips"
    for i in range(N_PER_CLASS):
        write_wav(root / "singing" / f"sung{i}.wav", sung_tone(2.0, notes=(180.0 + 15 * i, 250.0)))
        write_wav(root / "talking" / f"spoken{i}.wav", spoken_buzz(2.0 + 0.1 * i))
    return root


def _progress(job) -> dict:
    events = [e for e in job.snapshot()["events"] if e.get("kind") == "progress"]
    return events[-1] if events else {}


def _build(at, folder: Path, out: Path):
    at.text_input(key="build-source").set_value(str(folder))
    at.text_input(key="build-classes").set_value("singing, talking")
    at.text_input(key="build-out").set_value(str(out))
    next(b for b in at.button if b.label == "Build feature table").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = runner().current
    assert job is not None and job.kind == "features"
    return job


def test_a_build_shows_its_pace_and_cancel_keeps_what_is_done(app_env, test_store, labelled_folder,
                                                              monkeypatch):
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", fake_webrtc_streamer)
    monkeypatch.setenv("SINGTALK_TEST_CLIP_DELAY", "1")  # each file takes a second more: time to look
    out = Path(app_env["SINGTALK_WORK"]) / "tables-built"
    total = 2 * N_PER_CLASS
    at = fresh_app()
    at.switch_page("app_pages/dataset.py").run()
    job = _build(at, labelled_folder, out)

    deadline = time.monotonic() + 120
    while not (_progress(job).get("rate") and _progress(job)["done"] <= total - 6) and time.monotonic() < deadline:
        assert job.running, job.snapshot()["error"]
        time.sleep(0.1)
    at.run()
    bar = [p.proto.text for p in at.get("progress")]
    assert bar and f"of {total} files, " in bar[0] and " files/s, about " in bar[0] and " s left" in bar[0], bar
    at.button(key="cancel-build").click().run()
    job = wait_for_job()
    assert job.state == "cancelled"
    kept = len((out / dataset.FEATURE_CACHE).read_text().splitlines())
    assert 1 <= kept < total and not (out / dataset.SCALER_FILE).exists()
    at.run()
    assert any("was cancelled" in w.value for w in at.warning)
    assert any("building again computes only the files not done yet" in c.value for c in at.caption)

    monkeypatch.delenv("SINGTALK_TEST_CLIP_DELAY")
    job = _build(at, labelled_folder, out)
    job = wait_for_job()
    assert job.state == "done", job.error
    notes = [e["text"] for e in job.snapshot()["events"] if e.get("kind") == "note"]
    assert notes and notes[0].startswith(f"{kept} of {total} files' features kept from an earlier run")
    result = job.snapshot()["result"]
    assert result["n_train"] + result["n_test"] == total
    assert len((out / dataset.FEATURE_CACHE).read_text().splitlines()) == total, "each file computed once"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
