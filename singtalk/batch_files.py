"""The files ``singtalk classify`` writes, row by row as inputs finish, and ``--resume``.

Each CSV (``--csv``, ``--timeline``, ``--segments``) starts with its header, and
every input's rows are appended in one write and flushed as soon as the input
finishes, the per-window and segment rows before the input's row in ``--csv``:
at any moment each file parses and holds every finished input. At the end the
files are rewritten (atomically) in input order. A JSON ``--segments`` file is
written whole (atomically) at the end, or when the batch is interrupted.

Without ``--resume`` an existing file is first moved to ``<name>.bak``. With it,
the rows of inputs that already have an answer from the same model version are
kept (a torn last line is dropped), and only the other inputs are classified:
inputs with an error row, rows from another model version, and inputs missing
from a ``--segments`` file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

from . import atomic
from .errors import SingtalkError

CLASSIFY_COLUMNS = ["path", "label", "confidence", "duration_s", "model", "error", "note"]
"""The per-input CSV: these, with ``p_<class>`` columns (:func:`singtalk.labels.probability_columns`) after
``confidence``."""
SEGMENT_COLUMNS = ["path", "start_s", "end_s", "label", "confidence"]
TIMELINE_COLUMNS = ["path", "start_s", "end_s", "label"]


def classify_columns(class_names=()) -> list[str]:
    """``--csv`` columns for a model with these classes (``p_singing, p_talking, p_no_voice`` always)."""
    from .labels import probability_columns

    return CLASSIFY_COLUMNS[:3] + probability_columns(class_names) + CLASSIFY_COLUMNS[3:]


def _rounded(value, digits: int):
    """``value`` rounded, or ``""`` for NaN (an empty CSV cell)."""
    value = float(value)
    return "" if math.isnan(value) else round(value, digits)


def classify_row(source, prediction, error: str, *, version: str) -> dict:
    """One input's ``--csv`` row; errors on one line."""
    row = {"path": source, "label": "", "confidence": "", "duration_s": "", "model": version,
           "error": " ".join(str(error or "").split()), "note": ""}
    if prediction is not None:
        row.update(label=prediction.label, confidence=_rounded(prediction.confidence, 4),
                   duration_s=_rounded(prediction.duration_s, 2), note=prediction.note)
        row.update({f"p_{c}": _rounded(p, 4) for c, p in prediction.probabilities.items()})
    return row


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def csv_lines(columns: Sequence[str], rows: Iterable[dict], *, header: bool = False) -> str:
    """Rows as CSV text (``\\n`` line ends, a missing or NaN cell empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    writer.writerows([_cell(row.get(c)) for c in columns] for row in rows)
    return buffer.getvalue()


def read_rows(path) -> tuple[list[str], list[dict]]:
    """The header and the complete rows of a CSV that may have been cut short: a last line without its
    newline (torn by a crash) and rows with the wrong number of cells are dropped."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    text = text[:text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    return header, [dict(zip(header, cells)) for cells in reader if len(cells) == len(header)]


class RowFile:
    """A CSV written as rows finish: started (atomically) with its header and any kept rows, then each
    :meth:`write` appends whole lines in one system call."""

    def __init__(self, path, columns: Sequence[str], rows: Iterable[dict] = ()):
        self.path, self.columns = Path(path), list(columns)
        atomic.write_text(self.path, csv_lines(self.columns, rows, header=True))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def write(self, rows: Iterable[dict]) -> None:
        self._append(csv_lines(self.columns, rows))

    def write_frame(self, frame) -> None:
        """A DataFrame's rows, formatted as pandas writes them (float32 stays short)."""
        self._append(frame.reindex(columns=self.columns).to_csv(header=False, index=False, lineterminator="\n"))

    def _append(self, text: str) -> None:
        data = text.encode("utf-8")
        while data:
            data = data[os.write(self._fd, data):]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def sort(self, order: dict) -> None:
        """Rewrite the file (atomically) with its rows in input order (``order``: path → position)."""
        self.close()
        _, rows = read_rows(self.path)
        rows.sort(key=lambda row: order.get(row.get("path"), len(order)))
        atomic.write_text(self.path, csv_lines(self.columns, rows, header=True))


class StdoutRows:
    """``--csv`` absent: the same rows on standard output as they finish."""

    def __init__(self, columns: Sequence[str]):
        self.columns = list(columns)
        self._emit(csv_lines(self.columns, [], header=True))

    def _emit(self, text: str) -> None:
        import sys

        sys.stdout.write(text)
        sys.stdout.flush()

    def write(self, rows: Iterable[dict]) -> None:
        self._emit(csv_lines(self.columns, rows))

    def close(self) -> None:
        pass

    def sort(self, order: dict) -> None:
        pass


