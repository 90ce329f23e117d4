"""The background job runner: one job at a time, progress, cancel, failures."""

import threading
import time

import pytest

from singtalk.errors import StoreLocked
from singtalk.jobs import JobRunner, progress_reporter


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


def test_progress_events_carry_the_rate_and_the_time_left():
    """A job's ``(done, total)`` becomes events with the rate and time left, measured as the CLI measures them:
    items kept from an earlier run count as done at once, not as speed; events at most every 0.25 s."""
    from appkit.jobs_view import progress_text

    events, now = [], [100.0]
    progress = progress_reporter(events.append, clock=lambda: now[0])
    progress(30, 600)  # kept from an earlier run
    for done in range(31, 101):
        now[0] += 0.1  # 10 files/s
        progress(done, 600)
    assert events[0] == {"kind": "progress", "done": 30, "total": 600, "unit": "files", "rate": None, "left": None}
    assert 20 <= len(events) <= 30, "throttled: 71 calls in 7 s"
    last = events[-1]
    assert last["done"] in (99, 100) and last["rate"] == pytest.approx(10.0) and last["left"] == pytest.approx(50, abs=1)
    assert progress_text({**last, "done": 240, "left": 36.0}) == "240 of 600 files, 10 files/s, about 36 s left"
    assert progress_text(events[0]) == "30 of 600 files", "no rate before a second of work"
    progress(600, 600)
    assert events[-1]["done"] == 600 and progress_text(events[-1]).endswith("files/s"), "the last is always told"
    assert progress_text({"done": 1200, "total": 3300, "rate": 0.25, "left": 8400.0}) == \
        "1,200 of 3,300 files, 0.25 files/s, about 2 h 20 min left"
