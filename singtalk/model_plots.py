"""Figures of training and evaluation (plotly): learning curves, confusion matrix, ROC, tuner trials.

Presentation, shared by the app's Training page and the reports saved beside a model; the numbers come
from :mod:`singtalk.model`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .model import encode_labels, positive_index


def plot_history(history):
    """Loss and accuracy per epoch (training and validation) as a two-panel plotly Figure."""
    from plotly.subplots import make_subplots

    history = getattr(history, "history", history) or {}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for col, metric in enumerate(("loss", "accuracy"), start=1):
        for key, dash in ((metric, "solid"), (f"val_{metric}", "dash")):
            values = history.get(key) or []
            if values:
                fig.add_scatter(
                    x=list(range(1, len(values) + 1)), y=list(values), mode="lines+markers",
                    name=key, line={"dash": dash}, row=1, col=col,
                )
        fig.update_xaxes(title_text="epoch", row=1, col=col)
    fig.update_layout(height=360, margin={"l": 40, "r": 10, "t": 40, "b": 40}, legend={"orientation": "h"})
    return fig


def save_history_plot(history, path_html: str | os.PathLike, *, include_plotlyjs: bool | str = True) -> Path:
    """Write :func:`plot_history` as a standalone HTML file (atomically)."""
    from .atomic import write_text

    return write_text(path_html, plot_history(history).to_html(include_plotlyjs=include_plotlyjs, full_html=True))


def plot_confusion_matrix(matrix, labels: Sequence[str]):
    """Heatmap of ``matrix[true][predicted]`` for any number of classes (display names, in
    :func:`singtalk.eda.class_order`, on the axes).

    Each cell shows its count and its share of the true class's row; the colour is that share, so
    a small class's mistakes show as clearly as a large one's.
    """
    import plotly.graph_objects as go

    from .eda import class_order
    from .labels import display

    labels = [str(c) for c in labels]
    order = [labels.index(c) for c in class_order(labels)]  # singing, talking, no_voice first, whatever the model's order
    matrix = np.asarray(matrix, dtype=float).reshape(len(labels), len(labels))[np.ix_(order, order)]
    labels = [labels[i] for i in order]
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    names = [display(str(c)) for c in labels]
    text = [[f"{int(n)}<br>{s:.0%}" for n, s in zip(row, shares)] for row, shares in zip(matrix, share)]
    fig = go.Figure(go.Heatmap(
        z=share, x=names, y=names, zmin=0.0, zmax=1.0, colorscale="Blues", showscale=False,
        text=text, texttemplate="%{text}", customdata=matrix.astype(int),
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} (%{z:.0%} of the row)<extra></extra>",
    ))
    fig.update_layout(title="Confusion matrix (test table)", xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed", height=max(360, 100 + 70 * len(names)))
    return fig


def plot_roc(y, proba: np.ndarray, class_names: Sequence[str]):
    """ROC curve of the positive class (two classes) or one-vs-rest, one curve per class (three or more).

    Curves take the class colours of :func:`singtalk.eda.class_colours`; a class absent from ``y``
    (or the only one present) has no curve.
    """
    import plotly.graph_objects as go
    from sklearn.metrics import auc, roc_curve

    from .eda import class_colours, class_order
    from .labels import display

    class_names = [str(c) for c in class_names]
    y_idx = encode_labels(y, class_names)
    proba = np.asarray(proba)
    binary = len(class_names) == 2
    shown = [positive_index(class_names)] if binary else [class_names.index(c) for c in class_order(class_names)]
    colours = class_colours(class_names)
    fig = go.Figure()
    for i in shown:
        truth = y_idx == i
        if truth.all() or not truth.any():
            continue
        fpr, tpr, _ = roc_curve(truth, proba[:, i])
        name = f"{display(class_names[i])}{'' if binary else ' vs rest'} (AUC {auc(fpr, tpr):.3f})"
        fig.add_scatter(x=fpr, y=tpr, mode="lines", name=name, line={"color": colours[class_names[i]]})
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"})
    fig.update_layout(title="ROC" if binary else "ROC, one class against the rest",
                      xaxis_title="false positive rate", yaxis_title="true positive rate", height=360)
    return fig


def plot_trials(trials: Sequence[dict]):
    """Score of each tuning trial, hyper-parameters on hover."""
    import plotly.graph_objects as go

    rows = [t for t in trials if t.get("score") is not None]
    fig = go.Figure(go.Scatter(
        x=[i + 1 for i in range(len(rows))], y=[t["score"] for t in rows], mode="markers+lines",
        text=[", ".join(f"{k}={v}" for k, v in t["hyperparameters"].items()) for t in rows],
        hovertemplate="trial %{x}<br>score %{y:.4f}<br>%{text}<extra></extra>",
    ))
    fig.update_layout(xaxis_title="trial", yaxis_title="score (lower is better)", height=320)
    fig.update_xaxes(tickmode="linear", tick0=1, dtick=max(1, -(-len(rows) // 10)), tickformat="d")  # whole trials
    return fig
