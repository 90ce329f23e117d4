"""The verdict on a retrained model: old and new compared on everything known to be right.

A retrain is judged on up to four sets of clips whose true label is known (:data:`PARTS`):

* ``original_test`` – the test table the serving model was trained and judged with;
* ``held_aside``    – the reviewed mistakes kept out of fine-tuning;
* ``labelled``      – every row of the labelled set the mistakes came from (``singtalk check``'s
  predictions file), right and wrong, with the reviewers' labels where they set one;
* ``reviews``       – every mistake a reviewer confirmed or relabelled.

The new model is promoted only when all of these hold (:func:`judge`):

1. the labelled set has fewer errors than before;
2. the held-aside mistakes have fewer errors than before;
3. no class and no source of any part, nor the whole original test table, loses more than the
   :class:`Tolerance`: its errors may rise by at most ``max(clips, points % of its clips)``
   (default 1 clip or 1 percentage point, whichever is more).

A rule whose set is empty is skipped and said so; when neither 1 nor 2 can be measured, the
reviewed mistakes must improve instead, and with nothing at all to measure a gain on, the
verdict is no. ``force`` promotes anyway and says that it overrode the verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .labels import display

PARTS = {"original_test": "original test table", "held_aside": "mistakes held aside",
         "labelled": "labelled set", "reviews": "confirmed reviews"}
TABLE_COLUMNS = ["set", "group", "n", "errors before", "errors after", "fixed", "broken", "accuracy before",
                 "accuracy after", "change"]


@dataclass(frozen=True)
class Tolerance:
    """How much worse one class or source may get: ``max(clips, points % of its clips)`` more errors."""

    clips: int = 1
    points: float = 1.0

    def allowed(self, n: int) -> int:
        """More errors accepted in a group of ``n`` clips."""
        return max(int(self.clips), int(math.floor(self.points / 100.0 * n + 1e-9)))

    def describe(self) -> str:
        return f"{self.clips} clip(s) or {self.points:g} percentage point(s) per class and source, whichever is more"


@dataclass
class Part:
    """One evaluation set: true labels, both models' answers, and each clip's source and path."""

    key: str
    truth: np.ndarray
    before: np.ndarray
    after: np.ndarray
    sources: np.ndarray
    paths: np.ndarray
    note: str = ""

    @classmethod
    def build(cls, key: str, truth, before, after, sources=None, paths=None, note: str = "") -> "Part":
        n = len(truth)
        arrays = [np.asarray([str(v) for v in values], dtype=object) if values is not None else
                  np.full(n, "", dtype=object) for values in (truth, before, after, sources, paths)]
        if any(len(a) != n for a in arrays):
            raise ValueError(f"{key}: truth, before, after, sources and paths must have the same length")
        return cls(key, *arrays, note=note)

    @property
    def n(self) -> int:
        return len(self.truth)

    def groups(self) -> list[tuple[str, np.ndarray]]:
        """``("all", mask)``, then one mask per class and one per source (when there are sources)."""
        out = [("all", np.ones(self.n, dtype=bool))]
        out += [(f"class {display(c)}", self.truth == c) for c in sorted(set(self.truth))]
        out += [(f"source {s}", self.sources == s) for s in sorted(set(self.sources) - {""})]
        return out


@dataclass
class Verdict:
    """Promote or not, why in plain words, and the before/after table (one dict per row)."""

    promoted: bool
    passed: bool
    forced: bool
    headline: str
    failures: list[str]
    passes: list[str]
    rows: list[dict]
    changed: list[dict] = field(default_factory=list)
    tolerance: dict = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """Every rule's outcome in plain words, the failed ones first."""
        return self.failures + self.passes

    @property
    def reason(self) -> str:
        """One line: why it was (or was not) promoted."""
        if self.passed:
            return "better on everything known to be right: " + " ".join(self.passes)
        said_no = " ".join(self.failures)
        return f"promoted by force, overriding the verdict: {said_no}" if self.forced else said_no

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=TABLE_COLUMNS)

    def text(self) -> str:
        """The headline, the reasons and the table, for a terminal."""
        table = self.table().drop(columns=["accuracy before", "accuracy after"])
        return "\n".join([self.headline, *[f"  - {r}" for r in self.reasons], "", table.to_string(index=False)])

    def to_dict(self) -> dict:
        return {**asdict(self), "reasons": self.reasons}


