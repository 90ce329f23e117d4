"""Predictions on a labelled set, and the reviewed list of mistakes (``wrong_audios.csv``).

The wrong list has one row per audio file (key: the resolved absolute path) with
:data:`WRONG_COLUMNS` (and a ``p_<class>`` column for any class of a model beyond
singing, talking and no_voice). ``label`` is the true label — the labelled set's, or the
reviewer's once a reviewer acted on the row (``reviewed_at`` set), which then
wins over the labelled set; any class of the model (``no_voice`` too, once the model
has it). ``p_singing, p_talking, p_no_voice`` are the model's probabilities (empty for
a class the model lacks). ``status`` is one of :data:`STATUSES`:

* ``open``        a mistake nobody reviewed yet (found by :func:`check` or reported from the app)
* ``confirmed``   a reviewer agrees: the label is right, the model wrong
* ``relabelled``  a reviewer set a different true label
* ``dismissed``   a reviewer says ignore it (bad clip, ambiguous); retraining skips it; never changed by check
* ``resolved``    the current model now gets it right (rows are never dropped silently)

Every write re-reads the CSV under an inter-process lock (``fcntl.flock`` on
``<csv>.lock``) and replaces it atomically, so concurrent writers never lose
rows and a killed writer leaves the old or the new file, never half of one.

Features computed by :func:`check` are kept in ``<wrong stem>.features.jsonl``
(:mod:`singtalk.feature_cache`: keyed by file content and feature schema, saved as
they are computed), so checking again after a retrain, and the retrain itself, do
not decode the audio again, and a check interrupted part-way resumes where it stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import atomic, tables
from .atomic import locked
from .feature_cache import FeatureCache, features_for
from .errors import DatasetError
from .labels import CLASSES, probability_columns

PROBABILITY_COLUMNS = probability_columns()
WRONG_COLUMNS = ["path", "label", "predicted", *PROBABILITY_COLUMNS, "confidence", "status", "found_at",
                 "model_version", "reviewed_at", "reviewer", "note", "origin"]
STATUSES = ("open", "confirmed", "relabelled", "dismissed", "resolved")
ACTIONS = {"confirm": "confirmed", "relabel": "relabelled", "dismiss": "dismissed", "reopen": "open"}
REVIEWER_FIELDS = ("label", "status", "reviewed_at", "reviewer", "note")
MAX_EXAMPLES = 5

Progress = Callable[[int, int], None]


def utc_now() -> str:
    from .registry import utc_now_iso

    return utc_now_iso()


def resolve_path(path: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """The key of a file: absolute, ``~`` expanded, symlinks resolved; relative paths are taken under ``base``."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    return str(p.resolve())


def predictions_path_for(wrong_path: str | os.PathLike) -> Path:
    """Default predictions CSV beside the wrong list: ``<wrong stem>.predictions.csv``."""
    wrong_path = Path(wrong_path)
    return wrong_path.with_name(f"{wrong_path.stem}.predictions.csv")


def features_path_for(wrong_path: str | os.PathLike) -> Path:
    """Feature cache beside the wrong list: ``<wrong stem>.features.jsonl`` (:mod:`singtalk.feature_cache`)."""
    wrong_path = Path(wrong_path)
    return wrong_path.with_name(f"{wrong_path.stem}.features.jsonl")


# ---------------------------------------------------------------------------
# locking and reading
# ---------------------------------------------------------------------------
def empty_wrong() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=str) for column in WRONG_COLUMNS})


