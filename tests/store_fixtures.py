"""A small real model store built from corpus clips, shared by test_review.py and test_retrain.py.

The "shipped" model is trained on a deliberately biased subset (RAVDESS singing,
MIR-1K singing, LibriSpeech and AISHELL talking — no RAVDESS talking), so on a
labelled set with RAVDESS speech it makes real mistakes to review and retrain on.

The build runs once per test process (memoised at module level, so importing
these fixtures into two test files does not build twice). Each test gets its
own copy of the store and a copy of the check set's feature cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("SINGTALK_TF_THREADS", "2")

from singtalk import dataset, features, review  # noqa: E402
from singtalk.registry import ModelStore  # noqa: E402

TRAIN_PICK = {("singing", "ravdess"): 30, ("singing", "mir1k"): 25, ("talking", "librispeech"): 35,
              ("talking", "aishell1_qianz"): 20}
CHECK_PICK = {("talking", "ravdess"): 70, ("singing", "ravdess"): 30, ("singing", "mir1k"): 30,
              ("talking", "librispeech"): 45, ("talking", "aishell1_qianz"): 25}
SEED = 7
JOBS = 2


@dataclass(frozen=True)
class BaseStore:
    root: Path            # store root with versions/, CURRENT and tables/
    version: str          # the promoted "shipped" version
    labelled_csv: Path    # check set: path (relative to corpus), label, speaker, source
    corpus: Path
    features_csv: Path    # feature cache of the check set (copy it beside a wrong list)
    build_seconds: float


_BUILT: dict[str, BaseStore] = {}


def _pick(manifest: pd.DataFrame, wanted: dict, exclude: set) -> pd.DataFrame:
    parts = []
    for (label, source), n in wanted.items():
        pool = manifest[(manifest["label"] == label) & (manifest["source"] == source) & ~manifest["path"].isin(exclude)]
        parts.append(pool.sample(n=min(n, len(pool)), random_state=SEED))
    return pd.concat(parts, ignore_index=True)


def build_base_store(corpus: Path, work: Path | None = None) -> BaseStore:
    """Tables → trained model → promoted version in a temp store; the check set and its feature cache."""
    key = str(corpus)
    if key in _BUILT:
        return _BUILT[key]
    from singtalk.model import TrainConfig
    from singtalk.training import load_tables, save_outcome, train_tables

    started = time.perf_counter()
    work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="singtalk-review-store-"))
    manifest = pd.read_csv(corpus / "manifest.csv", dtype=str, keep_default_na=False)
    train_set = _pick(manifest, TRAIN_PICK, set())
    check_set = _pick(manifest, CHECK_PICK, set(train_set["path"]))

    # The check set's features first: extraction forks worker processes, best done before TensorFlow starts.
    labelled_csv = work / "check_set.csv"
    check_set[["path", "label", "speaker", "source"]].to_csv(labelled_csv, index=False)
    features_csv = work / "features_cache.jsonl"
    cache = review.FeatureCache(features_csv, feature_version=features.FEATURE_VERSION,
                                feature_names=features.FEATURE_NAMES)
    review.features_for([str(corpus / p) for p in check_set["path"]], cache=cache, jobs=JOBS)

    labelled = train_set[["path", "label", "speaker", "source"]].assign(path=[str(corpus / p) for p in train_set["path"]])
    root = work / "models"
    tables_dir = root / "tables"
    dataset.build_tables(dataset.normalise_labelled(labelled), tables_dir, test_size=0.25, seed=SEED, jobs=JOBS)
    tables = load_tables(tables_dir)
    outcome = train_tables(tables, TrainConfig(hidden_units=(64, 32), epochs=40, patience=6, seed=SEED))
    store = ModelStore(root)
    version = save_outcome(store, outcome, promote=True, note="biased test model")
    base = BaseStore(root, version, labelled_csv, corpus, features_csv, time.perf_counter() - started)
    _BUILT[key] = base
    return base


@pytest.fixture(scope="session")
def base_store(corpus, tmp_path_factory) -> BaseStore:
    return build_base_store(corpus, tmp_path_factory.mktemp("base-store"))


@dataclass
class Workspace:
    store: ModelStore
    wrong: Path           # wrong_audios.csv path (not created yet); its feature cache is in place
    labelled_csv: Path
    corpus: Path
    base: BaseStore


def make_workspace(base: BaseStore, folder: Path) -> Workspace:
    """A private copy of the store plus a review folder whose feature cache already holds the check set."""
    shutil.copytree(base.root, folder / "models")
    (folder / "review").mkdir(parents=True, exist_ok=True)
    wrong = folder / "review" / "wrong_audios.csv"
    shutil.copyfile(base.features_csv, review.features_path_for(wrong))
    return Workspace(ModelStore(folder / "models"), wrong, base.labelled_csv, base.corpus, base)


@pytest.fixture()
def workspace(base_store, tmp_path) -> Workspace:
    return make_workspace(base_store, tmp_path)
