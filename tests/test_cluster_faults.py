"""A lost Ray node costs one retry: a real two-node cluster on loopback (two `ray start` processes, one CPU
each, stopped by their own process ids), the second node's processes SIGKILLed mid-batch."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from singtalk import dataset
from singtalk.config import REPO_ROOT
from tests.test_batch_faults import (CLI, _children, _env, _start, _table, _trace, _wait_for, clips,  # noqa: F401
                                     reference)
from tests.test_cluster import RAY, _free_port


def _descendants(pid: int) -> set[int]:
    found, frontier = set(), {pid}
    while frontier:
        frontier = set().union(*(_children(p) for p in frontier)) - found
        found |= frontier
    return found


def _ray(*args, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([str(RAY), "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                                 "--disable-usage-stats", f"--node-manager-port={_free_port()}",
                                 f"--object-manager-port={_free_port()}", *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """Stop one `ray start --block` and what it started (its own process group), by its process id."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture()
def two_nodes(tmp_path):
    """Head and second node, each slowing every clip by 1 s and tracing which process took which input."""
    port, trace = _free_port(), tmp_path / "trace.txt"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", SINGTALK_TEST_CLIP_DELAY="1", SINGTALK_TEST_TRACE=str(trace))
    temp = tempfile.mkdtemp(prefix="st-ray-")  # short: Ray's socket paths must fit in 107 bytes
    head = _ray("--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}",
                f"--ray-client-server-port={_free_port()}", env=env, log=tmp_path / "head.log")
    nodes = [head]
    try:
        _wait_for(lambda: "Ray runtime started" in (tmp_path / "head.log").read_text(), head, timeout=90)
        nodes.append(_ray(f"--address=127.0.0.1:{port}", env=env, log=tmp_path / "node.log"))
        _wait_for(lambda: "Ray runtime started" in (tmp_path / "node.log").read_text(), nodes[1], timeout=90)
        yield f"127.0.0.1:{port}", nodes[1], trace
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _kill_node_while_it_works(node: subprocess.Popen, trace: Path, proc: subprocess.Popen) -> str:
    """SIGKILL every process of ``node`` once one of them has taken an input; that input."""
    on_node = _wait_for(lambda: [p for p, _ in _trace(trace) if p in _descendants(node.pid)], proc)
    for pid in _descendants(node.pid) | {node.pid}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    return [s for p, s in _trace(trace) if p == on_node[-1]][-1]


def test_a_lost_node_costs_its_input_one_retry(two_nodes, clips, reference, tmp_path):
    """The second node's processes SIGKILLed while its actor holds an input: that input is classified again on
    the node that remains, and every input gets the straight run's row; exit 0, no traceback."""
    address, node, trace = two_nodes
    out = tmp_path / "out.csv"
    proc = _start(*clips, "--cluster", address, "--csv", out)
    held = _kill_node_while_it_works(node, trace, proc)
    _, stderr = proc.communicate(timeout=300)
    print(stderr)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"the cluster lost the worker classifying {held}: trying it on another" in stderr
    assert [s for _, s in _trace(trace)].count(held) == 2
    pd.testing.assert_frame_equal(_table(out), reference[0])


def test_features_on_a_lost_node_are_computed_again(two_nodes, clips, tmp_path):
    """``features --cluster`` (Ray tasks, ``max_retries=2``) with the second node SIGKILLed mid-build: the lost
    task runs again on the node that remains, and the tables are byte for byte those of a local build."""
    address, node, trace = two_nodes
    labelled = tmp_path / "set.csv"
    pd.DataFrame({"path": clips, "label": [Path(c).parts[-3] for c in clips]}).to_csv(labelled, index=False)
    features = [*CLI[:-1], "features", str(labelled), "--test-size", "0.5"]
    proc = subprocess.Popen([*features, "--out", str(tmp_path / "remote"), "--cluster", address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO_ROOT)
    held = _kill_node_while_it_works(node, trace, proc)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert [s for _, s in _trace(trace)].count(held) == 2, "the lost task ran again"
    local = subprocess.run([*features, "--out", str(tmp_path / "local"), "--jobs", "1"], capture_output=True,
                           text=True, env=_env(), cwd=REPO_ROOT, timeout=300)
    assert local.returncode == 0, local.stderr

    def counts(out: str) -> list[str]:  # the node's death may print a raylet line of its own among ours
        return [line for line in out.splitlines() if line.startswith("train rows:")]

    assert counts(local.stdout) == counts(stdout) != [], "the same rows and failed files"
    for name in (dataset.RAW_TABLE, dataset.TRAIN_TABLE, dataset.TEST_TABLE, dataset.SCALER_FILE):
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