def read_wrong(wrong_path: str | os.PathLike) -> pd.DataFrame:
    """The wrong list as strings in :data:`WRONG_COLUMNS` order (empty when the file does not exist).

    Older lists (fewer columns — e.g. only ``p_singing`` —, relative paths, duplicate
    rows) are normalised: missing columns are added (empty; status ``open``), paths
    resolved against the CSV's folder, and duplicates collapsed to their last row;
    ``p_<class>`` columns of other classes are kept after :data:`WRONG_COLUMNS`. A file
    that cannot be parsed raises DatasetError — it is never overwritten blindly.
    """
    wrong_path = Path(wrong_path)
    if not wrong_path.is_file():
        return empty_wrong()
    try:
        frame = tables.read_csv(wrong_path, shape=",".join(WRONG_COLUMNS[:3]) + ",…")
    except DatasetError as err:
        raise DatasetError(f"The review list {err} Fix or move {wrong_path}; it was left untouched.") from err
    if frame.empty and not len(frame.columns):
        return empty_wrong()
    if "path" not in frame.columns:
        raise DatasetError(f"{wrong_path} has no 'path' column (columns: {list(frame.columns)[:8]}).")
    for column in WRONG_COLUMNS:
        if column not in frame.columns:
            frame[column] = "open" if column == "status" else ""
    frame = frame[_columns(frame)].copy()
    frame["path"] = [resolve_path(p, wrong_path.parent) for p in frame["path"]]
    frame.loc[~frame["status"].isin(STATUSES), "status"] = "open"
    return frame.drop_duplicates("path", keep="last").reset_index(drop=True)


def _columns(frame: pd.DataFrame) -> list[str]:
    """:data:`WRONG_COLUMNS`, then the frame's other ``p_<class>`` columns (classes beyond the usual three)."""
    return WRONG_COLUMNS + [c for c in frame.columns if str(c).startswith("p_") and c not in WRONG_COLUMNS]


def _write_wrong(wrong_path: Path, frame: pd.DataFrame) -> None:
    atomic.write_csv(wrong_path, frame[_columns(frame)])


def prediction_fields(probabilities: Mapping[str, float], *, predicted: str, confidence: float,
                      model_version: str) -> dict:
    """A wrong-list row's prediction fields: ``predicted``, ``p_<class>`` (empty for the usual classes the
    model lacks), ``confidence``, ``model_version``."""
    probabilities = {str(k): v for k, v in probabilities.items()}
    fields = {"predicted": str(predicted).strip()}
    fields.update({column: _fmt(probabilities.get(column[2:], np.nan))
                   for column in probability_columns(probabilities)})
    fields.update(confidence=_fmt(confidence), model_version=str(model_version))
    return fields


def _set_fields(wrong: pd.DataFrame, row: int, fields: dict) -> None:
    """Write ``fields`` into ``row``, adding columns as needed; stale ``p_`` values of other classes are cleared."""
    for column in wrong.columns:
        if str(column).startswith("p_") and column not in fields:
            wrong.at[row, column] = ""
    for key, value in fields.items():
        if key not in wrong.columns:
            wrong[key] = ""
        wrong.at[row, key] = value


