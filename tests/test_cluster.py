"""Feature building and batch classification on a Ray cluster started here on loopback.

The cluster is a real `ray start --head` on 127.0.0.1 (one node, 2 CPUs); the
driver joins it through `singtalk.batch.connect`, as `--cluster ADDRESS` does.
Results must be identical to the local run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from singtalk import batch, dataset

RAY = Path(sys.executable).with_name("ray")
N_CLIPS = 12


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`ray start --head --block` on loopback; stopped by its process id at the end."""
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
         f"--ray-client-server-port={_free_port()}", f"--node-manager-port={_free_port()}",
         f"--object-manager-port={_free_port()}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"ray start failed: {proc.stdout.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.3)
    try:
        yield address
    finally:
        batch.disconnect()
        proc.terminate()  # `ray start --block` stops the node's processes when it ends
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def clips(corpus, manifest, tmp_path_factory) -> list[str]:
    """A few corpus clips of both classes, plus one unreadable file (so error rows are compared too)."""
    picked = pd.concat([g.sample(N_CLIPS // 2, random_state=3)
                        for _, g in manifest[manifest["label"].isin(["singing", "talking"])].groupby("label")])
    broken = tmp_path_factory.mktemp("inputs") / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    return [str(corpus / p) for p in picked["path"]] + [str(broken)]


@pytest.fixture(scope="module")
def store(clips, tmp_path_factory) -> Path:
    """A tiny real model store trained on the clips (few epochs: only identity is tested)."""
    from singtalk.model import TrainConfig
    from singtalk.registry import ModelStore
    from singtalk.training import load_tables, save_outcome, train_tables

    root = tmp_path_factory.mktemp("models")
    rows = [{"path": p, "label": Path(p).parts[-3], "speaker": "", "source": "t"} for p in clips[:-1]]
    dataset.build_tables(dataset.normalise_labelled(pd.DataFrame(rows)), root / "tables", test_size=0.25, jobs=1)
    outcome = train_tables(load_tables(root / "tables"), TrainConfig(hidden_units=(16,), epochs=3, seed=0))
    save_outcome(ModelStore(root), outcome, promote=True)
    return root


def test_features_on_cluster_match_local(cluster, clips):
    local_vectors, local_errors = dataset.extract_all(clips, jobs=1)
    remote_vectors, remote_errors = dataset.extract_all(clips, cluster=cluster)
    assert remote_errors == local_errors
    assert local_errors[-1] and not any(local_errors[:-1])  # the broken file fails, with the same message
    assert remote_vectors[-1] is None
    for a, b in zip(local_vectors[:-1], remote_vectors[:-1]):
        np.testing.assert_array_equal(a, b)


def test_features_cli_on_cluster_writes_same_tables(cluster, clips, tmp_path):
    from singtalk.cli import main

    rows = [{"path": p, "label": Path(p).parts[-3]} for p in clips[:-1]]
    manifest = tmp_path / "set.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    try:
        assert main(["features", str(manifest), "--out", str(tmp_path / "remote"), "--cluster", cluster]) == 0
    finally:
        os.environ.pop("SINGTALK_CLUSTER", None)
    assert main(["features", str(manifest), "--out", str(tmp_path / "local"), "--jobs", "1"]) == 0
    for name in (dataset.RAW_TABLE, dataset.TRAIN_TABLE, dataset.TEST_TABLE, dataset.SCALER_FILE):
        assert (tmp_path / "remote" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name


def test_classify_on_cluster_matches_local(cluster, clips, store, tmp_path, capsys):
    from singtalk.cli import main

    local_csv, remote_csv = tmp_path / "local.csv", tmp_path / "remote.csv"
    assert main(["classify", *clips, "--models", str(store), "--jobs", "1", "--csv", str(local_csv)]) == 1
    assert main(["classify", *clips, "--models", str(store), "--cluster", cluster, "--csv", str(remote_csv)]) == 1
    local, remote = pd.read_csv(local_csv), pd.read_csv(remote_csv)
    pd.testing.assert_frame_equal(local, remote)
    assert set(local["label"].dropna()) <= {"singing", "talking"} and local["label"].notna().sum() == len(clips) - 1
    assert "broken.wav" in str(remote["error"].iloc[-1])


def test_unreachable_cluster_is_a_clear_error(clips, tmp_path, capsys):
    from singtalk.cli import main

    manifest = tmp_path / "set.csv"
    pd.DataFrame([{"path": p, "label": Path(p).parts[-3]} for p in clips[:-1]]).to_csv(manifest, index=False)
    port = _free_port()  # nothing listens there
    assert main(["features", str(manifest), "--out", str(tmp_path / "out"), "--cluster", f"127.0.0.1:{port}"]) == 2
    os.environ.pop("SINGTALK_CLUSTER", None)
    assert f"No Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err
