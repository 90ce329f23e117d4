"""The team password hash, sign-in throttling, team e-mail lists, bind addresses, typed paths (no Streamlit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from singtalk.access import BadPasswordHash, Throttle, email_allowed, hash_password, is_loopback, verify_password
from singtalk.errors import SingtalkError
from singtalk.roots import REFUSED, PathRefused, all_inside_roots, inside_roots, shown_path

REPO = Path(__file__).resolve().parent.parent
FAST = {"n": 2 ** 10}  # cheap parameters for the tests that do not measure the default


def test_hash_is_salted_carries_its_parameters_and_verifies():
    first, second = hash_password("correct horse", **FAST), hash_password("correct horse", **FAST)
    assert first != second, "a fresh salt each time"
    assert first.startswith("scrypt$1024$8$1$") and first.count("$") == 5
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horsE", first) and not verify_password("", first)


def test_default_hash_is_slow_enough():
    import time

    stored = hash_password("pw")
    assert stored.startswith("scrypt$32768$8$1$")
    started = time.perf_counter()
    assert verify_password("pw", stored)
    assert time.perf_counter() - started > 0.02, "scrypt at the default cost takes tens of milliseconds"


def test_verification_compares_in_constant_time(monkeypatch):
    import hmac

    seen = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: seen.append((a, b)) or real(a, b))
    verify_password("x", hash_password("y", **FAST))
    assert len(seen) == 1


@pytest.mark.parametrize("stored", ["", "plain-text-password", "scrypt$1024$8$1$salt", "bcrypt$1$2$3$AAAA$AAAA",
                                    "scrypt$3$8$1$AAAA$AAAA", "scrypt$1024$8$1$!!$AAAA"])
def test_a_malformed_hash_is_a_configuration_error_not_a_match(stored):
    with pytest.raises(BadPasswordHash):
        verify_password("anything", stored)


def test_an_empty_password_cannot_be_hashed():
    with pytest.raises(SingtalkError):
        hash_password("")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_throttle_waits_exponentially_after_five_failures_per_key():
    clock = Clock()
    throttle = Throttle(free=5, base_s=2, max_s=60, clock=clock)
    for _ in range(4):
        throttle.failed("session:a", "address:1.2.3.4")
    assert throttle.wait_s("session:a", "address:1.2.3.4") == 0
    throttle.failed("session:a", "address:1.2.3.4")
    assert throttle.wait_s("session:a") == 2
    throttle.failed("session:a")
    assert throttle.wait_s("session:a") == 4 and throttle.wait_s("address:1.2.3.4") == 2
    assert throttle.wait_s("session:b", "address:1.2.3.4") == 2, "a new session from the same address waits too"
    assert throttle.wait_s("session:b", "address:5.6.7.8") == 0
    clock.now += 3
    assert throttle.wait_s("session:a") == 1
    for _ in range(20):
        throttle.failed("session:a")
    assert throttle.wait_s("session:a") == 60, "capped"
    throttle.succeeded("session:a")
    assert throttle.wait_s("session:a") == 0


def test_throttle_forgets_old_failures_and_bounds_its_keys():
    clock = Clock()
    throttle = Throttle(free=1, base_s=10, forget_s=100, max_keys=3, clock=clock)
    throttle.failed("k")
    assert throttle.wait_s("k") == 10
    clock.now += 101
    assert throttle.wait_s("k") == 0
    for key in "abcde":
        throttle.failed(key)
    assert len(throttle._failures) == 3 and throttle.wait_s("a") == 0 and throttle.wait_s("e") == 10


@pytest.mark.parametrize("address,loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                              ("[::1]", True), ("127.0.0.2", True), ("0.0.0.0", False),
                                              ("", False), (None, False), ("::", False), ("192.168.1.20", False),
                                              ("example.org", False)])
def test_only_loopback_binds_count_as_local(address, loopback):
    assert is_loopback(address) is loopback


@pytest.mark.parametrize("email,verified,allowed", [("ana@team.org", None, True), ("ANA@team.org", True, True),
                                                    ("bo@team.org", None, True), ("eve@evil.org", None, False),
                                                    ("ana@team.org", False, False), ("eve@notteam.org", None, False),
                                                    ("", None, False), (None, None, False)])
def test_team_emails_exact_or_by_domain(email, verified, allowed):
    assert email_allowed(email, ["ana@team.org", "@team.org"], verified=verified) is allowed
    assert not email_allowed(email, [], verified=verified), "no list: nobody"


def test_team_password_command_prints_a_hash_that_verifies():
    done = subprocess.run([sys.executable, "-m", "singtalk.cli", "team-password"], input="s3cret\n",
                          capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    printed = done.stdout.strip()
    assert "s3cret" not in printed and verify_password("s3cret", printed)


# --------------------------------------------------------------------------- typed paths stay inside the roots
@pytest.fixture()
def roots(tmp_path, monkeypatch):
    data, work, models = (tmp_path / n for n in ("data", "work", "models"))
    for folder in (data, work, models):
        folder.mkdir()
    monkeypatch.setenv("SINGTALK_DATA", str(data))
    monkeypatch.setenv("SINGTALK_WORK", str(work))
    monkeypatch.setenv("SINGTALK_MODELS", str(models))
    return data, work, models


def test_paths_inside_the_roots_come_back_resolved(roots):
    data, work, models = roots
    (data / "singing").mkdir()
    assert inside_roots(str(data / "singing")) == (data / "singing").resolve()
    assert inside_roots(f"  {work}/tables/../tables  ") == (work / "tables").resolve(), "need not exist yet"
    assert inside_roots(models) == models.resolve()
    (work / "corpus").symlink_to(data)
    assert inside_roots(work / "corpus" / "singing") == (data / "singing").resolve(), "a link between roots"


@pytest.mark.parametrize("typed", ["/etc/passwd", "../..", "/", "~", "", "   ", "a\x00b"])
def test_paths_outside_the_roots_are_refused_without_server_detail(roots, typed):
    with pytest.raises(PathRefused) as refused:
        inside_roots(typed)
    assert "/" not in str(refused.value) and str(roots[0]) not in str(refused.value)


def test_climbing_out_of_a_root_and_symlinks_out_are_refused(roots, tmp_path):
    data, work, _ = roots
    outside = tmp_path / "outside"
    outside.mkdir()
    (work / "escape").symlink_to(outside)
    (data / "passwd").symlink_to("/etc/passwd")
    for typed in (f"{data}/../outside", work / "escape", work / "escape" / "x.csv", data / "passwd"):
        with pytest.raises(PathRefused, match="outside the folders"):
            inside_roots(typed)
    assert str(REFUSED).count("/") == 0


def test_visitors_see_paths_relative_to_the_data_folder_or_bare_names(roots):
    data = roots[0]
    assert shown_path(str(data / "singing" / "a.flac")) == "singing/a.flac"
    assert shown_path("talking/b.flac") == "talking/b.flac"
    assert shown_path("/srv/private/team/c.wav") == "c.wav"


def test_a_labelled_set_naming_files_outside_the_roots_is_refused_with_a_count(roots, tmp_path):
    data = roots[0]
    all_inside_roots([data / "a.flac", str(data / "b.flac")])
    with pytest.raises(PathRefused, match="^2 of the listed files are outside") as refused:
        all_inside_roots([data / "a.flac", "/etc/passwd", tmp_path / "x.wav"])
    assert "/" not in str(refused.value)
