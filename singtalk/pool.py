"""Worker processes that survive losing one.

Each worker holds one input at a time, so when a worker dies (the kernel's
out-of-memory killer, a crash in native code) the input it held is known: it is
retried once in a fresh worker, and if that one dies too the input gets an error
message instead of a result while the others go on. Results come back as they
finish, not in input order. Workers ignore SIGINT: Ctrl-C is the parent's to
handle, and the parent stops them when it stops.
"""

from __future__ import annotations

import signal
from collections import Counter, deque
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import wait
from typing import Callable, Iterator, Sequence

from .errors import SingtalkError

RETRIES = 1
"""A lost worker's input is tried this many more times, each time in a fresh worker."""


@dataclass
class _Worker:
    process: object
    conn: object
    index: int | None = None  # the input it holds
    lost: bool = False  # its pipe closed: it is dead or dying


def _serve(conn, init: Callable, init_args: tuple, work: Callable) -> None:
    """A worker's loop: ``(index, item)`` in, ``(index, ("ok", result) | ("fatal", message))`` out; ``None`` ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    init(*init_args)
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        if message is None:
            return
        index, item = message
        try:
            reply = (index, ("ok", work(item)))
        except SingtalkError as err:  # e.g. the model cannot be loaded: the whole batch stops
            reply = (index, ("fatal", str(err)))
        try:
            conn.send(reply)
        except OSError:  # the parent is gone
            return


def death_message(exitcode: int | None, tries: int) -> str:
    """Plain words for an input whose worker died ``tries`` times."""
    times = "twice" if tries == 2 else f"{tries} times"
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else "?"
        cause = f"was killed by signal {-exitcode} ({name})"
        if -exitcode == signal.SIGKILL:
            cause += ", probably out of memory"
    else:
        cause = f"exited with status {exitcode}"
    return f"the worker process working on this input {cause}, {times}; try it alone, or with fewer --jobs"


def run(items: Sequence, *, work: Callable, init: Callable, init_args: tuple = (), jobs: int,
        retries: int = RETRIES, on_retry: Callable[[int, int | None], None] | None = None,
        start_method: str = "spawn") -> Iterator[tuple[int, object, str]]:
    """``(index, result, "")`` per item as it finishes, or ``(index, None, message)`` when its workers died.

    ``work`` and ``init`` must be importable functions (workers are spawned unless ``start_method`` says
    otherwise: fork only a process without TensorFlow or other threads, and let ``init`` end a forked
    worker whose parent is gone, since it holds its own pipe's other end). A
    :class:`SingtalkError` from ``work`` stops the batch (raised here). ``on_retry(index, exitcode)``
    hears of each lost worker whose input is tried again.
    """
    context = get_context(start_method)  # spawn unless the caller knows forking is safe (no TensorFlow, one thread)
    queue = deque(range(len(items)))
    deaths: Counter = Counter()
    workers: list[_Worker] = []

    def start() -> _Worker:
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, init, init_args, work), daemon=True)
        process.start()
        child.close()
        worker = _Worker(process, parent)
        workers.append(worker)
        return worker

    def give(worker: _Worker, index: int | None = None) -> None:
        if index is None:
            if not queue:
                return
            index = queue.popleft()
        worker.index = index
        worker.conn.send((index, items[index]))

    clean = False
    try:
        for _ in range(max(1, min(jobs, len(items)))):
            give(start())
        while any(w.index is not None for w in workers):
            busy = [w for w in workers if w.index is not None]
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                message = _receive(worker)
                if message is not None:
                    index, (kind, value) = message
                    if kind == "fatal":
                        raise SingtalkError(value)
                    worker.index = None
                    yield index, value, ""
                    give(worker)
                elif worker.lost or not worker.process.is_alive():
                    yield from _replace(worker, workers, deaths, retries, start, give, queue, on_retry)
        clean = True
    finally:
        _stop(workers, clean)


def _receive(worker: _Worker):
    """The worker's message if one is waiting, else ``None`` (marking it lost when its pipe is closed)."""
    try:
        return worker.conn.recv() if worker.conn.poll() else None
    except (EOFError, OSError):
        worker.lost = True
        return None


def _replace(worker, workers, deaths, retries, start, give, queue, on_retry):
    """A dead worker: its input again in a fresh worker, or its error message once it has died too often."""
    worker.process.join(timeout=30)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    workers.remove(worker)
    worker.conn.close()
    index = worker.index
    deaths[index] += 1
    if deaths[index] <= retries:
        if on_retry:
            on_retry(index, worker.process.exitcode)
        give(start(), index)
        return
    yield index, None, death_message(worker.process.exitcode, deaths[index])
    if queue:
        give(start())


def _stop(workers: list[_Worker], clean: bool) -> None:
    """Ask idle workers to end (after a clean run), else terminate them; reap every one."""
    for worker in workers:
        try:
            if clean:
                worker.conn.send(None)
            else:
                worker.process.terminate()
        except (OSError, ValueError):
            pass
    for worker in workers:
        worker.process.join(timeout=10)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.conn.close()
