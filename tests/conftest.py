"""Shared fixtures: the real corpus, synthetic signals, ffmpeg-made files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from singtalk.audio import SAMPLE_RATE, write_wav
from singtalk.config import data_dir

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# The app's model stores are session fixtures: registered here once, not imported into each test module (an
# imported fixture is a new fixture of that module, and a session-scoped one was then built once per module).
pytest_plugins = ["tests.app_fixtures"]


def corpus_or_fail() -> Path:
    """The corpus folder; in CI its absence fails the test, elsewhere it skips."""
    root = data_dir()
    if not (root / "manifest.csv").is_file():
        message = f"corpus not found at {root} (set SINGTALK_DATA)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def corpus() -> Path:
    return corpus_or_fail()


@pytest.fixture(scope="session")
def manifest(corpus) -> pd.DataFrame:
    frame = pd.read_csv(corpus / "manifest.csv")
    frame["abspath"] = [str(corpus / p) for p in frame["path"]]
    return frame


def sung_tone(duration: float = 3.0, sr: int = SAMPLE_RATE, notes=(220.0, 247.0, 262.0)) -> np.ndarray:
    """Held harmonic notes with 5.5 Hz vibrato: sung-like."""
    t = np.arange(int(duration * sr)) / sr
    per_note = duration / len(notes)
    f0 = np.array([notes[min(int(x / per_note), len(notes) - 1)] for x in t])
    f0 = f0 * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def spoken_buzz(duration: float = 3.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A gliding, formant-rich buzz in 250 ms syllables with pauses: speech-like."""
    t = np.arange(int(duration * sr)) / sr
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t) + 20 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase) * (1.0 if k in (3, 4, 9, 10) else 0.3) / k for k in range(1, 20))
    gate = (np.mod(t, 0.4) < 0.25).astype(float)
    y = y * gate
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


def ffmpeg_convert(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return dst


@pytest.fixture()
def sung_wav(tmp_path) -> Path:
    return write_wav(tmp_path / "sung.wav", sung_tone())


@pytest.fixture()
def spoken_wav(tmp_path) -> Path:
    return write_wav(tmp_path / "spoken.wav", spoken_buzz())


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
