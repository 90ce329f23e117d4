"""Labelled audio → feature tables, with speaker-aware splits and a scaler.

A labelled set comes from folders (``singing/``, ``talking/``…: class names are
folder names) or from a manifest CSV (``path,label`` plus optional
``speaker,source``). :func:`build_tables` decodes every file once, extracts the
features in parallel, logs failures without stopping, splits train/test with no
speaker on both sides, fits a MinMax scaler on train rows only and writes
``train_features_scaled.csv``, ``test_features_scaled.csv``, ``scaler.json``,
``features_raw.csv`` and ``failures.csv``; the vectors are kept in ``feature_cache.jsonl`` as they are
computed, so a build interrupted or run again computes only what it lacks.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from . import atomic, tables
from .errors import DatasetError, SingtalkError

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm", ".mp4", ".wma", ".aiff", ".aif"}
META_COLUMNS = ["path", "label", "speaker", "source"]
TRAIN_TABLE = "train_features_scaled.csv"
TEST_TABLE = "test_features_scaled.csv"
RAW_TABLE = "features_raw.csv"
SCALER_FILE = "scaler.json"
FAILURES_FILE = "failures.csv"
FEATURE_CACHE = "feature_cache.jsonl"

Progress = Callable[[int, int], None]


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def audio_files(root: str | os.PathLike) -> list[Path]:
    """Audio files under ``root`` (recursive), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and is_audio(p))


