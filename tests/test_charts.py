"""The Classify page's Vega-Lite specs, checked as data (no browser)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from appkit import charts
from singtalk.labels import CLASSES


def windows_over(duration: float, window: float = 4.0, hop: float = 2.0) -> pd.DataFrame:
    """Per-window probabilities as the classifier writes them; the last window may run past the end."""
    starts = np.arange(0.0, duration - hop + 1e-9, hop)
    p = np.tile([0.7, 0.2, 0.1], (len(starts), 1))
    return pd.DataFrame({"start_s": starts, "end_s": starts + window, "label": "singing",
                         **{f"p_{c}": p[:, i] for i, c in enumerate(CLASSES)}})


def x_scales(spec: dict) -> list[dict]:
    return [layer["encoding"]["x"]["scale"] for layer in spec["layer"] if "x" in layer["encoding"]]


@pytest.mark.parametrize("duration", [133.0, 9.3, 1800.0])
def test_the_timeline_axis_spans_the_clip_from_zero_to_its_end(duration):
    timeline = windows_over(duration)
    assert timeline["end_s"].max() > duration and timeline["start_s"].min() == 0
    segments = pd.DataFrame({"start_s": [0.0, duration / 2], "end_s": [duration / 2, duration],
                             "label": ["singing", "talking"], "confidence": [0.9, 0.8]})
    spec = charts.timeline_spec(timeline, segments, CLASSES, duration_s=duration)
    scales = x_scales(spec)
    assert len(scales) == 2, "bands and lines share one x axis"
    for scale in scales:
        assert scale["domain"] == [0, duration] and scale["nice"] is False
    assert all(layer["mark"]["clip"] for layer in spec["layer"][:2]), "nothing drawn past the clip's end"


def test_without_a_duration_the_axis_ends_where_the_segments_end():
    timeline = windows_over(20.0)
    segments = pd.DataFrame({"start_s": [0.0], "end_s": [20.0], "label": ["singing"], "confidence": [0.9]})
    spec = charts.timeline_spec(timeline, segments, CLASSES)
    assert all(scale["domain"] == [0, 20.0] for scale in x_scales(spec))
