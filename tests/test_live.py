"""The live tab's helpers: the rolling buffer, the event-loop waker, the meter's reading."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from appkit.live import LiveBuffer, is_quiet, loop_kept_awake, loudest_dbfs, meter_reading
from singtalk.classify import Prediction


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


# --------------------------------------------------------------------------- the meter's reading
def prediction(label: str, probabilities: dict) -> Prediction:
    return Prediction(label=label, confidence=probabilities[label], probabilities=probabilities, duration_s=4.0,
                      sounding_s=4.0)


@pytest.mark.parametrize("made,expected", [
    (None, (0.0, "Live: **No voice** (too little sound)")),
    (prediction("no_voice", {"singing": 0.1, "talking": 0.2, "no_voice": 0.7}), (0.0, "Live: **No voice** (70%)")),
    (prediction("singing", {"singing": 0.8, "talking": 0.2}),
     (0.8, "Live: **Singing** (80%) · singing 0.80 · talking 0.20")),
    (prediction("talking", {"singing": 0.05, "talking": 0.9, "no_voice": 0.05}),
     (0.9, "Live: **Talking** (90%) · singing 0.05 · talking 0.90 · no voice 0.05")),
])
def test_meter_says_no_voice_between_takes_and_lists_every_class_otherwise(made, expected):
    fraction, text = meter_reading(made)
    assert (fraction, text) == (pytest.approx(expected[0]), expected[1])


def test_quiet_windows_are_told_by_their_loudest_moment():
    rng = np.random.default_rng(0)
    room = rng.normal(0, 3e-4, 16000 * 4).astype(np.float32)  # about -70 dBFS
    assert is_quiet(room) and is_quiet(np.zeros(16000, np.float32)) and is_quiet(np.zeros(0, np.float32))
    assert loudest_dbfs(room) == pytest.approx(-70.5, abs=1.0)
    take = room.copy()
    take[16000:16000 + 1600] += 0.01 * np.sin(np.arange(1600) * 2 * np.pi * 220 / 16000)  # 0.1 s at -43 dBFS
    assert not is_quiet(take), "one loud moment is enough: a soft voice is not quiet"
    assert loudest_dbfs(np.full(800, 0.5, np.float32)) == pytest.approx(20 * np.log10(0.5))