def from_folders(root: str | os.PathLike, *, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """A labelled set from ``root/<class>/**/<file>``; the speaker is unknown (one group per file)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder.")
    rows = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if classes is not None and class_dir.name not in classes:
            continue
        for path in audio_files(class_dir):
            rel = path.relative_to(class_dir)
            source = rel.parts[0] if len(rel.parts) > 1 else class_dir.name
            rows.append({"path": str(path), "label": class_dir.name, "speaker": "", "source": source})
    if not rows:
        raise DatasetError(f"No audio files in class folders under {root} (expected e.g. {root}/singing/*.wav).")
    return normalise_labelled(pd.DataFrame(rows))


def from_manifest(csv_path: str | os.PathLike, *, root: str | os.PathLike | None = None,
                  classes: Sequence[str] | None = None) -> pd.DataFrame:
    """A labelled set from a CSV with ``path,label`` (+ ``speaker,source``); relative paths are under ``root``
    (default: the CSV's folder). Missing files and unknown columns are named in a :class:`DatasetError`."""
    csv_path = Path(csv_path)
    frame = tables.read_csv(csv_path, shape="path,label[,speaker,source]")
    missing = [c for c in ("path", "label") if c not in frame.columns]
    if missing:
        raise DatasetError(f"{csv_path.name} lacks column(s) {', '.join(missing)}; it needs at least path,label.")
    base = Path(root) if root else csv_path.parent
    frame["path"] = [p if os.path.isabs(p) else str(base / p) for p in frame["path"]]
    if classes is not None:
        frame = frame[frame["label"].isin(classes)]
    return normalise_labelled(frame)


def normalise_labelled(frame: pd.DataFrame) -> pd.DataFrame:
    """Ensure ``path,label,speaker,source`` columns, drop empty labels, check files exist."""
    frame = frame.copy()
    for column in ("speaker", "source"):
        if column not in frame.columns:
            frame[column] = ""
    frame = frame.fillna("")
    frame["label"] = frame["label"].astype(str).str.strip()
    frame = frame[frame["label"] != ""]
    missing = [p for p in frame["path"] if not Path(backing_mixture(p) or p).is_file()]
    if missing:
        shown = ", ".join(Path(p).name for p in missing[:5])
        raise DatasetError(f"{len(missing)} listed file(s) do not exist, e.g. {shown}.")
    if frame.empty:
        raise DatasetError("The labelled set is empty.")
    return frame[META_COLUMNS + [c for c in frame.columns if c not in META_COLUMNS]].reset_index(drop=True)


def local_audio(path: str) -> Path | None:
    """The audio file a table row names, if it is on this machine.

    Shipped tables name clips relative to the corpus (``singing/mir1k/x.flac``), so
    relative paths are looked up under :func:`singtalk.config.data_dir`.
    """
    from .config import data_dir

    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = data_dir() / candidate
    return candidate if candidate.is_file() else None


def corpus_of(source: str) -> str:
    """The corpus a source belongs to: the manifest names sub-collections ``<corpus>_<who>`` (``aishell1_qianz``,
    ``aishell1_wjunneng``), and leave-one-source-out leaves a whole corpus out."""
    return str(source).split("_", 1)[0]


def speaker_groups(frame: pd.DataFrame) -> np.ndarray:
    """Group key per row, one per person: ``source:speaker`` when the speaker is known, else the file itself.

    Speaker ids that carry a prefix of their own (``csd_drmeter:csd_singer1``, added on 2026-12-05) name a person
    across the sources of one corpus, grouped as ``corpus:person`` (``csd:csd_singer1``): CSD's singer appears in
    two collections and must stay on one side of a split."""
    keys = []
    for path, spk, src in zip(frame["path"], frame["speaker"], frame["source"]):
        spk = str(spk)
        if not spk:
            keys.append(f"file:{path}")
        elif ":" in spk:
            keys.append(f"{corpus_of(src)}:{spk.split(':', 1)[1]}")
        else:
            keys.append(f"{src}:{spk}")
    return np.array(keys)


def split_by_speaker(frame: pd.DataFrame, *, test_size: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean mask of test rows: stratified by label, no speaker on both sides."""
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < test_size < 1:
        raise DatasetError("test_size must be between 0 and 1.")
    groups = speaker_groups(frame)
    n_splits = max(2, int(round(1 / test_size)))
    if len(set(groups)) < n_splits:
        raise DatasetError(f"Only {len(set(groups))} speaker group(s): too few for a {test_size:.0%} test split.")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    labels = frame["label"].to_numpy()
    folds = [test for _, test in splitter.split(np.zeros(len(frame)), labels, groups)]
    # Large speaker groups make fold sizes uneven: take the fold closest to the asked size with every class.
    n_classes = len(set(labels))
    usable = [f for f in folds if len(set(labels[f])) == n_classes] or folds
    test_index = min(usable, key=lambda f: abs(len(f) - test_size * len(frame)))
    mask = np.zeros(len(frame), dtype=bool)
    mask[test_index] = True
    return mask


def split_keeping(frame: pd.DataFrame, side_of_group: dict[str, str], *, test_size: float = 0.2,
                  seed: int = 0) -> tuple[np.ndarray, dict[str, str]]:
    """Test mask for a grown corpus: every speaker group in ``side_of_group`` (``"train"`` or ``"test"``) keeps
    its side, and the groups it lacks are split among themselves (:func:`split_by_speaker`, all to training when
    they are too few to split). Returns the mask and the mapping extended by the new groups.

    A grown corpus so moves no earlier speaker across, and networks trained on the earlier split stay honest:
    none of them heard a test speaker."""
    groups = speaker_groups(frame)
    sides = dict(side_of_group)
    new = np.array([g not in sides for g in groups])
    if new.any():
        rows = frame[new].reset_index(drop=True)
        try:
            test = split_by_speaker(rows, test_size=test_size, seed=seed)
        except DatasetError:
            test = np.zeros(len(rows), dtype=bool)
        sides.update({str(g): "test" if t else "train" for g, t in zip(groups[new], test)})
    return np.array([sides[str(g)] == "test" for g in groups]), sides


BACKING = "#backing"
"""Suffix of a virtual clip: ``mixture/mir1k/X_mix.flac#backing`` is MIR-1K's accompaniment of that excerpt,
``2 × mixture − vocal`` (the mixture is the mean of the two; the vocal is ``singing/mir1k/X.flac``)."""


def backing_mixture(path: str) -> str | None:
    """The mixture file of a :data:`BACKING` clip, else None."""
    return str(path)[: -len(BACKING)] if str(path).endswith(BACKING) else None


def backing_vocal(mixture: Path) -> Path:
    """The clean vocal of a MIR-1K mixture: ``<corpus>/mixture/mir1k/X_mix.flac`` → ``<corpus>/singing/mir1k/X.flac``."""
    return mixture.parent.parent.parent / "singing" / "mir1k" / (mixture.stem.removesuffix("_mix") + mixture.suffix)


def backing_tracks(manifest: pd.DataFrame, root: str | os.PathLike) -> pd.DataFrame:
    """``no_voice`` rows for MIR-1K's backing tracks: one per ``mixture`` row of source mir1k whose clean vocal
    (``singing/mir1k/<stem without _mix>.flac``) exists; source ``mir1k_backing``, and the singer's group
    (speaker ``mir1k:<singer>``), so a song's accompaniment stays on its singer's side of a split."""
    root = Path(root)
    rows = []
    for _, row in manifest[(manifest["label"] == "mixture") & (manifest["source"] == "mir1k")].iterrows():
        mixture = Path(row["path"]) if os.path.isabs(row["path"]) else root / row["path"]
        if mixture.is_file() and backing_vocal(mixture).is_file():
            rows.append({"path": str(mixture) + BACKING, "label": "no_voice", "speaker": f"mir1k:{row['speaker']}",
                         "source": "mir1k_backing"})
    return pd.DataFrame(rows, columns=META_COLUMNS)


def decode_clip(path: str, *, sr: int | None = None) -> np.ndarray:
    """Decode a table's clip: a file, or a :data:`BACKING` clip rebuilt from its mixture and vocal."""
    from . import audio

    sr = sr or audio.SAMPLE_RATE
    mixture = backing_mixture(path)
    if mixture is None:
        return audio.decode(path, sr=sr)
    mix, voc = audio.decode(mixture, sr=sr), audio.decode(str(backing_vocal(Path(mixture))), sr=sr)
    n = min(mix.size, voc.size)
    return np.clip(2.0 * mix[:n] - voc[:n], -1.0, 1.0).astype(np.float32)


def file_features(path: str) -> np.ndarray:
    """Feature vector of one audio file: decode → trim check → features."""
    from . import audio, features

    y = decode_clip(path)
    audio.prepare(y)  # silence and too-little-sound checks with the 20 dB rule
    return features.extract(y, audio.SAMPLE_RATE)


def _safe_features(path: str) -> tuple[np.ndarray | None, str]:
    from .batch import _test_hooks

    _test_hooks(path)
    try:
        return file_features(path), ""
    except SingtalkError as err:
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - one bad file must not stop a build
        return None, f"{type(err).__name__}: {err}"


def _exit_with_parent(parent: int) -> None:
    """Pool-worker initialiser: end this worker when its parent is gone (a build killed with SIGKILL).

    Forked workers otherwise wait forever on a pipe whose other end they hold themselves.
    """
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def extract_each(paths: Sequence[str], *, jobs: int = 1, cluster: str | None = None,
                 notice: Callable[[str], None] | None = None) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """``(index, vector or None, error)`` for each of ``paths`` as it finishes (in input order in one process).

    ``jobs`` > 1 spreads the files over that many worker processes (:mod:`singtalk.pool`: a worker that
    dies costs its file one retry, told to ``notice``, then an error; Ctrl-C stops them). ``cluster``
    (``HOST:PORT`` of a Ray head; default ``$SINGTALK_CLUSTER``) runs them as Ray tasks on that cluster
    instead (a task lost with its node runs again; see :mod:`singtalk.batch`).
    """
    paths = list(paths)
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    cluster = cluster or os.environ.get("SINGTALK_CLUSTER") or None
    if cluster:
        from .batch import cluster_features

        for index, (vector, error) in cluster_features(paths, _safe_features, address=cluster):
            yield index, vector, error
    elif jobs == 1 or len(paths) < 4:
        for index, path in enumerate(paths):
            yield (index, *_safe_features(path))
    else:
        import sys

        from . import pool

        # Forked workers start about a second sooner than spawned ones (they inherit the imports); forking is
        # safe in one thread without TensorFlow (the CLI), so elsewhere (the app's job thread) they are spawned.
        fork = "tensorflow" not in sys.modules and threading.active_count() == 1

        def retrying(index: int, exitcode: int | None) -> None:
            if notice:
                how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"status {exitcode}"
                notice(f"a worker process died ({how}) on {paths[index]}: trying it again in a fresh worker")

        for index, result, death in pool.run(paths, work=_safe_features, init=_exit_with_parent,
                                             init_args=(os.getpid(),), jobs=jobs, on_retry=retrying,
                                             start_method="fork" if fork else "spawn"):
            yield (index, *(result if result is not None else (None, death)))


def extract_all(paths: Sequence[str], *, jobs: int = 1, progress: Progress | None = None,
                cluster: str | None = None) -> tuple[list[np.ndarray | None], list[str]]:
    """Features for many files (:func:`extract_each`); returns ``(vectors or None, error strings)`` in input order."""
    vectors: list = [None] * len(paths)
    errors = [""] * len(paths)
    for done, (index, vector, error) in enumerate(extract_each(paths, jobs=jobs, cluster=cluster), start=1):
        vectors[index], errors[index] = vector, error
        if progress:
            progress(done, len(paths))
    return vectors, errors


@dataclass
class BuildResult:
    out_dir: Path
    n_train: int
    n_test: int
    failures: pd.DataFrame
    class_counts: dict = field(default_factory=dict)
    reused: int = 0
    """Files whose features were kept from an earlier run (:data:`FEATURE_CACHE`)."""
    computed: int = 0


def feature_frame(labelled: pd.DataFrame, vectors: Iterable[np.ndarray | None]) -> pd.DataFrame:
    """Meta columns + one column per feature name, for the rows whose vector exists."""
    from .features import FEATURE_NAMES

    keep = [i for i, v in enumerate(vectors) if v is not None]
    vectors = list(vectors)
    matrix = np.vstack([vectors[i] for i in keep]) if keep else np.zeros((0, len(FEATURE_NAMES)))
    meta = labelled.iloc[keep][META_COLUMNS].reset_index(drop=True)
    return pd.concat([meta, pd.DataFrame(matrix, columns=list(FEATURE_NAMES))], axis=1)


def build_tables(labelled: pd.DataFrame, out_dir: str | os.PathLike, *, test_size: float = 0.2, seed: int = 0,
                 jobs: int = 1, progress: Progress | None = None, cluster: str | None = None,
                 notice: Callable[[str], None] | None = None,
                 stop_event: threading.Event | None = None) -> BuildResult | None:
    """Extract, split by speaker, scale on train only, and write the tables atomically.

    Vectors are kept in ``out_dir/``:data:`FEATURE_CACHE` as they are computed
    (:mod:`singtalk.feature_cache`): a build interrupted, stopped, failed or run again computes only the
    files whose content it has no vector for. ``notice`` hears how many were kept, and of lost workers.
    When ``stop_event`` is set, extraction stops after the files in progress and None is returned, the
    tables untouched.
    """
    from .feature_cache import FeatureCache, features_for
    from .features import FEATURE_NAMES, FEATURE_VERSION
    from .scaling import MinMaxScaling

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(out_dir / FEATURE_CACHE, feature_version=FEATURE_VERSION, feature_names=FEATURE_NAMES)
    vectors, errors = features_for(list(labelled["path"]), cache=cache, jobs=jobs, progress=progress,
                                   cluster=cluster, notice=notice, stop_event=stop_event)
    if stop_event is not None and stop_event.is_set():
        return None
    failures = pd.DataFrame([{"path": p, "error": e} for p, e in zip(labelled["path"], errors) if e],
                            columns=["path", "error"])
    table = feature_frame(labelled, vectors)
    if table["label"].nunique() < 2:
        raise DatasetError(f"Need at least two classes with usable audio; found {sorted(table['label'].unique())}.")
    test_mask = split_by_speaker(table, test_size=test_size, seed=seed)
    names = list(FEATURE_NAMES)
    scaler = MinMaxScaling(names).fit(table.loc[~test_mask, names].to_numpy())
    scaled = table.copy()
    scaled[names] = scaler.transform(table[names].to_numpy())
    raw = table.copy()
    raw.insert(4, "split", np.where(test_mask, "test", "train"))
    # scaler.json marks a complete build: removed first, written last, so a build killed between
    # two writes leaves tables that load_tables refuses, never a mix of two builds.
    (out_dir / SCALER_FILE).unlink(missing_ok=True)
    atomic.write_csv(out_dir / RAW_TABLE, raw)
    atomic.write_csv(out_dir / TRAIN_TABLE, scaled[~test_mask])
    atomic.write_csv(out_dir / TEST_TABLE, scaled[test_mask])
    atomic.write_csv(out_dir / FAILURES_FILE, failures)
    scaler.save(out_dir / SCALER_FILE)
    return BuildResult(out_dir, int((~test_mask).sum()), int(test_mask.sum()), failures,
                       table["label"].value_counts().to_dict(), reused=cache.reused, computed=cache.computed)


def load_table(path: str | os.PathLike, *, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a feature table and check its columns (named in a :class:`DatasetError` when missing)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"No feature table at {path}.")
    frame = pd.read_csv(path, keep_default_na=False, dtype={"path": str, "label": str, "speaker": str, "source": str})
    if feature_names is None:
        from .features import FEATURE_NAMES as feature_names  # noqa: N811
    missing = [c for c in ["path", "label", *feature_names] if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path.name} lacks {len(missing)} column(s), e.g. {', '.join(missing[:5])}.")
    for column in ("speaker", "source"):
        if column not in frame.columns:
            frame[column] = ""
    return frame
