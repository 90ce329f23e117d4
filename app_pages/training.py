"""Training: hyper-parameters (or a Keras Tuner search) → background job → live curves → evaluation → promote."""

from __future__ import annotations

import tempfile

import pandas as pd
import streamlit as st
from plotly.subplots import make_subplots

from appkit import access, jobs_view, resources
from singtalk import audio, training
from singtalk.config import work_dir
from singtalk.errors import SingtalkError
from singtalk.labels import display
from singtalk.model import IMBALANCE_MODES, OPTIMIZERS, TrainConfig
from singtalk.model_plots import plot_confusion_matrix, plot_roc, plot_trials
from singtalk.roots import inside_roots

KINDS = ("train", "tune")
IMBALANCE_TEXT = {"class_weight": "class weights", "smote": "SMOTE oversampling", "none": "nothing"}

access.require_team()
st.header("Training")
st.session_state.setdefault("train-folder",
                            st.session_state.get("tables-chosen", str(resources.store().root / "tables")))


def train_job(folder: str, config: TrainConfig, trials: int | None):
    """The job body: runs in a thread, talks only through ``report``."""

    def work(report, stop_event):
        report({"kind": "stage", "text": "Loading TensorFlow and the feature tables…", "trials": trials})
        store = resources.store()
        with store.lock("training in the app"):
            tables = training.load_tables(folder)
            report({"kind": "stage", "text": f"{len(tables.train)} train / {len(tables.test)} test rows"})
            if trials:
                with tempfile.TemporaryDirectory(prefix="tuning-", dir=_ensure(work_dir())) as tmp:
                    outcome = training.tune_tables(tables, max_trials=trials, directory=tmp, base_config=config,
                                                   progress=report, stop_event=stop_event)
            else:
                outcome = training.train_tables(tables, config, progress=report, stop_event=stop_event)
            if outcome.cancelled:
                return None
            from singtalk.model import predict_proba

            proba = predict_proba(outcome.model, tables.X(tables.test)) if len(tables.test) else None
            version = training.save_outcome(store, outcome, promote=False,
                                            note=("tuned" if trials else "trained") + " in the app")
        return {"version": version, "metrics": outcome.metrics, "headline": training.headline(outcome.metrics),
                "class_names": outcome.class_names, "y_test": tables.test["label"].tolist(), "proba": proba,
                "trials": outcome.trials, "config": outcome.config.to_dict(), "history": outcome.history}

    return work


def _ensure(path):
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


# ---------------------------------------------------------------------------- form
running = jobs_view.running()
mode = st.radio("Mode", ["Fixed hyper-parameters", "Search with Keras Tuner"], horizontal=True, key="train-mode")
tuning = mode.startswith("Search")
with st.form("train-form"):
    folder = st.text_input("Feature table folder", key="train-folder",
                           help="Built on the Dataset page; the shipped tables are the default.")
    c1, c2, c3, c4 = st.columns(4)
    units = c1.text_input("Hidden units per layer", "128, 64", key="train-units")
    dropout = c2.slider("Dropout", 0.0, 0.8, 0.3, 0.05, key="train-dropout")
    optimizer = c3.selectbox("Optimizer", OPTIMIZERS, key="train-optimizer")
    lr = c4.select_slider("Learning rate", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], value=1e-3, key="train-lr")
    c1, c2, c3, c4 = st.columns(4)
    batch = c1.number_input("Batch size", 4, 1024, 32, step=4, key="train-batch")
    epochs = c2.number_input("Epochs (at most)", 1, 1000, 100, key="train-epochs")
    patience = c3.number_input("Early-stopping patience", 0, 200, 10, key="train-patience")
    imbalance = c4.selectbox("Class imbalance", IMBALANCE_MODES, format_func=IMBALANCE_TEXT.get,
                             key="train-imbalance")
    trials = st.number_input("Tuner trial budget", 1, 200, 10, key="train-trials",
                             help="Units, layers, dropout, optimizer and learning rate are searched; the fields "
                                  "above are the starting point.") if tuning else None
    start = st.form_submit_button("Start", type="primary", disabled=running is not None)

if start:
    st.session_state["tables-chosen"] = folder
    try:
        hidden = tuple(int(u) for u in units.replace(";", ",").split(",") if u.strip())
        config = TrainConfig(hidden_units=hidden, dropout=dropout, optimizer=optimizer, learning_rate=float(lr),
                             batch_size=int(batch), epochs=int(epochs), patience=int(patience), imbalance=imbalance)
        folder = str(inside_roots(folder))
        training.load_tables(folder)  # fail here, with a message, rather than in the job
    except ValueError as err:
        st.error(f"Check the hyper-parameters: {err}")
    except SingtalkError as err:
        st.error(f"{err} Pick the folder of a feature table (see the Dataset page).")
    else:
        if jobs_view.start("tune" if tuning else "train", train_job(folder, config, int(trials) if tuning else None)):
            st.rerun()


