"""Audio → label, confidence and a per-window timeline, with a loaded model.

The pipeline: decode (once, at the working rate) → optional vocal extraction (refused
with :class:`~singtalk.errors.NoVoice` when it keeps nothing but leakage) → 20 dB trim
check → one analysis of the whole clip → pooled features for the clip and for
overlapping windows → MinMax scaling → the Keras model, called directly. Clips up to
:data:`WHOLE_CLIP_MAX_S` are labelled from their pooled features (as the model was
trained); longer inputs from the mean of their windows' probabilities. Long inputs are analysed in segments to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import audio
from .errors import TooShort

WINDOW_S = 4.0
HOP_S = 2.0
WHOLE_CLIP_MAX_S = 30.0
SEGMENT_S = 60.0
SPLEETER_RATE = 44100

Stage = Callable[[str], None]


@dataclass
class Prediction:
    """The result for one input."""

    label: str
    confidence: float
    probabilities: dict
    duration_s: float
    sounding_s: float
    timeline: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def p_singing(self) -> float:
        return float(self.probabilities.get("singing", np.nan))


class Classifier:
    """A loaded model (from :class:`singtalk.registry.ModelStore`) wrapped as a classifier.

    Thread-safe as far as the model is: Keras inference on a built model is.
    """

    def __init__(self, loaded):
        self.loaded = loaded
        self.class_names: list[str] = list(loaded.class_names)
        self.version: str = getattr(loaded, "version", "") or ""

    # -- inputs -------------------------------------------------------------
    def load(self, source, *, separate: bool = False, name: str | None = None, stage: Stage | None = None,
             max_duration: float | None = None,
             download_progress: Callable[[str, float | None], None] | None = None) -> np.ndarray:
        """Decode a path, bytes or URL to mono 16 kHz, extracting vocals first when asked.

        ``download_progress(stage, fraction)`` follows a URL download (see :func:`singtalk.sources.fetch_url`).
        """
        from .sources import fetch_url, is_url, load_audio

        rate = SPLEETER_RATE if separate else audio.SAMPLE_RATE
        url = isinstance(source, str) and is_url(source)
        if stage:
            stage("download" if url else "decode")
        if url:
            y = fetch_url(source, sr=rate, max_duration=max_duration, progress=download_progress).samples
        else:
            y = load_audio(source, sr=rate, name=name, max_duration=max_duration)
        if separate:
            vocals = self.extract_vocals(y, rate, stage=stage)
            require_voice(vocals, audio.SAMPLE_RATE, y, rate)
            y = vocals
        return y

    @staticmethod
    def extract_vocals(y: np.ndarray, sr: int, *, stage: Stage | None = None) -> np.ndarray:
        """Spleeter vocals of ``y`` resampled to the working rate."""
        import librosa

        from .separation import get_separator

        if stage:
            stage("separate")
        vocals = get_separator().vocals(y, sr)
        if sr != audio.SAMPLE_RATE:
            vocals = librosa.resample(vocals, orig_sr=sr, target_sr=audio.SAMPLE_RATE, res_type="soxr_hq")
        return vocals.astype(np.float32, copy=False)

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
        spans, X, ok, clip = self._windows(y, window_s=window_s, hop_s=hop_s)
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
        return Prediction(
            label=self.class_names[best],
            confidence=float(clip_p[best]),
            probabilities={c: float(p) for c, p in zip(self.class_names, clip_p)},
            duration_s=float(duration),
            sounding_s=float(sounding),
            timeline=timeline,
        )

    def classify_source(self, source, *, separate: bool = False, name: str | None = None,
                        stage: Stage | None = None) -> Prediction:
        """Decode (or download), optionally extract vocals, and classify."""
        return self.classify(self.load(source, separate=separate, name=name, stage=stage), stage=stage)

    # -- helpers ------------------------------------------------------------
    @staticmethod
    def _windows(y: np.ndarray, *, window_s: float, hop_s: float):
        """Window spans (s), raw window features, usable-mask and the whole clip's features (short audio only).

        Short audio is analysed once for both; long audio segment by segment to bound memory.
        """
        from . import features

        sr = audio.SAMPLE_RATE
        seg = int(SEGMENT_S * sr)
        extra = int(max(0.0, window_s - hop_s) * sr)
        if y.size <= seg + extra:
            frames = features.analyse(y, sr)
            spans, X, ok = features.extract_windows(frames, window_s=window_s, hop_s=hop_s)
            clip = features.pool(frames) if y.size <= WHOLE_CLIP_MAX_S * sr else None
            return spans, X, ok, clip
        spans, rows, oks = [], [], []
        for start in range(0, y.size, seg):
            part = y[start:start + seg + extra]
            if part.size < int(0.5 * sr):
                break
            s, X, ok = features.extract_windows(features.analyse(part, sr), window_s=window_s, hop_s=hop_s)
            keep = s[:, 0] < SEGMENT_S - 1e-6 if start + seg < y.size else np.ones(len(s), dtype=bool)
            spans.append(s[keep] + start / sr)
            rows.append(X[keep])
            oks.append(ok[keep])
        return np.vstack(spans), np.vstack(rows), np.concatenate(oks), None

    def _timeline(self, spans: np.ndarray, p: np.ndarray, ok: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame({"start_s": np.round(spans[:, 0], 3), "end_s": np.round(spans[:, 1], 3)})
        labels = [self.class_names[i] for i in np.argmax(p, axis=1)] if len(p) else []
        frame["label"] = np.where(ok, labels, "") if len(p) else []
        for i, name in enumerate(self.class_names):
            frame[f"p_{name}"] = np.where(ok, np.round(p[:, i], 4), np.nan) if len(p) else []
        return frame


def require_voice(vocals: np.ndarray, vocals_sr: int, mixture: np.ndarray, mixture_sr: int) -> np.ndarray:
    """``vocals`` unchanged, or :class:`NoVoice` when they are far quieter than their mixture
    (:data:`separation.NO_VOICE_DB`): Spleeter kept only leakage, and classifying it would say nothing."""
    from .errors import NoVoice
    from .separation import NO_VOICE_DB, vocal_level_db

    level = vocal_level_db(vocals, vocals_sr, mixture, mixture_sr)
    if level < NO_VOICE_DB:
        raise NoVoice(f"No voice found: the extracted vocals are {-level:.0f} dB below the music (an instrumental?). "
                      "Classify without vocal extraction to judge the sound as it is.")
    return vocals


def classify_safely(classifier: Classifier, source, *, separate: bool = False, name: str | None = None):
    """``(Prediction, "")`` or ``(None, message)``: one input's outcome, never an exception."""
    from .errors import SingtalkError

    try:
        return classifier.classify_source(source, separate=separate, name=name), ""
    except SingtalkError as err:
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - report, keep going
        return None, f"unexpected {type(err).__name__}: {err}"


def label_batch(classifier: Classifier, sources: Sequence, *, separate: bool = False,
                progress: Callable[[int, int], None] | None = None):
    """Classify many inputs, never stopping at a bad one.

    Yields ``(source, Prediction | None, error message)`` in input order.
    """
    total = len(sources)
    for i, source in enumerate(sources):
        yield (source, *classify_safely(classifier, source, separate=separate))
        if progress:
            progress(i + 1, total)
