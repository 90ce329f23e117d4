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


def test_a_click_on_the_strip_under_the_timeline_selects_the_start_of_a_window():
    timeline = windows_over(11.0)
    segments = pd.DataFrame({"start_s": [0.0, 5.5], "end_s": [5.5, 11.0], "label": ["singing", "talking"],
                             "confidence": [0.9, 0.8]})
    cells, spec = charts.seek_strip_spec(timeline, segments, CLASSES, duration_s=11.0)
    [param] = spec["params"]
    assert param["name"] == charts.SEEK and param["select"]["fields"] == ["start_s"]
    assert "layer" not in spec and "encoding" in spec, "a single view: Streamlit takes selections only from those"
    assert spec["encoding"]["x"]["scale"]["domain"] == [0, 11.0], "the same time axis as the timeline"
    assert spec["encoding"]["y"]["axis"]["minExtent"] == charts.timeline_spec(
        timeline, segments, CLASSES, duration_s=11.0)["layer"][1]["encoding"]["y"]["axis"]["minExtent"]
    assert cells["start_s"].tolist() == [0, 2, 4, 6, 8] and cells["cell_end_s"].tolist() == [2, 4, 6, 8, 11]
    assert cells["segment"].tolist() == ["Singing"] * 3 + ["Talking"] * 2
    assert cells["p_singing"].tolist() == pytest.approx([0.7] * 5)


@pytest.mark.parametrize("state,start", [
    ({"selection": {"seek": [{"start_s": 6.0}]}}, 6),
    ({"selection": {"seek": [{"start_s": 99.0}]}}, 10),  # never past the clip
    ({"selection": {"seek": [{"start_s": -3}]}}, 0),
    ({"selection": {"seek": {}}}, None),  # cleared (double click)
    ({"selection": {"seek": [{"start_s": "x"}]}}, None),
    (None, None),
])
def test_the_player_starts_at_the_clicked_window(state, start):
    assert charts.seek_time(state, 11.0) == start
