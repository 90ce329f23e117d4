"""Paths typed into the app stay inside its roots: the data folder, the work folder, the model store."""

from __future__ import annotations

from pathlib import Path

from .config import data_dir, models_dir, work_dir
from .errors import SingtalkError

REFUSED = ("That path is outside the folders this app may use (the data folder, the work folder and the "
           "model store). Use a path inside one of them.")


class PathRefused(SingtalkError):
    """A typed path resolves outside the app's roots; the message names no server folder."""


def app_roots() -> list[Path]:
    """The folders typed paths may point into, resolved (symlinks followed)."""
    return [Path(root).expanduser().resolve() for root in (data_dir(), work_dir(), models_dir())]


def inside_roots(typed: str | Path, roots: list[Path] | None = None) -> Path:
    """``typed`` resolved (``~``, ``..`` and symlinks followed) if it lies inside one of ``roots``, else
    :class:`PathRefused`. A relative path is taken from the working directory, as before."""
    roots = app_roots() if roots is None else [Path(r).resolve() for r in roots]
    text = str(typed).strip()
    if not text or "\x00" in text:
        raise PathRefused("Type a path inside the data folder, the work folder or the model store.")
    path = Path(text).expanduser()
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop, a name too long
        raise PathRefused(REFUSED) from err
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise PathRefused(REFUSED)
    return resolved


def shown_path(path: str) -> str:
    """A clip path as a visitor may see it: relative to the data folder, else the bare file name."""
    candidate, data = Path(str(path)), Path(data_dir()).expanduser()
    if not candidate.is_absolute():
        return str(candidate)
    for base in (data, data.resolve()):
        if candidate.is_relative_to(base):
            return str(candidate.relative_to(base))
    return candidate.name


def all_inside_roots(paths, roots: list[Path] | None = None) -> None:
    """:class:`PathRefused` if any of ``paths`` (a labelled set's clips) resolves outside ``roots``."""
    roots = app_roots() if roots is None else [Path(r).resolve() for r in roots]
    outside = 0
    for path in paths:
        try:
            inside_roots(path, roots)
        except PathRefused:
            outside += 1
    if outside:
        raise PathRefused(f"{outside} of the listed files are outside the folders this app may use (the data "
                          "folder, the work folder and the model store). Move them inside one of them.")
