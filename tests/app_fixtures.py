"""Fixtures for the app tests: tiny real model stores, clips from the corpus, a work folder.

A store is built once per session from real corpus clips (features → speaker-disjoint
tables → a few epochs of the real Keras model → promoted), so the app's pages run on a
genuine model without waiting for the shipped one: ``test_store`` knows singing and
talking (~80 clips), ``three_class_store`` also no_voice (~110 clips).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import corpus_or_fail

CLASSES = ["singing", "talking"]
THREE_CLASSES = ["singing", "talking", "no_voice"]
PER_CLASS = 40
SEED = 3
LEARNING_RATE = 1e-3  # 3e-3 stopped at epoch 2 on the 12-clip validation split (schema st-9)


@dataclass(frozen=True)
class TestStore:
    root: Path          # ModelStore root (also $SINGTALK_MODELS)
    tables: Path        # root / "tables": the feature tables it was trained on
    version: str
    singing_clip: Path  # a long (> 8 s) singing clip used in training
    talking_clip: Path
    no_voice_clip: Path | None = None  # three-class stores: a long (> 8 s) no_voice clip used in training


def sample_labelled(corpus: Path, *, classes=CLASSES, per_class: int = PER_CLASS, seed: int = SEED) -> pd.DataFrame:
    """A small labelled set: per class, clips spread over sources and speakers."""
    from singtalk import dataset

    labelled = dataset.from_manifest(corpus / "manifest.csv", classes=list(classes))
    parts = []
    for label, group in labelled.groupby("label"):
        per_source = max(1, per_class // group["source"].nunique())
        picked = (group.groupby("source", group_keys=False)
                  .apply(lambda g: g.sample(min(len(g), per_source), random_state=seed)))
        parts.append(picked.head(per_class))
    return pd.concat(parts).reset_index(drop=True)


def build_store(root: Path, corpus: Path, *, classes=CLASSES, epochs: int = 25) -> TestStore:
    """Features of the sampled clips → tables under ``root/tables`` → trained model promoted in ``root``."""
    from singtalk import dataset, training
    from singtalk.model import TrainConfig
    from singtalk.registry import ModelStore

    labelled = sample_labelled(corpus, classes=classes)
    tables_dir = root / "tables"
    dataset.build_tables(labelled, tables_dir, jobs=min(2, os.cpu_count() or 1), seed=SEED)
    tables = training.load_tables(tables_dir)
    config = TrainConfig(hidden_units=(32,), epochs=epochs, patience=8, batch_size=16, dropout=0.1,
                         learning_rate=LEARNING_RATE)
    outcome = training.train_tables(tables, config)
    version = training.save_outcome(ModelStore(root), outcome, promote=True, note="app test store")
    train = tables.train
    long_singing = train[(train["label"] == "singing") & (train["source"] == "mir1k")]
    singing = Path(long_singing["path"].iloc[0]) if len(long_singing) else Path(train[train["label"] == "singing"]["path"].iloc[0])
    talking = Path(train[train["label"] == "talking"]["path"].iloc[0])
    no_voice = long_training_clip(corpus, train, "no_voice") if "no_voice" in classes else None
    return TestStore(root, tables_dir, version, singing, talking, no_voice)


def long_training_clip(corpus: Path, train: pd.DataFrame, label: str, *, shortest_s: float = 9.0) -> Path:
    """The shortest training clip of ``label`` longer than ``shortest_s`` (the Classify page draws its timeline)."""
    manifest = pd.read_csv(corpus / "manifest.csv")
    durations = dict(zip([str(corpus / p) for p in manifest["path"]], manifest["duration_s"]))
    rows = train[train["label"] == label].assign(duration_s=lambda t: t["path"].map(durations))
    long = rows[rows["duration_s"] > shortest_s].sort_values("duration_s")
    return Path((long if len(long) else rows.sort_values("duration_s", ascending=False))["path"].iloc[0])


@pytest.fixture(scope="session")
def test_store(tmp_path_factory) -> TestStore:
    corpus = corpus_or_fail()
    return build_store(tmp_path_factory.mktemp("store"), corpus)


@pytest.fixture(scope="session")
def three_class_store(tmp_path_factory) -> TestStore:
    """Like ``test_store`` with a third class, no_voice (instrumentals, loops, everyday sounds)."""
    corpus = corpus_or_fail()
    return build_store(tmp_path_factory.mktemp("store3"), corpus, classes=THREE_CLASSES, epochs=40)


def session_env(store_root, tmp_path, monkeypatch) -> dict:
    """Environment of an app session served by the store at ``store_root``, with a fresh work folder; bound
    to loopback with no sign-in configured, so the app is open as on a laptop (appkit/access.py)."""
    env = {"SINGTALK_MODELS": str(store_root), "SINGTALK_WORK": str(tmp_path / "work"),
           "STREAMLIT_SERVER_ADDRESS": "127.0.0.1"}
    for key in ("SINGTALK_TEAM_PASSWORD_HASH", "SINGTALK_PUBLIC"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture()
def app_env(test_store, tmp_path, monkeypatch) -> dict:
    """Environment of an app session: the test store, a fresh work folder."""
    return session_env(test_store.root, tmp_path, monkeypatch)


def to_wav(src: Path, dst: Path, *, rate: int = 48000, seconds: float | None = None) -> Path:
    """ffmpeg-convert a corpus clip to 16-bit mono WAV (optionally cut to ``seconds``)."""
    cut = ["-t", f"{seconds:.2f}"] if seconds else []
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *cut,
                    "-ac", "1", "-ar", str(rate), "-c:a", "pcm_s16le", str(dst)], check=True)
    return dst


# --------------------------------------------------------------------------- AppTest helpers
# AppTest (streamlit 1.52) has no file_uploader / audio_input support: both show up as
# UnknownElement. These helpers send what the browser would send — a FileUploaderState
# naming a file id — and serve the bytes from the uploaded-file manager the script reads.

class FakeStreamerContext:
    """What ``webrtc_streamer`` returns when nobody pressed START."""

    class state:  # noqa: N801 - mirrors WebRtcStreamerState
        playing = False
        signalling = False

    audio_receiver = None


def fake_webrtc_streamer(*args, **kwargs):
    return FakeStreamerContext()


class PlayingStreamerContext(FakeStreamerContext):
    """What ``webrtc_streamer`` returns while the browser streams (the audio comes through the session's buffer)."""

    class state:  # noqa: N801
        playing = True
        signalling = False


def playing_webrtc_streamer(*args, **kwargs):
    return PlayingStreamerContext()


class Uploads:
    """Registered uploads, re-sent on every ``at.run()`` like a browser keeps them."""

    def __init__(self, monkeypatch):
        import streamlit.testing.v1.local_script_runner as lsr
        from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
        from streamlit.runtime.uploaded_file_manager import UploadedFileRec
        from streamlit.testing.v1.element_tree import ElementTree

        self.files: dict[str, UploadedFileRec] = {}
        self.states: dict[str, object] = {}
        files = self.files

        class Manager(MemoryUploadedFileManager):
            def get_files(self, session_id, file_ids):
                return [files[f] for f in file_ids if f in files]

        original = ElementTree.get_widget_states
        states = self.states

        def get_widget_states(tree):
            ws = original(tree)
            for state in states.values():
                ws.widgets.append(state)
            return ws

        monkeypatch.setattr(lsr, "MemoryUploadedFileManager", Manager)
        monkeypatch.setattr(ElementTree, "get_widget_states", get_widget_states)
        self._rec = UploadedFileRec

    @staticmethod
    def widget_id(at, widget_type: str, label: str) -> str:
        for node in at._tree:
            proto = getattr(node, "proto", None)
            if getattr(node, "type", None) == widget_type and getattr(proto, "label", None) == label:
                return proto.id
        raise AssertionError(f"no {widget_type} labelled {label!r} on the page")

    def put(self, at, widget_type: str, label: str, data: bytes, *, name: str, mime: str = "audio/wav"):
        """Attach ``data`` to the ``file_uploader`` / ``audio_input`` labelled ``label``."""
        from streamlit.proto.Common_pb2 import FileUploaderState
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        widget = self.widget_id(at, widget_type, label)
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = self._rec(file_id=file_id, name=name, type=mime, data=data)
        state = FileUploaderState()
        info = state.uploaded_file_info.add()
        info.file_id, info.name, info.size = file_id, name, len(data)
        info.file_urls.file_id = file_id
        self.states[widget] = WidgetState(id=widget, file_uploader_state_value=state)
        return at


def clip_near(corpus: Path, label: str, seconds: float) -> Path:
    """The corpus clip of ``label`` whose duration is closest to ``seconds``."""
    manifest = pd.read_csv(corpus / "manifest.csv")
    rows = manifest[manifest["label"] == label]
    return corpus / rows.iloc[(rows["duration_s"] - seconds).abs().argsort()].iloc[0]["path"]


def copy_store(store: TestStore, dst: Path) -> Path:
    """A private copy of the test store, for tests that promote or retrain."""
    import shutil

    shutil.copytree(store.root, dst, ignore=shutil.ignore_patterns("store.lock*"))
    return dst