def _row(part: Part, group: str, mask: np.ndarray, tolerance: Tolerance) -> dict:
    wrong_before = part.before[mask] != part.truth[mask]
    wrong_after = part.after[mask] != part.truth[mask]
    n, e0, e1 = int(mask.sum()), int(wrong_before.sum()), int(wrong_after.sum())
    change = "same" if e1 == e0 else "better" if e1 < e0 else \
        "worse" if e1 - e0 <= tolerance.allowed(n) else "worse beyond tolerance"
    return {"set": PARTS[part.key], "group": group, "n": n, "errors before": e0, "errors after": e1,
            "fixed": int((wrong_before & ~wrong_after).sum()), "broken": int((~wrong_before & wrong_after).sum()),
            "accuracy before": round(1 - e0 / n, 4) if n else None,
            "accuracy after": round(1 - e1 / n, 4) if n else None, "change": change}


def _changed(part: Part) -> list[dict]:
    """Clips one model gets right and the other wrong."""
    right_before, right_after = part.before == part.truth, part.after == part.truth
    return [{"set": PARTS[part.key], "path": part.paths[i], "label": part.truth[i], "before": part.before[i],
             "after": part.after[i], "change": "fixed" if right_after[i] else "broken"}
            for i in np.flatnonzero(right_before != right_after)]


def _must_improve(part: Part | None, what: str) -> tuple[bool | None, str]:
    """(True/False, sentence) when ``part`` has clips; (None, sentence) when it cannot be measured."""
    if part is None or part.n == 0:
        return None, f"No {what} to measure on{f' ({part.note})' if part is not None and part.note else ''}."
    e0, e1 = int((part.before != part.truth).sum()), int((part.after != part.truth).sum())
    fixed = int(((part.before != part.truth) & (part.after == part.truth)).sum())
    broken = int(((part.before == part.truth) & (part.after != part.truth)).sum())
    counts = f"{e0} → {e1} errors of {part.n} clips (fixed {fixed}, broke {broken})"
    if e1 < e0:
        return True, f"The {what} improved: {counts}."
    return False, f"The {what} did not improve: {counts}{'' if e1 > e0 else '; no gain'}."


def judge(parts: Sequence[Part], *, tolerance: Tolerance | None = None, force: bool = False) -> Verdict:
    """The verdict on ``parts`` (see the module docstring); ``force`` promotes even when it says no."""
    tolerance = tolerance or Tolerance()
    by_key = {p.key: p for p in parts}
    rows = [_row(p, name, mask, tolerance) for p in parts if p.n for name, mask in p.groups()]
    failures, passes = [], []
    labelled_ok, labelled_text = _must_improve(by_key.get("labelled"), "labelled set")
    held_ok, held_text = _must_improve(by_key.get("held_aside"), "mistakes held aside")
    checks = [(labelled_ok, labelled_text), (held_ok, held_text)]
    if labelled_ok is None and held_ok is None:
        reviews_ok, reviews_text = _must_improve(by_key.get("reviews"), "confirmed reviews")
        if reviews_ok is None:
            reviews_ok, reviews_text = False, ("Nothing shows a gain: no labelled set, no mistakes held aside and no "
                                               "confirmed reviews. Check a labelled set first (singtalk check).")
        checks.append((reviews_ok, reviews_text))
    for ok, text in checks:
        (failures if ok is False else passes).append(text)
    worse = [r for r in rows if r["change"] == "worse beyond tolerance"
             and (r["group"] != "all" or r["set"] == PARTS["original_test"])]
    for r in worse:
        failures.append(f"{r['group'][:1].upper()}{r['group'][1:]} in the {r['set']} got worse: {r['errors before']} → "
                        f"{r['errors after']} errors of {r['n']} (at most {tolerance.allowed(r['n'])} more allowed).")
    if not worse and rows:
        passes.append(f"No class or source got worse beyond the tolerance ({tolerance.describe()}).")
    passed = not failures
    promoted = passed or bool(force)
    if passed:
        headline = "Promoted: the new model is better on what is known to be right."
    elif force:
        headline = "Promoted by force, overriding the verdict, which said no:"
    else:
        headline = "Not promoted: the serving model stays, the new one is kept unpromoted, because:"
    return Verdict(promoted=promoted, passed=passed, forced=bool(force) and not passed, headline=headline,
                   failures=failures, passes=passes, rows=rows,
                   changed=[c for p in parts for c in _changed(p)],
                   tolerance={"clips": tolerance.clips, "points": tolerance.points})
