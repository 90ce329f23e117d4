"""Audio → label, confidence, a per-window timeline and segments, with a loaded model.

The pipeline: decode (once, at the working rate) → optional vocal extraction → 20 dB trim
check → one analysis of the whole clip → pooled features for the clip and for
overlapping windows → MinMax scaling → the Keras model, called directly. Clips up to
:data:`WHOLE_CLIP_MAX_S` are labelled from their pooled features (as the model was
trained); longer inputs from the mean of their windows' probabilities — by their voice when a voice
fills at least a third of the time (:func:`long_answer`). Long inputs are
analysed in parts to bound memory. The windows are merged into segments that tile the
input (:func:`singtalk.segments.merge_windows`).

The class names come from the loaded model: a two-class model (singing, talking) is served
as it is; a three-class one also answers ``no_voice``. Whatever the model, when vocal
extraction keeps nothing but leakage (the extracted vocals' loudest moments far below the
music's, :data:`singtalk.separation.NO_VOICE_DB`), the answer is ``no_voice`` with a note
saying so (:meth:`Classifier.analyse`), not an error and not a label of the leakage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd

from . import audio
from .errors import TooShort
from .labels import NO_VOICE, SINGING
from .segments import empty_segments, merge_windows, single_segment

if TYPE_CHECKING:
    from .download_budget import Ticket

WINDOW_S = 4.0
HOP_S = 2.0
WHOLE_CLIP_MAX_S = 30.0
VOICE_SHARE_MIN = 1 / 3
"""A long input is answered by its voice when the windows' mean probability of a voice reaches this
(a song with an instrumental intro and solos is singing, not "no voice")."""
VOICE_SHARE_NOTED = 0.8
"""Below this share of voice a long input's voiced answer says how much of it holds a voice."""
SEGMENT_S = 60.0
SPLEETER_RATE = 44100

Stage = Callable[[str], None]


@dataclass
class Prediction:
    """The result for one input.

    ``probabilities`` maps each class of the model to its probability (plus ``no_voice`` when vocal
    extraction found none, even for a model without that class); ``timeline`` has one row per 4 s window
    (``start_s, end_s, label, p_<class>``; label ``""`` where there was too little sound); ``segments``
    tiles the input (``start_s, end_s, label, confidence``: :func:`singtalk.segments.merge_windows`);
    ``note`` explains an answer that is not the model's plain arg max (vocal extraction found only leakage; a
    long input with a voice in part of it), empty otherwise.
    """

    label: str
    confidence: float
    probabilities: dict
    duration_s: float
    sounding_s: float
    timeline: pd.DataFrame = field(default_factory=pd.DataFrame)
    segments: pd.DataFrame = field(default_factory=empty_segments)
    note: str = ""

    def probability(self, label: str) -> float:
        """The probability of ``label``; NaN for a class this answer has none for (the model lacks it)."""
        return float(self.probabilities.get(label, np.nan))

    @property
    def p_singing(self) -> float:
        return self.probability(SINGING)


