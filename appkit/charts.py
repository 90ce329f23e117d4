"""Vega-Lite specs for a classified input: one bar per class, and the timeline over its segments.

Pure functions (no ``st.*``): data frames and spec dicts, drawn by :mod:`appkit.results` with
``st.vega_lite_chart`` and checked by the tests. Classes carry their display names (``No voice``)
and the colours of :func:`singtalk.eda.class_colours`, so a class looks the same on every page.

Vega-Lite, not Plotly: the browser's first Plotly chart compiles ~4.8 MB of plotly.js, which held
its main thread for 1-2 s after the first result (a second upload then waited for it); the other
pages' Plotly charts are unaffected.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from singtalk.eda import class_colours
from singtalk.labels import NO_VOICE, SINGING, display, probability_column

WINDOWS = "windows"
SEGMENTS = "segments"
SEEK = "seek"
"""The timeline's click selection (and its layer and dataset): the start of the window clicked."""


def colour_scale(classes: Sequence[str]) -> dict:
    """A Vega-Lite colour encoding on the ``class`` field: display names → class colours, in class order."""
    colours = class_colours(classes)
    return {"field": "class", "type": "nominal", "title": None,
            "scale": {"domain": [display(c) for c in colours], "range": list(colours.values())}}


def probability_bars(probabilities: dict, classes: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """One horizontal bar per class of the model (its probability for the whole input), with the percentage."""
    data = pd.DataFrame({"class": [display(c) for c in classes],
                         "probability": [float(probabilities.get(c, np.nan)) for c in classes]})
    colour = {**colour_scale(classes), "legend": None}
    y = {"field": "class", "type": "nominal", "sort": list(data["class"]), "title": None}
    spec = {
        "title": "Probability of each class",
        "height": {"step": 26},  # a fixed height squeezes the bars of a layered band scale to nothing
        "encoding": {"y": y},
        "layer": [
            {"mark": {"type": "bar", "cornerRadiusEnd": 3},
             "encoding": {"x": {"field": "probability", "type": "quantitative", "title": None,
                                "scale": {"domain": [0, 1]}, "axis": {"format": "%", "tickCount": 5}},
                          "color": colour,
                          "tooltip": [{"field": "class"}, {"field": "probability", "format": ".1%"}]}},
            {"mark": {"type": "text", "align": "left", "dx": 4},
             "encoding": {"x": {"field": "probability", "type": "quantitative"},
                          "text": {"field": "probability", "type": "quantitative", "format": ".0%"}}},
        ],
    }
    return data, spec


def shown_probabilities(classes: Sequence[str]) -> list[str]:
    """The classes whose per-window probability is drawn: singing alone for a two-class model (the
    other line would mirror it), every class otherwise."""
    classes = [str(c) for c in classes]
    return [SINGING] if len(classes) == 2 and SINGING in classes else classes


def timeline_frames(timeline: pd.DataFrame, segments: pd.DataFrame,
                    classes: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long-form windows (one row per window and drawn class) and segments, both with a ``class`` display name."""
    t = timeline
    middle = (t["start_s"] + t["end_s"]) / 2
    parts = [pd.DataFrame({"start_s": t["start_s"], "end_s": t["end_s"], "middle_s": middle, "class": display(c),
                           "probability": t[probability_column(c)]})
             for c in shown_probabilities(classes) if probability_column(c) in t.columns]
    windows = pd.concat(parts, ignore_index=True) if parts else \
        pd.DataFrame(columns=["start_s", "end_s", "middle_s", "class", "probability"])
    bands = segments.assign(**{"class": segments["label"].map(display)})[["start_s", "end_s", "class", "confidence"]]
    return windows, bands


def timeline_spec(timeline: pd.DataFrame, segments: pd.DataFrame, classes: Sequence[str], *,
                  duration_s: float | None = None) -> dict:
    """The segments as coloured bands (one colour per class) under the per-window probability line(s).

    The x axis spans the clip, from 0 to ``duration_s`` (default: where the last segment ends), and
    nothing is drawn past it. The data travels in the spec's named datasets (``windows``,
    ``segments``); the legend names the classes once for bands and lines alike.
    """
    drawn = shown_probabilities(classes)
    windows, bands = timeline_frames(timeline, segments, classes)
    everything = list(classes) + [NO_VOICE] + list(segments["label"].dropna().astype(str))
    colour = {**colour_scale(everything), "legend": {"orient": "top", "title": None, "symbolOpacity": 1}}
    one = len(drawn) == 1
    y_title = f"probability of {display(drawn[0]).lower()}" if one else "probability of each class"
    end = float(duration_s if duration_s is not None else (segments["end_s"].max() if len(segments) else 0))
    x = {"field": "start_s", "type": "quantitative", "title": None, "axis": {"grid": False},
         "scale": {"domain": [0, end], "nice": False, "zero": True}}
    layers = [
        {"data": {"name": SEGMENTS}, "mark": {"type": "rect", "opacity": 0.25, "clip": True},
         "encoding": {"x": x, "x2": {"field": "end_s"}, "color": colour,
                      "tooltip": [{"field": "class", "title": "segment"},
                                  {"field": "start_s", "title": "from (s)", "format": ".1f"},
                                  {"field": "end_s", "title": "to (s)", "format": ".1f"},
                                  {"field": "confidence", "format": ".0%"}]}},
        {"data": {"name": WINDOWS}, "mark": {"type": "line", "point": True, "clip": True},
         "encoding": {"x": {**x, "field": "middle_s"},
                      "y": {"field": "probability", "type": "quantitative", "title": y_title,
                            "scale": {"domain": [0, 1]}},
                      "color": colour,
                      "tooltip": [{"field": "class", "title": "probability of"},
                                  {"field": "probability", "format": ".2f"},
                                  {"field": "start_s", "title": "window from (s)", "format": ".1f"},
                                  {"field": "end_s", "title": "to (s)", "format": ".1f"}]}},
    ]
    if one:
        layers.append({"data": {"name": WINDOWS}, "mark": {"type": "rule", "strokeDash": [2, 3], "color": "grey"},
                       "encoding": {"y": {"datum": 0.5}}})
    layers[1]["encoding"]["y"]["axis"] = {"minExtent": Y_AXIS_PX, "maxExtent": Y_AXIS_PX}
    title = f"Per-window {y_title}, over the segments" if one else "Per-window probabilities, over the segments"
    return {"title": title, "height": 300, "datasets": {WINDOWS: windows, SEGMENTS: bands}, "layer": layers}


Y_AXIS_PX = 56
"""Width of the y axis of the timeline and of the strip under it, so that their time axes line up."""
PLAY_ROW = "play"


def seek_strip_spec(timeline: pd.DataFrame, segments: pd.DataFrame, classes: Sequence[str], *,
                    duration_s: float) -> tuple[pd.DataFrame, dict]:
    """A strip under the timeline, one cell per window coloured by its segment: a click selects the
    window's start (the ``seek`` point selection). A chart of its own, because Streamlit takes selections
    only from single-view charts, and the timeline is layered."""
    cells = seek_cells(timeline, segments, classes, duration_s=duration_s)
    everything = list(classes) + [NO_VOICE] + list(segments["label"].dropna().astype(str))
    tooltip = [{"field": "start_s", "title": "click to play from (s)", "format": ".0f"}, {"field": "segment"}]
    tooltip += [{"field": probability_column(c), "title": f"probability of {display(c).lower()}", "format": ".2f"}
                for c in shown_probabilities(classes) if probability_column(c) in cells.columns]
    spec = {
        "height": {"step": 30},  # a fixed height in a single view is taken by Streamlit as the element's, axis included
        "params": [{"name": SEEK, "select": {"type": "point", "fields": ["start_s"], "on": "click",
                                             "toggle": False}}],
        "mark": {"type": "rect", "cursor": "pointer", "clip": True, "stroke": "white", "strokeWidth": 1},
        "encoding": {
            "x": {"field": "start_s", "type": "quantitative",
                  "title": "time (s) — click the strip to play from there",
                  "scale": {"domain": [0, float(duration_s)], "nice": False, "zero": True}, "axis": {"grid": False}},
            "x2": {"field": "cell_end_s"},
            "y": {"field": "row", "type": "nominal", "title": PLAY_ROW,  # a title as wide as the timeline's
                  "axis": {"labels": False, "minExtent": Y_AXIS_PX, "maxExtent": Y_AXIS_PX, "ticks": False,
                           "domain": False}},
            "color": {**colour_scale(everything), "field": "segment", "legend": None},
            "opacity": {"condition": {"param": SEEK, "value": 1.0, "empty": False}, "value": 0.55},
            "tooltip": tooltip,
        },
    }
    return cells.assign(row=PLAY_ROW), spec


def seek_cells(timeline: pd.DataFrame, segments: pd.DataFrame, classes: Sequence[str], *,
               duration_s: float) -> pd.DataFrame:
    """The clickable strip of the timeline: one cell per window, from its start to the next window's start
    (the last to ``duration_s``), with the window's probabilities and the segment it starts in."""
    starts = timeline["start_s"].to_numpy(dtype=float)
    keep = starts < duration_s
    starts = starts[keep]
    cells = pd.DataFrame({"start_s": starts, "cell_end_s": np.append(starts[1:], duration_s)})
    for c in shown_probabilities(classes):
        if probability_column(c) in timeline.columns:
            cells[probability_column(c)] = timeline[probability_column(c)].to_numpy()[keep]
    at = np.searchsorted(segments["start_s"].to_numpy(dtype=float), starts, side="right") - 1
    labels = segments["label"].to_numpy()[np.clip(at, 0, max(len(segments) - 1, 0))] if len(segments) else []
    cells["segment"] = [display(str(label)) for label in labels] if len(segments) else ""
    return cells


def seek_time(state, duration_s: float) -> int | None:
    """Where the player should start after a click on the timeline: the clicked window's start (whole
    seconds, within the clip), from the chart's selection state; None without a click."""
    try:
        points = state["selection"][SEEK]
        start = float(points[0]["start_s"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if not np.isfinite(start):
        return None
    return int(min(max(start, 0.0), max(duration_s - 1.0, 0.0)))
