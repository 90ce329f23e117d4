"""Exploratory summaries of a feature table, as data frames and plotly figures.

Used by ``singtalk eda`` (files) and the app's Dataset page (on screen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import atomic


def counts(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Class balance, rows per source and label, rows per speaker and label."""
    by_class = table["label"].value_counts().rename_axis("label").reset_index(name="rows")
    by_source = table.groupby(["source", "label"]).size().reset_index(name="rows")
    by_speaker = (table.assign(speaker=table["speaker"].replace("", "(unknown)"))
                  .groupby(["speaker", "label"]).size().reset_index(name="rows"))
    return {"class_balance": by_class, "per_source": by_source, "per_speaker": by_speaker}


def correlations(table: pd.DataFrame, feature_names: Sequence[str]) -> pd.DataFrame:
    """Pearson correlations between features (constant features give 0, not NaN)."""
    return table[list(feature_names)].corr().fillna(0.0)


def separation(table: pd.DataFrame, feature_names: Sequence[str], positive: str = "singing") -> pd.DataFrame:
    """Per feature: how well it alone separates ``positive`` from the rest (ROC-AUC, 0.5 = not at all)."""
    from sklearn.metrics import roc_auc_score

    y = (table["label"] == positive).to_numpy()
    rows = []
    if y.all() or not y.any():
        return pd.DataFrame(columns=["feature", "auc", "strength"])
    for name in feature_names:
        auc = float(roc_auc_score(y, table[name].to_numpy()))
        rows.append({"feature": name, "auc": auc, "strength": abs(auc - 0.5) * 2})
    return pd.DataFrame(rows).sort_values("strength", ascending=False).reset_index(drop=True)


def projection(table: pd.DataFrame, feature_names: Sequence[str]) -> pd.DataFrame:
    """2-D PCA of the (scaled) features, one point per clip, with its meta columns."""
    from sklearn.decomposition import PCA

    X = table[list(feature_names)].to_numpy(dtype=float)
    xy = PCA(n_components=2, random_state=0).fit_transform(X) if len(X) >= 2 else np.zeros((len(X), 2))
    return table[["path", "label", "speaker", "source"]].assign(pc1=xy[:, 0], pc2=xy[:, 1])


def figures(table: pd.DataFrame, feature_names: Sequence[str], *, top: int = 8) -> dict:
    """Plotly figures: class balance, per-source counts, top feature distributions, correlation heatmap, PCA."""
    import plotly.express as px

    parts = counts(table)
    labels = sorted(table["label"].unique())
    palette = px.colors.qualitative.Plotly
    style = {"color_discrete_map": {label: palette[i % len(palette)] for i, label in enumerate(labels)},
             "category_orders": {"label": labels}}  # the same colour for a class in every plot
    strong = separation(table, feature_names)["feature"].head(top).tolist() or list(feature_names)[:top]
    long = table.melt(id_vars=["label"], value_vars=strong, var_name="feature", value_name="value")
    corr = correlations(table, feature_names)
    return {
        "class_balance": px.bar(parts["class_balance"], x="label", y="rows", color="label", title="Class balance",
                                **style),
        "per_source": px.bar(parts["per_source"], x="source", y="rows", color="label", barmode="group",
                             title="Clips per source", **style),
        "distributions": px.box(long, x="feature", y="value", color="label",
                                title="Most separating features, by class", **style),
        "correlations": px.imshow(corr, zmin=-1, zmax=1, color_continuous_scale="RdBu_r",
                                  title="Feature correlations"),
        "projection": px.scatter(projection(table, feature_names), x="pc1", y="pc2", color="label",
                                 hover_data=["path", "source", "speaker"], title="PCA of the features", **style),
    }


def write_report(table: pd.DataFrame, feature_names: Sequence[str], out_dir: str | Path) -> list[Path]:
    """Write the counts and correlations as CSV and each figure as standalone HTML into ``out_dir``."""
    out_dir = Path(out_dir)
    written = []
    for name, frame in counts(table).items():
        written.append(atomic.write_csv(out_dir / f"{name}.csv", frame))
    written.append(atomic.write_csv(out_dir / "correlations.csv", correlations(table, feature_names).reset_index()))
    written.append(atomic.write_csv(out_dir / "feature_separation.csv", separation(table, feature_names)))
    for name, fig in figures(table, feature_names).items():
        written.append(atomic.write_text(out_dir / f"{name}.html", fig.to_html(include_plotlyjs="cdn")))
    return written
