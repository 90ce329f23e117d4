"""The model store: immutable version folders, an atomic CURRENT pointer, a lock.

Layout under the store root (default :func:`singtalk.config.models_dir`)::

    CURRENT                      one line: the serving version (replaced with os.replace)
    HISTORY.json                 the last promotions/rollbacks: version, previous, action, at
    store.lock                   present while a job writes: {pid, holder, since, host, token}
    store.lock.guard             flock'ed only while a stale lock is being broken
    versions/
      20261125T140501Z/          UTC timestamp [+ "-suffix"]; never modified once in place
        model.keras  scaler.json  metadata.json
      .tmp-<pid>-<hex>/          a save in progress (ignored by readers, swept later)

Why not a ``current/`` folder: a model is three files (Keras zip, scaler,
metadata) that must change together, and no rename swaps a folder's content
atomically. Here a save fills a temp folder and renames it into ``versions/``
(atomic), and serving switches by replacing the small CURRENT file (atomic). A
reader reads CURRENT once, then an immutable folder, so it always gets a
consistent model — even while a save is killed halfway. The previous version is
never touched, so it *is* the timestamped backup; rollback is a pointer swap.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .atomic import write_json, write_text
from .errors import ModelError, StoreLocked
from .scaling import MinMaxScaling

CURRENT_FILE = "CURRENT"
HISTORY_FILE = "HISTORY.json"
LOCK_FILE = "store.lock"
VERSIONS_DIR = "versions"
MODEL_FILE, SCALER_FILE, METADATA_FILE = "model.keras", "scaler.json", "metadata.json"
VERSION_FILES = (MODEL_FILE, SCALER_FILE, METADATA_FILE)
NET_FILE = "model.npz"  # the same network in NumPy (singtalk.numpy_net), when it could be exported
METADATA_FORMAT = 1
HISTORY_KEEP = 100
SAVE_PAUSE_ENV = "SINGTALK_TEST_SAVE_PAUSE"  # tests only: sleep between save steps (see _pause)
_VERSION_RE = re.compile(r"^\d{8}T\d{6}Z(-[A-Za-z0-9_.-]+)?$")

# Locks held by this process: token -> thread ident, so a thread can re-enter its own lock.
_HELD: dict[str, dict] = {}
_HELD_GUARD = threading.Lock()


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def make_metadata(
    *,
    feature_version: str,
    feature_names: Sequence[str],
    class_names: Sequence[str],
    metrics: dict | None = None,
    trained_on: dict | None = None,
    config: dict | None = None,
    parent: str | None = None,
    **extra: Any,
) -> dict:
    """Metadata for :meth:`ModelStore.save`; ``created`` and ``version`` are filled in on save."""
    return {
        "feature_version": feature_version,
        "feature_names": [str(n) for n in feature_names],
        "class_names": [str(c) for c in class_names],
        "metrics": dict(metrics or {}),
        "trained_on": dict(trained_on or {}),
        "config": dict(config or {}),
        "parent": parent,
        **extra,
    }


@dataclass
class VersionInfo:
    version: str
    created: str | None
    metrics: dict[str, float]
    is_current: bool
    note: str = ""
    parent: str | None = None
    feature_version: str | None = None


class LoadedModel:
    """A compatible model with its scaler and metadata; ``predict_proba`` takes raw (unscaled) features.

    Inference runs on ``net`` (the NumPy copy of the network, :mod:`singtalk.numpy_net`) when the version
    has one, so classifying never imports TensorFlow; ``model`` (the Keras network, for training and
    fine-tuning) is loaded on first use.
    """

    def __init__(self, *, scaler: MinMaxScaling, metadata: dict, version: str, model: Any = None,
                 net=None, keras_loader=None):
        if model is None and net is None:
            raise ValueError("a LoadedModel needs a Keras model or a NumPy network")
        self.scaler, self.metadata, self.version = scaler, metadata, version
        self.net = net
        self._model, self._keras_loader = model, keras_loader
        self._model_lock = threading.Lock()
        self.class_names: list[str] = list(metadata["class_names"])
        self.feature_names: list[str] = list(metadata["feature_names"])

    @property
    def model(self):
        """The Keras network (loaded now if only the NumPy copy was)."""
        with self._model_lock:
            if self._model is None:
                self._model = self._keras_loader()
            return self._model

    def predict_proba(self, features) -> np.ndarray:
        scaled = self.scaler.transform(features)
        if self.net is not None:
            return self.net(scaled)
        from .model import predict_proba

        return predict_proba(self.model, scaled)


def _pause(stage: str) -> None:
    """Test hook: ``$SINGTALK_TEST_SAVE_PAUSE`` = ``"30"`` (every stage) or ``"renamed:30"`` (one stage)."""
    value = os.environ.get(SAVE_PAUSE_ENV, "")
    if not value:
        return
    where, _, seconds = value.rpartition(":")
    if where in ("", stage):
        time.sleep(float(seconds))


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited but unreaped child still answers kill(0)
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class ModelStore:
    """Versioned model store rooted at ``root``.

    ``expected_feature_version`` / ``expected_feature_names`` set the schema a
    model must match to be loaded or promoted; by default they come from
    :mod:`singtalk.features` (imported when first needed).
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        expected_feature_version: str | None = None,
        expected_feature_names: Sequence[str] | None = None,
    ):
        if root is None:
            from .config import models_dir

            root = models_dir()
        self.root = Path(root)
        self.expected_feature_version = expected_feature_version
        self.expected_feature_names = list(expected_feature_names) if expected_feature_names is not None else None

    # -- paths ------------------------------------------------------------------
    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS_DIR

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    def version_dir(self, version: str) -> Path:
        if not _VERSION_RE.match(version or ""):
            raise ModelError(f"{version!r} is not a model version name (like 20261125T140501Z).")
        return self.versions_dir / version

    # -- reading ----------------------------------------------------------------
    def current_version(self) -> str | None:
        """The serving version named by CURRENT, or None when the store is empty."""
        try:
            name = (self.root / CURRENT_FILE).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def _is_complete(self, version: str) -> bool:
        folder = self.versions_dir / version
        return all((folder / name).is_file() for name in VERSION_FILES)

    def read_metadata(self, version: str) -> dict:
        path = self.version_dir(version) / METADATA_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ModelError(f"Model version {version} not found in {self.versions_dir}.") from err
        except (OSError, ValueError) as err:
            raise ModelError(f"Model version {version}: unreadable metadata ({err}).") from err

    def list_versions(self) -> list[VersionInfo]:
        """Complete versions, newest first."""
        current = self.current_version()
        infos = []
        if not self.versions_dir.is_dir():
            return infos
        for folder in self.versions_dir.iterdir():
            if not _VERSION_RE.match(folder.name) or not self._is_complete(folder.name):
                continue
            try:
                meta = self.read_metadata(folder.name)
            except ModelError:
                continue
            infos.append(VersionInfo(
                version=folder.name,
                created=meta.get("created"),
                metrics=_metrics_summary(meta.get("metrics") or {}),
                is_current=folder.name == current,
                note=meta.get("note", ""),
                parent=meta.get("parent"),
                feature_version=meta.get("feature_version"),
            ))
        infos.sort(key=lambda info: (info.created or "", info.version), reverse=True)
        return infos

    def history(self) -> list[dict]:
        """Promotions and rollbacks, oldest first (the last :data:`HISTORY_KEEP`)."""
        try:
            data = json.loads((self.root / HISTORY_FILE).read_text(encoding="utf-8"))
            return list(data.get("history", []))
        except (OSError, ValueError, AttributeError):
            return []

    def _expected(self, feature_version, feature_names):
        if feature_version is None and feature_names is None:
            feature_version, feature_names = self.expected_feature_version, self.expected_feature_names
        if feature_version is None and feature_names is None:
            from . import features

            feature_version, feature_names = features.FEATURE_VERSION, list(features.FEATURE_NAMES)
        return feature_version, (list(feature_names) if feature_names is not None else None)

    def check_compatible(
        self,
        version: str,
        metadata: dict,
        *,
        expected_feature_version: str | None = None,
        expected_feature_names: Sequence[str] | None = None,
    ) -> None:
        """Raise ModelError unless ``metadata`` matches this code's feature schema and has classes."""
        want_version, want_names = self._expected(expected_feature_version, expected_feature_names)

        def advice() -> str:
            compatible = [
                info.version for info in self.list_versions()
                if info.version != version and info.feature_version == want_version
            ][:3]
            text = "Retrain on the current features, or promote a compatible version"
            return text + (f" ({', '.join(compatible)})." if compatible else ".")

        have_version = metadata.get("feature_version")
        if want_version is not None and have_version != want_version:
            raise ModelError(
                f"Model version {version} was trained on feature schema {have_version!r}, "
                f"but this code computes {want_version!r}. {advice()}"
            )
        names = list(metadata.get("feature_names") or [])
        if want_names is not None and names != want_names:
            missing = [n for n in want_names if n not in names]
            extra = [n for n in names if n not in want_names]
            detail = f"missing {missing[:5]}, unexpected {extra[:5]}" if (missing or extra) else "same names, different order"
            raise ModelError(
                f"Model version {version} expects {len(names)} features, this code computes "
                f"{len(want_names)} ({detail}). {advice()}"
            )
        classes = metadata.get("class_names") or []
        if not classes or len(classes) < 2:
            raise ModelError(f"Model version {version} names no class list (class_names={classes!r}); it cannot be used.")

    def load(
        self,
        version: str | None = None,
        *,
        expected_feature_version: str | None = None,
        expected_feature_names: Sequence[str] | None = None,
    ) -> LoadedModel:
        """Load ``version`` (default: CURRENT) after checking it fits this code; ModelError otherwise."""
        version = version or self.current_version()
        if version is None:
            raise ModelError(
                f"No model is installed in {self.root} (no {CURRENT_FILE} file). "
                "Train one, or restore the shipped models/ folder."
            )
        folder = self.version_dir(version)
        missing = [name for name in VERSION_FILES if not (folder / name).is_file()]
        if missing:
            raise ModelError(f"Model version {version} in {self.versions_dir} is incomplete: missing {missing}.")
        metadata = self.read_metadata(version)
        self.check_compatible(
            version, metadata,
            expected_feature_version=expected_feature_version, expected_feature_names=expected_feature_names,
        )
        scaler = MinMaxScaling.load(folder / SCALER_FILE)
        if scaler.feature_names != list(metadata["feature_names"]):
            raise ModelError(f"Model version {version}: its scaler and metadata list different features; retrain it.")
        n_features, n_classes = len(scaler.feature_names), len(metadata["class_names"])

        def keras_model():
            model = _load_keras(folder / MODEL_FILE, version)
            _check_shape(version, "network", model.inputs[0].shape[-1], model.outputs[0].shape[-1],
                         n_features, n_classes)
            return model

        net = _load_net(folder / NET_FILE, version)
        if net is None:
            return LoadedModel(model=keras_model(), scaler=scaler, metadata=metadata, version=version)
        _check_shape(version, f"network in {NET_FILE}", net.n_inputs, net.n_outputs, n_features, n_classes)
        return LoadedModel(net=net, keras_loader=keras_model, scaler=scaler, metadata=metadata, version=version)

    # -- writing ----------------------------------------------------------------
    def save(
        self,
        model,
        scaler: MinMaxScaling,
        metadata: dict,
        *,
        promote: bool,
        note: str = "",
        suffix: str | None = None,
        extra_files: dict[str, str | bytes] | None = None,
    ) -> str:
        """Write a new version folder atomically; if ``promote``, make it CURRENT. Returns the version.

        ``extra_files`` (name → text or bytes: plots, reports) are written into the folder before it appears.
        """
        meta = dict(metadata)
        for key in ("feature_version", "feature_names", "class_names"):
            if not meta.get(key):
                raise ModelError(f"Cannot save a model without metadata[{key!r}].")
        if list(meta["feature_names"]) != list(scaler.feature_names or []):
            raise ModelError("Cannot save: the scaler's feature names differ from metadata['feature_names'].")
        n_in, n_out = int(model.inputs[0].shape[-1]), int(model.outputs[0].shape[-1])
        if n_in != len(meta["feature_names"]) or n_out != len(meta["class_names"]):
            raise ModelError(
                f"Cannot save: the network takes {n_in} features / gives {n_out} classes but the metadata "
                f"lists {len(meta['feature_names'])} features / {len(meta['class_names'])} classes."
            )
        if suffix is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", suffix):
            raise ValueError(f"version suffix must be 1-40 of [A-Za-z0-9_.-], got {suffix!r}")
        with self.lock("save"):
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            self._sweep_temp()
            version = self._new_version_name(suffix)
            if not meta.get("parent"):
                meta["parent"] = self.current_version()
            meta.update({
                "format": METADATA_FORMAT,
                "version": version,
                "created": utc_now_iso(),
                "note": note or meta.get("note", ""),
            })
            meta.setdefault("metrics", {})
            meta.setdefault("trained_on", {})
            meta.setdefault("config", {})
            tmp = self.versions_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                # Keras 2.12 writes HDF5 for ".keras" unless asked for the real (zip) format.
                model.save(str(tmp / MODEL_FILE), save_format="keras_v3")
                _fsync_path(tmp / MODEL_FILE)
                export_net(model, tmp / NET_FILE)
                _pause("model_written")
                scaler.save(tmp / SCALER_FILE)
                _pause("scaler_written")
                for name, content in (extra_files or {}).items():
                    if name in VERSION_FILES or Path(name).name != name:
                        raise ValueError(f"extra file name {name!r} is reserved or not a plain file name")
                    data = content.encode("utf-8") if isinstance(content, str) else content
                    (tmp / name).write_bytes(data)
                write_json(tmp / METADATA_FILE, meta)
                _fsync_path(tmp)
                _pause("metadata_written")
                os.rename(tmp, self.versions_dir / version)
                _fsync_path(self.versions_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _pause("renamed")
            if promote:
                self._set_current(version, action="save")
        return version

    def promote(self, version: str) -> str:
        """Make ``version`` the serving one (checked for compatibility first). Returns it."""
        with self.lock("promote"):
            return self._switch_to(version, action="promote")

    def rollback(self, version: str | None = None) -> str:
        """Serve ``version``, by default the one that was current before the current one."""
        with self.lock("rollback"):
            target = version or self.previous_version()
            if target is None:
                raise ModelError("No earlier model version to roll back to.")
            return self._switch_to(target, action="rollback")

    def delete(self, version: str) -> str:
        """Remove ``version``'s folder (e.g. a retrain the verdict refused); never the serving one.

        The folder is renamed to a temp name first (atomic: readers see it whole or not at all), then
        removed; a removal killed midway leaves only a temp folder, swept by the next save.
        """
        with self.lock("delete"):
            folder = self.version_dir(version)  # validates the name
            if version == self.current_version():
                raise ModelError(f"Model version {version} is serving (CURRENT); serve another version "
                                 "before deleting it.")
            if not folder.is_dir():
                raise ModelError(f"Model version {version} not found in {self.versions_dir}.")
            doomed = self.versions_dir / f".tmp-{os.getpid()}-del-{uuid.uuid4().hex[:8]}"
            os.rename(folder, doomed)
            _fsync_path(self.versions_dir)
            shutil.rmtree(doomed, ignore_errors=True)
        return version

    def previous_version(self) -> str | None:
        """The version that was serving before the current one (from HISTORY, else by date)."""
        current = self.current_version()
        for entry in reversed(self.history()):
            if entry.get("version") == current:
                previous = entry.get("previous")
                if previous and previous != current and self._is_complete(previous):
                    return previous
                break
        versions = [info for info in self.list_versions() if not info.is_current]
        created = next((info.created for info in self.list_versions() if info.is_current), None)
        older = [info for info in versions if created is None or (info.created or "") <= created]
        return older[0].version if older else None

    def _switch_to(self, version: str, *, action: str) -> str:
        self.version_dir(version)  # validates the name
        if not self._is_complete(version):
            raise ModelError(f"Model version {version} does not exist or is incomplete in {self.versions_dir}.")
        self.check_compatible(version, self.read_metadata(version))
        if self.current_version() != version:
            self._set_current(version, action=action)
        return version

    def _set_current(self, version: str, *, action: str) -> None:
        previous = self.current_version()
        write_text(self.root / CURRENT_FILE, version + "\n")
        entries = self.history()
        entries.append({"version": version, "previous": previous, "action": action, "at": utc_now_iso()})
        write_json(self.root / HISTORY_FILE, {"history": entries[-HISTORY_KEEP:]})

    def _new_version_name(self, suffix: str | None) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = f"{stamp}-{suffix}" if suffix else stamp
        name, n = base, 1
        while (self.versions_dir / name).exists():
            n += 1
            name = f"{base}-{n}" if suffix else f"{stamp}-{n}"
        return name

    def _sweep_temp(self) -> None:
        """Remove temp folders left by saves whose process is gone."""
        for folder in self.versions_dir.glob(".tmp-*"):
            try:
                pid = int(folder.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(folder, ignore_errors=True)

    # -- locking ----------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, holder: str) -> Iterator[dict]:
        """Hold ``store.lock`` for a job; re-entrant in the same thread.

        Raises StoreLocked naming the holder when another live process or
        thread has it; a lock left by a dead process is taken over.
        """
        me = threading.get_ident()
        path = str(self.lock_path.resolve())
        with _HELD_GUARD:
            mine = next((info for info in _HELD.values() if info["path"] == path and info["thread"] == me), None)
            if mine is not None:
                mine["depth"] += 1
        if mine is not None:
            try:
                yield mine["info"]
            finally:
                with _HELD_GUARD:
                    mine["depth"] -= 1
            return
        info = self._acquire(holder, path=path, thread=me)
        try:
            yield info
        finally:
            with _HELD_GUARD:
                _HELD.pop(info["token"], None)
            self._release(info["token"])

    def lock_info(self) -> dict | None:
        """The lock file's content, or None when the store is not locked."""
        try:
            text = self.lock_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return {}

    def _acquire(self, holder: str, *, path: str, thread: int) -> dict:
        self.root.mkdir(parents=True, exist_ok=True)
        info = {
            "pid": os.getpid(), "holder": holder, "since": utc_now_iso(),
            "host": socket.gethostname(), "token": uuid.uuid4().hex,
        }
        # Registered before the file exists, so other threads never mistake it for a stale lock.
        with _HELD_GUARD:
            _HELD[info["token"]] = {"path": path, "thread": thread, "depth": 1, "info": info}
        try:
            return self._create_lock_file(info)
        except BaseException:
            with _HELD_GUARD:
                _HELD.pop(info["token"], None)
            raise

    def _create_lock_file(self, info: dict) -> dict:
        for _ in range(5):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                existing = self.lock_info()
                if existing is None:
                    continue  # released meanwhile
                if self._is_stale(existing):
                    self._break_stale(existing)
                    continue
                raise StoreLocked(self._locked_message(existing)) from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(info, handle)
                handle.flush()
                os.fsync(handle.fileno())
            return info
        raise StoreLocked(f"The model store {self.root} lock keeps changing hands; try again.")

    def _is_stale(self, existing: dict) -> bool:
        if not existing:  # empty or partial: a writer between create and write, or one killed there
            try:
                return time.time() - self.lock_path.stat().st_mtime > 10
            except FileNotFoundError:
                return False
        if existing.get("host") != socket.gethostname():
            return False  # cannot check another machine's processes
        pid = int(existing.get("pid", -1))
        if pid == os.getpid():
            with _HELD_GUARD:
                return existing.get("token") not in _HELD
        return pid <= 0 or not _pid_alive(pid)

    def _break_stale(self, existing: dict) -> None:
        """Remove a stale lock, serialised by flock so two breakers cannot remove a fresh lock."""
        guard = self.root / (LOCK_FILE + ".guard")
        with open(guard, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if self.lock_info() == existing:
                    self.lock_path.unlink(missing_ok=True)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _release(self, token: str) -> None:
        current = self.lock_info()
        if current and current.get("token") == token:
            self.lock_path.unlink(missing_ok=True)

    def _locked_message(self, existing: dict) -> str:
        if not existing:
            return f"The model store {self.root} is being locked by another job; try again in a moment."
        return (
            f"The model store {self.root} is busy: held by {existing.get('holder')!r} "
            f"(pid {existing.get('pid')} on {existing.get('host')}) since {existing.get('since')}. "
            f"Wait for that job to finish; if that process is gone for good, delete {self.lock_path}."
        )


def _load_keras(path: Path, version: str):
    from .model import _tf

    try:
        return _tf().keras.models.load_model(str(path), compile=False)
    except Exception as err:  # Keras raises many types for a damaged file
        raise ModelError(f"Model version {version}: cannot read {path.name} ({err}).") from err


def _load_net(path: Path, version: str):
    """The version's NumPy network, or None when it has none (an older version: Keras serves it)."""
    if not path.is_file():
        return None
    from .numpy_net import NumpyNet

    try:
        return NumpyNet.load(path)
    except ValueError as err:
        raise ModelError(f"Model version {version}: {err}; delete {path} to serve the Keras file.") from err


def _check_shape(version: str, what: str, n_in, n_out, n_features: int, n_classes: int) -> None:
    if (int(n_in), int(n_out)) != (n_features, n_classes):
        raise ModelError(
            f"Model version {version}: the {what} takes {int(n_in)} features and gives {int(n_out)} classes, "
            f"the metadata says {n_features} and {n_classes}; retrain it."
        )


EXPORT_TOLERANCE = 1e-5


def export_net(model, path: Path) -> bool:
    """Write ``model``'s NumPy copy to ``path`` if it computes the same probabilities (within
    :data:`EXPORT_TOLERANCE` on random inputs); False (nothing written) for a network NumPy cannot run."""
    from .numpy_net import NotExportable, from_keras

    try:
        net = from_keras(model)
    except NotExportable:
        return False
    probe = np.random.default_rng(0).uniform(-0.5, 1.5, size=(64, net.n_inputs)).astype(np.float32)
    if not np.allclose(net(probe), np.asarray(model(probe, training=False)), atol=EXPORT_TOLERANCE, rtol=0):
        return False
    path.write_bytes(net.to_bytes())
    _fsync_path(path)
    return True


def _metrics_summary(metrics: dict) -> dict[str, float]:
    """Top-level numbers, plus accuracy-like numbers one level down (``test.accuracy``)."""
    keys = ("accuracy", "balanced_accuracy", "roc_auc", "n")
    summary: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            summary[key] = value
        elif isinstance(value, dict):
            for sub in keys:
                if isinstance(value.get(sub), (int, float)):
                    summary[f"{key}.{sub}"] = value[sub]
    return summary
