"""Atomic writes: all-or-nothing, no temp files left behind, the umask's mode."""

from __future__ import annotations

import os

import numpy as np
import pytest

from singtalk import atomic, audio


def test_new_file_gets_the_umask_mode_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic.write_text(tmp_path / "a.json", "{}")
        assert path.stat().st_mode & 0o777 == 0o644  # what open() gives; mkstemp would give 0o600
        os.umask(0o027)
        assert atomic.write_text(tmp_path / "b.json", "{}").stat().st_mode & 0o777 == 0o640
        clip = audio.write_wav(tmp_path / "clip.wav", np.zeros(160, np.float32))  # clips filed for review
        assert clip.stat().st_mode & 0o777 == 0o640 and audio.decode(clip).size == 160
    finally:
        os.umask(old)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = atomic.write_text(tmp_path / "table.csv", "old\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    atomic.write_text(path, "new\n")
    assert path.read_text() == "new\n" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
