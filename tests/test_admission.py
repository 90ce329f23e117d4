"""The visitors' line (``singtalk.admission``), their download budget (``singtalk.download_budget``), the arenas cap.

Real threads for the line; a hand-moved clock for the hour's window. The app's use of both is tested in
``tests/test_app.py`` (a visitor's second link refused) and ``tests/test_visitors.py`` (Chromium sessions).
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from singtalk.admission import Line, LineFull, slots_from_cores
from singtalk.download_budget import DownloadBudget
from singtalk.errors import DownloadRefused


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the line ------------------------------------------------------------------------------------------
def test_never_more_at_work_than_slots_and_everyone_served_in_order_of_arrival():
    ticks = itertools.count()
    line = Line(2, clock=lambda: float(next(ticks)))  # each admission gets a later tick than the one before
    lock, at_work, most, admitted = threading.Lock(), [0], [0], {}

    def visitor(i: int, joined: threading.Event):
        place = line.join()
        joined.set()
        with place:
            assert place.wait(30)
            admitted[i] = place.served_since
            with lock:
                at_work[0] += 1
                most[0] = max(most[0], at_work[0])
            time.sleep(0.02)
            with lock:
                at_work[0] -= 1

    threads = []
    for i in range(12):  # joined one after the other, so the order of arrival is known
        joined = threading.Event()
        thread = threading.Thread(target=visitor, args=(i, joined))
        thread.start()
        assert joined.wait(5)
        threads.append(thread)
    for thread in threads:
        thread.join(30)
    assert sorted(admitted) == list(range(12))
    assert most[0] == 2
    assert [admitted[i] for i in range(12)] == sorted(admitted.values())  # first come, first served
    assert line.snapshot()["serving"] == 0 and line.snapshot()["waiting"] == 0 and line.total_served == 12


def test_place_and_estimate_while_waiting_and_a_leaver_lets_the_next_in():
    clock = Clock()
    line = Line(1, clock=clock)
    first = line.join()
    assert first.wait(0) and first.ahead() == 0 and first.estimate_s() == 0
    second, third = line.join(), line.join()
    assert not second.wait(0.01) and not third.wait(0.01)
    assert (second.ahead(), third.ahead()) == (0, 1)
    assert third.estimate_s() == pytest.approx(2 * second.estimate_s())
    clock.now += 10.0  # the first visitor's turn took 10 s: the estimate learns from it
    before = third.estimate_s()
    first.leave()
    assert second.wait(0) and third.ahead() == 0
    assert third.estimate_s() > before / 2  # one fewer ahead, but turns now look longer
    second.leave()
    second.leave()  # twice is harmless
    assert third.wait(0)
    third.leave()
    assert line.snapshot() == {"slots": 1, "serving": 0, "waiting": 0, "mean_service_s": line.snapshot()["mean_service_s"]}


def test_someone_who_leaves_the_line_gives_up_their_place():
    line = Line(1)
    holder, quitter, patient = line.join(), line.join(), line.join()
    assert patient.ahead() == 1
    quitter.leave()  # a closed tab while waiting
    assert patient.ahead() == 0 and not quitter.wait(0)
    holder.leave()
    assert patient.wait(0)


def test_a_full_line_says_to_come_back():
    line = Line(1, max_waiting=2)
    line.join()  # served at once: not waiting
    line.join(), line.join()
    with pytest.raises(LineFull, match="very busy.*Try again"):
        line.join()


def test_try_serve_skips_a_turn_instead_of_queueing():
    line = Line(1)
    quick = line.try_serve()
    assert quick is not None and line.try_serve() is None
    waiting = line.join()
    quick.leave()
    assert waiting.wait(0)
    assert line.try_serve() is None  # the slot is the waiting visitor's


def test_slots_follow_the_environment_else_the_cores(monkeypatch):
    monkeypatch.setenv("SINGTALK_CLASSIFY_SLOTS", "3")
    assert slots_from_cores() == 3
    monkeypatch.setenv("SINGTALK_CLASSIFY_SLOTS", "zero")
    assert slots_from_cores() >= 1
    monkeypatch.delenv("SINGTALK_CLASSIFY_SLOTS")
    assert slots_from_cores() >= 1


# -- the download budget ------------------------------------------------------------------------------------
def test_links_per_hour_then_a_plain_refusal_that_says_when():
    clock = Clock()
    budget = DownloadBudget(links=2, megabytes=100, clock=clock)
    budget.start("1.2.3.4")
    clock.now += 600
    budget.start("1.2.3.4")
    budget.start("5.6.7.8")  # another visitor has their own budget
    with pytest.raises(DownloadRefused, match=r"2 links in the last hour.*Try again in 50 minutes"):
        budget.start("1.2.3.4")
    clock.now += 3000  # the first link is an hour old now
    budget.start("1.2.3.4")


def test_bytes_per_hour_cut_the_next_download_and_then_refuse():
    clock = Clock()
    budget = DownloadBudget(links=100, megabytes=10, clock=clock)
    first = budget.start("v")
    assert first.max_bytes == 10 * 1024 * 1024
    first.spend(7 * 1024 * 1024)
    second = budget.start("v")
    assert second.max_bytes == 3 * 1024 * 1024  # what is left of the hour's bytes
    second.spend(3 * 1024 * 1024)
    with pytest.raises(DownloadRefused, match="10 MB .* in the last hour"):
        budget.start("v")
    assert budget.used("v") == (2, 10 * 1024 * 1024)
    clock.now += 3601
    assert budget.used("v") == (0, 0)


def test_budget_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("SINGTALK_LINKS_PER_HOUR", "3")
    monkeypatch.setenv("SINGTALK_DOWNLOAD_MB_PER_HOUR", "1.5")
    budget = DownloadBudget()
    assert budget.links == 3 and budget.max_bytes == int(1.5 * 1024 * 1024)
    monkeypatch.setenv("SINGTALK_LINKS_PER_HOUR", "-1")
    assert DownloadBudget().links == 20  # nonsense falls back to the default


# -- the server's memory -------------------------------------------------------------------------------------
def test_malloc_arenas_are_capped_in_process_unless_the_environment_decided(monkeypatch):
    from singtalk.memory import limit_malloc_arenas

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(4) is True  # glibc (Debian): mallopt accepted it
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
    assert limit_malloc_arenas(4) is False  # the operator's setting stands
