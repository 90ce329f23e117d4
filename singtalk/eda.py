"""Exploratory summaries of a feature table, as data frames and plotly figures.

Used by ``singtalk eda`` (files) and the app's Dataset page (on screen).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import atomic
from .labels import CLASSES, NO_VOICE, SINGING, TALKING, display

CLASS_COLOURS = {SINGING: "#F58518", TALKING: "#4C78A8", NO_VOICE: "#9D9D9D"}
"""Singing orange, talking blue, no voice grey: the same in every plot of the app and the reports."""
SPARE_COLOURS = ("#54A24B", "#B279A2", "#E45756", "#72B7B2", "#EECA3B", "#FF9DA6", "#9D755D")
"""For classes outside :data:`labels.CLASSES`, handed out in :func:`class_order`'s order."""


def class_order(names) -> list[str]:
    """``names`` without repeats: the known classes in :data:`labels.CLASSES` order, then the rest sorted."""
    names = {str(n) for n in names}
    return [c for c in CLASSES if c in names] + sorted(names - set(CLASSES))


def class_colours(names) -> dict[str, str]:
    """A colour per class name (:data:`CLASS_COLOURS`; other classes get spare colours in turn).

    The same name always gets the same colour among the same ``names``; pass every class a figure
    may show (e.g. the model's classes plus ``no_voice``) so that all of a page's figures agree.
    """
    spare = itertools.cycle(SPARE_COLOURS)
    return {name: CLASS_COLOURS.get(name) or next(spare) for name in class_order(names)}


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


FAMILIES = (
    ("MFCC", r"mfcc\d+_"),
    ("MFCC deltas", r"dmfcc\d+_"),
    ("chroma", r"chroma\d+_"),
    ("spectral contrast", r"(voiced_)?contrast\d+_"),
    ("spectral shape", r"(voiced_)?(log2_rolloff|log2_centroid|zcr|log10_flatness|flux|spectral_change)"),
    ("pitch", r"f0_|vibrato_|note_|periodicity|voiced_fraction"),
    ("rhythm and pauses", r"voiced_run|long_run|env_|pause_|onsets_"),
    ("voice detector", r"voice_prob_"),
    ("CNN logits", r".*_logit$"),
)
"""Feature families in display order, each a regular expression matched at the start of a feature's name."""
OTHER_FAMILY = "other"


def feature_family(name: str) -> str:
    """The family of a feature: ``mfcc3_mean`` → ``MFCC``, ``f0_range`` → ``pitch``, ``spectro_logit`` →
    ``CNN logits``; :data:`OTHER_FAMILY` for a name no family claims."""
    return next((family for family, pattern in FAMILIES if re.match(pattern, name)), OTHER_FAMILY)


