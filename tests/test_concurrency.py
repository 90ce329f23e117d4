"""Sessions at once and the shared store: threads, promotion under load, the lock, SIGKILL at random points.

Real models (the small store of ``test_hostile.tiny_store``), real Spleeter
weights, the real CLI in subprocesses killed with SIGKILL.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("SINGTALK_TF_THREADS", "2")

from singtalk import dataset  # noqa: E402
from singtalk.classify import Classifier  # noqa: E402
from singtalk.config import REPO_ROOT  # noqa: E402
from singtalk.errors import DatasetError  # noqa: E402
from singtalk.registry import ModelStore  # noqa: E402
from singtalk.training import load_tables  # noqa: E402
from tests.test_hostile import ENV, run_cli, tiny  # noqa: E402,F401  (tiny is a fixture)

KILL_SEED = int(os.environ.get("SINGTALK_KILL_SEED", "20261125"))


def _prediction_key(p):
    return p.label, round(p.p_singing, 6), round(p.duration_s, 3), len(p.timeline)


# -- two sessions at once ----------------------------------------------------------------------------------
def test_threads_sharing_one_classifier_match_sequential_runs(tiny, manifest):
    clips = [Path(p) for p in manifest[manifest.label.isin(["singing", "talking"])].groupby("source").head(1).abspath]
    clips += list(tiny.clips)
    classifier = Classifier(ModelStore(tiny.root).load())
    sequential = [classifier.classify_source(c) for c in clips]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for round_ in range(2):  # every clip twice, in a different order each round
            order = random.Random(round_).sample(range(len(clips)), len(clips))
            results = dict(zip(order, pool.map(lambda i: classifier.classify_source(clips[i]), order)))
            for i, expected in enumerate(sequential):
                got = results[i]
                assert _prediction_key(got) == _prediction_key(expected), clips[i]
                np.testing.assert_allclose(got.timeline.filter(like="p_").to_numpy(dtype=float),
                                           expected.timeline.filter(like="p_").to_numpy(dtype=float), atol=1e-6)


def test_threads_sharing_the_spleeter_session_match_sequential_runs(tiny):
    from singtalk.separation import weights_status

    ok, message = weights_status()
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    classifier = Classifier(ModelStore(tiny.root).load())
    clips = list(tiny.clips)
    sequential = [classifier.load(c, separate=True) for c in clips]
    with ThreadPoolExecutor(max_workers=len(clips)) as pool:
        concurrent = list(pool.map(lambda c: classifier.load(c, separate=True), clips))
    for clip, a, b in zip(clips, sequential, concurrent):
        assert a.shape == b.shape and np.max(np.abs(a - b)) < 1e-5, clip
        assert np.sqrt(np.mean(a ** 2)) > 1e-3, f"no vocals extracted from {clip}"
    labels = [classifier.classify(v).label for v in concurrent]
    assert labels == [classifier.classify(v).label for v in sequential]


def raw_rows(tables: Path, n: int) -> np.ndarray:
    """Unscaled feature rows (what the Classifier feeds ``predict_proba``)."""
    from singtalk.features import FEATURE_NAMES

    return pd.read_csv(tables / dataset.RAW_TABLE)[list(FEATURE_NAMES)].to_numpy(np.float32)[:n]


# -- promotion while others classify -----------------------------------------------------------------------
def test_promotion_and_rollback_while_sessions_load_and_classify(tiny, tmp_path):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(tiny.root, root)
    store = ModelStore(root)
    v1, v2 = tiny.versions
    raw_probe = raw_rows(tiny.tables, 20)
    reference = {v: store.load(v).predict_proba(raw_probe) for v in (v1, v2)}
    assert not np.allclose(reference[v1], reference[v2]), "the two versions must predict differently"
    stop = threading.Event()
    served: list[str] = []
    problems: list[str] = []

    def switcher():
        actions = [lambda: store.promote(v2), store.rollback, lambda: store.promote(v2), lambda: store.promote(v1)]
        flips = 0
        while not stop.is_set():
            try:
                actions[flips % len(actions)]()
                flips += 1
            except Exception as err:  # noqa: BLE001
                problems.append(f"switcher: {type(err).__name__}: {err}")
                return

    def session():
        while not stop.is_set():
            try:
                loaded = ModelStore(root).load()
                got = loaded.predict_proba(raw_probe)
                if loaded.metadata["version"] != loaded.version or loaded.version not in reference:
                    problems.append(f"metadata of {loaded.metadata['version']} served as {loaded.version}")
                elif not np.allclose(got, reference[loaded.version], atol=1e-6):
                    problems.append(f"{loaded.version} served predictions of another model")
                served.append(loaded.version)
            except Exception as err:  # noqa: BLE001
                problems.append(f"session: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=switcher)] + [threading.Thread(target=session) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(8)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not problems, problems[:5]
    assert len(served) >= 6 and set(served) == {v1, v2}, served
    assert store.current_version() in (v1, v2) and not store.lock_path.exists()


# -- the store's lock --------------------------------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from singtalk.registry import ModelStore
    with ModelStore(sys.argv[1]).lock("retrain (app) by alice") as info:
        print(info["since"], flush=True)
        time.sleep(120)
""")


