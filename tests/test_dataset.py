"""Labelled sets, speaker-disjoint splits and feature tables built from real clips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from singtalk import dataset
from singtalk.audio import write_wav
from singtalk.errors import DatasetError
from singtalk.features import FEATURE_NAMES
from singtalk.scaling import MinMaxScaling
from tests.conftest import spoken_buzz, sung_tone


@pytest.fixture(scope="module")
def small_manifest(manifest):
    """40 real clips: 10 per (label, source) group from RAVDESS and two other sources, several speakers each."""
    parts = []
    for (label, source), group in manifest[manifest.label.isin(["singing", "talking"])].groupby(["label", "source"]):
        if source in ("ravdess", "mir1k", "librispeech"):
            speakers = sorted(group.speaker.unique())[:5]
            parts.append(group[group.speaker.isin(speakers)].groupby("speaker").head(2))
    return pd.concat(parts).reset_index(drop=True)


def test_folders_give_class_names_and_sources(tmp_path):
    write_wav(tmp_path / "singing" / "choir" / "a.wav", sung_tone(2.0))
    write_wav(tmp_path / "talking" / "b.wav", spoken_buzz(2.0))
    (tmp_path / "talking" / "notes.txt").write_text("not audio")
    frame = dataset.from_folders(tmp_path)
    assert sorted(frame.label) == ["singing", "talking"]
    assert dict(zip(frame.label, frame.source)) == {"singing": "choir", "talking": "talking"}
    with pytest.raises(DatasetError, match="No audio files"):
        dataset.from_folders(tmp_path / "talking")


def test_manifest_errors_are_named(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\nx.wav,singing\n")
    with pytest.raises(DatasetError, match="lacks column.*path"):
        dataset.from_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,label\nmissing.wav,singing\n")
    with pytest.raises(DatasetError, match="do not exist.*missing.wav"):
        dataset.from_manifest(tmp_path / "m.csv")


def test_speaker_split_never_shares_a_speaker(manifest):
    frame = dataset.normalise_labelled(manifest[manifest.label.isin(["singing", "talking"])][
        ["abspath", "label", "speaker", "source"]].rename(columns={"abspath": "path"}))
    test = dataset.split_by_speaker(frame, test_size=0.2, seed=0)
    groups = dataset.speaker_groups(frame)
    assert not set(groups[test]) & set(groups[~test])
    assert 0.12 < test.mean() < 0.3
    assert set(frame.label[test]) == {"singing", "talking"}
    # RAVDESS actors both sing and talk: an actor in the test split is absent from training entirely.
    ravdess_test = set(frame.speaker[test & (frame.source == "ravdess")])
    assert ravdess_test and not ravdess_test & set(frame.speaker[~test & (frame.source == "ravdess")])


def test_corpora_group_the_manifest_sources(manifest):
    """Leave-one-source-out leaves a corpus out: AISHELL-1's two collections are one, the others stand alone."""
    corpora = {source: dataset.corpus_of(source) for source in manifest.source.unique()}
    assert corpora["aishell1_qianz"] == corpora["aishell1_wjunneng"] == "aishell1"
    for source in ("mir1k", "ravdess", "librispeech"):
        assert corpora[source] == source


def test_build_tables_from_real_clips(tmp_path, small_manifest, corpus):
    labelled = dataset.normalise_labelled(small_manifest.assign(path=small_manifest.abspath)[
        ["path", "label", "speaker", "source"]])
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + bytes(100))
    labelled = pd.concat([labelled, pd.DataFrame([{"path": str(broken), "label": "talking", "speaker": "x",
                                                   "source": "junk"}])], ignore_index=True)
    seen = []
    result = dataset.build_tables(labelled, tmp_path / "tables", test_size=0.25, jobs=2,
                                  progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(labelled), len(labelled))
    assert list(result.failures.path) == [str(broken)]
    train = pd.read_csv(tmp_path / "tables" / dataset.TRAIN_TABLE, keep_default_na=False)
    test = pd.read_csv(tmp_path / "tables" / dataset.TEST_TABLE, keep_default_na=False)
    assert len(train) + len(test) == len(labelled) - 1
    assert list(train.columns[:4]) == dataset.META_COLUMNS and list(train.columns[4:]) == list(FEATURE_NAMES)
    # The scaler is fitted on training rows only: train spans exactly [0, 1] per non-constant feature.
    values = train[list(FEATURE_NAMES)].to_numpy()
    assert np.isfinite(values).all()
    assert np.allclose(values.min(axis=0)[values.ptp(axis=0) > 0], 0, atol=1e-5)
    assert np.allclose(values.max(axis=0)[values.ptp(axis=0) > 0], 1, atol=1e-5)
    scaler = MinMaxScaling.load(tmp_path / "tables" / dataset.SCALER_FILE)
    raw = pd.read_csv(tmp_path / "tables" / dataset.RAW_TABLE, keep_default_na=False)
    assert np.allclose(scaler.transform(raw[raw.split == "train"][list(FEATURE_NAMES)].to_numpy()), values, atol=1e-4)
    assert not set(dataset.speaker_groups(train)) & set(dataset.speaker_groups(test))


def test_parallel_and_serial_extraction_agree(small_manifest):
    paths = list(small_manifest.abspath[:6])
    serial, _ = dataset.extract_all(paths, jobs=1)
    parallel, _ = dataset.extract_all(paths, jobs=2)
    assert all(np.allclose(a, b) for a, b in zip(serial, parallel))
