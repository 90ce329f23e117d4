"""Where things live: the data corpus, the model store, the Spleeter weights, the measured rooms.

Each location has a default relative to the repository and an environment
variable that overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The labelled corpus: ``$SINGTALK_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("SINGTALK_DATA", REPO_ROOT.parent / "shared" / "data"))


def models_dir() -> Path:
    """The model store: ``$SINGTALK_MODELS`` or ``models/`` in the repository."""
    return Path(os.environ.get("SINGTALK_MODELS", REPO_ROOT / "models"))


def spleeter_models_dir() -> Path:
    """Folder holding ``2stems/`` (Spleeter's MODEL_PATH): ``$SINGTALK_SPLEETER_MODELS`` or ``pretrained_models/``."""
    return Path(os.environ.get("SINGTALK_SPLEETER_MODELS", REPO_ROOT / "pretrained_models"))


def room_responses_dir() -> Path:
    """Measured room impulse responses (``scripts/fetch_room_responses.py``): ``$SINGTALK_ROOMS`` or
    ``pretrained_models/rooms/``."""
    return Path(os.environ.get("SINGTALK_ROOMS", REPO_ROOT / "pretrained_models" / "rooms"))


def work_dir() -> Path:
    """Writable state (reviews, uploads kept for review): ``$SINGTALK_WORK`` or ``var/``."""
    return Path(os.environ.get("SINGTALK_WORK", REPO_ROOT / "var"))
