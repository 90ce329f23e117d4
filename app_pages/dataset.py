"""Dataset: pick or build a feature table, then look at it (balance, distributions, PCA)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from appkit import access, jobs_view, resources
from singtalk import dataset, eda, training
from singtalk.config import work_dir
from singtalk.errors import SingtalkError
from singtalk.jobs import progress_reporter
from singtalk.labels import CLASSES, display
from singtalk.roots import all_inside_roots, inside_roots, shown_path

st.header("Dataset")
team = access.is_team()  # visitors look at the serving model's table; they build nothing and type no path

default_folder = str(resources.store().root / "tables")
# "tables-chosen" (plain state) survives page switches; the widget's own key does not.
st.session_state.setdefault("dataset-folder", st.session_state.get("tables-chosen", default_folder))
if "tables-pending" in st.session_state:  # a build just finished: show its table
    st.session_state["dataset-folder"] = st.session_state.pop("tables-pending")


@st.cache_data(max_entries=4, show_spinner="Reading the feature table…")
def load(folder: str, stamp: float, public: bool = False):
    """The table; ``public``: clip paths relative to the data folder, else bare file names."""
    tables = training.load_tables(folder)
    frame = pd.concat([tables.train.assign(split="train"), tables.test.assign(split="test")], ignore_index=True)
    return (frame.assign(path=frame["path"].map(shown_path)) if public else frame), tables.feature_names


@st.cache_data(max_entries=4, show_spinner="Drawing…")
def figures(folder: str, stamp: float, public: bool = False):
    table, names = load(folder, stamp, public)
    return eda.figures(table, names), eda.counts(table)


def stamp(folder: str) -> float:
    path = Path(folder) / dataset.TRAIN_TABLE
    return path.stat().st_mtime if path.is_file() else 0.0


# ---------------------------------------------------------------------------- build (team only)
def build_form() -> None:
    """The form that builds a feature table from a folder or manifest inside the app's roots."""
    with st.expander("Build a feature table from labelled audio", expanded=False):
        st.caption("A folder with one sub-folder per class (singing/, talking/, no_voice/…), or a manifest CSV with "
                   "path,label (and speaker,source). Files are decoded, features extracted in parallel; "
                   "failures are listed, not fatal. Train/test are split with no speaker on both sides.")
        with st.form("build-form", border=False):
            source = st.text_input("Folder or manifest CSV", key="build-source",
                                   placeholder="a folder or manifest under the data or work folder")
            classes = st.text_input("Classes (comma-separated, empty = all)", value=", ".join(CLASSES),
                                    key="build-classes",
                                    help="no_voice: instrumental music, everyday sounds, noise — anything without "
                                         "a voice.")
            out = st.text_input("Write the tables to", value=str(work_dir() / "tables"), key="build-out")
            test_size = st.slider("Test share", 0.1, 0.4, 0.2, 0.05, key="build-test")
            build = st.form_submit_button("Build feature table", type="primary",
                                          disabled=jobs_view.running() is not None)
        if build:
            start_build(source, classes, out, test_size)


def start_build(source: str, classes: str, out: str, test_size: float) -> None:
    """Check the typed paths and the labelled set, then run the build as the background job."""
    wanted = [c.strip() for c in classes.split(",") if c.strip()] or None
    try:
        path, out_dir = inside_roots(source), inside_roots(out)
        labelled = (dataset.from_manifest(path, classes=wanted) if path.suffix.lower() == ".csv"
                    else dataset.from_folders(path, classes=wanted))
        all_inside_roots(labelled["path"])  # a manifest may name any file
    except SingtalkError as err:
        st.error(f"{err} Check the path and try again.")
        return

    def work(report, stop_event):
        result = dataset.build_tables(labelled, out_dir, test_size=test_size, jobs=os.cpu_count() or 1,
                                      progress=progress_reporter(report),
                                      notice=lambda text: report({"kind": "note", "text": text}),
                                      stop_event=stop_event)
        if result is None:  # cancelled: the vectors computed so far are kept for the next build
            return None
        return {"folder": str(result.out_dir), "n_train": result.n_train, "n_test": result.n_test,
                "failures": result.failures, "class_counts": result.class_counts}

    if jobs_view.start("features", work):
        st.session_state["build-started"] = True


if team:
    build_form()

KEPT = ("The features computed so far are kept beside the tables: building again computes only the files "
        "not done yet.")


@st.fragment(run_every=jobs_view.POLL_S if (jobs_view.running() and jobs_view.running().kind == "features")
             else None)
