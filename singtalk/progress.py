"""Progress a person can plan by: count, rate and time left, on one line.

``classify [#########                ] 240/600  11.8 clips/s  31 s left``

The rate is measured from the first finished item on (:class:`Pace`), so the
seconds spent loading a model, or items kept from an earlier run, do not count
as work; it is shown once a second of work is measured, so two workers finishing
together do not promise the impossible. The CLI draws it (:class:`ProgressPrinter`);
the app's long jobs report it as events (:func:`singtalk.jobs.progress_reporter`).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def format_seconds(seconds: float) -> str:
    """``31 s``, ``4 min``, ``1 h 12 min``."""
    seconds = max(0, round(seconds))
    if seconds < 100:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def format_rate(rate: float, unit: str = "clips") -> str:
    """``11.8 clips/s``, ``0.25 clips/s``, ``412 clips/s``: three figures, never an exponent."""
    return f"{rate:.0f} {unit}/s" if rate >= 100 else f"{rate:.3g} {unit}/s"


MIN_WINDOW_S = 1.0
"""Seconds of work measured before a rate is given."""


class Pace:
    """Rate and time left of ``(done, total)`` updates, measured from the first finished item on."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.started = clock()
        self.first: tuple[int, float] | None = None  # (done, time) at the first update with something done

    def update(self, done: int, now: float | None = None) -> float | None:
        """Record ``done`` at ``now`` (default: the clock); the rate in items per second, once known."""
        now = self.clock() if now is None else now
        if self.first is None and done > 0:
            self.first = (done, now)
        if self.first is None or done <= self.first[0] or now - self.first[1] < MIN_WINDOW_S:
            return None
        return (done - self.first[0]) / (now - self.first[1])

    @staticmethod
    def left(done: int, total: int, rate: float | None) -> float | None:
        """Seconds left at ``rate``, None without one."""
        return (total - done) / rate if rate else None


def progress_line(label: str, done: int, total: int, *, rate: float | None = None, unit: str = "clips",
                  elapsed: float | None = None, width: int = 25) -> str:
    """One line: a bar, ``done/total``, and once a rate is known, the rate and the time left (or taken, when done)."""
    filled = int(width * done / max(total, 1))
    line = f"{label} [{'#' * filled:<{width}}] {done}/{total}"
    if rate:
        line += f"  {format_rate(rate, unit)}"
        if done < total:
            line += f"  {format_seconds(Pace.left(done, total, rate))} left"
    if done >= total and elapsed is not None:
        line += f"  done in {format_seconds(elapsed)}"
    return line


class ProgressPrinter:
    """A ``(done, total)`` callback: redrawn in place on a terminal; elsewhere (a log, a pipe) one line per
    tenth of the work, so the output stays readable."""

    def __init__(self, label: str, *, unit: str = "clips", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.unit, self.stream, self.clock = label, unit, stream or sys.stderr, clock
        self.interactive = self.stream.isatty()
        self.pace = Pace(clock)
        self.shown_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        rate = self.pace.update(done, now)
        tenth = 10 * done // max(total, 1)
        if not self.interactive and tenth == self.shown_tenth and done < total:
            return
        self.shown_tenth = tenth
        line = progress_line(self.label, done, total, rate=rate, unit=self.unit, elapsed=now - self.pace.started)
        end = "\n" if done >= total or not self.interactive else ""
        self.stream.write(f"\r{line}\033[K{end}" if self.interactive else line + end)
        self.stream.flush()
