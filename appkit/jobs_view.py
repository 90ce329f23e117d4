"""The one background job of this process, seen from a page.

Jobs run in :func:`singtalk.jobs.runner` threads that never call ``st.*``; pages
poll :meth:`Job.snapshot` from a ``st.fragment(run_every=...)``. Every visitor
sees the same job, whoever started it.
"""

from __future__ import annotations

import time
import uuid

import streamlit as st

from singtalk.errors import StoreLocked
from singtalk.jobs import Job, runner
from singtalk.progress import format_rate, format_seconds

POLL_S = 1.0

KIND_NAMES = {"features": "feature extraction", "train": "training", "tune": "tuning",
              "check": "check on a labelled set", "retrain": "retraining"}


def owner() -> str:
    """A short name for this browser session (shown to other visitors)."""
    if "_owner" not in st.session_state:
        st.session_state["_owner"] = f"session {uuid.uuid4().hex[:4]}"
    return st.session_state["_owner"]


def current() -> Job | None:
    return runner().current


def running() -> Job | None:
    job = runner().current
    return job if job is not None and job.running else None


def last_done(kinds: tuple[str, ...]) -> Job | None:
    """The job of ``kinds`` that last finished with a result (shown after a later one is cancelled)."""
    return runner().last_done(kinds)


def start(kind: str, fn) -> Job | None:
    """Start ``fn(report, stop_event)`` as the process's job; an error message when one is running."""
    try:
        return runner().start(kind, fn, owner=owner())
    except StoreLocked as err:
        st.error(str(err))
        return None


def busy_elsewhere(kinds: tuple[str, ...]) -> bool:
    """Show who is busy when a job of another kind runs; True if so."""
    job = running()
    if job is not None and job.kind not in kinds:
        started = time.strftime("%H:%M:%S", time.localtime(job.started))
        st.info(f"A {KIND_NAMES.get(job.kind, job.kind)} job started at {started} by {job.owner or 'someone'} "
                "is running; this page's jobs can start when it ends.")
        return True
    return False


def describe(snapshot: dict) -> str:
    started = time.strftime("%H:%M:%S", time.localtime(snapshot["started"]))
    who = f" by {snapshot['owner']}" if snapshot.get("owner") else ""
    mine = " (you)" if snapshot.get("owner") == owner() else ""
    return f"{KIND_NAMES.get(snapshot['kind'], snapshot['kind']).capitalize()} started at {started}{who}{mine}"


def show_end_state(snapshot: dict) -> None:
    """Success / cancel / failure line for a finished job (never a traceback)."""
    state = snapshot["state"]
    if state == "failed":
        st.error(f"{describe(snapshot)} failed: {snapshot['error']}")
    elif state == "cancelled":
        st.warning(f"{describe(snapshot)} was cancelled.")
    elif state == "done":
        took = (snapshot["finished"] or time.time()) - snapshot["started"]
        st.success(f"{describe(snapshot)} finished in {took:.0f} s.")


def last_event(snapshot: dict, kind: str) -> dict | None:
    return next((e for e in reversed(snapshot["events"]) if e.get("kind") == kind), None)


def progress_text(event: dict) -> str:
    """``240 of 600 files, 11.8 files/s, about 31 s left`` from a progress event
    (:func:`singtalk.jobs.progress_reporter`; the rate and time left once known)."""
    unit = event.get("unit", "files")
    text = f"{event['done']:,} of {event['total']:,} {unit}"
    if event.get("rate"):
        text += f", {format_rate(event['rate'], unit)}"
        if event.get("left") is not None and event["done"] < event["total"]:
            text += f", about {format_seconds(event['left'])} left"
    return text


def cancel_button(job: Job, *, key: str, help: str = "Stops after the current batch; nothing is saved.") -> None:
    snap = job.snapshot()
    if st.button("Cancel", key=key, disabled=snap["cancel_requested"], help=help):
        job.cancel()
        st.toast("Cancelling…")
