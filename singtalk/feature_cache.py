"""Feature vectors kept on disk as they are computed, so no file is analysed twice.

One mechanism for every place that turns labelled files into vectors: ``singtalk features`` and the
app's table build (:func:`singtalk.dataset.build_tables`, cache ``OUT/feature_cache.jsonl``), and
``check`` / ``retrain`` (:func:`singtalk.review.check`, cache beside the wrong list).

**Key.** A vector is stored under a hash of the file's bytes (BLAKE2b, 128 bits; both files of a
MIR-1K backing clip) and the feature schema (:data:`singtalk.features.FEATURE_VERSION` and the
feature names). The content, not the name, decides: a corpus moved or copied elsewhere, or one clip
listed under two names, is not analysed again, and a file rewritten in place is, even at the same
size. Hashing costs about 0.1 ms per corpus clip (a clip's features cost about 100 ms), and is paid
only once per file: each record also carries the file's path, size and modification time, so a
later run finds an unchanged file by a ``stat`` alone. (A file rewritten with the same size within
the same nanosecond stamp would be taken for the old one.)

**File.** JSON Lines, one record per vector (``key``, ``schema``, ``path``, ``stamp``, ``vector`` as
base64 of little-endian float32, exactly the computed numbers). Vectors are appended in chunks while
a build runs (every :data:`SAVE_EVERY_S` seconds or :data:`CHUNK` vectors, whichever comes first),
each chunk one ``write`` under a lock and flushed to disk, so Ctrl-C loses nothing finished and a
SIGKILL or a power cut loses at most the last chunk. A torn last line is skipped when read. Records
of another schema, or repeated, are dropped when they outnumber the live ones (the file is then
rewritten atomically). Files that fail are not stored: a rerun tries them again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import atomic

CHUNK = 256
"""Vectors appended in one write at most."""

SAVE_EVERY_S = 5.0
"""Seconds of work at most between two appends: what a SIGKILL can cost."""

COMPACT_MIN_DEAD = 100
"""Dead records (another schema, repeats) tolerated before the file is rewritten without them."""

Progress = Callable[[int, int], None]


def schema_id(feature_version: str, feature_names: Sequence[str]) -> str:
    """``<feature version>:<hash of the feature names>``: vectors of another schema are never mixed in."""
    names = hashlib.blake2b(",".join(map(str, feature_names)).encode(), digest_size=4).hexdigest()
    return f"{feature_version}:{names}"


def source_files(path: str) -> list[str]:
    """The files a table's clip is made of: the file itself, or a backing clip's mixture and vocal."""
    from .dataset import backing_mixture, backing_vocal

    mixture = backing_mixture(path)
    return [str(path)] if mixture is None else [mixture, str(backing_vocal(Path(mixture)))]


def stamp(path: str) -> str | None:
    """``size:mtime_ns`` of each of the clip's files (``;``-joined), None when one cannot be read."""
    try:
        stats = [os.stat(f) for f in source_files(path)]
    except OSError:
        return None
    return ";".join(f"{s.st_size}:{s.st_mtime_ns}" for s in stats)


def content_key(path: str) -> str | None:
    """BLAKE2b of the clip's bytes (of each of its files, in order), None when one cannot be read."""
    whole = hashlib.blake2b(digest_size=16)
    try:
        for name in source_files(path):
            with open(name, "rb") as handle:
                whole.update(hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).digest())
    except OSError:
        return None
    return whole.hexdigest()


def _encode(vector: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str, size: int) -> np.ndarray | None:
    try:
        vector = np.frombuffer(base64.b64decode(text, validate=True), dtype="<f4").astype(np.float32)
    except (ValueError, TypeError):
        return None
    return vector if vector.size == size else None


