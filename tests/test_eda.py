"""Dataset-page summaries: feature families, correlations with the label, between families."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from singtalk import eda
from singtalk.features import FEATURE_NAMES


@pytest.mark.parametrize("name,family", [
    ("mfcc3_mean", "MFCC"), ("mfcc0_std", "MFCC"), ("dmfcc4_std", "MFCC deltas"), ("chroma11_std", "chroma"),
    ("contrast6_mean", "spectral contrast"), ("voiced_contrast0_mean", "spectral contrast"),
    ("log2_rolloff_mean", "spectral shape"), ("voiced_log10_flatness_mean", "spectral shape"),
    ("spectral_change_p25", "spectral shape"), ("f0_range", "pitch"), ("vibrato_extent", "pitch"),
    ("periodicity_voiced_mean", "pitch"), ("voiced_fraction", "pitch"), ("voiced_run_p90", "rhythm and pauses"),
    ("onsets_per_s", "rhythm and pauses"), ("voice_prob_p90", "voice detector"), ("spectro_logit", "CNN logits"),
    ("something_new", "other"),
])
def test_feature_families(name, family):
    assert eda.feature_family(name) == family


def test_every_feature_of_the_schema_has_a_family():
    assert {n for n in FEATURE_NAMES if eda.feature_family(n) == eda.OTHER_FAMILY} == set()


def table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Three classes; ``f0_range`` follows singing, ``mfcc1_mean`` is noise, ``mfcc2_mean`` copies it,
    ``zcr_mean`` is constant."""
    rng = np.random.default_rng(seed)
    labels = np.array(["singing", "talking", "no_voice"])[np.arange(n) % 3]
    noise = rng.normal(size=n)
    return pd.DataFrame({"label": labels, "f0_range": (labels == "singing") + 0.1 * rng.normal(size=n),
                         "mfcc1_mean": noise, "mfcc2_mean": 2 * noise + 1, "zcr_mean": np.ones(n)})


NAMES = ["mfcc1_mean", "mfcc2_mean", "zcr_mean", "f0_range"]


def test_the_feature_that_follows_a_class_comes_first():
    frame = eda.label_correlations(table(), NAMES)
    assert list(frame.columns) == ["feature", "family", "Singing", "Talking", "No voice", "strongest"]
    assert frame["feature"].iloc[0] == "f0_range" and frame["Singing"].iloc[0] > 0.95
    assert frame.set_index("feature").loc["zcr_mean", "strongest"] == 0.0, "a constant feature: 0, not NaN"
    assert len(eda.label_correlations(table(), NAMES, top=2)) == 2


def test_family_correlations_are_square_and_in_family_order():
    frame = eda.family_correlations(table(), NAMES)
    assert list(frame.index) == list(frame.columns) == ["MFCC", "spectral shape", "pitch"]
    assert frame.loc["MFCC", "MFCC"] == pytest.approx(1.0), "mfcc2 is mfcc1 doubled"
    assert frame.loc["pitch", "pitch"] == 1.0, "one feature: itself"
    assert frame.loc["spectral shape", "pitch"] == 0.0, "a constant feature correlates with nothing"
    assert frame.loc["MFCC", "pitch"] < 0.2 and np.allclose(frame, frame.T)
