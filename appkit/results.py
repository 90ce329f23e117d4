"""Classify one input and show the result: metric, player, timeline, "This is wrong".

A result is kept in ``st.session_state`` under the input's key, so reruns (a
click on "This is wrong", a download) never classify the same input twice.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Callable

import numpy as np
import streamlit as st

from singtalk import audio
from singtalk.classify import Prediction
from singtalk.config import work_dir
from singtalk.errors import SingtalkError

from . import resources

log = logging.getLogger(__name__)

TIMELINE_MIN_S = 8.0
"""Inputs longer than this get a per-window timeline."""

WRONG_CSV = "wrong_audios.csv"
REPORTS_DIR = "reports"

STAGE_TEXT = {
    "download": "Downloading the audio…",
    "decode": "Decoding the audio…",
    "separate": "Extracting the vocals with Spleeter…",
    "features": "Computing features…",
    "predict": "Predicting…",
}


@dataclass
class Classified:
    """One classified input: what the model saw (16 kHz mono) and what it said."""

    key: str
    name: str
    prediction: Prediction
    samples: np.ndarray
    separated: bool
    model_version: str
    class_names: list


def wrong_csv_path():
    return work_dir() / WRONG_CSV


def _fail(err: BaseException, hint: str = "") -> None:
    if isinstance(err, SingtalkError):
        st.error(f"{err}{' ' + hint if hint else ''}")
    else:
        log.exception("unexpected error while classifying")
        st.error(f"Something unexpected went wrong ({type(err).__name__}: {err}). "
                 "Try another file; if it keeps happening, the server log has the details.")


def classify(key: str, source, *, name: str, separate: bool, max_duration: float | None = None,
             stage: Callable[[str], None] | None = None, describe_error: Callable[[SingtalkError], str] | None = None
             ) -> Classified | None:
    """Classify ``source`` (bytes, buffer, URL or samples) once per ``key``; errors shown, None returned.

    ``describe_error`` turns a :class:`SingtalkError` into the message shown (default: the error's own).
    """
    slot = f"result:{key.split(':', 1)[0]}"
    previous = st.session_state.get(slot)
    try:
        model = resources.classifier()
        full_key = f"{key}|sep={separate}|model={model.version}"
        if previous is not None and previous.key == full_key:
            return previous
        st.session_state.pop(slot, None)
        if separate:
            resources.separator()
        if isinstance(source, np.ndarray):
            y = source
            if separate:
                y = model.extract_vocals(y, audio.SAMPLE_RATE, stage=stage)
        else:
            y = model.load(source, separate=separate, name=name, stage=stage, max_duration=max_duration)
        prediction = model.classify(y, stage=stage)
    except SingtalkError as err:
        if describe_error:
            st.error(describe_error(err))
        else:
            _fail(err)
        return None
    except Exception as err:  # noqa: BLE001 - the page must keep working
        _fail(err)
        return None
    result = Classified(full_key, name, prediction, y, separate, model.version, list(model.class_names))
    st.session_state[slot] = result
    return result


def show(result: Classified, *, key: str) -> None:
    """The prediction, its confidence, a player, the timeline (long inputs) and the report form."""
    p = result.prediction
    cols = st.columns([1, 1, 1, 2])
    cols[0].metric("Prediction", p.label.capitalize())
    cols[1].metric("Confidence", f"{p.confidence:.0%}")
    cols[2].metric("Duration", audio.format_seconds(p.duration_s))
    with cols[3]:
        st.caption(f"{result.name} · model {result.model_version}"
                   + (" · vocals extracted with Spleeter" if result.separated else "")
                   + f" · {audio.format_seconds(p.sounding_s)} of sound after trimming quiet parts")
        st.audio(result.samples, sample_rate=audio.SAMPLE_RATE)
    if p.duration_s > TIMELINE_MIN_S and not p.timeline.empty:
        _timeline(p, key=key)
    _report_form(result, key=key)


def _timeline(p: Prediction, *, key: str) -> None:
    import plotly.graph_objects as go

    t = p.timeline
    column = "p_singing" if "p_singing" in t.columns else [c for c in t.columns if c.startswith("p_")][-1]
    middle = (t["start_s"] + t["end_s"]) / 2
    fig = go.Figure(go.Scatter(
        x=middle, y=t[column], mode="lines+markers", name=column, connectgaps=False,
        customdata=np.stack([t["start_s"], t["end_s"]], axis=1),
        hovertemplate="%{customdata[0]:.1f}–%{customdata[1]:.1f} s<br>" + column + " %{y:.2f}<extra></extra>",
    ))
    fig.add_hline(y=0.5, line_dash="dot", line_color="grey")
    fig.update_layout(height=260, margin={"l": 40, "r": 10, "t": 30, "b": 40}, yaxis_range=[0, 1],
                      xaxis_title="time (s)", yaxis_title=column, title="Per-window probability of singing")
    st.plotly_chart(fig, key=f"{key}-timeline")
    left, right, _ = st.columns([1, 1, 3])
    left.download_button("Timeline CSV", t.to_csv(index=False), file_name="singtalk-timeline.csv",
                         mime="text/csv", key=f"{key}-csv")
    records = json.loads(t.to_json(orient="records"))
    right.download_button("Timeline JSON", json.dumps(records, indent=1), file_name="singtalk-timeline.json",
                          mime="application/json", key=f"{key}-json")


def _report_form(result: Classified, *, key: str) -> None:
    done_key = f"{key}-reported"
    if st.session_state.get(done_key) == result.key:
        st.success("Thanks: the clip is in the review list (Review page).")
        return
    with st.expander("This is wrong"):
        others = [c for c in result.class_names if c != result.prediction.label] or result.class_names
        right = st.radio("The right label is", [c.capitalize() for c in others], key=f"{key}-right",
                         horizontal=True)
        if st.button("Send for review", key=f"{key}-send", type="primary"):
            try:
                path = save_report(result, label=right.lower())
            except SingtalkError as err:
                st.error(f"The report could not be saved: {err}")
                return
            except (ImportError, OSError) as err:
                st.error(f"The report could not be saved ({type(err).__name__}: {err}).")
                return
            st.session_state[done_key] = result.key
            st.success(f"Saved as {path.name}; it is now in the review list (Review page).")


def save_report(result: Classified, *, label: str):
    """Write the clip the model saw to ``work_dir()/reports/<uuid>.wav`` and list it in wrong_audios.csv."""
    from singtalk import review

    clip = audio.write_wav(work_dir() / REPORTS_DIR / f"{uuid.uuid4().hex}.wav", result.samples)
    p = result.prediction
    review.add_report(wrong_csv_path(), clip, label=label, predicted=p.label, p_singing=p.p_singing,
                      confidence=p.confidence, model_version=result.model_version, origin="app")
    return clip