def label_correlations(table: pd.DataFrame, feature_names: Sequence[str], *, top: int | None = None) -> pd.DataFrame:
    """Per feature, its Pearson correlation with each class (1 for the class's clips, 0 for the others),
    strongest first.

    Columns: ``feature``, ``family``, one per class (display names, :func:`class_order`), and ``strongest``
    (the largest absolute correlation). A constant feature correlates 0. ``top`` keeps the first rows.
    """
    classes = class_order(table["label"].unique())
    X = table[list(feature_names)].to_numpy(dtype=float)
    Xc = X - X.mean(axis=0)
    x_norm = np.sqrt((Xc ** 2).sum(axis=0))
    frame = pd.DataFrame({"feature": list(feature_names), "family": [feature_family(n) for n in feature_names]})
    for c in classes:
        y = (table["label"] == c).to_numpy(dtype=float)
        yc = y - y.mean()
        denominator = x_norm * np.sqrt((yc ** 2).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(denominator > 0, (Xc * yc[:, None]).sum(axis=0) / denominator, 0.0)
        frame[display(c)] = r
    shown = [display(c) for c in classes]
    frame["strongest"] = frame[shown].abs().max(axis=1) if shown else 0.0
    frame = frame.sort_values("strongest", ascending=False, kind="stable").reset_index(drop=True)
    return frame.head(top) if top else frame


def family_correlations(table: pd.DataFrame, feature_names: Sequence[str]) -> pd.DataFrame:
    """Mean absolute correlation between the features of two families (a square frame, families in
    :data:`FAMILIES` order); on the diagonal, between different features of the same family (1 for a
    family of one feature)."""
    corr = correlations(table, feature_names).abs()
    families = pd.Series([feature_family(n) for n in corr.columns], index=corr.columns)
    order = [f for f, _ in FAMILIES if f in set(families)] + ([OTHER_FAMILY] if OTHER_FAMILY in set(families) else [])
    out = pd.DataFrame(index=order, columns=order, dtype=float)
    for a in order:
        rows = families.index[families == a]
        for b in order:
            block = corr.loc[rows, families.index[families == b]].to_numpy()
            if a == b and len(rows) > 1:
                block = block[~np.eye(len(rows), dtype=bool)]
            out.loc[a, b] = float(np.mean(block))
    return out


def separation(table: pd.DataFrame, feature_names: Sequence[str], positive: str | None = None) -> pd.DataFrame:
    """Per feature: how well it alone separates one class from the rest (ROC-AUC, 0.5 = not at all).

    ``positive`` names the class; by default, with three classes or more, every class is tried
    (one-vs-rest) and the one the feature separates best is kept (``class`` column); with two, the
    first of :func:`class_order` (singing), as the other gives the same strength.
    """
    from sklearn.metrics import roc_auc_score

    columns = ["feature", "class", "auc", "strength"]
    present = class_order(table["label"].unique())
    candidates = [positive] if positive is not None else present[:1] if len(present) == 2 else present
    candidates = [c for c in candidates if c in present] if len(present) >= 2 else []
    if not candidates:
        return pd.DataFrame(columns=columns)
    truths = {c: (table["label"] == c).to_numpy() for c in candidates}
    rows = []
    for name in feature_names:
        values = table[name].to_numpy()
        best = None
        for c, y in truths.items():
            auc = float(roc_auc_score(y, values))
            if best is None or abs(auc - 0.5) > abs(best[1] - 0.5):
                best = (c, auc)
        rows.append({"feature": name, "class": best[0], "auc": best[1], "strength": abs(best[1] - 0.5) * 2})
    return pd.DataFrame(rows, columns=columns).sort_values("strength", ascending=False).reset_index(drop=True)


def projection(table: pd.DataFrame, feature_names: Sequence[str]) -> pd.DataFrame:
    """2-D PCA of the (scaled) features, one point per clip, with its meta columns."""
    from sklearn.decomposition import PCA

    X = table[list(feature_names)].to_numpy(dtype=float)
    xy = PCA(n_components=2, random_state=0).fit_transform(X) if len(X) >= 2 else np.zeros((len(X), 2))
    return table[["path", "label", "speaker", "source"]].assign(pc1=xy[:, 0], pc2=xy[:, 1])


def figures(table: pd.DataFrame, feature_names: Sequence[str], *, top: int = 8, top_correlated: int = 15) -> dict:
    """Plotly figures: class balance, per-source counts, top feature distributions, the features most
    correlated with each class, correlations between feature families, PCA.

    Classes are shown by their display names (``No voice``) in :func:`class_colours`, any number of them.
    """
    import plotly.express as px

    parts = {name: _displayed(frame) for name, frame in counts(table).items()}
    colours = class_colours(table["label"].unique())
    style = {"color_discrete_map": {display(c): colour for c, colour in colours.items()},
             "category_orders": {"label": [display(c) for c in colours]}, "labels": {"label": "class"}}
    strong = separation(table, feature_names)["feature"].head(top).tolist() or list(feature_names)[:top]
    long = _displayed(table.melt(id_vars=["label"], value_vars=strong, var_name="feature", value_name="value"))
    by_label = label_correlations(table, feature_names, top=top_correlated)
    shown = [c for c in by_label.columns if c not in ("feature", "family", "strongest")]
    families = family_correlations(table, feature_names)
    return {
        "class_balance": px.bar(parts["class_balance"], x="label", y="rows", color="label", title="Class balance",
                                **style),
        "per_source": px.bar(parts["per_source"], x="source", y="rows", color="label", barmode="group",
                             title="Clips per source", **style),
        "distributions": px.box(long, x="feature", y="value", color="label",
                                title="Most separating features, by class", **style),
        "label_correlations": px.imshow(
            by_label.set_index("feature")[shown], zmin=-1, zmax=1, color_continuous_scale="RdBu_r", aspect="auto",
            text_auto=".2f", height=max(320, 24 * len(by_label) + 120), labels={"x": "class", "color": "r"},
            title=f"The {len(by_label)} features most correlated with a class (1 for its clips, 0 for the others)"),
        "family_correlations": px.imshow(
            families, zmin=0, zmax=1, color_continuous_scale="Blues", text_auto=".2f", height=460,
            labels={"color": "mean |r|"},
            title="Correlation between feature families (mean |r| of their features)"),
        "projection": px.scatter(_displayed(projection(table, feature_names)), x="pc1", y="pc2", color="label",
                                 hover_data=["path", "source", "speaker"], title="PCA of the features", **style),
    }


def _displayed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(label=frame["label"].map(display))


def write_report(table: pd.DataFrame, feature_names: Sequence[str], out_dir: str | Path) -> list[Path]:
    """Write the counts and correlations as CSV and each figure as standalone HTML into ``out_dir``."""
    out_dir = Path(out_dir)
    written = []
    for name, frame in counts(table).items():
        written.append(atomic.write_csv(out_dir / f"{name}.csv", frame))
    written.append(atomic.write_csv(out_dir / "correlations.csv", correlations(table, feature_names).reset_index()))
    written.append(atomic.write_csv(out_dir / "feature_separation.csv", separation(table, feature_names)))
    written.append(atomic.write_csv(out_dir / "label_correlations.csv", label_correlations(table, feature_names)))
    written.append(atomic.write_csv(out_dir / "family_correlations.csv",
                                    family_correlations(table, feature_names).rename_axis("family").reset_index()))
    for name, fig in figures(table, feature_names).items():
        written.append(atomic.write_text(out_dir / f"{name}.html", fig.to_html(include_plotlyjs="cdn")))
    return written