class Classifier:
    """A loaded model (from :class:`singtalk.registry.ModelStore`) wrapped as a classifier.

    Thread-safe as far as the model is: Keras inference on a built model is.
    """

    def __init__(self, loaded, *, nets=None):
        """``nets``: {view: network} in place of the shipped spectrogram networks (``spectro.default_net``),
        for a model whose CNN logits came from others (``scripts/robustness.py --left-out``)."""
        self.loaded = loaded
        self.nets = nets
        self.class_names: list[str] = list(loaded.class_names)
        self.version: str = getattr(loaded, "version", "") or ""

    # -- inputs -------------------------------------------------------------
    def analyse(self, source, *, separate: bool = False, name: str | None = None, stage: Stage | None = None,
                max_duration: float | None = None,
                download_progress: Callable[[str, float | None], None] | None = None,
                download: Ticket | None = None) -> tuple[Prediction, np.ndarray]:
        """``(Prediction, samples classified)`` for a path, bytes, URL or mono 16 kHz samples (``np.ndarray``).

        With ``separate``, the vocals are extracted first and the samples returned are the vocals; when they
        are only leakage the answer is ``no_voice`` (probability 1, confidence 1, ``note`` saying how far
        below the music they were), for any model. Raises :class:`~singtalk.errors.SingtalkError` subclasses
        for input that cannot be classified (unreadable, silent, too short, refused URL...). A URL is cut at
        ``download.max_bytes`` and its cost charged to ``download`` (a visitor's
        :class:`~singtalk.download_budget.Ticket`).
        """
        y, rate = self._decode(source, separate=separate, name=name, stage=stage, max_duration=max_duration,
                               download_progress=download_progress, download=download)
        if not separate:
            return self.classify(y, stage=stage), y
        vocals, note = self._vocals(y, rate, stage=stage)
        return (self.no_voice(vocals, note=note) if note else self.classify(vocals, stage=stage)), vocals

    def load(self, source, *, separate: bool = False, name: str | None = None, stage: Stage | None = None,
             max_duration: float | None = None,
             download_progress: Callable[[str, float | None], None] | None = None) -> np.ndarray:
        """Decode a path, bytes or URL to mono 16 kHz, extracting vocals first when asked.

        Only samples come back, so vocals that are only leakage raise :class:`~singtalk.errors.NoVoice`
        here; :meth:`analyse` answers ``no_voice`` instead. ``download_progress(stage, fraction)`` follows a
        URL download (see :func:`singtalk.sources.fetch_url`).
        """
        from .errors import NoVoice

        y, rate = self._decode(source, separate=separate, name=name, stage=stage, max_duration=max_duration,
                               download_progress=download_progress)
        if not separate:
            return y
        vocals, note = self._vocals(y, rate, stage=stage)
        if note:
            raise NoVoice(f"No voice found: {note}. Classify without vocal extraction to judge the sound as it is.")
        return vocals

    def _vocals(self, y: np.ndarray, rate: int, *, stage: Stage | None) -> tuple[np.ndarray, str]:
        """The vocals of ``y`` at the working rate and :func:`leakage_note` about them."""
        vocals = self.extract_vocals(y, rate, stage=stage)
        return vocals, leakage_note(vocals, y, rate)

    @staticmethod
    def _decode(source, *, separate: bool, name: str | None, stage: Stage | None, max_duration: float | None,
                download_progress, download: Ticket | None = None) -> tuple[np.ndarray, int]:
        """Mono samples at the rate the next step wants (Spleeter's with ``separate``) and that rate."""
        from .sources import fetch_url, is_url, load_audio, max_download_bytes

        if isinstance(source, np.ndarray):
            return np.asarray(source, dtype=np.float32).reshape(-1), audio.SAMPLE_RATE
        rate = SPLEETER_RATE if separate else audio.SAMPLE_RATE
        url = isinstance(source, str) and is_url(source)
        if stage:
            stage("download" if url else "decode")
        if url:
            limit = {} if download is None else {"max_bytes": min(download.max_bytes, max_download_bytes()),
                                                 "spent": download.spend}
            return fetch_url(source, sr=rate, max_duration=max_duration, progress=download_progress,
                             **limit).samples, rate
        return load_audio(source, sr=rate, name=name, max_duration=max_duration), rate

    @staticmethod
    def extract_vocals(y: np.ndarray, sr: int, *, stage: Stage | None = None) -> np.ndarray:
        """Spleeter vocals of ``y`` resampled to the working rate."""
        from .separation import get_separator, resampled

        if stage:
            stage("separate")
        vocals = get_separator().vocals(y, sr)
        return resampled(vocals, sr, audio.SAMPLE_RATE).astype(np.float32, copy=False)

    # -- prediction ---------------------------------------------------------
    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities for raw (unscaled) feature rows, shape ``(n, n_classes)``."""
        return self.loaded.predict_proba(np.atleast_2d(np.asarray(X, dtype=np.float32)))

    def classify(self, y: np.ndarray, *, window_s: float = WINDOW_S, hop_s: float = HOP_S,
                 stage: Stage | None = None) -> Prediction:
        """Label mono 16 kHz samples; raises :class:`SilentAudio` / :class:`TooShort` when there is too little sound."""
        if stage:
            stage("features")
        sounding = audio.prepare(y).size / audio.SAMPLE_RATE
        duration = y.size / audio.SAMPLE_RATE
        spans, X, ok, clip = self._windows(y, window_s=window_s, hop_s=hop_s, nets=self.nets)
        if stage:
            stage("predict")
        if duration <= WHOLE_CLIP_MAX_S:
            rows = self.probabilities(np.vstack([clip[None, :], X]) if len(X) else clip[None, :])
            clip_p, window_p = rows[0], rows[1:]
        else:
            if not ok.any():
                raise TooShort("No stretch of the audio has enough sound to classify.")
            window_p = self.probabilities(X)
            clip_p = window_p[ok].mean(axis=0)
        timeline = self._timeline(spans, window_p, ok)
        best = int(np.argmax(clip_p))
        label, confidence = self.class_names[best], float(clip_p[best])
        note = ""
        if duration > WHOLE_CLIP_MAX_S:
            label, confidence, note = long_answer(self.class_names, clip_p)
        segments = merge_windows(timeline, self.class_names, duration_s=duration) if len(timeline) > 1 else None
        if segments is None or len(segments) <= 1:  # one window, or one story: the clip's own answer
            segments = single_segment(duration, label, confidence)
        return Prediction(
            label=label,
            confidence=confidence,
            probabilities={c: float(p) for c, p in zip(self.class_names, clip_p)},
            duration_s=float(duration),
            sounding_s=float(sounding),
            timeline=timeline,
            segments=segments,
            note=note,
        )

    def no_voice(self, y: np.ndarray, *, note: str) -> Prediction:
        """The ``no_voice`` answer for mono 16 kHz samples the model was not asked about (see :meth:`analyse`).

        Probability 1 for ``no_voice`` and 0 for each class of the model (also for a model without a
        ``no_voice`` class), confidence 1, one segment, no timeline, ``note`` as given.
        """
        duration = y.size / audio.SAMPLE_RATE
        probabilities = {c: 0.0 for c in self.class_names}
        probabilities[NO_VOICE] = 1.0
        return Prediction(label=NO_VOICE, confidence=1.0, probabilities=probabilities, duration_s=float(duration),
                          sounding_s=_sounding_seconds(y), timeline=self._timeline(
                              np.zeros((0, 2)), np.zeros((0, len(self.class_names))), np.zeros(0, dtype=bool)),
                          segments=single_segment(duration, NO_VOICE, 1.0), note=note)

    def classify_source(self, source, *, separate: bool = False, name: str | None = None,
                        stage: Stage | None = None) -> Prediction:
        """Decode (or download), optionally extract vocals, and classify (:meth:`analyse` without the samples)."""
        return self.analyse(source, separate=separate, name=name, stage=stage)[0]

    # -- helpers ------------------------------------------------------------
    @staticmethod
    def _windows(y: np.ndarray, *, window_s: float, hop_s: float, nets=None):
        """Window spans (s), raw window features, usable-mask and the whole clip's features (short audio only),
        with the spectrogram networks ``nets`` (default: the shipped ones).

        Short audio is analysed once for both; long audio segment by segment to bound memory.
        """
        from . import features

        sr = audio.SAMPLE_RATE
        seg = int(SEGMENT_S * sr)
        extra = int(max(0.0, window_s - hop_s) * sr)
        if y.size <= seg + extra:
            frames = features.analyse(y, sr)
            spans, X, ok = features.extract_windows(frames, window_s=window_s, hop_s=hop_s, nets=nets)
            clip = features.pool(frames, nets=nets) if y.size <= WHOLE_CLIP_MAX_S * sr else None
            return spans, X, ok, clip
        spans, rows, oks = [], [], []
        for start in range(0, y.size, seg):
            part = y[start:start + seg + extra]
            if part.size < int(0.5 * sr):
                break
            s, X, ok = features.extract_windows(features.analyse(part, sr), window_s=window_s, hop_s=hop_s,
                                                nets=nets)
            keep = s[:, 0] < SEGMENT_S - 1e-6 if start + seg < y.size else np.ones(len(s), dtype=bool)
            spans.append(s[keep] + start / sr)
            rows.append(X[keep])
            oks.append(ok[keep])
        return np.vstack(spans), np.vstack(rows), np.concatenate(oks), None

    def _timeline(self, spans: np.ndarray, p: np.ndarray, ok: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame({"start_s": np.round(spans[:, 0], 3), "end_s": np.round(spans[:, 1], 3)})
        labels = [self.class_names[i] for i in np.argmax(p, axis=1)] if len(p) else []
        frame["label"] = np.where(ok, labels, "") if len(p) else pd.Series(dtype=str)
        for i, name in enumerate(self.class_names):
            frame[f"p_{name}"] = np.where(ok, np.round(p[:, i], 4), np.nan) if len(p) else pd.Series(dtype=float)
        return frame


def long_answer(class_names: list[str], clip_p: np.ndarray) -> tuple[str, float, str]:
    """(label, confidence, note) of a long input from its windows' mean probabilities ``clip_p``.

    Answered by its voice when a voice fills at least :data:`VOICE_SHARE_MIN` of it (a song with instrumental
    breaks is singing, even when no voice is the likeliest single class); a voiced answer with a voice in less
    than :data:`VOICE_SHARE_NOTED` of the input says how much. Without a ``no_voice`` class: the likeliest.
    """
    best = int(np.argmax(clip_p))
    if NO_VOICE not in class_names:
        return class_names[best], float(clip_p[best]), ""
    no_voice = class_names.index(NO_VOICE)
    share = 1.0 - float(clip_p[no_voice])
    if share < VOICE_SHARE_MIN:
        return class_names[best], float(clip_p[best]), ""
    voiced = max((i for i in range(len(class_names)) if i != no_voice), key=lambda i: clip_p[i])
    note = f"a voice in about {share:.0%} of the audio; the rest has none (see the segments)"
    return class_names[voiced], float(clip_p[voiced]), note if share < VOICE_SHARE_NOTED else ""


def leakage_note(vocals: np.ndarray, mixture: np.ndarray, mixture_sr: int) -> str:
    """Why ``vocals`` (mono 16 kHz, extracted from ``mixture``) are no voice, or ``""`` when they are one.

    Vocals whose loudest moments stay :data:`singtalk.separation.NO_VOICE_DB` below the music's are what
    Spleeter leaks from the instruments; classifying them would say nothing about a voice.
    """
    from .separation import NO_VOICE_DB, vocal_level_db

    level = vocal_level_db(vocals, audio.SAMPLE_RATE, mixture, mixture_sr)
    if level >= NO_VOICE_DB:
        return ""
    return f"vocal extraction kept only leakage, {-level:.0f} dB below the music (an instrumental?)"


def _sounding_seconds(y: np.ndarray) -> float:
    """Seconds left after the 20 dB trim (0 for silence)."""
    from .errors import SilentAudio

    try:
        return float(audio.trim_quiet(y).size / audio.SAMPLE_RATE)
    except SilentAudio:
        return 0.0


def _safely(work):
    """``(work(), "")`` or ``(None, message)``: never an exception."""
    from .errors import SingtalkError

    try:
        return work(), ""
    except SingtalkError as err:
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - report, keep going
        return None, f"unexpected {type(err).__name__}: {err}"


def classify_safely(classifier: Classifier, source, *, separate: bool = False, name: str | None = None):
    """``(Prediction, "")`` or ``(None, message)``: one input's outcome, never an exception."""
    return _safely(lambda: classifier.classify_source(source, separate=separate, name=name))