# ---------------------------------------------------------------------------- live view and results
def curves(events: list[dict]):
    epochs = [e for e in events if e.get("kind") == "epoch"]
    if epochs and "trial" in epochs[-1]:
        epochs = [e for e in epochs if e.get("trial") == epochs[-1]["trial"]]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for col, metric in enumerate(("loss", "accuracy"), start=1):
        for key, dash in ((metric, "solid"), (f"val_{metric}", "dash")):
            xs = [e["epoch"] for e in epochs if e.get(key) is not None]
            ys = [e[key] for e in epochs if e.get(key) is not None]
            if ys:
                fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=key, line={"dash": dash}, row=1, col=col)
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_layout(height=320, margin={"l": 40, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h"})
    return fig


def show_results(result: dict) -> None:
    test = result["metrics"].get("test", {})
    st.subheader("Evaluation on the test table")
    st.caption(result["headline"])
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{test['accuracy']:.3f}" if test.get("accuracy") is not None else "–")
    cols[1].metric("Balanced accuracy",
                   f"{test['balanced_accuracy']:.3f}" if test.get("balanced_accuracy") is not None else "–")
    binary = len(result["class_names"]) == 2
    cols[2].metric("ROC AUC" if binary else "ROC AUC (macro, one-vs-rest)",
                   f"{test['roc_auc']:.3f}" if test.get("roc_auc") is not None else "–")
    cols[3].metric("Test clips", test.get("n", 0))
    if test.get("n"):
        left, right = st.columns(2)
        left.plotly_chart(plot_confusion_matrix(test["confusion_matrix"], test["labels"]), key="fig-cm")
        if result["proba"] is not None and test.get("roc_auc") is not None:
            right.plotly_chart(plot_roc(result["y_test"], result["proba"], result["class_names"]), key="fig-roc")
        recall = test.get("per_class_recall") or {}
        if recall:
            st.caption("Recall per class (share of each class's test clips labelled right): " + ", ".join(
                f"{display(c)} {'–' if r is None else f'{r:.3f}'}" for c, r in recall.items()))
        per_source = pd.DataFrame([{"source": s, **v} for s, v in test.get("per_source", {}).items()])
        if not per_source.empty:
            st.write("Accuracy per source")
            st.dataframe(per_source, hide_index=True, column_config={
                "accuracy": st.column_config.ProgressColumn("accuracy", min_value=0.0, max_value=1.0, format="%.3f")})
    if result["trials"]:
        st.plotly_chart(plot_trials(result["trials"]), key="fig-trials")
    store = resources.store()
    version = result["version"]
    made = resources.model_date(str(store.root), version)
    if store.current_version() == version:
        st.success(f"This model (made {made}) is serving.")
    elif st.button("Promote this model", type="primary", key="promote",
                   help=f"Serve this model (version {version}) from now on; the current one stays as a backup."):
        try:
            store.promote(version)
        except SingtalkError as err:
            st.error(f"{err}")
        else:
            resources.forget_models()
            st.toast(f"The model of {made} is now serving.")
            st.rerun(scope="app")
    else:
        st.caption(f"Saved as the model of {made} (version {version}), not serving yet.")


def show_last_finished() -> None:
    """The results and Promote button of the last run that finished, when a later job did not (or was another kind)."""
    earlier = jobs_view.last_done(KINDS)
    if earlier is not None and earlier.result:
        st.divider()
        st.markdown(f"**The last finished run** is kept: {jobs_view.describe(earlier.snapshot())}.")
        show_results(earlier.result)


job = jobs_view.current()
live = job is not None and job.running and job.kind in KINDS


@st.fragment(run_every=jobs_view.POLL_S if live else None)
def progress_view():
    job = jobs_view.current()
    if job is None:
        st.info("No training yet in this server session. Set the hyper-parameters and press Start.")
        return
    if jobs_view.busy_elsewhere(KINDS) or job.kind not in KINDS:
        show_last_finished()
        return
    snap = job.snapshot()
    events = snap["events"]
    if snap["state"] == "running":
        last = jobs_view.last_event(snap, "epoch")
        trial = jobs_view.last_event(snap, "trial")
        text = jobs_view.describe(snap)
        fraction = 0.0
        stage = jobs_view.last_event(snap, "stage")
        trials = (trial or {}).get("trials") or (jobs_view.last_event(snap, "stage") or {}).get("trials") \
            if snap["kind"] == "tune" else None
        if last:
            text += f" — epoch {last['epoch']} of at most {last['epochs']}"
            fraction = training.run_fraction(last, trials)
        elif stage:
            text += f" — {stage['text']}"
        if snap["kind"] == "tune" and last and "trial" in last:
            text += f", trial {last['trial']} of {trials or '?'}"
        left = training.time_left(events, trials)
        if left is not None:
            text += f" — at most about {audio.format_seconds(left)} left"
        st.progress(min(fraction, 1.0), text=text)
        jobs_view.cancel_button(job, key="cancel-train")
    else:
        jobs_view.show_end_state(snap)
    if any(e.get("kind") == "epoch" for e in events):
        st.plotly_chart(curves(events), key="fig-curves")
    if snap["state"] != "running" and live:
        st.rerun(scope="app")  # stop polling; draw the results with the full page
    if snap["state"] == "done" and snap["result"]:
        show_results(snap["result"])
    else:
        show_last_finished()


progress_view()
