"""One line for all visitors: a fixed number of classifications at once, first come first served.

The app holds one :class:`Line` per process. A session joins it with :meth:`Line.join`, which gives a
:class:`Place`; :meth:`Place.wait` returns once the place is at the head and a slot is free, so the page can
redraw "you are 3rd in line, about 4 s" between two short waits instead of freezing. Leaving (a finished
classification, a rerun, a closed tab) frees the slot or the place in line at once.

The estimate is the place times the recent mean service time divided by the slots. The line itself is bounded:
past ``max_waiting`` people :meth:`Line.join` raises :class:`LineFull`, whose message says to come back.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from typing import Callable

from .errors import SingtalkError

SLOTS_ENV = "SINGTALK_CLASSIFY_SLOTS"
MAX_WAITING_ENV = "SINGTALK_MAX_WAITING"
DEFAULT_MAX_WAITING = 200
TYPICAL_SERVICE_S = 1.0
"""The estimate's service time before anything has been measured."""


class LineFull(SingtalkError):
    """Too many people already waiting."""


def slots_from_cores() -> int:
    """``$SINGTALK_CLASSIFY_SLOTS`` when set, else the cores this process may use (at least 1).

    One classification keeps one core busy (decoding and features are single-threaded NumPy), so more slots
    than cores only makes every visitor wait longer for the same total work.
    """
    raw = os.environ.get(SLOTS_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def max_waiting_from_env() -> int:
    raw = os.environ.get(MAX_WAITING_ENV, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_WAITING


class Place:
    """One visitor's place: waiting, then served, then gone. Use as a context manager around the work."""

    def __init__(self, line: "Line", number: int):
        self._line, self.number = line, number
        self.served_since: float | None = None
        self.left = False

    def ahead(self) -> int:
        """People before this one still waiting (0 at the head of the line, or once served)."""
        return self._line._ahead(self)

    def estimate_s(self) -> float:
        """Seconds until this place is likely served (0 once served)."""
        return self._line._estimate(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds for a slot; True once this place holds one."""
        return self._line._wait(self, timeout)

    def leave(self) -> None:
        """Free the slot (or the place in line). Safe to call twice."""
        self._line._leave(self)

    def __enter__(self) -> "Place":
        return self

    def __exit__(self, *exc) -> None:
        self.leave()


class Line:
    """First-come first-served admission to ``slots`` concurrent jobs, with at most ``max_waiting`` waiting.

    ``clock`` times the turns (for the estimate); waits are always in real seconds.
    """

    def __init__(self, slots: int, *, max_waiting: int = DEFAULT_MAX_WAITING,
                 clock: Callable[[], float] = time.monotonic):
        if slots < 1:
            raise ValueError("a line needs at least one slot")
        self.slots, self.max_waiting, self.clock = int(slots), int(max_waiting), clock
        self._cond = threading.Condition()
        self._waiting: deque[Place] = deque()
        self._served = 0
        self._numbers = itertools.count(1)
        self._mean_service_s = TYPICAL_SERVICE_S
        self.total_served = 0

    # -- what the page asks ----------------------------------------------------------------------------------
    def join(self) -> Place:
        """A new place at the end of the line; :class:`LineFull` when ``max_waiting`` are already waiting."""
        with self._cond:
            if len(self._waiting) >= self.max_waiting:
                raise LineFull(f"The server is very busy ({len(self._waiting)} people are waiting). "
                               "Try again in a minute.")
            place = Place(self, next(self._numbers))
            self._waiting.append(place)
            self._admit()
            return place

    def try_serve(self) -> Place | None:
        """A place already served when a slot is free and nobody waits, else None (for work that can skip a turn)."""
        with self._cond:
            if self._waiting or self._served >= self.slots:
                return None
            place = Place(self, next(self._numbers))
            self._start(place)
            return place

    def snapshot(self) -> dict:
        """``{"slots", "serving", "waiting", "mean_service_s"}`` now."""
        with self._cond:
            return {"slots": self.slots, "serving": self._served, "waiting": len(self._waiting),
                    "mean_service_s": self._mean_service_s}

    # -- the mechanics -------------------------------------------------------------------------------------
    def _start(self, place: Place) -> None:
        place.served_since = self.clock()
        self._served += 1

    def _admit(self) -> None:
        """Serve the head of the line while slots are free (called with the lock held)."""
        while self._waiting and self._served < self.slots:
            self._start(self._waiting.popleft())
        self._cond.notify_all()

    def _ahead(self, place: Place) -> int:
        with self._cond:
            if place.served_since is not None or place.left:
                return 0
            return self._waiting.index(place)

    def _estimate(self, place: Place) -> float:
        with self._cond:
            if place.served_since is not None or place.left:
                return 0.0
            # Everyone ahead, plus this one's own turn, shared among the slots.
            return (self._waiting.index(place) + 1) * self._mean_service_s / self.slots

    def _wait(self, place: Place, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout  # real time, whatever the clock
        with self._cond:
            while place.served_since is None:
                if place.left:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _leave(self, place: Place) -> None:
        with self._cond:
            if place.left:
                return
            place.left = True
            if place.served_since is None:
                self._waiting.remove(place)
            else:
                self._served -= 1
                self.total_served += 1
                took = max(0.0, self.clock() - place.served_since)
                self._mean_service_s = 0.8 * self._mean_service_s + 0.2 * took
            self._admit()