class FeatureCache:
    """Raw feature vectors of one schema, keyed by file content, in a JSON Lines file (see the module).

    ``path`` None keeps them in memory only. :meth:`get` and :meth:`put` take a clip's path;
    :meth:`put` appends to the file in chunks by itself, :meth:`save` writes what is pending now.
    ``reused`` and ``computed`` count this object's hits and new vectors.
    """

    def __init__(self, path: str | os.PathLike | None, *, feature_version: str, feature_names: Sequence[str],
                 clock: Callable[[], float] = time.monotonic):
        self.path = Path(path) if path else None
        self.schema = schema_id(str(feature_version), feature_names)
        self.size = len(feature_names)
        self.clock = clock
        self._vectors: dict[str, np.ndarray] = {}  # content key -> vector
        self._keys: dict[tuple[str, str], str] = {}  # (path, stamp) -> content key
        self._pending: list[dict] = []
        self._dead = 0  # records in the file that are of no use to this schema
        self._last_save = clock()
        self.reused = self.computed = 0
        if self.path is not None:
            self._load()

    def __len__(self) -> int:
        return len(self._vectors)

    # -- reading --------------------------------------------------------------
    def _records(self):
        """The file's records as dicts; a line that does not parse (a torn last one) is skipped and counted."""
        try:
            with open(self.path, "rb") as handle:
                lines = handle.read().splitlines()
        except OSError:
            return
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            yield record if isinstance(record, dict) else None

    def _load(self) -> None:
        for record in self._records():
            key = record.get("key") if record is not None and record.get("schema") == self.schema else None
            vector = _decode(record.get("vector", ""), self.size) if isinstance(key, str) else None
            if vector is None or key in self._vectors:
                self._dead += 1
            if vector is None:
                continue
            self._vectors[key] = vector
            if record.get("path") and record.get("stamp"):
                self._keys[(str(record["path"]), str(record["stamp"]))] = key

    def _identify(self, path: str) -> tuple[str | None, str | None]:
        """``(content key, stamp)`` of ``path``: the key from the stamp when this file was seen unchanged, else
        by hashing it; ``(None, None)`` when it cannot be read."""
        now = stamp(path)
        if now is None:
            return None, None
        key = self._keys.get((path, now))
        if key is None:
            key = content_key(path)
            if key is not None:
                self._keys[(path, now)] = key
        return key, now

    def get(self, path: str) -> np.ndarray | None:
        """The stored vector of ``path``'s content, or None."""
        key, _ = self._identify(str(path))
        vector = self._vectors.get(key) if key is not None else None
        if vector is not None:
            self.reused += 1
        return vector

    # -- writing --------------------------------------------------------------
    def put(self, path: str, vector: np.ndarray | None) -> None:
        """Keep ``vector`` for ``path``'s content; appended to the file with the next chunk."""
        path = str(path)
        key, now = self._identify(path) if vector is not None else (None, None)
        if key is None:
            return
        vector = np.asarray(vector, dtype=np.float32)
        self._vectors[key] = vector
        self.computed += 1
        if self.path is not None:
            self._pending.append({"key": key, "schema": self.schema, "path": path, "stamp": now,
                                  "vector": _encode(vector)})
            if len(self._pending) >= CHUNK or self.clock() - self._last_save >= SAVE_EVERY_S:
                self.save()

    def save(self) -> None:
        """Append the pending vectors now (one write, flushed to disk); rewrite the file when mostly dead."""
        self._last_save = self.clock()
        if self.path is None or not self._pending:
            return
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in self._pending).encode()
        with atomic.locked(self.path):
            with open(self.path, "ab+") as handle:
                if handle.tell() > 0:
                    handle.seek(-1, os.SEEK_END)
                    if handle.read(1) != b"\n":  # a torn last line: it stays a line of its own, skipped
                        text = b"\n" + text
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            self._pending.clear()
            if self._dead >= COMPACT_MIN_DEAD and self._dead > len(self._vectors):
                self._compact()

    def _compact(self) -> None:
        """Rewrite the file with one record per live vector of this schema (under the caller's lock)."""
        live: dict[str, dict] = {}
        for record in self._records():
            if record is not None and record.get("schema") == self.schema and isinstance(record.get("key"), str) \
                    and _decode(record.get("vector", ""), self.size) is not None:
                live[record["key"]] = record
        atomic.write_text(self.path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in live.values()))
        self._dead = 0


def features_for(paths: Sequence[str], *, cache: FeatureCache | None = None, jobs: int = 1,
                 progress: Progress | None = None, cluster: str | None = None,
                 notice: Callable[[str], None] | None = None, stop_event: threading.Event | None = None
                 ) -> tuple[list[np.ndarray | None], list[str]]:
    """Raw feature vectors (or None) and error strings for ``paths``, computing only those ``cache`` lacks.

    New vectors go into ``cache`` as they finish (appended to its file in chunks), also when the run is
    interrupted (Ctrl-C), stopped (``stop_event`` set: the files not done yet are left None) or fails
    part-way. ``jobs`` and ``cluster`` are as for :func:`singtalk.dataset.extract_each`;
    ``progress(done, total)`` counts the stored vectors as done at once, so its rate is that of the work;
    ``notice`` hears how many were stored before, and of lost workers.
    """
    from .dataset import extract_each

    paths = [str(p) for p in paths]
    vectors: list = [None] * len(paths)
    errors = [""] * len(paths)
    todo = []
    for i, path in enumerate(paths):
        vectors[i] = cache.get(path) if cache is not None else None
        if vectors[i] is None:
            todo.append(i)
    stored = len(paths) - len(todo)
    if stored and notice:
        where = f" ({cache.path})" if cache.path else ""
        notice(f"{stored} of {len(paths)} files' features kept from an earlier run{where}; "
               f"{len(todo)} to compute")
    if progress and stored:
        progress(stored, len(paths))
    results = extract_each([paths[i] for i in todo], jobs=jobs, cluster=cluster, notice=notice)
    try:
        for done, (j, vector, error) in enumerate(results, start=1):
            i = todo[j]
            vectors[i], errors[i] = vector, error
            if cache is not None:
                cache.put(paths[i], vector)
            if progress:
                progress(stored + done, len(paths))
            if stop_event is not None and stop_event.is_set():
                break
    finally:
        results.close()  # stops the workers when the loop ends early
        if cache is not None:
            cache.save()
    return vectors, errors
