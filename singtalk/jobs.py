"""One background job at a time in this process, with progress a UI can poll.

A job is a function ``fn(report, stop_event)`` run in a daemon thread. ``report``
appends an event dict (epoch metrics, stage names, fractions) under a lock; the
app polls :meth:`Job.snapshot` from a fragment and never touches the thread.
Across processes, the model store's lock file (see :mod:`singtalk.registry`)
keeps jobs exclusive.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import SingtalkError, StoreLocked

JobFunction = Callable[[Callable[[dict], None], threading.Event], Any]


@dataclass
class Job:
    """A background job's state; read it through :meth:`snapshot`."""

    kind: str
    owner: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    state: str = "running"  # running | done | failed | cancelled
    started: float = field(default_factory=time.time)
    finished: float | None = None
    events: list = field(default_factory=list)
    result: Any = None
    error: str = ""
    stop_event: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, event: dict) -> None:
        with self._lock:
            self.events.append(dict(event, t=time.time() - self.started))

    def cancel(self) -> None:
        self.stop_event.set()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def snapshot(self) -> dict:
        """A consistent copy of the job's public state."""
        with self._lock:
            return {"id": self.id, "kind": self.kind, "owner": self.owner, "state": self.state,
                    "started": self.started, "finished": self.finished, "events": list(self.events),
                    "result": self.result, "error": self.error, "cancel_requested": self.stop_event.is_set()}


class JobRunner:
    """Runs at most one job at a time; the last job stays visible after it ends."""

    def __init__(self):
        self._lock = threading.Lock()
        self._job: Job | None = None
        self._done: dict[str, Job] = {}  # the last job of each kind that finished with a result

    @property
    def current(self) -> Job | None:
        return self._job

    def start(self, kind: str, fn: JobFunction, *, owner: str = "") -> Job:
        """Start ``fn`` in the background; :class:`StoreLocked` if a job is running."""
        with self._lock:
            if self._job is not None and self._job.running:
                since = time.strftime("%H:%M:%S", time.localtime(self._job.started))
                raise StoreLocked(f"A {self._job.kind} job is already running (started {since}"
                                  f"{', by ' + self._job.owner if self._job.owner else ''}); wait for it or cancel it.")
            job = Job(kind=kind, owner=owner)
            self._job = job
        thread = threading.Thread(target=self._run, args=(job, fn), name=f"singtalk-{kind}-{job.id}", daemon=True)
        thread.start()
        return job

    def last_done(self, kinds: tuple[str, ...]) -> Job | None:
        """The job of one of ``kinds`` that most recently finished ``done`` (kept after later jobs are cancelled
        or fail)."""
        with self._lock:
            done = [self._done[k] for k in kinds if k in self._done]
        return max(done, key=lambda job: job.finished or 0.0, default=None)

    def _run(self, job: Job, fn: JobFunction) -> None:
        try:
            result = fn(job.report, job.stop_event)
            state, error = ("cancelled" if job.stop_event.is_set() else "done"), ""
        except SingtalkError as err:
            result, state, error = None, "failed", str(err)
        except Exception as err:  # noqa: BLE001 - surfaced to the UI as a message
            result, state, error = None, "failed", f"{type(err).__name__}: {err}"
            job.report({"kind": "traceback", "text": traceback.format_exc(limit=5)})
        with job._lock:
            job.result, job.state, job.error, job.finished = result, state, error, time.time()
        if state == "done":
            with self._lock:
                self._done[job.kind] = job

    def wait(self, timeout: float | None = None) -> Job | None:
        """Block until the current job ends (tests and the CLI)."""
        deadline = None if timeout is None else time.time() + timeout
        while self._job is not None and self._job.running:
            if deadline is not None and time.time() > deadline:
                break
            time.sleep(0.05)
        return self._job


REPORT_EVERY_S = 0.25
"""Progress events at most this often (the page polls every second), plus the first and the last."""


def progress_reporter(report: Callable[[dict], None], *, unit: str = "files",
                      clock: Callable[[], float] = time.monotonic) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback for a job: reports ``{"kind": "progress", "done", "total", "unit", "rate",
    "left"}`` events, the rate (items per second, None until known) and the seconds left measured as the CLI
    measures them (:class:`singtalk.progress.Pace`), so a page can say how long a long job has to go."""
    from .progress import Pace

    pace = Pace(clock)
    last = [float("-inf")]

    def progress(done: int, total: int) -> None:
        now = clock()
        rate = pace.update(done, now)
        if now - last[0] < REPORT_EVERY_S and 0 < done < total:
            return
        last[0] = now
        report({"kind": "progress", "done": done, "total": total, "unit": unit, "rate": rate,
                "left": Pace.left(done, total, rate)})

    return progress


_RUNNER = JobRunner()


def runner() -> JobRunner:
    """The process-wide job runner shared by all app sessions."""
    return _RUNNER
