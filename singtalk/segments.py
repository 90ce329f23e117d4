"""A long input told as a story: the per-window timeline merged into labelled segments that tile the clip.

The classifier reads overlapping windows (4 s every 2 s, :data:`singtalk.classify.WINDOW_S` /
``HOP_S``). :func:`merge_windows` turns them into segments the way a person marks up a recording:

1. **Hop slots.** The windows' edges cut ``[0, duration_s]`` into elementary slots (one hop long
   when the windows are regular); each slot gets the mean probabilities of the windows covering it.
   Windows with too little sound (label ``""``, NaN probabilities) do not vote; a slot no sounding
   window covers is silence.
2. **Labels.** A slot's label is its most probable class; silence is :data:`~singtalk.labels.NO_VOICE`
   (silence is no voice), with no probability.
3. **Short runs absorbed.** A run of equal labels no longer than ``min_segment_s`` (default one
   window, 4 s) is given to a neighbour — the one whose class the run's slots find more probable,
   else the longer one — shortest run first, until every run is longer (or one is left). One
   window's reading alone (a cough, a drum fill, a flicker) changes at most the two slots it
   covers, one window's length, so a segment that stands on its own was heard by more than one
   window.
4. **Merged.** Equal neighbours become one segment; segments tile ``[0, duration_s]`` exactly:
   the first starts at 0, each starts where the previous ends, the last ends at ``duration_s``.

A segment's ``confidence`` is the time-weighted mean, over its slots, of its label's probability;
NaN when none of its slots has one (silence, or ``no_voice`` from a model without that class).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .labels import NO_VOICE, probability_column

SEGMENT_COLUMNS = ["start_s", "end_s", "label", "confidence"]
MIN_SEGMENT_S = 4.0
EDGE_TOLERANCE_S = 0.05
"""Window edges closer than this are one edge (spans are rounded to the millisecond and may not align)."""


def empty_segments() -> pd.DataFrame:
    return pd.DataFrame({"start_s": pd.Series(dtype=float), "end_s": pd.Series(dtype=float),
                         "label": pd.Series(dtype=str), "confidence": pd.Series(dtype=float)})


def single_segment(duration_s: float, label: str, confidence: float) -> pd.DataFrame:
    """One segment spanning the whole input (a short input, or an answer about the whole clip)."""
    return pd.DataFrame({"start_s": [0.0], "end_s": [round(float(duration_s), 3)], "label": [str(label)],
                         "confidence": [round(float(confidence), 4)]})


def merge_windows(timeline: pd.DataFrame, class_names: Sequence[str], *, duration_s: float,
                  min_segment_s: float = MIN_SEGMENT_S) -> pd.DataFrame:
    """Segments (``start_s, end_s, label, confidence``) of an input from its per-window ``timeline``.

    ``timeline`` has ``start_s, end_s, label`` and ``p_<class>`` for each of ``class_names`` (as
    :meth:`singtalk.classify.Classifier.classify` writes it); windows with too little sound have label
    ``""`` and NaN probabilities. Any window layout works (irregular hops, a tail no window covers).
    The segments tile ``[0, duration_s]``; labels are ``class_names`` or :data:`NO_VOICE` (silence);
    a run no longer than ``min_segment_s`` is absorbed unless it is all there is. See the module doc.
    """
    class_names = [str(c) for c in class_names]
    duration = float(duration_s)
    if not np.isfinite(duration) or duration <= 0:
        return empty_segments()
    missing = [probability_column(c) for c in class_names if probability_column(c) not in timeline.columns]
    if missing:
        raise ValueError(f"the timeline lacks {', '.join(missing)} (columns: {list(timeline.columns)})")
    vocab = class_names + ([] if NO_VOICE in class_names else [NO_VOICE])
    silence = vocab.index(NO_VOICE)

    edges, slot_p = _slots(timeline, class_names, duration)
    widths = np.diff(edges)
    voiced = ~np.isnan(slot_p).any(axis=1)
    codes = np.where(voiced, np.argmax(np.where(voiced[:, None], slot_p, 0.0), axis=1), silence)

    runs = _runs(codes)
    tolerance = 0.01 * float(np.median(widths)) if len(widths) else 0.0
    while len(runs) > 1:
        lengths = [edges[b] - edges[a] for _, a, b in runs]
        short = [i for i, length in enumerate(lengths) if length <= min_segment_s + tolerance]
        if not short:
            break
        i = min(short, key=lambda k: (lengths[k], k))
        runs[i][0] = _neighbour_code(runs, i, lengths, slot_p, widths, len(class_names))
        runs = _merge_equal(runs)

    rows = []
    for code, a, b in runs:
        rows.append({"start_s": round(float(edges[a]), 3), "end_s": round(float(edges[b]), 3), "label": vocab[code],
                     "confidence": _mean_probability(slot_p[a:b, code] if code < len(class_names) else None,
                                                     widths[a:b])})
    frame = pd.DataFrame(rows, columns=SEGMENT_COLUMNS)
    frame["confidence"] = frame["confidence"].astype(float).round(4)
    return frame


# -- steps ---------------------------------------------------------------------------------------------
def _slots(timeline: pd.DataFrame, class_names: list[str], duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Slot edges ``(n + 1,)`` from 0 to ``duration`` and each slot's mean probabilities ``(n, k)`` (NaN rows:
    no sounding window covers the slot)."""
    starts = np.asarray(timeline["start_s"], dtype=float) if len(timeline) else np.zeros(0)
    ends = np.asarray(timeline["end_s"], dtype=float) if len(timeline) else np.zeros(0)
    p = timeline[[probability_column(c) for c in class_names]].to_numpy(dtype=float) if len(timeline) else \
        np.zeros((0, len(class_names)))
    labels = timeline["label"].fillna("").astype(str).to_numpy() if "label" in timeline.columns and len(timeline) \
        else np.full(len(p), "x")
    sounding = (labels != "") & np.isfinite(p).all(axis=1)

    candidates = np.concatenate([[0.0, duration], starts, ends])
    candidates = np.sort(candidates[(candidates > 0) & (candidates < duration)])
    edges = [0.0]
    for edge in candidates:
        if edge - edges[-1] > EDGE_TOLERANCE_S:
            edges.append(float(edge))
    if duration - edges[-1] <= EDGE_TOLERANCE_S and len(edges) > 1:
        edges.pop()
    edges.append(duration)
    edges = np.asarray(edges)

    middles = (edges[:-1] + edges[1:]) / 2
    cover = (starts[None, :] <= middles[:, None]) & (middles[:, None] < ends[None, :]) & sounding[None, :]
    counts = cover.sum(axis=1)
    sums = cover.astype(float) @ np.where(sounding[:, None], p, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slot_p = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], np.nan)
    return edges, slot_p


