"""Long batches that lose nothing: rows as they finish, ``--resume``, a lost worker costs one retry.

Real CLI processes on a handful of short corpus clips with the shipped model; faults are real signals to
real processes (a pool worker SIGKILLed from outside, one that SIGKILLs itself on a given input, SIGINT to
the CLI). ``SINGTALK_TEST_CLIP_DELAY`` slows each clip so that a signal lands mid-batch, and
``SINGTALK_TEST_TRACE`` records which process classified which input.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from singtalk.batch_files import BatchFiles, read_rows
from singtalk.config import REPO_ROOT
from singtalk.progress import ProgressPrinter, format_rate, format_seconds, progress_line

CLI = [sys.executable, "-m", "singtalk.cli", "classify"]
N_CLIPS = 8


@pytest.fixture(scope="module")
def clips(manifest) -> list[str]:
    """Eight corpus clips under 4 s: singing, talking and no voice."""
    short = manifest[manifest.duration_s < 4]
    picked = short.groupby("label").head(3)
    picked = picked[picked.label.isin(["singing", "talking", "no_voice"])].head(N_CLIPS)
    assert len(picked) == N_CLIPS
    return list(picked.abspath)


@pytest.fixture(scope="module")
def reference(clips, tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A straight run, one process: the rows and segments every faulty run must end with."""
    folder = tmp_path_factory.mktemp("reference")
    proc = _run(*clips, "--jobs", "1", "--csv", folder / "out.csv", "--segments", folder / "segments.csv")
    assert proc.returncode == 0, proc.stderr
    return _table(folder / "out.csv"), _table(folder / "segments.csv")


def _env(**hooks) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.update({f"SINGTALK_TEST_{k.upper()}": str(v) for k, v in hooks.items()})
    return env


def _run(*args, **hooks) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, env=_env(**hooks),
                          cwd=REPO_ROOT)


def _start(*args, **hooks) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(**hooks), cwd=REPO_ROOT, preexec_fn=_takes_ctrl_c)


def _takes_ctrl_c() -> None:
    """Popen's preexec_fn: the child handles SIGINT even when the suite runs as a background job (``cmd &`` in a
    script ignores SIGINT, and a child inherits that; Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _table(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, dtype=str)  # the text as written


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"ended early: {(proc.communicate()[1] or '')[-2000:]}"
        time.sleep(0.1)
    pytest.fail("timed out waiting for the batch")


def _rows(path) -> int:
    return len(read_rows(path)[1]) if Path(path).exists() else 0


def _trace(path) -> list[tuple[int, str]]:
    if not Path(path).exists():
        return []
    return [(int(pid), source) for pid, source in (line.split(" ", 1) for line in Path(path).read_text().splitlines())]


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_lost_workers_cost_a_retry_then_an_error_row(clips, reference, tmp_path):
    """A pool worker SIGKILLed from outside mid-batch: its input is redone in a fresh worker and answered as in a
    straight run. A worker that dies on one input every time: that input gets an error row in plain words (after
    one retry) and the batch goes on. Every input has exactly one row; exit status 1, no traceback."""
    out, trace = tmp_path / "out.csv", tmp_path / "trace.txt"
    victim = clips[2]
    proc = _start(*clips, "--jobs", "2", "--csv", out, clip_delay=2, kill_on=Path(victim).name, trace=trace)
    # the victim has died twice and a row is written: now kill the worker holding another input
    _wait_for(lambda: [s for _, s in _trace(trace)].count(victim) == 2 and _rows(out) >= 1, proc)
    pid = next(p for p, s in reversed(_trace(trace)) if s != victim and p in _children(proc.pid))
    os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    held = [s for p, s in _trace(trace) if p == pid][-1]  # what it held when it died
    print(stderr)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert f"died (signal 9) classifying {held}: trying it again" in stderr
    assert [s for _, s in _trace(trace)].count(held) == 2, "the killed worker's input was done again"
    table = _table(out)
    assert list(table.path) == clips, "each input once, in input order"
    lost = table.set_index("path").loc[victim]
    assert lost.label == "" and "killed by signal 9 (SIGKILL), probably out of memory, twice" in lost.error
    expected, _ = reference
    pd.testing.assert_frame_equal(table[table.path != victim].reset_index(drop=True),
                                  expected[expected.path != victim].reset_index(drop=True))
    assert f"{N_CLIPS - 1} classified, 1 failed" in stderr


def test_interrupt_keeps_rows_and_resume_classifies_only_the_rest(clips, reference, tmp_path):
    """Ctrl-C mid-batch: exit 130, a message naming --resume, the finished rows in a CSV that parses, no worker
    left behind. Then, with a torn last line and one row from another model version added, ``--resume``
    classifies only the inputs without a row of this version, and ends with exactly the straight run's files."""
    out, segments, trace = tmp_path / "out.csv", tmp_path / "segments.csv", tmp_path / "trace.txt"
    proc = _start(*clips, "--jobs", "2", "--csv", out, "--segments", segments, clip_delay=1.5)
    _wait_for(lambda: _rows(out) >= 3, proc)
    workers = [pid for pid in _children(proc.pid) if b"spawn_main" in _cmdline(pid)]
    assert len(workers) == 2
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    assert not [_cmdline(pid) for pid in workers if _cmdline(pid)], "the workers were stopped"
    partial = _table(out)
    expected, expected_segments = reference
    assert 3 <= len(partial) < N_CLIPS
    pd.testing.assert_frame_equal(partial, expected.set_index("path").loc[partial.path].reset_index())

    rows = out.read_text().splitlines(keepends=True)
    rows[1] = rows[1].replace(partial.path[0], partial.path[0] + "x")  # not an input: dropped, the input redone
    rows[2] = rows[2].replace(partial.model[1], "19990101T000000Z")  # another version: redone
    kept = set(partial.path[2:])
    missing = next(c for c in clips if c not in set(partial.path))
    out.write_text("".join(rows) + f"{missing},singing,0.99")  # a torn last line: dropped
    proc = _run(*clips, "--jobs", "1", "--csv", out, "--segments", segments, "--resume", trace=trace)
    assert proc.returncode == 0, proc.stderr
    redone = [s for _, s in _trace(trace)]
    assert sorted(redone) == sorted(set(clips) - kept), "only the inputs without a row of this version"
    assert f"resuming: {len(kept)} inputs kept from {out}, {N_CLIPS - len(kept)} to classify" in proc.stderr
    pd.testing.assert_frame_equal(_table(out), expected)
    pd.testing.assert_frame_equal(_table(segments), expected_segments)