def backup(path) -> Path | None:
    """Move an existing ``path`` to ``<path>.bak`` (replacing an older one); the backup's path, if any."""
    path = Path(path)
    if not path.exists():
        return None
    saved = path.with_name(path.name + ".bak")
    os.replace(path, saved)
    return saved


class BatchFiles:
    """The outputs of one ``classify`` run: :meth:`start`, :meth:`add` per outcome, :meth:`finish`,
    and :meth:`close` always (it writes a JSON ``--segments`` file with what finished)."""

    def __init__(self, inputs: Sequence[str], *, version: str, class_names: Sequence[str], csv_path=None,
                 timeline=None, segments=None, resume: bool = False):
        if resume and not csv_path:
            raise SingtalkError("--resume needs --csv OUT: the file to continue.")
        self.inputs, self.version = list(inputs), version
        self.order = {source: i for i, source in reversed(list(enumerate(self.inputs)))}
        self.columns = classify_columns(class_names)
        self.timeline_columns = TIMELINE_COLUMNS + [f"p_{c}" for c in class_names]
        self.paths = {"csv": csv_path, "timeline": timeline, "segments": segments}
        self.json = bool(segments) and str(segments).lower().endswith(".json")
        self.resume = resume
        self.files: dict = {}
        self.records: dict = {}
        self.kept = 0
        self.backups: list[Path] = []

    def start(self) -> list[str]:
        """Open the outputs (keeping what ``--resume`` may keep); the inputs still to classify."""
        kept = self._resumable() if self.resume else {}
        if not self.resume:
            self.backups = [saved for path in self.paths.values() if path and (saved := backup(path))]
        self.kept = len(kept)
        self.files["csv"] = (RowFile(self.paths["csv"], self.columns, [kept[p] for p in self._in_order(kept)])
                             if self.paths["csv"] else StdoutRows(self.columns))
        if self.paths["timeline"]:
            self.files["timeline"] = RowFile(self.paths["timeline"], self.timeline_columns,
                                             self._kept_rows("timeline", kept))
        if self.paths["segments"] and not self.json:
            self.files["segments"] = RowFile(self.paths["segments"], SEGMENT_COLUMNS,
                                             self._kept_rows("segments", kept))
        if self.json and self.resume:
            self.records = {p: s for p, s in self._json_records().items() if p in kept}
        return [source for source in self.inputs if source not in kept]

    def add(self, source, prediction, error: str) -> None:
        """One finished input: its windows and segments first, then its ``--csv`` row."""
        if prediction is not None:
            if "timeline" in self.files and len(prediction.timeline):
                self.files["timeline"].write_frame(prediction.timeline.assign(path=source))
            segments = prediction.segments.reindex(columns=SEGMENT_COLUMNS[1:])
            if "segments" in self.files:
                self.files["segments"].write_frame(segments.assign(path=source))
            if self.json:
                self.records[source] = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                         for k, v in row.items()} for row in segments.to_dict("records")]
        self.files["csv"].write([classify_row(source, prediction, error, version=self.version)])

    def finish(self) -> None:
        """Every CSV in input order (rewritten atomically)."""
        for rows in self.files.values():
            rows.sort(self.order)

    def close(self) -> None:
        for rows in self.files.values():
            rows.close()
        if self.json:
            atomic.write_json(self.paths["segments"], [{"path": p, "segments": self.records[p]}
                                                       for p in self._in_order(self.records)])

    # -- resume -------------------------------------------------------------------
    def _in_order(self, paths) -> list[str]:
        return sorted(paths, key=lambda p: self.order.get(p, len(self.order)))

    def _resumable(self) -> dict:
        """path → kept ``--csv`` row: answered by this model version, and present in a ``--segments`` file."""
        out = Path(self.paths["csv"])
        if not out.exists():
            return {}
        kept = {row["path"]: row for row in read_rows(out)[1]
                if row.get("path") in self.order and row.get("model") == self.version and row.get("label")
                and not row.get("error")}
        for name in ("timeline", "segments"):
            path = self.paths[name]
            if path and kept and not Path(path).exists():
                raise SingtalkError(f"--resume: {path} does not exist, so the rows already in {out} lack their "
                                    f"--{name} rows; run without --resume, or without --{name}.")
        if self.json:
            kept = {p: row for p, row in kept.items() if p in self._json_records()}
        elif self.paths["segments"]:
            have = {row.get("path") for row in read_rows(self.paths["segments"])[1]}
            kept = {p: row for p, row in kept.items() if p in have}
        return kept

    def _kept_rows(self, name: str, kept: dict) -> list[dict]:
        if not self.resume or not kept:
            return []
        return [row for row in read_rows(self.paths[name])[1] if row.get("path") in kept]

    def _json_records(self) -> dict:
        try:
            records = json.loads(Path(self.paths["segments"]).read_text(encoding="utf-8"))
            return {r["path"]: r["segments"] for r in records}
        except (OSError, ValueError, KeyError, TypeError):
            return {}
