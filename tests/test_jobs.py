"""The background job runner: one job at a time, progress, cancel, failures."""

import threading
import time

import pytest

from singtalk.errors import StoreLocked
from singtalk.jobs import JobRunner


def test_runs_reports_and_finishes():
    runner = JobRunner()

    def work(report, stop):
        for i in range(3):
            report({"kind": "epoch", "epoch": i})
        return "ok"

    job = runner.start("train", work)
    runner.wait(5)
    snap = job.snapshot()
    assert snap["state"] == "done" and snap["result"] == "ok"
    assert [e["epoch"] for e in snap["events"]] == [0, 1, 2]


def test_second_job_refused_while_running_then_allowed():
    runner = JobRunner()
    gate = threading.Event()
    runner.start("train", lambda report, stop: gate.wait(5), owner="alice")
    with pytest.raises(StoreLocked, match="alice"):
        runner.start("retrain", lambda report, stop: None)
    gate.set()
    runner.wait(5)
    assert runner.start("retrain", lambda report, stop: 1).kind == "retrain"


def test_cancel_and_failure_states():
    runner = JobRunner()

    def loop(report, stop):
        while not stop.is_set():
            time.sleep(0.01)

    job = runner.start("train", loop)
    job.cancel()
    runner.wait(5)
    assert job.state == "cancelled"

    def boom(report, stop):
        raise ValueError("bad table")

    job = runner.start("train", boom)
    runner.wait(5)
    assert job.state == "failed" and "bad table" in job.error


def test_the_last_finished_job_is_kept_after_a_later_one_is_cancelled_or_fails():
    runner = JobRunner()
    assert runner.last_done(("train", "tune")) is None
    first = runner.start("train", lambda report, stop: {"version": "v1"})
    runner.wait(5)

    def cancelled(report, stop):
        stop.wait(5)

    runner.start("tune", cancelled).cancel()
    runner.wait(5)
    assert runner.current.state == "cancelled"
    assert runner.last_done(("train", "tune")) is first and first.result == {"version": "v1"}
    runner.start("train", lambda report, stop: 1 / 0)
    runner.wait(5)
    assert runner.last_done(("train", "tune")) is first, "a failure does not replace it either"
    runner.start("check", lambda report, stop: "other kind")
    runner.wait(5)
    assert runner.last_done(("train", "tune")) is first and runner.last_done(("check",)).result == "other kind"
