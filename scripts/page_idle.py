"""Waiting in Playwright until a Streamlit page is idle: shared by the benches and the browser tests.

Input given while a script run is going on (an upload during the page's first runs, or while the WebRTC
component's first value triggers a second run) can be lost, so callers wait for a quiet spell first.
"""

from __future__ import annotations

import time

STATUS_WIDGET = '[data-testid="stStatusWidget"]'
"""Streamlit's "Running…" indicator: visible while a script run is going on."""


def wait_idle(page, quiet_s: float = 1.0, timeout_s: float = 60.0, poll_ms: int = 100) -> bool:
    """True once no script has run on ``page`` for ``quiet_s`` seconds; False when ``timeout_s`` passes first."""
    status = page.locator(STATUS_WIDGET)
    deadline, quiet_since = time.monotonic() + timeout_s, time.monotonic()
    while time.monotonic() < deadline:
        if status.count() and status.first.is_visible():
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return True
        page.wait_for_timeout(poll_ms)
    return False
