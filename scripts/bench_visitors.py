"""Many visitors at once: N Chromium sessions each upload a 30 s clip to one app server at the same moment.

    .venv/bin/python scripts/bench_visitors.py --n 10 25          # the figures in docs/performance.md
    .venv/bin/python scripts/bench_visitors.py --n 5 --slots 1 --json out.json   # what the CI test runs

A real ``streamlit run`` on a free loopback port (the model store ``--models``, default the shipped one) and
Debian's Chromium through Playwright, one browser context per visitor (its own cookies, its own Streamlit
session). Every visitor first opens the Classify page; then all upload at once, and each is timed from its own
upload to its answer on screen. While they wait, the page is watched for the line's "ahead of you" / "You are
next" notice. The server's resident memory is sampled every 50 ms (its peak is ``VmHWM``). The label each
visitor gets is compared with the same clip classified in this process by the same model.

Prints, per N: answered, agreeing, errors, p50 / p95 / max seconds to the answer, visitors who saw their place
in line, the server's peak RSS and the CPU seconds it (and its ffmpeg decodes) spent on the burst.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from singtalk import audio  # noqa: E402
from singtalk.config import data_dir, models_dir  # noqa: E402
from page_idle import wait_idle  # noqa: E402 - scripts/, beside this file

CHROMIUM = "/usr/bin/chromium"
LINE_TEXTS = ("ahead of you", "You are next")


def make_clips(folder: Path, seconds: float, manifest: Path) -> list[Path]:
    """A 30 s singing clip and a 30 s talking clip, each cut from consecutive corpus clips of one source."""
    table = pd.read_csv(manifest)
    corpus = manifest.parent
    clips = []
    for label in ("singing", "talking"):
        rows = table[table["label"] == label].sort_values(["source", "path"])
        source = rows.groupby("source")["duration_s"].sum().sort_values().index[-1]  # the most audio
        pieces, total = [], 0.0
        for path in rows[rows["source"] == source]["path"]:
            y = audio.decode(corpus / path, sr=audio.SAMPLE_RATE)
            pieces.append(y)
            total += y.size / audio.SAMPLE_RATE
            if total >= seconds:
                break
        y = np.concatenate(pieces)[: int(seconds * audio.SAMPLE_RATE)]
        out = folder / f"{label}_{int(seconds)}s.wav"
        sf.write(out, y, audio.SAMPLE_RATE, subtype="PCM_16")
        clips.append(out)
    return clips


def expected_labels(clips: list[Path], models: Path) -> dict[Path, str]:
    from singtalk.classify import Classifier
    from singtalk.labels import display
    from singtalk.registry import ModelStore

    classifier = Classifier(ModelStore(models).load())
    return {clip: display(classifier.classify_source(clip).label) for clip in clips}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(models: Path, work: Path, log_path: Path, slots: int | None):
    """``streamlit run`` of the app (open mode, loopback) on a free port: yields ``(url, pid)``."""
    env = dict(os.environ, SINGTALK_MODELS=str(models), SINGTALK_WORK=str(work), SINGTALK_ICE_SERVERS="[]")
    for key in ("SINGTALK_TEAM_PASSWORD_HASH", "SINGTALK_PUBLIC", "STREAMLIT_SERVER_ADDRESS"):
        env.pop(key, None)
    if slots:
        env["SINGTALK_CLASSIFY_SLOTS"] = str(slots)
    port = _free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "streamlit_app.py"),
                             "--server.address", "127.0.0.1", "--server.port", str(port),
                             "--server.headless", "true"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the app server did not start; see {log_path}")
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its reaped children (ffmpeg decodes), user + system, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


class MemoryWatch:
    """The peak resident memory of one process (``VmHWM`` at the end; sampled ``VmRSS`` as a check)."""

    def __init__(self, pid: int):
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _field(self, name: str) -> int:
        try:
            for row in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if row.startswith(name + ":"):
                    return int(row.split()[1])
        except OSError:
            pass
        return 0

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak_kb = max(self.peak_kb, self._field("VmRSS"))

    def __enter__(self):
        self._thread.start()
        return self

    def stop(self) -> float:
        """Peak RSS in MB so far."""
        self.peak_kb = max(self.peak_kb, self._field("VmHWM"))
        return self.peak_kb / 1024

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _open_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').wait_for(state="attached", timeout=120_000)
    page.get_by_role("tab", name="Record").wait_for(timeout=120_000)
    return context, page


def visit_at_once(browser, url: str, clips: list[Path], n: int, timeout_s: float) -> list[dict]:
    """``n`` visitors upload ``clips[i % len(clips)]`` as one burst; one dict per visitor."""
    visitors = []
    try:
        for i in range(n):
            context, page = _open_page(browser, url)
            visitors.append({"context": context, "page": page, "clip": clips[i % len(clips)]})
        for v in visitors:
            wait_idle(v["page"])
        for v in visitors:  # the burst: every upload dispatched before any answer is awaited
            v["page"].locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(v["clip"]))
            v["started"] = time.monotonic()
        deadline = time.monotonic() + timeout_s
        waiting = list(visitors)
        while waiting and time.monotonic() < deadline:
            for v in list(waiting):
                page = v["page"]
                if not v.get("saw_line") and any(page.get_by_text(t).count() for t in LINE_TEXTS):
                    v["saw_line"] = True
                if page.locator('[data-testid="stException"]').count():
                    v["error"] = "exception: " + page.locator('[data-testid="stException"]').first.inner_text()[:200]
                elif page.locator('[data-testid="stAlertContentError"]').count():
                    v["error"] = page.locator('[data-testid="stAlertContentError"]').first.inner_text()[:200]
                elif page.get_by_text("This is wrong").count():
                    v["seconds"] = time.monotonic() - v["started"]
                    v["label"] = page.locator('[data-testid="stMetricValue"]').first.inner_text()
                else:
                    continue
                waiting.remove(v)
        for v in waiting:
            v["error"] = f"no answer within {timeout_s:.0f} s"
    finally:
        for v in visitors:
            v["context"].close()
    return [{"clip": v["clip"].name, "label": v.get("label"), "seconds": v.get("seconds"),
             "saw_line": bool(v.get("saw_line")), "error": v.get("error")} for v in visitors]


def summarise(n: int, visits: list[dict], expected: dict, peak_mb: float, server_cpu_s: float) -> dict:
    times = sorted(v["seconds"] for v in visits if v["seconds"] is not None)
    by_name = {clip.name: label for clip, label in expected.items()}
    return {
        "n": n,
        "answered": len(times),
        "agreeing": sum(v["label"] == by_name[v["clip"]] for v in visits if v["label"]),
        "errors": [v["error"] for v in visits if v["error"]],
        "p50_s": float(np.percentile(times, 50)) if times else None,
        "p95_s": float(np.percentile(times, 95)) if times else None,
        "max_s": times[-1] if times else None,
        "saw_line": sum(v["saw_line"] for v in visits),
        "server_peak_rss_mb": round(peak_mb, 1),
        "server_cpu_s": round(server_cpu_s, 2),
        "visits": visits,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10, 25], help="visitors at once (one run per value)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each uploaded clip")
    parser.add_argument("--models", type=Path, default=None, help="model store (default: the shipped one)")
    parser.add_argument("--slots", type=int, default=None, help="classification slots (default: the cores)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each run may take")
    parser.add_argument("--json", type=Path, default=None, help="write every figure and visit here")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: run `make setup-test` first", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    models = (args.models or models_dir()).resolve()
    runs = []
    with tempfile.TemporaryDirectory(prefix="singtalk-visitors-") as tmp:
        tmp = Path(tmp)
        clips = make_clips(tmp, args.seconds, data_dir() / "manifest.csv")
        expected = expected_labels(clips, models)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            for n in args.n:
                work = tmp / f"work{n}"
                with app_server(models, work, tmp / f"server{n}.log", args.slots) as (url, pid):
                    with MemoryWatch(pid) as memory:
                        visit_at_once(browser, url, clips[:1], 1, args.timeout)  # loads the model: not timed
                        cpu_before = cpu_seconds(pid)
                        visits = visit_at_once(browser, url, clips, n, args.timeout)
                        cpu = cpu_seconds(pid) - cpu_before
                        peak = memory.stop()
                runs.append(summarise(n, visits, expected, peak, cpu))
                r = runs[-1]
                print(f"N={n:3d}: answered {r['answered']}/{n}, agreeing {r['agreeing']}, errors {len(r['errors'])}, "
                      f"p50 {r['p50_s']:.1f} s, p95 {r['p95_s']:.1f} s, max {r['max_s']:.1f} s, "
                      f"saw their place in line {r['saw_line']}, server peak RSS {r['server_peak_rss_mb']:.0f} MB, "
                      f"server CPU {r['server_cpu_s']:.1f} s ({r['server_cpu_s'] / n:.2f} s a visitor)"
                      if r["answered"] else f"N={n}: no answer; errors: {r['errors'][:3]}", flush=True)
            browser.close()
    load = os.getloadavg()
    report = {"machine": {"cpus": os.cpu_count(), "load_after": load}, "slots": args.slots,
              "clip_seconds": args.seconds, "models": str(models), "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    ok = all(r["answered"] == r["n"] and not r["errors"] for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
