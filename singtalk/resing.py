"""Speech re-sung: training copies that give the singing class every talker's voice.

The corpus has few singers (two singing sources), so a network can learn "whose voice"
instead of "how the voice moves". :func:`resung` turns a talking clip into a sung one
with TD-PSOLA (pitch-synchronous overlap-add): every voiced run becomes one or two held
notes on a semitone grid, a scale step apart, reached by a 40 ms glide, with vibrato
after 150 ms, and lengthened 1–1.8×. :func:`resynthesised` runs the same machinery
keeping the pitch contour, so the talking class sees the same re-synthesis artefacts
and they cannot give the label away.

Both read the pitch from :func:`singtalk.features.analyse` (10 ms frames) and return
16 kHz float32 audio.
"""

from __future__ import annotations

import numpy as np

from singtalk import features
from singtalk.audio import SAMPLE_RATE

HOP = features.HOP_LENGTH
UNVOICED_F0 = 100.0
"""Grain rate (Hz) in unvoiced stretches, where grains are copied at their own spacing."""
NOTE_RANGE_ST = 7.0
"""Notes stay within this many semitones of the speaker's median pitch."""
SCALE_STEPS = np.array([-5, -4, -3, -2, -2, -1, 0, 0, 1, 2, 2, 3, 4, 5, 7])
GLIDE_FRAMES = 4
VIBRATO_ONSET_S = 0.15


def _semitones(f0: np.ndarray | float) -> np.ndarray:
    return 12.0 * np.log2(np.asarray(f0, dtype=np.float64) / 55.0)


def pitch_marks(y: np.ndarray, f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Analysis marks (sample indices) one period apart, snapped to the waveform's peak where
    voiced, every ``1/UNVOICED_F0`` s elsewhere; and each mark's f0 (NaN unvoiced)."""
    marks, mark_f0 = [], []
    t = 0.0
    while t < y.size:
        f = f0[min(int(t // HOP), len(f0) - 1)]
        voiced = bool(np.isfinite(f))
        period = SAMPLE_RATE / (f if voiced else UNVOICED_F0)
        if voiced:
            lo, hi = int(max(0, t - period / 4)), int(min(y.size, t + period / 4 + 1))
            t = float(lo + int(np.argmax(y[lo:hi])))
        marks.append(int(t))
        mark_f0.append(f if voiced else np.nan)
        t = max(t + period, marks[-1] + 1.0)
    return np.asarray(marks), np.asarray(mark_f0)


def sung_contour(f0: np.ndarray, rng: np.random.Generator, *, stretch_range=(1.0, 1.8),
                 vibrato_cents=(20.0, 70.0)) -> tuple[np.ndarray, np.ndarray]:
    """Per analysis frame: the target f0 (NaN unvoiced) and the lengthening factor of a melody
    sung over the voiced runs of ``f0``."""
    target, stretch = f0.astype(np.float64).copy(), np.ones(len(f0))
    starts, stops = features._runs(np.isfinite(f0))
    if starts.size == 0:
        return target, stretch
    centre = float(np.median(_semitones(f0[np.isfinite(f0)])))
    note = float(np.round(centre + rng.choice([-2, 0, 2])))
    rate, depth = rng.uniform(4.5, 6.5), rng.uniform(*vibrato_cents) / 100.0
    for start, stop in zip(starts, stops):
        factor = float(rng.uniform(*stretch_range))
        stretch[start:stop] = factor
        n_notes = 1 + int(stop - start > 35 and rng.random() < 0.5)
        bounds = np.linspace(start, stop, n_notes + 1).astype(int)
        for a, b in zip(bounds[:-1], bounds[1:]):
            note = float(np.round(np.clip(note + rng.choice(SCALE_STEPS), centre - NOTE_RANGE_ST, centre + NOTE_RANGE_ST)))
            contour = np.full(b - a, note)
            glide = min(GLIDE_FRAMES, b - a)
            contour[:glide] = np.linspace(_semitones(f0[a]), note, glide)
            t = np.arange(b - a) * (HOP / SAMPLE_RATE) * factor  # sung (output) time
            onset = np.clip((t - VIBRATO_ONSET_S) / 0.1, 0.0, 1.0)
            contour += onset * depth * np.sin(2 * np.pi * rate * t)
            target[a:b] = 55.0 * 2.0 ** (contour / 12.0)
    return target, stretch


def psola(y: np.ndarray, f0: np.ndarray, target: np.ndarray, stretch: np.ndarray) -> np.ndarray:
    """Re-synthesise ``y`` with the per-frame ``target`` f0 and lengthening ``stretch`` (TD-PSOLA).

    Two-period Hann grains around the analysis marks are laid one target period apart;
    the output is divided by the summed windows so uneven overlaps keep their level.
    """
    marks, mark_f0 = pitch_marks(y, f0)
    n_frames = len(f0)
    length = int(np.sum(stretch) * HOP + 2 * SAMPLE_RATE / UNVOICED_F0)
    out = np.zeros(length + 1024)
    weight = np.zeros_like(out)
    t_in = t_out = 0.0
    while t_in < y.size - 1:
        frame = min(int(t_in // HOP), n_frames - 1)
        period = SAMPLE_RATE / (target[frame] if np.isfinite(target[frame]) else UNVOICED_F0)
        j = int(np.argmin(np.abs(marks - t_in)))
        mark = int(marks[j])
        half = int(min(SAMPLE_RATE / (mark_f0[j] if np.isfinite(mark_f0[j]) else UNVOICED_F0), 400))
        lo, hi = max(0, mark - half), min(y.size, mark + half)
        window = np.hanning(2 * half + 1)[lo - mark + half: hi - mark + half]
        at = int(t_out) - (mark - lo)
        if at >= 0 and at + window.size <= out.size:
            out[at: at + window.size] += y[lo:hi] * window
            weight[at: at + window.size] += window
        t_out += period
        t_in += period / stretch[frame]
    end = min(int(t_out), out.size)
    return (out[:end] / np.maximum(weight[:end], 0.3)).astype(np.float32)


def _voiced_f0(y: np.ndarray) -> np.ndarray:
    frames = features.analyse(y)
    return np.where(frames.voiced, frames.f0, np.nan).astype(np.float64)


def resung(y: np.ndarray, rng: np.random.Generator, **contour) -> np.ndarray:
    """16 kHz speech ``y`` sung: held notes, glides, vibrato, lengthened vowels (see module doc)."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    f0 = _voiced_f0(y)
    target, stretch = sung_contour(f0, rng, **contour)
    return psola(y, f0, target, stretch)


def resynthesised(y: np.ndarray) -> np.ndarray:
    """16 kHz ``y`` through the same TD-PSOLA with its own pitch and timing (the artefact control)."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    f0 = _voiced_f0(y)
    return psola(y, f0, f0, np.ones(len(f0)))