# -- the files, without a model ---------------------------------------------------
def _answer(path: str, version: str, label: str = "talking", error: str = "") -> dict:
    return {"path": path, "label": "" if error else label, "confidence": "" if error else 0.9, "model": version,
            "error": error}


def test_torn_last_line_and_short_rows_are_dropped(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("path,label,confidence\na.wav,talking,0.9\nb.wav,singing\nc.wav,\"sing")
    header, rows = read_rows(out)
    assert header == ["path", "label", "confidence"]
    assert rows == [{"path": "a.wav", "label": "talking", "confidence": "0.9"}]
    out.write_text("path,lab")
    assert read_rows(out) == ([], [])


def test_resume_keeps_answers_of_this_version_only(tmp_path):
    out = tmp_path / "out.csv"
    inputs = ["a.wav", "b.wav", "c.wav", "d.wav", "e.wav"]
    first = BatchFiles(inputs, version="v2", class_names=["singing", "talking"], csv_path=out)
    assert first.start() == inputs
    first.files["csv"].write([_answer("a.wav", "v2"), _answer("b.wav", "v1"), _answer("c.wav", "v2", error="bad"),
                              _answer("e.wav", "v2"), _answer("gone.wav", "v2")])
    first.close()
    with open(out, "a") as handle:
        handle.write("d.wav,talking,0.8")  # torn
    again = BatchFiles(inputs, version="v2", class_names=["singing", "talking"], csv_path=out, resume=True)
    assert again.start() == ["b.wav", "c.wav", "d.wav"]
    assert again.kept == 2 and list(_table(out).path) == ["a.wav", "e.wav"]
    again.files["csv"].write([_answer("d.wav", "v2"), _answer("c.wav", "v2"), _answer("b.wav", "v2")])
    again.finish()
    again.close()
    table = _table(out)
    assert list(table.path) == inputs and (table.model == "v2").all() and (table.error == "").all()


def test_an_existing_out_is_kept_as_bak_without_resume(tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("an earlier result\n")
    files = BatchFiles(["a.wav"], version="v", class_names=["singing"], csv_path=out)
    files.start()
    files.close()
    assert files.backups == [tmp_path / "out.csv.bak"]
    assert (tmp_path / "out.csv.bak").read_text() == "an earlier result\n"
    assert out.read_text().startswith("path,label,confidence,p_singing,")


def test_progress_shows_count_rate_and_time_left(tmp_path):
    assert progress_line("classify", 240, 600, rate=11.8, width=10) == \
        "classify [####      ] 240/600  11.8 clips/s  31 s left"
    assert format_seconds(31) == "31 s" and format_seconds(250) == "4 min" and format_seconds(4320) == "1 h 12 min"
    now = [100.0]
    with open(tmp_path / "log.txt", "w+") as log:  # not a terminal: one line per tenth of the work
        show = ProgressPrinter("classify", stream=log, clock=lambda: now[0])
        for done in range(1, 21):
            now[0] += 5.0 if done == 1 else 0.5  # 5 s of start-up, then 2 clips/s
            show(done, 20)
        log.seek(0)
        lines = log.read().splitlines()
    assert len(lines) == 11 and lines[0].endswith("] 1/20") and lines[1].endswith("] 2/20"), \
        "no rate before a second of work is measured (two workers may finish together)"
    assert lines[2].endswith("] 4/20  2 clips/s  8 s left"), "start-up is not counted as work"
    assert lines[-1].endswith("20/20  2 clips/s  done in 14 s")
    assert format_rate(11.8) == "11.8 clips/s" and format_rate(10612.4, "files") == "10612 files/s"
