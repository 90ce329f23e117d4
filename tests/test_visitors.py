"""Three visitors at once in Chromium, through one classification slot: every one gets their answer.

Runs ``scripts/bench_visitors.py`` (the benchmark behind docs/performance.md's many-visitors table) at small N:
a real ``streamlit run`` of the app on the test store, three Playwright contexts uploading a 30 s clip in one
burst. With a single slot the line must form, so some visitor is shown their place in it, and still every
visitor gets the label the same model gives the clip in process, with no error on any page.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def test_three_visitors_at_once_are_all_answered_and_the_line_shows(test_store, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (make setup-test)")
    out = tmp_path / "visitors.json"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_visitors.py"), "--n", "3", "--slots", "1",
                           "--models", str(test_store.root), "--timeout", "240", "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.exists(), done.stdout + done.stderr[-3000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert run["errors"] == [], run["visits"]
    assert run["answered"] == 3 and run["agreeing"] == 3, run["visits"]
    assert run["saw_line"] >= 1, run["visits"]  # one slot, three at once: somebody waited and was told
    assert run["server_peak_rss_mb"] > 50  # the server's memory was actually read
    assert run["server_cpu_s"] > 0.5  # three 30 s clips were decoded and classified by the server itself
    assert done.returncode == 0, done.stderr[-2000:]