def _runs(codes: np.ndarray) -> list[list[int]]:
    """``[[code, first slot, end slot (exclusive)], ...]`` of consecutive equal codes."""
    runs: list[list[int]] = []
    for i, code in enumerate(codes.tolist()):
        if runs and runs[-1][0] == code:
            runs[-1][2] = i + 1
        else:
            runs.append([int(code), i, i + 1])
    return runs


def _merge_equal(runs: list[list[int]]) -> list[list[int]]:
    merged: list[list[int]] = []
    for code, a, b in runs:
        if merged and merged[-1][0] == code:
            merged[-1][2] = b
        else:
            merged.append([code, a, b])
    return merged


def _neighbour_code(runs, i: int, lengths, slot_p: np.ndarray, widths: np.ndarray, n_classes: int) -> int:
    """The label a short run ``i`` takes: its more probable neighbour's, else its longer neighbour's."""
    neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
    if len(neighbours) == 1:
        return runs[neighbours[0]][0]
    _, a, b = runs[i]
    scores = [_mean_probability(slot_p[a:b, runs[j][0]] if runs[j][0] < n_classes else None, widths[a:b])
              for j in neighbours]
    if all(np.isfinite(scores)) and scores[0] != scores[1]:
        return runs[neighbours[int(np.argmax(scores))]][0]
    left, right = neighbours
    return runs[right][0] if lengths[right] > lengths[left] else runs[left][0]


def _mean_probability(values: np.ndarray | None, widths: np.ndarray) -> float:
    """Time-weighted mean of the finite ``values`` (NaN when there are none)."""
    if values is None:
        return float("nan")
    finite = np.isfinite(values)
    if not finite.any():
        return float("nan")
    return float(np.average(values[finite], weights=widths[finite]))
