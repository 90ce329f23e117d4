"""The one line every session's classification goes through, and each visitor's download budget.

:func:`turn` is entered around a classification; it takes a slot of the process-wide
:class:`singtalk.admission.Line` only when the CPU work starts (a link's download waits outside the line), and
while the line is full it redraws the visitor's place and an estimate every half second, in the script
thread, so the page never freezes. A rerun or a closed tab interrupts that loop inside a Streamlit call, and
the ``finally`` gives the place back.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import streamlit as st

from singtalk.admission import Line, Place, max_waiting_from_env, slots_from_cores
from singtalk.download_budget import DownloadBudget, Ticket

from . import access

POLL_S = 0.5


@st.cache_resource
def line() -> Line:
    """The process-wide line (slots from the cores, or ``$SINGTALK_CLASSIFY_SLOTS``)."""
    return Line(slots_from_cores(), max_waiting=max_waiting_from_env())


@st.cache_resource
def download_budget() -> DownloadBudget:
    """Links and bytes per visitor per hour (``$SINGTALK_LINKS_PER_HOUR``, ``$SINGTALK_DOWNLOAD_MB_PER_HOUR``)."""
    return DownloadBudget()


def download_ticket() -> Ticket | None:
    """A visitor's permission for one more link (``DownloadRefused`` past their hour's budget); None for the team."""
    if access.is_team():
        return None
    return download_budget().start(access.client_address())


def place_text(ahead: int, estimate_s: float) -> str:
    who = "You are next" if ahead == 0 else f"{ahead} {'person is' if ahead == 1 else 'people are'} ahead of you"
    return (f"The server is busy with other visitors. {who}; your turn should come in about "
            f"{max(1, round(estimate_s))} s. This page stays live: you can wait here.")


class Turn:
    """A classification's place in :func:`line`, taken at the first CPU stage (see :meth:`stage`)."""

    def __init__(self, the_line: Line):
        self._line = the_line
        self.place: Place | None = None

    def enter(self) -> None:
        """Join the line and wait for a slot, showing the place while waiting (no-op once in)."""
        if self.place is not None:
            return
        self.place = self._line.join()
        if self.place.wait(0.05):
            return
        box = st.empty()
        while True:  # each redraw is also where Streamlit stops this run on a rerun or a closed tab
            box.info(place_text(self.place.ahead(), self.place.estimate_s()), icon="⏳")
            if self.place.wait(POLL_S):
                break
        box.empty()

    def stage(self, inner: Callable[[str], None] | None) -> Callable[[str], None]:
        """``inner`` wrapped so that every stage but the download first enters the line."""
        def staged(name: str) -> None:
            if name != "download":
                self.enter()
            if inner:
                inner(name)
        return staged

    def download_progress(self, name: str, fraction: float | None) -> None:
        """For ``Classifier.analyse(download_progress=...)``: a finished download enters the line to decode."""
        if name != "download":
            self.enter()

    def leave(self) -> None:
        if self.place is not None:
            self.place.leave()


@contextmanager
def turn() -> Iterator[Turn]:
    """A :class:`Turn` for one classification, left whatever happens (an error, a rerun, a closed tab)."""
    current = Turn(line())
    try:
        yield current
    finally:
        current.leave()