def label_batch(classifier: Classifier, sources: Sequence, *, separate: bool = False,
                progress: Callable[[int, int], None] | None = None):
    """Classify many inputs, never stopping at a bad one.

    Yields ``(source, Prediction | None, error message)`` in input order. With ``separate``, the next
    input is decoded and separated in a second thread while this one's features are computed (TensorFlow
    and NumPy release the interpreter lock): the two stages overlap instead of taking turns.
    """
    total = len(sources)
    outcomes = _separated_ahead(classifier, sources) if separate and total > 1 else (
        classify_safely(classifier, source, separate=separate) for source in sources)
    for i, (source, outcome) in enumerate(zip(sources, outcomes)):
        yield (source, *outcome)
        if progress:
            progress(i + 1, total)


def _separated_ahead(classifier: Classifier, sources: Sequence):
    """Each input's ``(Prediction | None, message)``, its vocal extraction one input ahead in a thread."""
    from concurrent.futures import ThreadPoolExecutor

    def vocals_of(source):
        y, rate = classifier._decode(source, separate=True, name=None, stage=None, max_duration=None,
                                     download_progress=None)
        return classifier._vocals(y, rate, stage=None)

    def answer(vocals, note):
        return classifier.no_voice(vocals, note=note) if note else classifier.classify(vocals)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="singtalk-separate") as ahead:
        pending = ahead.submit(_safely, lambda: vocals_of(sources[0]))
        for i in range(len(sources)):
            separated, error = pending.result()
            if i + 1 < len(sources):
                following = sources[i + 1]
                pending = ahead.submit(_safely, lambda: vocals_of(following))
            yield (None, error) if separated is None else _safely(lambda: answer(*separated))
