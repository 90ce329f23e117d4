"""Helpers every ``singtalk`` subcommand module shares (:mod:`singtalk.cli`, ``cli_model``, ``cli_review``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence


def progress_printer(label: str, unit: str = "clips"):
    """A ``(done, total)`` callback: bar, count, rate and time left on stderr (:mod:`singtalk.progress`)."""
    from .progress import ProgressPrinter

    return ProgressPrinter(label, unit=unit)


def say(text: str) -> None:
    """``text`` on stderr on a line of its own, also over a progress line being drawn on a terminal."""
    print(("\r\033[K" if sys.stderr.isatty() else "") + text, file=sys.stderr)


def models_root(args) -> Path:
    """``--models`` if given, else the configured model store."""
    from .config import models_dir

    return Path(args.models) if getattr(args, "models", None) else models_dir()


POOL_MIN_AUDIO_S = 180.0
"""A worker process costs about a second to start (imports and the model's NumPy copy; no TensorFlow), and
a minute of audio about 0.7 s of work: from about three minutes of audio on, one worker per core is faster
(docs/performance.md)."""

URL_GUESS_S = 60.0
"""What a link counts for before it is downloaded."""

BYTES_PER_S_GUESS = 16_000
"""Audio of unknown length counts as 128 kb/s (a 3 MB MP3 is about three minutes)."""


def audio_seconds_at_least(inputs: Sequence[str], enough: float) -> float:
    """The inputs' total duration, read from headers where soundfile can (else guessed from the size, a link
    as :data:`URL_GUESS_S`); stops adding once ``enough`` is reached, so a big folder costs little."""
    import soundfile

    from .sources import is_url

    total = 0.0
    for item in inputs:
        if total >= enough:
            break
        if is_url(item):
            total += URL_GUESS_S
            continue
        try:
            total += soundfile.info(item).duration
        except Exception:  # noqa: BLE001 - a format libsndfile does not read, or a missing file
            try:
                total += os.path.getsize(item) / BYTES_PER_S_GUESS
            except OSError:
                pass
    return total


def classify_jobs(requested: int | None, inputs: Sequence[str], *, separate: bool = False) -> int:
    """``--jobs`` as given; else one worker per core when there are several inputs and at least
    :data:`POOL_MIN_AUDIO_S` of audio, 1 otherwise. Vocal extraction stays in one process unless asked:
    TensorFlow already uses every core and each worker would hold its own Spleeter (about 1.2 GB)."""
    if requested:
        return max(1, requested)
    cores = os.cpu_count() or 1
    if separate or cores < 2 or len(inputs) < 2:
        return 1
    return cores if audio_seconds_at_least(inputs, POOL_MIN_AUDIO_S) >= POOL_MIN_AUDIO_S else 1
