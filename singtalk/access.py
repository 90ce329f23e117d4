"""Who may do what in the app: the team password's hash, sign-in throttling, team e-mail lists, bind addresses.

No Streamlit here: ``appkit/access.py`` is the glue. A password hash is one string,
``scrypt$<n>$<r>$<p>$<salt b64>$<key b64>``, made by :func:`hash_password` (``singtalk team-password``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from collections import OrderedDict
from typing import Callable

from .errors import SingtalkError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 15, 8, 1  # ~32 MB and ~0.1 s per check
KEY_BYTES = 32
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class BadPasswordHash(SingtalkError):
    """The configured team password hash is not a string :func:`hash_password` made."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES,
                          maxmem=2 * 128 * r * n + 2 ** 20)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash of ``password`` with its parameters, as one string."""
    if not password:
        raise SingtalkError("The team password cannot be empty.")
    salt = secrets.token_bytes(16)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """``(n, r, p, salt, key)`` of a stored hash; :class:`BadPasswordHash` unless :func:`hash_password` made it."""
    bad = BadPasswordHash("The team password hash is not in the form `singtalk team-password` prints.")
    try:
        scheme, n, r, p, salt, key = stored.strip().split("$")
        n, r, p = int(n), int(r), int(p)
        salt, key = base64.b64decode(salt, validate=True), base64.b64decode(key, validate=True)
    except (ValueError, AttributeError) as err:
        raise bad from err
    sane = 2 <= n <= 2 ** 20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16
    if scheme != "scrypt" or not sane or not salt or not key:
        raise bad
    return n, r, p, salt, key


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison); :class:`BadPasswordHash` if malformed."""
    n, r, p, salt, key = _parse_hash(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), key)


def is_loopback(address: str | None) -> bool:
    """Whether a server bound to ``address`` is reachable from this machine only (unset or ``0.0.0.0``: no)."""
    if not address:
        return False
    host = address.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def email_allowed(email: str | None, allowed: list[str] | tuple[str, ...], *, verified: bool | None = None) -> bool:
    """Whether a signed-in ``email`` is on the team list: exact addresses or ``@domain`` entries.

    An address the provider marks unverified (``verified is False``) never is; an empty list allows nobody.
    """
    if not email or verified is False or "@" not in email:
        return False
    email = email.strip().lower()
    for entry in allowed:
        entry = str(entry).strip().lower()
        if entry and (email == entry or (entry.startswith("@") and email.endswith(entry))):
            return True
    return False


class Throttle:
    """Failed attempts per key (a session, a client address), with an exponential wait after ``free`` failures.

    After ``free`` failures each further one doubles the wait (``base_s``, ``2 * base_s``… up to ``max_s``).
    A key is forgotten ``forget_s`` after its last failure, and at most ``max_keys`` keys are kept (oldest
    dropped), so a flood of addresses cannot grow it without bound. Thread-safe; one is shared by all sessions.
    """

    def __init__(self, *, free: int = 5, base_s: float = 2.0, max_s: float = 900.0, forget_s: float = 3600.0,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.free, self.base_s, self.max_s, self.forget_s, self.max_keys = free, base_s, max_s, forget_s, max_keys
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (count, last failure)

    def _entry(self, key: str, now: float) -> tuple[int, float]:
        count, last = self._failures.get(key, (0, 0.0))
        if count and now - last > self.forget_s:
            self._failures.pop(key, None)
            return 0, 0.0
        return count, last

    def _wait(self, count: int) -> float:
        return 0.0 if count < self.free else min(self.max_s, self.base_s * 2 ** (count - self.free))

    def wait_s(self, *keys: str) -> float:
        """Seconds before any of ``keys`` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            waits = [last + self._wait(count) - now for count, last in (self._entry(k, now) for k in keys) if count]
        return max([0.0, *waits])

    def failed(self, *keys: str) -> None:
        """Count a failed attempt against each of ``keys``."""
        now = self.clock()
        with self._lock:
            for key in keys:
                count, _ = self._entry(key, now)
                self._failures[key] = (count + 1, now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, *keys: str) -> None:
        """Forget the failures of ``keys``."""
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


def password_hash_from_env() -> str | None:
    """``$SINGTALK_TEAM_PASSWORD_HASH`` when set and not blank."""
    value = os.environ.get("SINGTALK_TEAM_PASSWORD_HASH", "").strip()
    return value or None
