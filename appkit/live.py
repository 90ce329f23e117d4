"""Live microphone support: a rolling 16 kHz buffer fed by WebRTC audio frames, the meter's
reading of a prediction, a guard that keeps the server's event loop answering while an
offer is processed, and what to tell a visitor when the microphone or the connection fails."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading

import numpy as np

from singtalk.audio import SAMPLE_RATE
from singtalk.labels import NO_VOICE, display

log = logging.getLogger(__name__)


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


MICROPHONE_TEXTS = {
    "device_ask_permission": "Allow this page to use your microphone when the browser asks.",
    "device_access_denied": "The browser does not let this page use the microphone. Allow it for this site "
                            "(the microphone or lock icon in the address bar), reload the page and press START "
                            "again, or use the Record or Upload tab instead.",
    "device_not_available": "No microphone could be opened: none is connected, or another program is using it. "
                            "Connect one or close the other program, reload the page, or upload a file instead.",
    "media_api_not_available": "This browser gives the microphone only to secure pages (https:// or localhost), "
                               "and this page is neither. Open the app at its https:// address, or upload a "
                               "file instead.",
}
"""The WebRTC box's own messages when the microphone cannot be opened (``webrtc_streamer(translations=…)``):
what happened and what to try, in place of "Access denied" or "Media API not available". The browser's own
reason follows in brackets."""

BOX_ERRORS = (
    ("NotAllowedError, Permission denied", "the browser blocks the microphone for this page. Allow it for this site "
     "(the microphone or lock icon in the address bar), reload the page and press START again."),
    ("NotFoundError, NotReadableError", "no microphone could be opened: none is connected, or another program is "
     "using it. Connect one or close the other program, then reload the page."),
    ("Media API not available", "the browser gives the microphone only to secure pages (https:// or localhost). "
     "Open the app at its https:// address."),
)
"""What the WebRTC box's own error lines mean (the box shows the browser's error names after START, out of the
page's reach), and what to do: shown under the box (:func:`trouble_text`)."""


def trouble_text() -> str:
    """Markdown: each error the live box can show, in plain words, and the way round all of them."""
    lines = [f"- **{shown}**: {meaning}" for shown, meaning in BOX_ERRORS]
    return "\n".join(["If the box above shows an error instead of STOP:", *lines,
                      "", "The **Record** tab needs no live connection: record a take there instead, or upload a "
                          "file."])


NO_AUDIO_S = 8.0
"""Playing this long with no audio frame received: the connection is up in name only (see :func:`no_audio`)."""

NO_AUDIO_TEXT = ("No sound has reached this server since START: the connection was set up but the audio does not "
                 "get through (a firewall or the network may block live audio). Press STOP, then try another "
                 "network or browser, or use the Record tab, which needs no live connection.")


def no_audio(started: tuple[float, float] | None, buffer: LiveBuffer, now: float, wait_s: float = NO_AUDIO_S) -> bool:
    """True when ``started`` = (time START took effect, ``buffer.received_seconds`` then) is over ``wait_s`` ago
    and not one frame has arrived since."""
    if started is None:
        return False
    since, received = started
    return now - since >= wait_s and buffer.received_seconds <= received


TRY_INSTEAD = ("Press STOP, then START to try again. If it keeps failing: check that the browser may use the "
               "microphone, try another browser or network (some office and school networks block live audio), "
               "or use the Record tab, which records in the browser and needs no live connection.")


def connection_failure(err: BaseException) -> str:
    """What to tell a visitor when the live connection could not be set up; the raw error goes to the log.

    ``streamlit_webrtc``'s TimeoutError means the server did not answer the browser's offer in time (it is
    busy); any other error (aiortc's, the component's) that the browser and the server could not agree on a
    connection.
    """
    log.warning("live connection failed: %s: %s", type(err).__name__, err, exc_info=err)
    if type(err).__name__ == "TimeoutError":
        what = "The live connection could not be set up: this server took too long to answer (it may be busy)."
    else:
        what = "The live connection could not be set up: your browser and this server did not manage to connect."
    return f"{what} {TRY_INSTEAD}"
