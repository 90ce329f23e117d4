"""Classify one input and show the result: label and meaning, a bar per class, player, segments, "This is wrong".

A result is kept in ``st.session_state`` under the input's key, so reruns (a
click on "This is wrong", a download) never classify the same input twice.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import streamlit as st

from singtalk import audio, model_name
from singtalk.classify import HOP_S, WINDOW_S, Prediction
from singtalk.config import work_dir
from singtalk.eda import class_order
from singtalk.errors import SingtalkError
from singtalk.labels import CLASSES, MEANING, NO_VOICE, display
from singtalk.sources import is_url

from . import charts, line, resources

log = logging.getLogger(__name__)

TIMELINE_MIN_S = 8.0
"""Inputs longer than this get the timeline over their segments (so does any input with more than one segment)."""

WRONG_CSV = "wrong_audios.csv"
REPORTS_DIR = "reports"
MAX_REPORTS_ENV = "SINGTALK_MAX_REPORTS_MB"
DEFAULT_MAX_REPORTS_MB = 500.0

STAGE_TEXT = {
    "download": "Downloading the audio…",
    "decode": "Decoding the audio…",
    "load_separator": "Loading Spleeter (a few seconds, first use only)…",
    "separate": "Extracting the vocals with Spleeter…",
    "features": "Computing features…",
    "predict": "Predicting…",
}

SEPARATE_HELP = ("Worth turning on for a song with instruments: Spleeter keeps the voice and drops the band, "
                 "so the model judges the voice alone. Not needed for speech or a voice on its own. It takes a few "
                 "seconds to load the first time, then about 1 s per 30 s of audio. Afterwards the timeline has "
                 "gaps where the extracted vocals are quiet (the band plays alone): those stretches are No voice.")
WHAT_TO_EXPECT = (
    "**Easy:** clear singing or speech in any language, children included, and instrumental music or everyday "
    "sounds (answered No voice): about 98 % right for voices the model never heard. Rooms, phones, laptops and "
    "compressed files barely change that.\n\n"
    "**Hard:** under noise or music about as loud as the voice (a busy street, a band at full volume) the "
    "answer is wrong in about one case in six, mostly a song that sounds spoken; for a song with a band, tick "
    "*Extract vocals*. A very echoey space (a sports hall, a church, a stairwell) loses about one voice in eight "
    "to No voice and makes songs sound spoken. "
    "Singing that stays close to speech (chanting, rap, acted sung lines) is often called Talking. Very short "
    "takes (under a couple of seconds of sound) are refused.")
"""Plain words on which recordings are hard (figures: docs/robustness.md, the README's model card)."""

GAPS_TEXT = ("Vocals extracted: gaps in the lines are stretches where the extracted vocals are too quiet to judge "
             "(the instruments play alone); they count as No voice.")


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
    model_name: str = ""
    """The model by its date and headline figures (:func:`singtalk.model_name.describe`)."""


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
    slot = _slot(key)
    previous = st.session_state.get(slot)
    try:
        model = resources.classifier()
        full_key = f"{key}|sep={separate}|model={model.version}"
        if previous is not None and previous.key == full_key:
            return previous
        st.session_state.pop(slot, None)
        url = isinstance(source, str) and is_url(source)
        download = line.download_ticket() if url else None
        with line.turn() as turn:  # one line for every session; a link's download waits outside it
            staged = turn.stage(stage)
            if separate:
                staged("load_separator")
                resources.separator()
            if not url:
                turn.enter()
            # With separate, vocals that are only leakage come back as a no_voice answer with a note.
            prediction, y = model.analyse(source, separate=separate, name=name, stage=staged,
                                          max_duration=max_duration, download_progress=turn.download_progress,
                                          download=download)
    except SingtalkError as err:
        if describe_error:
            st.error(describe_error(err))
        else:
            _fail(err)
        return None
    except Exception as err:  # noqa: BLE001 - the page must keep working
        _fail(err)
        return None
    result = Classified(full_key, name, prediction, y, separate, model.version, list(model.class_names),
                        model_name.made_on(model.loaded.metadata))
    st.session_state[slot] = result
    return result


def _slot(key: str) -> str:
    return f"result:{key.split(':', 1)[0]}"


def pending(key: str, *, separate: bool) -> bool:
    """True when :func:`classify` has work to do for ``key`` (no result kept for this input, setting and model)."""
    previous = st.session_state.get(_slot(key))
    try:
        version = resources.classifier().version
    except SingtalkError:
        return True  # classify() says why
    return previous is None or previous.key != f"{key}|sep={separate}|model={version}"


def _classify_in_stages(key: str, source, **kwargs) -> Classified | None:
    """:func:`classify` inside an ``st.status`` that names each stage as it starts."""
    started = time.perf_counter()
    with st.status("Classifying…", expanded=True) as status:
        def stage(name: str) -> None:
            text = STAGE_TEXT.get(name, name)
            status.update(label=text)
            st.write(text)

        result = classify(key, source, stage=stage, **kwargs)
        took = time.perf_counter() - started
        status.update(label=f"Classified in {took:.1f} s" if result else "Failed",
                      state="complete" if result else "error", expanded=result is None)
    return result


def classify_and_show(key: str, source, *, show_key: str, stages: bool = False, **kwargs) -> Classified | None:
    """Classify ``source`` (see :func:`classify`) and show the result under ``show_key``.

    When there is work to do, the previous result is cleared at once (not left greyed out beneath); with
    ``stages`` a status box under it names each stage as it starts (load Spleeter, decode, extract,
    features, predict). A kept result is redrawn in place, so its player keeps playing.
    """
    area = st.empty()  # the one place of this input's result
    if not pending(key, separate=kwargs.get("separate", False)):
        result = st.session_state[_slot(key)]
        with area.container():  # the same block as last time: redrawn in place
            show(result, key=show_key)
        return result
    # An element, not a block, where the old result's block was: the browser drops the old result now
    # (a new block of the same kind would inherit its elements until the run ends).
    area.caption(f"Working on {kwargs.get('name') or 'the input'}…")
    if stages:
        result = _classify_in_stages(key, source, **kwargs)
    else:
        with st.spinner("Classifying…"):
            result = classify(key, source, **kwargs)
    if result is None:
        area.empty()
    else:
        with area.container():
            show(result, key=show_key)
    return result


def show(result: Classified, *, key: str) -> None:
    """The prediction and what it means, a bar per class, a player, the timeline over its segments, the report form."""
    p = result.prediction
    cols = st.columns([2, 3, 4])
    with cols[0]:
        st.metric("Prediction", display(p.label))
        st.caption(MEANING.get(p.label, ""))
    with cols[1]:
        classes = class_order([*result.class_names, *p.probabilities])  # + no_voice from separation
        data, spec = charts.probability_bars(p.probabilities, classes)
        st.vega_lite_chart(data, spec, key=f"{key}-bars", width="stretch")
    with cols[2]:
        st.caption(f"{result.name} · {audio.format_seconds(p.duration_s)} · "
                   f"model of {result.model_name or result.model_version}"
                   + (" · vocals extracted with Spleeter" if result.separated else "")
                   + f" · {audio.format_seconds(p.sounding_s)} of sound after trimming quiet parts")
        start = charts.seek_time(st.session_state.get(_timeline_key(result, key)), p.duration_s)
        st.audio(result.samples, sample_rate=audio.SAMPLE_RATE, start_time=start or 0, autoplay=start is not None)
    if p.note:  # an answer that did not come from the model, e.g. vocal extraction finding no voice
        st.info(f"{display(p.label)}, without asking the model: {p.note}.")
    if (p.duration_s > TIMELINE_MIN_S and not p.timeline.empty) or len(p.segments) > 1:
        _timeline(result, key=key)
    _report_form(result, key=key)


def _records(frame) -> str:
    """``frame`` as a JSON list of records (NaN → null)."""
    return json.dumps(json.loads(frame.to_json(orient="records")), indent=1)


def _timeline_key(result: Classified, key: str) -> str:
    """The key of the strip under the timeline, one per result: a click on an earlier input's strip does not seek
    this one."""
    return f"{key}-timeline-{zlib.crc32(result.key.encode()):08x}"


def _timeline(result: Classified, *, key: str) -> None:
    """The segments as coloured bands under the per-window probabilities; both tables to download."""
    p = result.prediction
    spec = charts.timeline_spec(p.timeline, p.segments, result.class_names, duration_s=p.duration_s)
    st.vega_lite_chart(spec, key=f"{key}-timeline", width="stretch")
    cells, strip = charts.seek_strip_spec(p.timeline, p.segments, result.class_names, duration_s=p.duration_s)
    st.vega_lite_chart(cells, strip, key=_timeline_key(result, key), width="stretch", on_select="rerun",
                       selection_mode=charts.SEEK)
    st.caption("Click the strip under the timeline to play from there. "
               "Segments: the input cut where the label changes (runs no longer than a window join a neighbour; "
               f"quiet stretches are {display(NO_VOICE)}). Windows: what the model said of each "
               f"{WINDOW_S:.0f} s window, every {HOP_S:.0f} s." + (" " + GAPS_TEXT if result.separated else ""))
    buttons = st.columns(5)
    buttons[0].download_button("Segments CSV", p.segments.to_csv(index=False), file_name="singtalk-segments.csv",
                               mime="text/csv", key=f"{key}-segments-csv")
    buttons[1].download_button("Segments JSON", _records(p.segments), file_name="singtalk-segments.json",
                               mime="application/json", key=f"{key}-segments-json")
    buttons[2].download_button("Windows CSV", p.timeline.to_csv(index=False), file_name="singtalk-timeline.csv",
                               mime="text/csv", key=f"{key}-csv")
    buttons[3].download_button("Windows JSON", _records(p.timeline), file_name="singtalk-timeline.json",
                               mime="application/json", key=f"{key}-json")


def report_classes(result: Classified) -> list[str]:
    """Every answer a report may give: :data:`singtalk.labels.CLASSES`, then any other class of the model."""
    return class_order([*CLASSES, *result.class_names])


def _report_form(result: Classified, *, key: str) -> None:
    done_key = f"{key}-reported"
    if st.session_state.get(done_key) == result.key:
        st.success("Thanks: the clip is in the review list (Review page).")
        return
    predicted = result.prediction.label
    with st.expander("This is wrong"):
        classes = report_classes(result)
        first_other = next((i for i, c in enumerate(classes) if c != predicted), 0)
        right = st.radio("The right label is", classes, index=first_other, key=f"{key}-right", horizontal=True,
                         format_func=lambda c: display(c) + (" (the model's answer)" if c == predicted else ""))
        same = right == predicted
        if same:
            st.caption("That is what the model said; choose the answer you heard.")
        if st.button("Send for review", key=f"{key}-send", type="primary", disabled=same):
            try:
                path = save_report(result, label=right)
            except SingtalkError as err:
                st.error(f"The report could not be saved: {err}")
                return
            except (ImportError, OSError) as err:
                st.error(f"The report could not be saved ({type(err).__name__}: {err}).")
                return
            st.session_state[done_key] = result.key
            st.success(f"Saved as {path.name}; it is now in the review list (Review page).")


class ReportsFull(SingtalkError):
    """The reports folder would grow past ``SINGTALK_MAX_REPORTS_MB``; nothing was written."""


def max_reports_bytes() -> int:
    """The bound on ``work_dir()/reports/``: ``$SINGTALK_MAX_REPORTS_MB`` (default 500) MB."""
    try:
        megabytes = float(os.environ.get(MAX_REPORTS_ENV, DEFAULT_MAX_REPORTS_MB))
    except ValueError:
        megabytes = DEFAULT_MAX_REPORTS_MB
    return int(max(megabytes, 0.0) * 1024 * 1024)


def reports_bytes(folder) -> int:
    """Total size of the files under ``folder``, its subfolders included (0 when it does not exist)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


INPUT_KINDS = {"upload": "upload", "record": "recording", "live": "live", "link": "link", "example": "example"}
"""A result key's prefix → the reports subfolder (the Review page's *source*)."""

_UNSAFE = re.compile(r"[^\w .()+-]+")


def report_stem(name: str) -> str:
    """The file name a report keeps from its input: the last part of ``name`` without its extension,
    reduced to letters, digits, spaces and ``._()+-`` (never a path, never hidden); ``clip`` when nothing is left."""
    last = re.split(r"[/\\]", str(name or "").split("?", 1)[0].rstrip("/\\"))[-1]
    stem = os.path.splitext(last)[0] if re.fullmatch(r".+\.[A-Za-z0-9]{1,8}", last) else last
    stem = _UNSAFE.sub("_", stem).strip(" ._")[:80].strip(" ._")
    return stem or "clip"


def _free_path(folder, stem: str):
    """``folder/stem.wav``, or ``stem (2).wav``, ``stem (3).wav``… when taken."""
    path, n = folder / f"{stem}.wav", 1
    while path.exists():
        n += 1
        path = folder / f"{stem} ({n}).wav"
    return path


_reports_lock = threading.Lock()  # check-then-write, one session at a time


def save_report(result: Classified, *, label: str):
    """Write the clip the model saw to ``work_dir()/reports/<input kind>/<input name>.wav``; list it for review.

    The file keeps the input's own name (:func:`report_stem`; `` (2)`` added when taken) in a folder
    per kind of input (upload, recording, live, link), so the Review page shows both. ``label`` is any
    class of :func:`report_classes`. :class:`ReportsFull` when the folder would pass
    :func:`max_reports_bytes`: the clip is refused; nothing already reported is removed.
    """
    from singtalk import review

    reports = work_dir() / REPORTS_DIR
    folder = reports / INPUT_KINDS.get(result.key.split(":", 1)[0], "other")
    size = 44 + 2 * int(result.samples.size)  # 16-bit mono WAV (audio.write_wav)
    with _reports_lock:
        used, bound = reports_bytes(reports), max_reports_bytes()
        if used + size > bound:
            raise ReportsFull(
                f"The review folder is full: {used / 2**20:.1f} MB of reported clips are kept and this one "
                f"({size / 2**20:.1f} MB) would pass the limit of {bound / 2**20:.0f} MB. Nothing was saved. "
                "Ask whoever runs this app to go through the review list (Review page) and make room.")
        clip = audio.write_wav(_free_path(folder, report_stem(result.name)), result.samples)
    p = result.prediction
    review.add_report(wrong_csv_path(), clip, label=label, predicted=p.label, probabilities=p.probabilities,
                      confidence=p.confidence, model_version=result.model_version, origin="app",
                      class_names=report_classes(result))
    return clip
