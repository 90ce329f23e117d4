"""Live microphone support: a rolling 16 kHz buffer fed by WebRTC audio frames, the meter's
reading of a prediction, and a guard that keeps the server's event loop answering while an
offer is processed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading

import numpy as np

from singtalk.audio import SAMPLE_RATE
from singtalk.labels import NO_VOICE, display


class LiveBuffer:
    """The last ``seconds`` of microphone audio, mono float32 at 16 kHz; safe across threads.

    :meth:`push_frame` is the ``audio_frame_callback`` of ``webrtc_streamer``: it
    resamples each frame (any rate, layout or sample format) with one stateful
    ``av.AudioResampler``, appends it and returns the frame unchanged.
    """

    def __init__(self, seconds: float = 60.0, sr: int = SAMPLE_RATE):
        self.sr = int(sr)
        self.capacity = int(seconds * sr)
        self._lock = threading.Lock()
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._size = 0
        self._resampler = None
        self._received = 0

    def push_frame(self, frame):
        try:
            if self._resampler is None:
                import av

                self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sr)
            for out in self._resampler.resample(frame):
                self.extend(out.to_ndarray().reshape(-1))
        except (ValueError, OSError):  # a format change mid-stream: start a fresh resampler
            self._resampler = None
        return frame

    def extend(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size == 0:
            return
        with self._lock:
            self._chunks.append(samples.copy())
            self._size += samples.size
            self._received += samples.size
            while self._size - self._chunks[0].size >= self.capacity:
                self._size -= self._chunks.popleft().size

    def last(self, seconds: float | None = None) -> np.ndarray:
        """The newest ``seconds`` (all kept audio when None)."""
        with self._lock:
            data = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        data = data[-self.capacity:]
        if seconds is not None:
            data = data[-int(seconds * self.sr):]
        return data

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self._size = 0
            self._received = 0

    @property
    def seconds(self) -> float:
        with self._lock:
            return min(self._size, self.capacity) / self.sr

    @property
    def received_seconds(self) -> float:
        with self._lock:
            return self._received / self.sr


QUIET_DBFS = -55.0
"""The live meter calls a window quiet (no voice) when even its loudest 50 ms stays below this level.
The quietest voiced corpus clips (RAVDESS, spoken softly) reach -49 dBFS, half of them -20 dBFS or more;
a quiet room between takes stays near -60 dBFS or below. Louder non-voice sound is left to the model
(a three-class model says no_voice)."""


def loudest_dbfs(y: np.ndarray, sr: int = SAMPLE_RATE, frame_s: float = 0.05) -> float:
    """The RMS level of the loudest ``frame_s`` stretch of ``y``, in dB below full scale (-inf for silence)."""
    y = np.nan_to_num(np.asarray(y, dtype=np.float64).reshape(-1))
    n = max(1, int(frame_s * sr))
    if y.size == 0:
        return float("-inf")
    frames = y[: y.size // n * n].reshape(-1, n) if y.size >= n else y[None, :]
    loudest = float(np.sqrt(np.max(np.mean(frames ** 2, axis=1))))
    return 20 * np.log10(loudest) if loudest > 0 else float("-inf")


def is_quiet(y: np.ndarray, sr: int = SAMPLE_RATE, threshold_dbfs: float = QUIET_DBFS) -> bool:
    """True when the window has nothing louder than ``threshold_dbfs``: between takes, not worth classifying.

    The classifier's own check is relative (20 dB below the window's peak), so on its own it would label
    room noise singing or talking; an absolute floor keeps a two-class model from guessing there.
    """
    return loudest_dbfs(y, sr) < threshold_dbfs


def meter_reading(prediction) -> tuple[float, str]:
    """The live meter's bar (0-1) and text for the last window's :class:`~singtalk.classify.Prediction`.

    ``None`` stands for a window with too little sound to classify (quiet, see :func:`is_quiet`, or
    refused by the classifier's own checks). Between takes — too little sound, or the model's own
    ``no_voice`` — the meter says **No voice** with an empty bar rather than guess singing or talking;
    otherwise the bar is the label's probability and the text lists every class's.
    """
    if prediction is None:
        return 0.0, f"Live: **{display(NO_VOICE)}** (too little sound)"
    if prediction.label == NO_VOICE:
        return 0.0, f"Live: **{display(NO_VOICE)}** ({prediction.confidence:.0%})"
    every = " · ".join(f"{display(c).lower()} {p:.2f}" for c, p in prediction.probabilities.items())
    fraction = min(max(float(prediction.confidence), 0.0), 1.0)
    return fraction, f"Live: **{display(prediction.label)}** ({prediction.confidence:.0%}) · {every}"


def server_event_loop() -> asyncio.AbstractEventLoop | None:
    """The Streamlit server's event loop, where streamlit-webrtc runs aiortc; None without a server."""
    from streamlit_webrtc.eventloop import get_global_event_loop

    try:
        return get_global_event_loop()
    except RuntimeError:  # no Runtime (AppTest, bare mode)
        return None


@contextlib.contextmanager
def loop_kept_awake(loop: asyncio.AbstractEventLoop | None, every_s: float = 0.05):
    """Wake ``loop`` every ``every_s`` seconds while the body runs.

    streamlit-webrtc 0.53 schedules the offer's coroutine with ``loop.create_task``
    from its own thread, which does not wake a loop asleep in ``select``: on a quiet
    server the answer then waits for unrelated traffic and ``webrtc_streamer`` gives
    up after 10 s. A thread-safe no-op callback wakes the loop, which then runs it.
    """
    if loop is None:
        yield
        return
    done = threading.Event()

    def poke() -> None:
        while not done.wait(every_s):
            try:
                loop.call_soon_threadsafe(lambda: None)
            except RuntimeError:  # the loop closed: nothing left to wake
                return

    poker = threading.Thread(target=poke, name="webrtc-loop-waker", daemon=True)
    poker.start()
    try:
        yield
    finally:
        done.set()
        poker.join(timeout=1.0)