def test_a_second_training_request_is_told_who_holds_the_store_and_since_when(tiny, tmp_path):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(tiny.root, root, ignore=shutil.ignore_patterns("tables"))
    before = sorted(p.name for p in (root / "versions").iterdir())
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        since = holder.stdout.readline().strip()
        assert since.endswith("Z"), since
        for command in (["train", "--data", tiny.tables, "--epochs", "2", "--promote"],
                        ["tune", "--data", tiny.tables, "--trials", "1", "--epochs", "1"],
                        ["rollback"]):
            proc = run_cli(*command, "--models", root)
            assert proc.returncode == 2, (command, proc.stderr)
            assert "Traceback" not in proc.stderr
            assert "'retrain (app) by alice'" in proc.stderr and f"since {since}" in proc.stderr, proc.stderr
            assert f"pid {holder.pid}" in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in (root / "versions").iterdir()) == before
    assert ModelStore(root).current_version() == tiny.versions[0]


# -- SIGKILL at random points ------------------------------------------------------------------------------
def _orphans(marker: str) -> list[str]:
    """Processes whose command line mentions ``marker`` (e.g. pool workers of a killed build)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def check_tables(folder: Path) -> str:
    """'absent' when the build is refused as incomplete, 'complete' when every table belongs to one build."""
    try:
        tables = load_tables(folder)
    except DatasetError as err:
        assert str(err)
        return "absent"
    raw = pd.read_csv(folder / dataset.RAW_TABLE, keep_default_na=False)
    names = tables.feature_names
    for split, frame in (("train", tables.train), ("test", tables.test)):
        rows = raw[raw["split"] == split]
        assert list(rows["path"]) == list(frame["path"]), f"{split} table is from another build than the raw table"
        np.testing.assert_allclose(tables.scaler.transform(rows[names].to_numpy()), frame[names].to_numpy(),
                                   atol=1e-5, err_msg=f"{split} table was scaled by another build's scaler")
    failures = pd.read_csv(folder / dataset.FAILURES_FILE, keep_default_na=False)
    assert set(failures.columns) == {"path", "error"}
    return "complete"


@pytest.fixture(scope="module")
def labelled_csv(manifest, tmp_path_factory) -> Path:
    picked = manifest[manifest.label.isin(["singing", "talking"])].groupby(["label", "source", "speaker"]).head(1)
    picked = picked.groupby(["label", "source"]).head(4)
    path = tmp_path_factory.mktemp("kill") / "labelled.csv"
    picked.assign(path=picked.abspath)[["path", "label", "speaker", "source"]].to_csv(path, index=False)
    return path


def test_sigkill_at_random_points_of_features_leaves_no_mixed_tables(labelled_csv, tmp_path):
    out = tmp_path / "tables-under-test"
    args = ["features", labelled_csv, "--out", out, "--jobs", "2", "--test-size", "0.25"]
    started = time.perf_counter()
    first = run_cli(*args, "--seed", "0")
    full = time.perf_counter() - started
    assert first.returncode == 0, first.stderr
    assert check_tables(out) == "complete"
    rng = random.Random(KILL_SEED)
    outcomes = []
    for attempt in range(2):  # each rerun uses another seed, so a mix of two builds is detectable
        proc = subprocess.Popen([*run_cli_args(*args, "--seed", str(attempt + 1))], env=ENV, cwd=REPO_ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if attempt == 1:  # make sure one kill lands while the worker pool extracts features
            for line in iter(proc.stderr.readline, ""):
                if line.startswith("features ["):
                    break
        delay = rng.uniform(0.3, full) if attempt == 0 else rng.uniform(0.0, 0.3 * full)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        outcomes.append((round(delay, 2), proc.returncode, check_tables(out)))
        deadline = time.time() + 15
        while _orphans(str(out)) and time.time() < deadline:
            time.sleep(0.2)
        assert not _orphans(str(out)), f"pool workers outlived the killed build: {_orphans(str(out))}"
    rerun = run_cli(*args, "--seed", "9")
    assert rerun.returncode == 0, rerun.stderr
    assert check_tables(out) == "complete", outcomes


PAUSED_BUILD = textwrap.dedent("""
    import os, sys, time
    from singtalk import atomic, cli
    original, pause_after, written = atomic.write_csv, int(os.environ["PAUSE_AFTER"]), []
    def write_then_pause(path, frame):
        result = original(path, frame)
        written.append(path)
        if len(written) == pause_after:
            print("paused", flush=True)
            time.sleep(120)
        return result
    atomic.write_csv = write_then_pause
    sys.exit(cli.main(sys.argv[1:]))
