"""How many links, and how many bytes, one visitor may download per hour.

A public page that downloads whatever link it is given is a free downloader for anyone with a script. One
:class:`DownloadBudget` per process keeps, for each visitor key (their address, else their session), the links
started and the bytes downloaded in the last ``window_s`` seconds. :meth:`DownloadBudget.start` counts a link
and returns a :class:`Ticket`, whose ``max_bytes`` is what is left of the byte budget (the download is cut
there) and whose :meth:`Ticket.spend` charges the bytes actually fetched. Past either limit the visitor is told
in plain words when they may try again.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

from .errors import DownloadRefused

LINKS_ENV = "SINGTALK_LINKS_PER_HOUR"
MB_ENV = "SINGTALK_DOWNLOAD_MB_PER_HOUR"
DEFAULT_LINKS_PER_HOUR = 20
DEFAULT_MB_PER_HOUR = 500.0
WINDOW_S = 3600.0


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def _in_minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


@dataclass
class Ticket:
    """One permitted download: cut it at ``max_bytes``, then :meth:`spend` what it took."""

    budget: "DownloadBudget"
    visitor: str
    max_bytes: int

    def spend(self, n_bytes: int) -> None:
        self.budget._spend(self.visitor, int(n_bytes))


class DownloadBudget:
    """Links and bytes per visitor over a sliding window (thread-safe; one per process)."""

    def __init__(self, *, links: int | None = None, megabytes: float | None = None, window_s: float = WINDOW_S,
                 max_visitors: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.links = int(links if links is not None else _env_number(LINKS_ENV, DEFAULT_LINKS_PER_HOUR))
        mb = megabytes if megabytes is not None else _env_number(MB_ENV, DEFAULT_MB_PER_HOUR)
        self.max_bytes = int(mb * 1024 * 1024)
        self.window_s, self.max_visitors, self.clock = float(window_s), int(max_visitors), clock
        self._lock = threading.Lock()
        self._events: OrderedDict[str, deque] = OrderedDict()  # visitor -> deque of (time, links, bytes)

    def _recent(self, visitor: str, now: float) -> deque:
        events = self._events.setdefault(visitor, deque())
        self._events.move_to_end(visitor)
        while events and now - events[0][0] >= self.window_s:
            events.popleft()
        while len(self._events) > self.max_visitors:
            self._events.popitem(last=False)
        return events

    def start(self, visitor: str) -> Ticket:
        """Count one link for ``visitor``; :class:`DownloadRefused` (saying when to come back) past a limit."""
        now = self.clock()
        with self._lock:
            events = self._recent(visitor, now)
            links = sum(e[1] for e in events)
            used = sum(e[2] for e in events)
            if links >= self.links:
                oldest_link = next(e[0] for e in events if e[1])
                raise DownloadRefused(
                    f"You have classified {self.links} link{'' if self.links == 1 else 's'} in the last hour, "
                    "the most this page allows. "
                    f"Try again in {_in_minutes(oldest_link + self.window_s - now)}, or upload the file instead.")
            if used >= self.max_bytes:
                raise DownloadRefused(
                    f"You have downloaded {self.max_bytes / 1024 / 1024:.0f} MB through this page in the last hour, "
                    f"the most it allows. Try again in {_in_minutes(events[0][0] + self.window_s - now)}, "
                    "or upload the file instead.")
            events.append((now, 1, 0))
            return Ticket(self, visitor, self.max_bytes - used)

    def _spend(self, visitor: str, n_bytes: int) -> None:
        now = self.clock()
        with self._lock:
            self._recent(visitor, now).append((now, 0, max(0, n_bytes)))

    def used(self, visitor: str) -> tuple[int, int]:
        """``(links, bytes)`` of ``visitor`` in the window."""
        now = self.clock()
        with self._lock:
            events = self._recent(visitor, now)
            return sum(e[1] for e in events), sum(e[2] for e in events)
