"""Review: the list of mistakes, reviewer actions, checks on a labelled set, retraining, versions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from appkit import access, jobs_view, resources
from appkit.results import wrong_csv_path
from singtalk import review
from singtalk.eda import class_order
from singtalk.errors import SingtalkError
from singtalk.jobs import progress_reporter
from singtalk.labels import CLASSES, display
from singtalk.roots import all_inside_roots, inside_roots

PAGE_ROWS = 10
ACTION_TEXT = {"confirm": "Confirm", "relabel": "Relabel", "dismiss": "Dismiss", "reopen": "Reopen"}

access.require_team()
st.header("Review")
wrong_path = wrong_csv_path()
store = resources.store()


def class_names() -> list[str]:
    """The serving model's classes (singing, talking, no_voice first); labels.CLASSES without a readable model."""
    version = store.current_version()
    try:
        return class_order(store.read_metadata(version)["class_names"]) if version else list(CLASSES)
    except (SingtalkError, KeyError):
        return list(CLASSES)


def forget_and_rerun(message: str) -> None:
    resources.forget_models()
    st.toast(message)
    st.rerun(scope="app")


def store_action(action, done: str) -> None:
    """Run a model-store change: its error shown in words, else the cached models dropped and ``done`` said."""
    try:
        action()
    except SingtalkError as err:
        st.error(f"{err}")
    else:
        forget_and_rerun(done)


classes = class_names()

# ---------------------------------------------------------------------------- the wrong list
try:
    wrong = review.read_wrong(wrong_path)
except SingtalkError as err:
    st.error(f"{err}")
    wrong = review.empty_wrong()

st.caption(f"{len(wrong)} clip(s) in {wrong_path}: reported from the Classify page or found by a check. "
           "Confirmed and relabelled clips are what retraining learns from; dismissed ones are ignored.")
