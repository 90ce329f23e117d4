"""The live tab's helpers: the rolling buffer and the event-loop waker."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from appkit.live import LiveBuffer, loop_kept_awake


@pytest.fixture()
def idle_loop():
    """An event loop asleep in ``select`` in its own thread, like a quiet Streamlit server."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=2)
    loop.close()


def schedule_from_another_thread(loop) -> threading.Event:
    """What streamlit-webrtc does with the offer: ``loop.create_task`` from a foreign thread."""
    ran = threading.Event()

    async def answer():
        ran.set()

    loop.create_task(answer())
    return ran


def test_a_task_created_from_another_thread_waits_for_a_wake_up(idle_loop):
    """The failure the waker exists for (the control: without it the task does not run)."""
    assert not schedule_from_another_thread(idle_loop).wait(0.5)


def test_the_waker_lets_the_task_run_promptly(idle_loop):
    with loop_kept_awake(idle_loop):
        assert schedule_from_another_thread(idle_loop).wait(0.5)


def test_the_waker_stops_with_its_block_and_tolerates_no_loop(idle_loop):
    before = {t.name for t in threading.enumerate()}
    with loop_kept_awake(idle_loop):
        assert "webrtc-loop-waker" in {t.name for t in threading.enumerate()} - before
    assert "webrtc-loop-waker" not in {t.name for t in threading.enumerate()}
    with loop_kept_awake(None):
        pass


def test_buffer_keeps_the_newest_seconds_across_threads():
    buffer = LiveBuffer(seconds=1.0, sr=1000)
    workers = [threading.Thread(target=lambda: [buffer.extend(np.ones(100)) for _ in range(20)]) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert buffer.received_seconds == pytest.approx(8.0)
    assert buffer.seconds == pytest.approx(1.0)
    assert buffer.last(0.25).shape == (250,)
    buffer.clear()
    assert buffer.seconds == 0 and buffer.last().size == 0