def _append(wrong: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """``wrong`` with ``rows`` added (missing fields empty, new ``p_`` columns added)."""
    if not rows:
        return wrong
    columns = list(wrong.columns) + [k for r in rows for k in r if k not in wrong.columns]
    columns = list(dict.fromkeys(columns))
    added = pd.DataFrame([{c: r.get(c, "") for c in columns} for r in rows], columns=columns)
    return pd.concat([wrong.reindex(columns=columns, fill_value=""), added], ignore_index=True)


def _is_reviewed(row) -> bool:
    return bool(str(row["reviewed_at"]).strip())


def _fmt(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if np.isnan(value) else f"{value:.4f}"


# ---------------------------------------------------------------------------
# labelled sets
# ---------------------------------------------------------------------------
def _examples(items: Sequence, n: int) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f", … ({len(items) - n} more)" if len(items) > n else "")


def read_labelled(csv_path, root=None, *, class_names: Sequence[str] | None = None,
                  max_examples: int = MAX_EXAMPLES) -> pd.DataFrame:
    """A labelled set (``path,label`` [+ ``speaker,source``]) checked before any audio is decoded.

    Relative paths are under ``root`` (default: the CSV's folder); paths come
    back resolved. Every problem found is named in one DatasetError with up to
    ``max_examples`` examples each: missing columns, empty paths or labels,
    files that do not exist, labels the model does not know (``class_names``),
    the same file listed with two labels.
    """
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise DatasetError(f"No labelled set at {csv_path}.")
    frame = tables.read_csv(csv_path, shape="path,label[,speaker,source]")
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise DatasetError(f"{csv_path.name} lacks column(s) {', '.join(missing)}; it needs at least path,label "
                           f"(found: {', '.join(map(str, frame.columns[:8])) or 'none'}).")
    base = Path(root) if root is not None else csv_path.parent
    frame = frame.copy()
    frame["label"] = frame["label"].str.strip()
    frame["path"] = frame["path"].str.strip()
    frame["path"] = [resolve_path(p, base) if p else "" for p in frame["path"]]
    return validate_labelled(frame, class_names=class_names, max_examples=max_examples, name=csv_path.name)


def validate_labelled(frame: pd.DataFrame, *, class_names: Sequence[str] | None = None,
                      max_examples: int = MAX_EXAMPLES, name: str = "The labelled set") -> pd.DataFrame:
    """Check a labelled frame (see :func:`read_labelled`); returns it with resolved paths and no duplicates."""
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise DatasetError(f"{name} lacks column(s) {', '.join(missing)}; it needs at least path,label.")
    frame = frame.fillna("").copy()
    frame["path"] = [resolve_path(p) if str(p).strip() else "" for p in frame["path"]]
    frame["label"] = frame["label"].astype(str).str.strip()
    for column in ("speaker", "source"):
        if column not in frame.columns:
            frame[column] = ""
    problems = []
    rows = np.arange(len(frame)) + 2  # CSV line numbers (header is line 1)
    empty = (frame["path"] == "") | (frame["label"] == "")
    if empty.any():
        problems.append(f"{int(empty.sum())} row(s) with an empty path or label (lines {_examples(rows[empty], max_examples)})")
    present = frame[~empty]
    absent = [p for p in present["path"] if not Path(p).is_file()]
    if absent:
        problems.append(f"{len(absent)} file(s) do not exist, e.g. {_examples(absent, max_examples)}")
    if class_names is not None:
        unknown = present[~present["label"].isin(list(class_names))]
        if len(unknown):
            counts = unknown["label"].value_counts().to_dict()
            problems.append(f"{len(unknown)} row(s) have label(s) the model does not know {counts} "
                            f"(it knows {', '.join(class_names)}), e.g. {_examples(unknown['path'], max_examples)}")
    labels_per_path = present.groupby("path")["label"].nunique()
    conflicting = labels_per_path[labels_per_path > 1].index.tolist()
    if conflicting:
        problems.append(f"{len(conflicting)} file(s) listed with different labels, e.g. {_examples(conflicting, max_examples)}")
    if problems:
        raise DatasetError(f"{name}: " + "; ".join(problems) + ".")
    if frame.empty:
        raise DatasetError(f"{name} lists no files.")
    frame = frame.drop_duplicates("path").reset_index(drop=True)
    first = ["path", "label", "speaker", "source"]
    return frame[first + [c for c in frame.columns if c not in first]]


# ---------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------
@dataclass
class CheckResult:
    """What one :func:`check` run found.

    ``skipped`` counts the labelled rows left out because their label is a class the model lacks
    (``no_voice`` for a two-class model), by label.
    """

    checked: int
    failed: int
    wrong: int
    new: int
    resolved: int
    predictions: pd.DataFrame
    wrong_path: Path
    predictions_path: Path
    model_version: str
    skipped: dict = field(default_factory=dict)

    def summary(self) -> str:
        skipped = "".join(f", {n} labelled {label} skipped (the model has no such class)"
                          for label, n in self.skipped.items())
        return (f"{self.checked} checked, {self.failed} failed, {self.wrong} wrong "
                f"({self.new} new), {self.resolved} now right (resolved){skipped}; model {self.model_version}")


def _loaded(model):
    """A LoadedModel from a LoadedModel or a Classifier."""
    return getattr(model, "loaded", model)


def check(model, labelled, *, wrong_path, predictions_path=None, root=None, progress: Progress | None = None,
          jobs: int = 1, cache: bool = True, origin: str | None = None) -> CheckResult:
    """Predict every file of ``labelled`` and upsert the mistakes into ``wrong_path``.

    ``model`` is a LoadedModel or a Classifier; ``labelled`` a DataFrame
    (``path,label``…) or a CSV path (read with :func:`read_labelled`, relative
    paths under ``root``). Features are computed once per file from the whole
    clip, exactly as for training (``dataset.file_features``); files that fail
    are listed with their error in the predictions CSV and never stop the run.
    Labels are the model's classes; rows labelled with one of the usual classes
    the model lacks (``no_voice`` for a two-class model) are skipped and counted
    (:attr:`CheckResult.skipped`), any other label is refused.

    Wrong list semantics (key: resolved path, one row per file):
    new mistakes are added ``open``; rows a reviewer acted on keep their label,
    status (unless now right), reviewer, note and reviewed time; rows now
    predicted right become ``resolved`` (``dismissed`` rows stay dismissed);
    prediction fields (predicted, p_<class>, confidence, model_version) are
    refreshed. Running it twice on the same data gives the same list.
    """
    loaded = _loaded(model)
    class_names = list(loaded.class_names)
    known = class_names + [c for c in CLASSES if c not in class_names]
    wrong_path = Path(wrong_path)
    predictions_path = Path(predictions_path) if predictions_path else predictions_path_for(wrong_path)
    if isinstance(labelled, (str, os.PathLike)):
        origin = origin or f"check:{Path(labelled).name}"
        labelled = read_labelled(labelled, root, class_names=known)
    else:
        labelled = validate_labelled(labelled, class_names=known)
    origin = origin or "check"
    lacking = ~labelled["label"].isin(class_names)
    skipped = {str(k): int(v) for k, v in labelled.loc[lacking, "label"].value_counts().items()}
    labelled = labelled[~lacking].reset_index(drop=True)
    if labelled.empty:
        raise DatasetError(f"Nothing to check: every file is labelled with a class the model lacks {skipped} "
                           f"(it knows {', '.join(class_names)}).")
    paths = list(labelled["path"])

    feature_cache = FeatureCache(features_path_for(wrong_path) if cache else None,
                                 feature_version=loaded.metadata.get("feature_version", ""),
                                 feature_names=loaded.feature_names)
    vectors, errors = features_for(paths, cache=feature_cache, jobs=jobs, progress=progress)
    ok = np.array([v is not None for v in vectors], dtype=bool)
    proba = np.full((len(paths), len(class_names)), np.nan, dtype=np.float64)
    if ok.any():
        proba[ok] = loaded.predict_proba(np.vstack([v for v in vectors if v is not None]))
    predicted = np.array([class_names[int(np.argmax(p))] if good else "" for p, good in zip(proba, ok)], dtype=object)
    version = str(loaded.version)
    checked_at = utc_now()

    with locked(wrong_path):
        wrong = read_wrong(wrong_path)
        index = {p: i for i, p in enumerate(wrong["path"])}
        truth = np.array(labelled["label"], dtype=object)
        for i, path in enumerate(paths):  # a reviewer's label wins over the labelled set's
            row = index.get(path)
            if row is not None and _is_reviewed(wrong.iloc[row]) and wrong.at[row, "label"]:
                truth[i] = wrong.at[row, "label"]
        is_wrong = ok & (predicted != truth)
        new_rows, n_new, n_resolved = [], 0, 0
        for i, path in enumerate(paths):
            if not ok[i]:
                continue
            fields = prediction_fields(dict(zip(class_names, proba[i])), predicted=predicted[i],
                                       confidence=proba[i].max(), model_version=version)
            row = index.get(path)
            if row is None:
                if is_wrong[i]:
                    new_rows.append({**fields, "path": path, "label": truth[i], "status": "open",
                                     "found_at": checked_at, "origin": origin})
                    n_new += 1
                continue
            _set_fields(wrong, row, fields)
            status = wrong.at[row, "status"]
            if not _is_reviewed(wrong.iloc[row]):
                wrong.at[row, "label"] = truth[i]
            if status == "dismissed":
                continue
            if not is_wrong[i] and status != "resolved":
                wrong.at[row, "status"] = "resolved"
                n_resolved += 1
            elif is_wrong[i] and status == "resolved":
                wrong.at[row, "status"] = "open"  # wrong again: a regression to look at
        wrong = _append(wrong, new_rows)
        _write_wrong(wrong_path, wrong)

    table = pd.DataFrame({"path": paths, "label": truth, "predicted": predicted})
    for j, name in enumerate(class_names):
        table[f"p_{name}"] = [_fmt(p) for p in proba[:, j]]
    table["error"] = errors
    table["model_version"] = version
    table["checked_at"] = checked_at
    table["source"] = list(labelled["source"])
    atomic.write_csv(predictions_path, table)
    return CheckResult(checked=int(ok.sum()), failed=int((~ok).sum()), wrong=int(is_wrong.sum()), new=n_new,
                       resolved=n_resolved, predictions=table, wrong_path=wrong_path,
                       predictions_path=predictions_path, model_version=version, skipped=skipped)


# ---------------------------------------------------------------------------
# reviewer actions and app reports
# ---------------------------------------------------------------------------
def _check_label(label: str, class_names: Sequence[str] | None) -> str:
    label = str(label or "").strip()
    if class_names is not None and label not in [str(c) for c in class_names]:
        raise DatasetError(f"{label!r} is not a class of the model (it knows {', '.join(map(str, class_names))}).")
    return label


def review_row(wrong_path, path, *, action: str, label: str | None = None, reviewer: str = "",
               note: str = "", class_names: Sequence[str] | None = None) -> dict:
    """Apply a reviewer's ``action`` (confirm, relabel, dismiss, reopen) to the row of ``path``; returns the row.

    ``relabel`` needs ``label`` (the true label), one of ``class_names`` when given (pass the model's: any
    class of it, ``no_voice`` too for a three-class model). The reviewer's label, status, name, note and
    time are kept by later checks.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {sorted(ACTIONS)}, got {action!r}")
    if action == "relabel":
        if not (label or "").strip():
            raise DatasetError("Relabelling needs the true label.")
        label = _check_label(label, class_names)
    wrong_path = Path(wrong_path)
    key = resolve_path(path)
    with locked(wrong_path):
        wrong = read_wrong(wrong_path)
        hits = wrong.index[wrong["path"] == key].tolist()
        if not hits:
            raise DatasetError(f"{path} is not in {wrong_path.name}; nothing to review.")
        row = hits[0]
        if action == "relabel":
            wrong.at[row, "label"] = label
        wrong.at[row, "status"] = ACTIONS[action]
        wrong.at[row, "reviewed_at"] = utc_now()
        wrong.at[row, "reviewer"] = reviewer
        wrong.at[row, "note"] = note
        _write_wrong(wrong_path, wrong)
        return wrong.iloc[row].to_dict()


def add_report(wrong_path, clip_path, *, label: str, predicted: str, confidence: float, model_version: str,
               probabilities: Mapping[str, float] | None = None, p_singing: float | None = None,
               origin: str = "app", class_names: Sequence[str] | None = None) -> dict:
    """Record a user's "this is wrong" for ``clip_path`` (true ``label``); returns the row.

    ``probabilities`` maps classes to the model's probabilities (``Prediction.probabilities``); the older
    ``p_singing=`` alone still works (the other columns stay empty). ``label`` must differ from
    ``predicted`` and, when ``class_names`` is given, be one of them. A new row is ``open``. An existing
    row gets the new prediction; unless a reviewer already acted on it, also the reported label and
    status ``open``.
    """
    label, predicted = str(label or "").strip(), str(predicted).strip()
    if not label:
        raise DatasetError("A report needs the true label.")
    label = _check_label(label, class_names)
    if label == predicted:
        raise DatasetError(f"The model already said {predicted!r}; a report needs a different, true label.")
    probabilities = dict(probabilities or {})
    if p_singing is not None:
        probabilities.setdefault("singing", p_singing)
    wrong_path = Path(wrong_path)
    key = resolve_path(clip_path)
    if not Path(key).is_file():
        raise DatasetError(f"The reported clip {clip_path} does not exist; keep the clip before reporting it.")
    now = utc_now()
    fields = prediction_fields(probabilities, predicted=predicted, confidence=confidence, model_version=model_version)
    with locked(wrong_path):
        wrong = read_wrong(wrong_path)
        hits = wrong.index[wrong["path"] == key].tolist()
        if hits:
            row = hits[0]
            _set_fields(wrong, row, fields)
            if not _is_reviewed(wrong.iloc[row]):
                wrong.at[row, "label"] = label
                wrong.at[row, "status"] = "open"
        else:
            wrong = _append(wrong, [{**fields, "path": key, "label": label, "status": "open", "found_at": now,
                                     "origin": origin}])
            row = len(wrong) - 1
        _write_wrong(wrong_path, wrong)
        return wrong.iloc[row].to_dict()


def usable_mistakes(wrong: pd.DataFrame, class_names: Sequence[str]) -> tuple[pd.DataFrame, dict]:
    """Rows retraining may learn from (not dismissed, known label, file present) and counts of the rest."""
    dismissed = wrong["status"] == "dismissed"
    unknown = ~wrong["label"].isin(list(class_names))
    missing = ~wrong["path"].map(lambda p: Path(p).is_file())
    keep = ~dismissed & ~unknown & ~missing
    skipped = {"dismissed": int(dismissed.sum()), "unknown_label": int((~dismissed & unknown).sum()),
               "missing_file": int((~dismissed & ~unknown & missing).sum())}
    return wrong[keep].reset_index(drop=True), skipped


# ---------------------------------------------------------------------------
# clips known to be right, for judging a retrain
# ---------------------------------------------------------------------------
REVIEWED_STATUSES = ("confirmed", "relabelled", "resolved")


def source_of(path: str, source: str = "") -> str:
    """A clip's source: the given one, else its folder's name."""
    return str(source).strip() or Path(path).parent.name


def read_known_labels(csv_path, wrong: pd.DataFrame, class_names: Sequence[str], *,
                      root=None) -> tuple[pd.DataFrame, dict]:
    """A labelled set or a check's predictions file as ``path,label,source`` for judging a retrain, and counts
    of the rows left out.

    Relative paths are under ``root`` (default: the CSV's folder); a reviewer's label (wrong list, reviewed) wins; rows that
    failed to decode (``error``), were dismissed, have a label the model lacks or a missing file are left out.
    """
    csv_path = Path(csv_path)
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DatasetError(f"Cannot read the labelled set {csv_path}: {err}") from err
    if not {"path", "label"} <= set(frame.columns):
        raise DatasetError(f"{csv_path.name} needs path,label columns to judge a retrain "
                           f"(found: {', '.join(map(str, frame.columns[:8]))}).")
    paths = [resolve_path(p, root if root is not None else csv_path.parent) for p in frame["path"]]
    sources = frame["source"] if "source" in frame.columns else [""] * len(frame)
    known = pd.DataFrame({"path": paths, "label": frame["label"].str.strip(),
                          "source": [source_of(p, s) for p, s in zip(paths, sources)],
                          "error": frame["error"] if "error" in frame.columns else ""})
    reviewed = wrong[wrong["reviewed_at"].str.strip() != ""].set_index("path")
    dismissed = set(wrong.loc[wrong["status"] == "dismissed", "path"])
    for i, path in enumerate(known["path"]):
        if path in reviewed.index and reviewed.at[path, "label"] and path not in dismissed:
            known.at[i, "label"] = reviewed.at[path, "label"]
    failed = known["error"].str.strip() != ""
    out = known["path"].isin(dismissed) & ~failed
    unknown = ~known["label"].isin(list(class_names)) & ~failed & ~out
    exists = pd.Series([Path(p).is_file() for p in known["path"]], index=known.index, dtype=bool)
    missing = ~exists & ~failed & ~out & ~unknown
    keep = ~(failed | out | unknown | missing)
    skipped = {"failed": int(failed.sum()), "dismissed": int(out.sum()), "unknown_label": int(unknown.sum()),
               "missing_file": int(missing.sum())}
    return known.loc[keep, ["path", "label", "source"]].drop_duplicates("path").reset_index(drop=True), skipped


def confirmed_reviews(wrong: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Every mistake a reviewer confirmed or relabelled (``path,label,source``), file present, label known."""
    rows = wrong[(wrong["reviewed_at"].str.strip() != "") & wrong["status"].isin(REVIEWED_STATUSES)
                 & wrong["label"].isin(list(class_names))]
    rows = rows[np.array([Path(p).is_file() for p in rows["path"]], dtype=bool)]
    return pd.DataFrame({"path": rows["path"], "label": rows["label"],
                         "source": [source_of(p) for p in rows["path"]]}).reset_index(drop=True)