if len(wrong):
    wrong = wrong.assign(
        source=[Path(p).parent.name for p in wrong["path"]],
        confidence_value=pd.to_numeric(wrong["confidence"], errors="coerce"),
        exists=[Path(p).is_file() for p in wrong["path"]],
    )
    c1, c2, c3, c4 = st.columns(4)
    statuses = c1.multiselect("Status", review.STATUSES, default=["open"], key="f-status")
    labels = c2.multiselect("True label", sorted(set(wrong["label"]) - {""}), key="f-label", format_func=display)
    sources = c3.multiselect("Source", sorted(set(wrong["source"])), key="f-source")
    low, high = c4.slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.05, key="f-conf")
    shown = wrong[wrong["status"].isin(statuses or review.STATUSES)]
    if labels:
        shown = shown[shown["label"].isin(labels)]
    if sources:
        shown = shown[shown["source"].isin(sources)]
    conf = shown["confidence_value"].fillna(0.0)
    shown = shown[(conf >= low) & (conf <= high)]
    listed = shown.assign(model=[resources.model_date(str(store.root), v) if v else "" for v in shown["model_version"]])
    st.dataframe(listed[["path", "label", "predicted", "confidence", "status", "model", "reviewer", "note",
                         "origin"]], hide_index=True, height=min(38 + 35 * len(shown), 300),
                 column_config={"model": st.column_config.TextColumn(
                     "model", help="When the model that answered was made (its version id is in the wrong list's "
                                   "model_version column).")})

    reviewer = st.text_input("Your name (kept with each review)", key="reviewer")
    pages = max(1, -(-len(shown) // PAGE_ROWS))
    page = st.number_input("Page", 1, pages, 1, key="review-page") if pages > 1 else 1
    for i, row in shown.iloc[(page - 1) * PAGE_ROWS: page * PAGE_ROWS].iterrows():
        with st.container(border=True):
            left, right = st.columns([2, 3])
            with left:
                st.markdown(f"**{Path(row['path']).name}** · {row['source']}")
                st.caption(f"label **{display(row['label'])}**, model said **{display(row['predicted'])}** "
                           f"({row['confidence'] or '?'}), status **{row['status']}**")
                if row["exists"]:
                    st.audio(row["path"])
                else:
                    st.caption("The file is not on this machine.")
            with right:
                others = [c for c in classes if c != row["label"]] or classes
                new_label = st.selectbox("Relabel as", others, key=f"relabel-to-{i}", format_func=display,
                                         help="Any other class the serving model knows.")
                note = st.text_input("Note", key=f"note-{i}", value=row["note"])
                b1, b2, b3, b4 = st.columns(4)
                action = None
                if b1.button("Confirm", key=f"confirm-{i}", help="The label is right; the model was wrong."):
                    action = "confirm"
                if b2.button("Relabel", key=f"relabel-{i}", help="The true label is the one chosen above."):
                    action = "relabel"
                if b3.button("Dismiss", key=f"dismiss-{i}", help="Ignore this clip (bad audio, ambiguous)."):
                    action = "dismiss"
                if row["status"] != "open" and b4.button("Reopen", key=f"reopen-{i}"):
                    action = "reopen"
                if action:
                    try:
                        review.review_row(wrong_path, row["path"], action=action,
                                          label=new_label if action == "relabel" else None,
                                          reviewer=reviewer, note=note)
                    except SingtalkError as err:
                        st.error(f"{err}")
                    else:
                        st.toast(f"{ACTION_TEXT[action]}: {Path(row['path']).name}")
                        st.rerun()
else:
    st.info("No mistakes listed yet. Report one from the Classify page (\"This is wrong\") or run a check below.")

# ---------------------------------------------------------------------------- check and retrain jobs
st.subheader("Check a labelled set")
with st.form("check-form", border=False):
    c1, c2 = st.columns([3, 2])
    labelled_csv = c1.text_input("Labelled CSV (path,label[,speaker,source])", key="check-csv")
    root = c2.text_input("Folder the relative paths are under (default: the CSV's)", key="check-root")
    check = st.form_submit_button("Run check", disabled=jobs_view.running() is not None)
if check:
    try:
        model = resources.classifier()
        labelled = review.read_labelled(inside_roots(labelled_csv), inside_roots(root) if root.strip() else None,
                                        class_names=model.class_names)
        all_inside_roots(labelled["path"])
    except SingtalkError as err:
        st.error(f"{err}")
    else:
        def check_job(report, stop_event, model=model, labelled=labelled):
            return review.check(model, labelled, wrong_path=wrong_path, progress=progress_reporter(report)).summary()

        if jobs_view.start("check", check_job):
            st.rerun()

st.subheader("Retrain from reviewed mistakes")
st.caption("Fine-tunes the serving model on the listed mistakes (not dismissed) plus a replay of its training "
           "table that keeps the serving model's own answers as targets, then compares old and new on everything "
           "known to be right: the original test table, the mistakes held aside, every clip of the last checked "
           "labelled set and every confirmed review. The new version is promoted only if the labelled set and the "
           "held-aside mistakes improve and no class or source gets worse by more than 1 clip or 1 percentage point.")
with st.form("retrain-form", border=False):
    force = st.checkbox("Promote even if the verdict says no (experts)", key="retrain-force")
    go = st.form_submit_button("Retrain", type="primary", disabled=jobs_view.running() is not None)
if go:
    def retrain_job(report, stop_event, force=force):
        from singtalk import retrain

        return retrain.retrain(resources.store(), wrong_path, progress=report, stop_event=stop_event, force=force)

    if jobs_view.start("retrain", retrain_job):
        st.rerun()

KINDS = ("check", "retrain")
job = jobs_view.current()
live = job is not None and job.running and job.kind in KINDS


MAX_PLAYERS = 6


def outcome_names(report) -> dict[str, str]:
    """The retrain's new version and its backup by their dates, told apart (``resources.version_names``)."""
    return resources.version_names(str(store.root), [v for v in (report.new_version, report.backup_version) if v])


def outcome_text(report) -> str:
    """One line: promoted, forced or kept; the models by their dates."""
    verdict = report.verdict
    named = outcome_names(report)
    new = f"the new model ({named.get(report.new_version)})"
    if report.promoted and verdict is not None and verdict.forced:
        return f"Promoted {new} by force, overriding the verdict."
    if report.promoted:
        return f"Promoted {new}: it is better on everything known to be right."
    kept = f"; {new} is kept unpromoted" if report.new_version else ""
    return f"Not promoted: the model of {named[report.backup_version]} keeps serving{kept}."


def show_verdict(verdict) -> None:
    """The reasons, the before/after table, and the clips that changed (with players)."""
    st.markdown("\n".join(f"- {reason}" for reason in verdict.reasons))
    st.dataframe(verdict.table(), hide_index=True, key="verdict-table")
    changed = pd.DataFrame(verdict.changed, columns=["set", "path", "label", "before", "after", "change"])
    if changed.empty:
        return
    changed = changed.drop_duplicates("path")
    with st.expander(f"Clips that changed: {int((changed['change'] == 'fixed').sum())} fixed, "
                     f"{int((changed['change'] == 'broken').sum())} broken"):
        st.dataframe(changed, hide_index=True)
        for row in changed.sort_values("change").head(MAX_PLAYERS).itertuples(index=False):
            st.caption(f"{row.change}: {Path(row.path).name} ({display(row.label)}; before {display(row.before)}, "
                       f"after {display(row.after)})")
            if Path(row.path).is_file():
                st.audio(row.path)


@st.fragment(run_every=jobs_view.POLL_S if live else None)
def job_view():
    job = jobs_view.current()
    if job is None or job.kind not in KINDS:
        jobs_view.busy_elsewhere(KINDS)
        return
    snap = job.snapshot()
    if snap["state"] == "running":
        progress = jobs_view.last_event(snap, "progress")
        stage = jobs_view.last_event(snap, "stage")
        epoch = jobs_view.last_event(snap, "epoch")
        text = jobs_view.describe(snap)
        fraction = 0.0
        if progress:
            fraction = progress["done"] / max(progress["total"], 1)
            text += f": {jobs_view.progress_text(progress)}"
        if stage:
            text += f" — {stage['message']}"
        if epoch:
            fraction = epoch["epoch"] / epoch["epochs"]
            text += f" (epoch {epoch['epoch']}, val loss {epoch.get('val_loss') or float('nan'):.3f})"
        st.progress(min(fraction, 1.0), text=text)
        jobs_view.cancel_button(job, key="cancel-review-job")
        return
    if live:
        st.rerun(scope="app")
    jobs_view.show_end_state(snap)
    result = snap["result"]
    if snap["kind"] == "check" and result:
        st.write(resources.name_versions(result, str(store.root)))
    elif snap["kind"] == "retrain" and result is not None:
        report = result
        named = outcome_names(report)
        verdict = report.verdict
        (st.success if verdict is not None and verdict.passed else st.warning)(outcome_text(report))
        if verdict is not None:
            show_verdict(verdict)
        else:
            st.caption(resources.name_versions(report.reason, str(store.root)))
        backup = named[report.backup_version]
        st.caption(f"{report.n_mistakes} mistake(s) used ({report.n_train_mistakes} train, "
                   f"{report.n_test_mistakes} test), {report.n_replay} replayed rows; the backup is the model of "
                   f"{backup}.")
        current = store.current_version()
        kept = report.new_version if report.new_version and report.new_version != current else None
        if kept and kept not in {v.version for v in store.list_versions()}:
            st.caption(f"The new model ({named[kept]}) was discarded.")
            kept = None
        c1, c2, c3 = st.columns(3)
        if kept:
            new = f"new model ({named[kept]})"
            if c1.button("Promote the new model anyway", key="retrain-promote",
                         help=f"Serve the {new}: version {kept}."):
                store_action(lambda: store.promote(kept), f"The {new} is serving.")
            if c3.button("Discard the new model", key="retrain-discard",
                         help=f"Delete the {new}, version {kept}, from the model store; it was never served."):
                store_action(lambda: store.delete(kept), f"The {new} was discarded.")
        if current != report.backup_version and c2.button(
                f"Roll back to the model of {backup}", key="retrain-rollback",
                help=f"Serve the model the retrain started from again: version {report.backup_version}."):
            store_action(lambda: store.rollback(report.backup_version), f"The model of {backup} is serving again.")


job_view()

# ---------------------------------------------------------------------------- versions
st.subheader("Model versions")
versions = store.list_versions()
if versions:
    root = str(store.root)
    names = resources.version_names(root, [v.version for v in versions])
    table = pd.DataFrame([{"model": names[v.version], "serving": "●" if v.is_current else "",
                           "test accuracy": v.metrics.get("test.accuracy"),
                           "balanced accuracy": v.metrics.get("test.balanced_accuracy"),
                           "features": v.feature_version,
                           "made from": names.get(v.parent) or (resources.model_date(root, v.parent) if v.parent else ""),
                           "note": resources.name_versions(v.note or "", root), "version id": v.version}
                          for v in versions])
    st.dataframe(table, hide_index=True, column_config={
        "model": st.column_config.TextColumn("model", help="When the version was made (UTC)."),
        "made from": st.column_config.TextColumn("made from", help="The model it was fine-tuned or calibrated from."),
        "version id": st.column_config.TextColumn("version id", help="What the command line calls it "
                                                  "(singtalk rollback VERSION)."),
    })
    c1, c2 = st.columns([3, 1])
    serving = store.current_version()

    def version_label(version: str) -> str:
        """Its date (to the second when needed) and headline figures; "(serving)" for the one served."""
        described = resources.model_description(root, version).replace(resources.model_date(root, version),
                                                                       names[version], 1)
        return described + (" (serving)" if version == serving else "")

    chosen = c1.selectbox("Version", [v.version for v in versions], key="version-pick",
                          label_visibility="collapsed", format_func=version_label)
    c1.caption(f"Version id {chosen} (`singtalk rollback {chosen}` serves it from the command line).")
    if c2.button("Serve this version", key="version-promote", disabled=jobs_view.running() is not None):
        store_action(lambda: store.promote(chosen), f"The model of {names[chosen]} is serving.")
else:
    st.info(f"No model versions in {store.root} yet.")