def build_progress():
    job = jobs_view.current()
    if job is None or job.kind != "features":
        return
    snap = job.snapshot()
    if snap["state"] == "running":
        event = jobs_view.last_event(snap, "progress")
        fraction = event["done"] / max(event["total"], 1) if event else 0.0
        st.progress(fraction, text=f"{jobs_view.describe(snap)}: "
                                   + (jobs_view.progress_text(event) if event else "reading the files…"))
        note = jobs_view.last_event(snap, "note")
        if note:
            st.caption(note["text"])
        jobs_view.cancel_button(job, key="cancel-build", help=KEPT)
        return
    if st.session_state.pop("build-started", False) or st.session_state.get("build-seen") != snap["id"]:
        st.session_state["build-seen"] = snap["id"]
        if snap["state"] == "done" and snap["result"]:
            st.session_state["tables-pending"] = snap["result"]["folder"]
            st.rerun()  # redraw the whole page on the new table
    jobs_view.show_end_state(snap)
    if snap["state"] != "done":
        st.caption(KEPT)
    result = snap["result"]
    if result:
        st.caption(f"{result['n_train']} train and {result['n_test']} test rows in {result['folder']}; "
                   f"{len(result['failures'])} file(s) failed.")
        if len(result["failures"]):
            st.dataframe(result["failures"], hide_index=True, height=160)


if team:
    build_progress()


# ---------------------------------------------------------------------------- explore
def chosen_folder() -> str:
    """The team's typed table folder (refused outside the app's roots); the serving model's for visitors."""
    if not team:
        st.caption("The feature table the serving model was trained on.")
        return default_folder
    typed = st.text_input("Feature table folder", key="dataset-folder",
                          help=f"Holds {dataset.TRAIN_TABLE}, {dataset.TEST_TABLE} and {dataset.SCALER_FILE}. "
                               f"The shipped model's tables are in {default_folder}.")
    st.session_state["tables-chosen"] = typed
    return str(inside_roots(typed))


try:
    folder = chosen_folder()
    table, names = load(folder, stamp(folder), not team)
    figs, parts = figures(folder, stamp(folder), not team)
except SingtalkError as err:
    st.warning(f"{err} Pick another folder, or build a table above." if team else
               "The serving model's feature table cannot be read on this server.")
    st.stop()

split = table["split"].value_counts()
cols = st.columns(4)
cols[0].metric("Clips", f"{len(table):,}")
cols[1].metric("Train / test", f"{split.get('train', 0)} / {split.get('test', 0)}")
cols[2].metric("Features", len(names))
cols[3].metric("Speakers", table["speaker"].replace("", None).nunique())

left, right = st.columns(2)
left.plotly_chart(figs["class_balance"], key="fig-balance")
right.plotly_chart(figs["per_source"], key="fig-source")
with st.expander("Clips per speaker"):
    per_speaker = (parts["per_speaker"].pivot_table(index="speaker", columns="label", values="rows", fill_value=0)
                   [eda.class_order(parts["per_speaker"]["label"])].rename(columns=display))
    st.dataframe(per_speaker, height=280)
st.plotly_chart(figs["distributions"], key="fig-dist")
st.subheader("Correlations")
st.caption("Left: the features that go most with one class (r > 0: higher for that class's clips). Right: how "
           f"much the {len(names)} features of each family overlap with each other and with the other families.")
left, right = st.columns([3, 2])
left.plotly_chart(figs["label_correlations"], key="fig-labelcorr")
right.plotly_chart(figs["family_correlations"], key="fig-familycorr")

st.subheader("Projection")
st.caption("Each point is a clip (PCA of its scaled features). Click a point to hear it.")
event = st.plotly_chart(figs["projection"], key="fig-pca", on_select="rerun", selection_mode="points")
points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
    getattr(getattr(event, "selection", None), "points", [])
if points:
    point = points[0]
    custom = point.get("customdata") or []
    path = custom[0] if custom else None
    row = table[table["path"] == path].head(1)  # only a clip of this table: the selection comes from the browser
    audio_file = dataset.local_audio(path) if len(row) else None
    if audio_file:
        label = display(row["label"].iloc[0])
        st.write(f"**{Path(path).name}** — {label}, source {custom[1] if len(custom) > 1 else '?'}")
        st.audio(str(audio_file))
    elif len(row):
        st.info(f"{path} is not on this machine, so it cannot be played.")
