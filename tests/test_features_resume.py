"""``singtalk features`` interrupted (Ctrl-C, SIGKILL) and run again computes only the missing vectors, and ends
with the tables of a straight run, byte for byte.

Real CLI processes on eight corpus clips; ``SINGTALK_TEST_CLIP_DELAY`` slows each file so that the signal lands
mid-build, ``SINGTALK_TEST_TRACE`` records every file whose features were computed (when it starts), and by which
process: the rerun's trace is the count that proves it computed only the rest.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from singtalk import dataset
from singtalk.config import REPO_ROOT
from tests.test_batch_faults import CLI, _children, _cmdline, _env, _trace, _wait_for, clips  # noqa: F401

FEATURES = [*CLI[:-1], "features"]
TABLES = (dataset.RAW_TABLE, dataset.TRAIN_TABLE, dataset.TEST_TABLE, dataset.SCALER_FILE, dataset.FAILURES_FILE)


@pytest.fixture(scope="module")
def labelled(clips, tmp_path_factory) -> Path:
    csv = tmp_path_factory.mktemp("labelled") / "set.csv"
    pd.DataFrame({"path": clips, "label": [Path(c).parts[-3] for c in clips]}).to_csv(csv, index=False)
    return csv


@pytest.fixture(scope="module")
def straight(labelled, tmp_path_factory) -> Path:
    """An uninterrupted build in one process: the tables every interrupted one must end with."""
    out = tmp_path_factory.mktemp("straight")
    proc = _features(labelled, out, "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    return out


def _takes_ctrl_c() -> None:
    """Popen's preexec_fn: the child handles SIGINT even when the suite runs as a background job (``cmd &`` in a
    script ignores SIGINT, and a child inherits that; Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _features(labelled: Path, out: Path, *args, start: bool = False, **hooks):
    command = [*FEATURES, str(labelled), "--out", str(out), "--test-size", "0.5", *map(str, args)]
    if start:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**hooks),
                                cwd=REPO_ROOT, preexec_fn=_takes_ctrl_c)
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=_env(**hooks), cwd=REPO_ROOT)


def _kept(out: Path) -> set[str]:
    """The files whose vectors are on disk (complete lines of the cache)."""
    path = out / dataset.FEATURE_CACHE
    return {json.loads(line)["path"] for line in path.read_text().splitlines()} if path.exists() else set()


def _gone(pids: set[int], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while any(_cmdline(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(_cmdline(pid) for pid in pids)


def _rerun_computes_only_the_rest(labelled: Path, out: Path, straight: Path, clips: list[str], kept: set[str],
                                  trace: Path) -> None:
    proc = _features(labelled, out, "--jobs", "2", trace=trace)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    computed = [source for _, source in _trace(trace)]
    assert sorted(computed) == sorted(set(clips) - kept), "only the files without a vector, each once"
    assert (f"note: {len(kept)} of {len(clips)} files' features kept from an earlier run "
            f"({out / dataset.FEATURE_CACHE}); {len(clips) - len(kept)} to compute") in proc.stderr
    for name in TABLES:
        assert (out / name).read_bytes() == (straight / name).read_bytes(), name


def test_sigkill_mid_build_loses_at_most_the_last_chunk(labelled, straight, clips, tmp_path):
    """SIGKILL once a chunk of vectors is on disk: no worker is left behind, and the rerun computes only the
    files whose vectors were not saved."""
    out, trace = tmp_path / "out", tmp_path / "trace.txt"
    proc = _features(labelled, out, "--jobs", "2", start=True, clip_delay=2, trace=tmp_path / "first.txt")
    _wait_for(lambda: _kept(out), proc)  # the first chunk: SAVE_EVERY_S after the build started
    workers = _children(proc.pid)
    proc.kill()
    proc.communicate(timeout=60)
    kept = _kept(out)
    assert 1 <= len(kept) < len(clips), "killed mid-build, a chunk saved"
    assert workers and _gone(workers), "the workers end with their parent"
    _rerun_computes_only_the_rest(labelled, out, straight, clips, kept, trace)


def test_ctrl_c_keeps_every_finished_vector(labelled, straight, clips, tmp_path):
    """Ctrl-C mid-build: exit 130 with a message naming the kept vectors; everything finished is on disk (only
    the files the two workers held are lost); the rerun computes only the rest."""
    out, first, trace = tmp_path / "out", tmp_path / "first.txt", tmp_path / "trace.txt"
    proc = _features(labelled, out, "--jobs", "2", start=True, clip_delay=1, trace=first)
    _wait_for(lambda: len(_trace(first)) >= 5, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    assert f"interrupted: the features computed so far are kept in {out / dataset.FEATURE_CACHE}" in stderr
    kept = _kept(out)
    started = {source for _, source in _trace(first)}
    assert kept <= started and len(kept) >= len(started) - 2 and len(kept) < len(clips)
    _rerun_computes_only_the_rest(labelled, out, straight, clips, kept, trace)