""")


def test_sigkill_between_table_writes_never_leaves_a_loadable_mix(labelled_csv, tmp_path, pause_after=2):
    """The deterministic worst case of the test above: a rebuild killed once its raw and train tables are in place
    (before the fix, the old test table and scaler then loaded silently with the new train table)."""
    out = tmp_path / "tables"
    args = ["features", str(labelled_csv), "--out", str(out), "--jobs", "2", "--test-size", "0.25"]
    assert run_cli(*args, "--seed", "0").returncode == 0
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_BUILD, *args, "--seed", "1"], cwd=REPO_ROOT,
                            env=dict(ENV, PAUSE_AFTER=str(pause_after)), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "paused", "the build never wrote a table"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert check_tables(out) in ("absent", "complete")


def run_cli_args(*args) -> list[str]:
    return [sys.executable, "-m", "singtalk.cli", *map(str, args)]


def test_sigkill_at_random_points_of_train_leaves_a_loadable_store(tiny, tmp_path):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(tiny.root, root, ignore=shutil.ignore_patterns("tables"))
    store = ModelStore(root)
    before = store.current_version()
    args = run_cli_args("train", "--data", tiny.tables, "--models", root, "--epochs", "15", "--patience", "15",
                        "--promote")
    started = time.perf_counter()
    done = subprocess.run(args, env=ENV, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    full = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    rng = random.Random(KILL_SEED + 1)
    probe = raw_rows(tiny.tables, 5)
    for attempt in range(2):
        current = store.current_version()
        versions = {info.version for info in store.list_versions()}
        proc = subprocess.Popen(args, env=ENV, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.5 * full, 1.1 * full)  # the model is saved in the last part of the run
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = ModelStore(root)
        now = after.current_version()
        assert now == current or now not in versions, (attempt, delay)
        loaded = after.load()  # CURRENT always names a complete, loadable version
        assert np.isfinite(loaded.predict_proba(probe)).all()
        for info in after.list_versions():  # every listed version is complete and loads
            after.load(info.version)
    with store.lock("after the kills"):  # a dead job's lock is taken over
        pass
    assert store.current_version() != before


REVIEWER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from singtalk import review
    wrong, clips = Path(sys.argv[1]), sorted(Path(sys.argv[2]).iterdir())
    for i, clip in enumerate(clips):
        review.add_report(wrong, clip, label="singing", predicted="talking", p_singing=0.2, confidence=0.8,
                          model_version="v1", origin="killed")
        print("added", clip.name, flush=True)
        if i % 2 == 0:
            review.review_row(wrong, clip, action="confirm", reviewer="bob")
            print("confirmed", clip.name, flush=True)
""")


def test_sigkill_at_random_points_of_wrong_list_writes_loses_no_reviewed_row(tmp_path):
    from singtalk import review

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(400):
        (clips / f"clip-{i:03d}.wav").write_bytes(b"x")
    wrong = tmp_path / "review" / "wrong_audios.csv"
    rng = random.Random(KILL_SEED + 2)
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", REVIEWER, str(wrong), str(clips)], env=ENV, cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        done: list[str] = []
        reader = threading.Thread(target=lambda: done.extend(line.split() for line in proc.stdout), daemon=True)
        reader.start()
        time.sleep(rng.uniform(1.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(timeout=10)
        frame = review.read_wrong(wrong)  # parses
        assert frame["path"].is_unique
        by_path = frame.set_index(frame["path"].map(lambda p: Path(p).name))
        added = {name for what, name in done if what == "added"}
        confirmed = {name for what, name in done if what == "confirmed"}
        assert added and added <= set(by_path.index), (attempt, len(added))
        assert (by_path.loc[sorted(confirmed), "status"] == "confirmed").all()
    # a temp file left by a killed write is never read as the list, and the next write works
    row = review.add_report(wrong, clips / "clip-399.wav", label="talking", predicted="singing", p_singing=0.9,
                            confidence=0.9, model_version="v1")
    assert row and len(review.read_wrong(wrong)) >= len(added)
