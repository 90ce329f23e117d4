"""A model is named by its date and headline figures, never by a bare timestamp."""

from __future__ import annotations

import json

import pytest

from singtalk import model_name
from singtalk.config import REPO_ROOT

THREE = {"version": "20261206T042832Z", "created": "2026-12-06T04:28:32Z",
         "metrics": {"test": {"n": 593, "accuracy": 0.97302, "balanced_accuracy": 0.959,
                              "voiced_balanced": 0.98114, "no_voice_recall": 0.92308}}}


def test_a_three_class_model_is_named_by_its_date_and_three_figures():
    assert model_name.describe(THREE) == ("6 Dec 2026, 04:28 UTC — 97.3 % right on 593 test clips; "
                                          "singing vs talking 98.1 %; no voice found 92.3 %")


def test_a_two_class_model_gives_its_accuracy_only():
    meta = {"created": "2026-03-01T17:05:00+01:00", "metrics": {"test": {"n": 1200, "accuracy": 0.9871}}}
    assert model_name.describe(meta) == "1 Mar 2026, 16:05 UTC — 98.7 % right on 1,200 test clips"


@pytest.mark.parametrize("meta,name", [
    ({"version": "20261206T042832Z"}, "6 Dec 2026, 04:28 UTC"),  # no created, no metrics: the version's date
    ({"version": "20261206T042832Z-retrained", "metrics": {"test": {"n": 0}}}, "6 Dec 2026, 04:28 UTC"),
    ({"version": "my-model"}, "my-model"),
    ({}, "unknown date"),
])
def test_what_is_missing_is_left_out(meta, name):
    assert model_name.describe(meta) == name


def test_the_shipped_model_is_described_from_its_metadata():
    current = (REPO_ROOT / "models" / "CURRENT").read_text().strip()
    meta = json.loads((REPO_ROOT / "models" / "versions" / current / "metadata.json").read_text())
    text = model_name.describe(meta)
    assert current not in text and "UTC — " in text and "singing vs talking" in text and "no voice found" in text
