"""``singtalk`` command line: every pipeline step headless, thin over the library.

Problems print as one line each (``error: ...``), never a traceback; the exit
status is 0 on success, 1 when some inputs failed, 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SingtalkError


def progress_printer(label: str):
    """A ``(done, total)`` callback drawing a one-line progress bar on stderr."""
    interactive = sys.stderr.isatty()
    last = {"shown": -1}

    def show(done: int, total: int) -> None:
        percent = int(100 * done / max(total, 1))
        if not interactive and percent // 10 == last["shown"] // 10 and done != total:
            return
        last["shown"] = percent
        bar = "#" * (percent // 4)
        end = "\n" if done == total or not interactive else ""
        sys.stderr.write(f"\r{label} [{bar:<25}] {done}/{total}{end}")
        sys.stderr.flush()

    return show


def models_root(args) -> Path:
    from .config import models_dir

    return Path(args.models) if getattr(args, "models", None) else models_dir()


# -- features ---------------------------------------------------------------
def cmd_features(args) -> int:
    from . import dataset

    source = Path(args.source)
    classes = args.classes.split(",") if args.classes else None
    if source.suffix.lower() == ".csv":
        labelled = dataset.from_manifest(source, root=args.root, classes=classes)
    else:
        labelled = dataset.from_folders(source, classes=classes)
    print(f"{len(labelled)} files, classes: {labelled['label'].value_counts().to_dict()}", file=sys.stderr)
    result = dataset.build_tables(labelled, args.out, test_size=args.test_size, seed=args.seed, jobs=args.jobs,
                                  progress=progress_printer("features"), cluster=args.cluster)
    print(f"train rows: {result.n_train}, test rows: {result.n_test}, failed files: {len(result.failures)}")
    for path, error in result.failures.itertuples(index=False):
        print(f"failed: {path}: {error}", file=sys.stderr)
    print(f"tables written to {result.out_dir}")
    return 0


# -- classify and separate --------------------------------------------------
def expand_inputs(inputs) -> list[str]:
    """Files, folders (recursive) and URLs → a flat list; missing paths are kept so they get an error row."""
    from .dataset import audio_files
    from .sources import is_url

    out: list[str] = []
    for item in inputs:
        if is_url(item):
            out.append(item)
        elif Path(item).is_dir():
            out.extend(str(p) for p in audio_files(item))
        else:
            out.append(item)
    return out


CLASSIFY_COLUMNS = ["path", "label", "confidence", "duration_s", "model", "error", "note"]
"""The per-input CSV: these, with ``p_<class>`` columns (:func:`singtalk.labels.probability_columns`) after
``confidence``."""


def _rounded(value: float, digits: int):
    """``value`` rounded, or ``""`` for NaN (an empty CSV cell)."""
    value = float(value)
    return "" if np.isnan(value) else round(value, digits)


def classify_table(outcomes, *, version: str, class_names=()) -> tuple[pd.DataFrame, list]:
    """The per-input table (one row per input, :data:`CLASSIFY_COLUMNS`) and the ``(source, Prediction)`` pairs.

    ``p_singing, p_talking, p_no_voice`` always (empty where the model has no such class), then a column
    for any other class of the model or of an answer.
    """
    from .labels import probability_columns

    rows, classified, names = [], [], list(class_names)
    for source, prediction, error in outcomes:
        row = {"path": source, "label": "", "confidence": "", "duration_s": "", "model": version, "error": error,
               "note": ""}
        if prediction is not None:
            names += [c for c in prediction.probabilities if c not in names]
            row.update(label=prediction.label, confidence=_rounded(prediction.confidence, 4),
                       duration_s=_rounded(prediction.duration_s, 2), note=prediction.note)
            row.update({f"p_{c}": _rounded(p, 4) for c, p in prediction.probabilities.items()})
            classified.append((source, prediction))
        rows.append(row)
    columns = CLASSIFY_COLUMNS[:3] + probability_columns(names) + CLASSIFY_COLUMNS[3:]
    return pd.DataFrame(rows, columns=columns).fillna(""), classified


def segments_table(classified) -> pd.DataFrame:
    """One row per segment: ``path, start_s, end_s, label, confidence`` (inaSpeechSegmenter's layout)."""
    from .segments import SEGMENT_COLUMNS

    parts = [p.segments.reindex(columns=SEGMENT_COLUMNS).assign(path=source) for source, p in classified]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["path", *SEGMENT_COLUMNS])
    return table[["path", *SEGMENT_COLUMNS]]


def write_segments(path, classified) -> None:
    """``--segments``: CSV rows, or JSON records ``[{path, segments: [{start_s, end_s, label, confidence}]}]``
    when ``path`` ends in ``.json`` (a missing confidence is ``null``); written atomically."""
    import math

    from . import atomic
    from .segments import SEGMENT_COLUMNS

    if str(path).lower().endswith(".json"):
        def clean(value):
            return None if isinstance(value, float) and math.isnan(value) else value

        records = [{"path": source,
                    "segments": [{k: clean(v) for k, v in row.items()}
                                 for row in p.segments.reindex(columns=SEGMENT_COLUMNS).to_dict("records")]}
                   for source, p in classified]
        atomic.write_json(path, records)
    else:
        atomic.write_csv(path, segments_table(classified))


def cmd_classify(args) -> int:
    from . import atomic
    from .batch import classify_many

    inputs = expand_inputs(args.inputs)
    if not inputs:
        raise SingtalkError("No inputs: give files, folders or URLs.")
    version, outcomes = classify_many(inputs, models_root=models_root(args), separate=args.separate,
                                      jobs=classify_jobs(args.jobs, len(inputs)), cluster=args.cluster,
                                      progress=progress_printer("classify"))
    done = []
    for source, prediction, error in outcomes:  # errors show as they come, not after the whole batch
        if prediction is None:
            print(f"error: {source}: {error}", file=sys.stderr)
        done.append((source, prediction, error))
    table, classified = classify_table(done, version=version)
    failed = len(done) - len(classified)
    if args.csv:
        atomic.write_csv(args.csv, table)
    else:
        table.to_csv(sys.stdout, index=False)
    if args.timeline:
        columns = ["path", "start_s", "end_s", "label"]
        parts = [p.timeline.assign(path=source) for source, p in classified if len(p.timeline)]
        timeline = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
        ordered = columns + [c for c in timeline.columns if c not in columns]
        atomic.write_csv(args.timeline, timeline.reindex(columns=ordered))
    if args.segments:
        write_segments(args.segments, classified)
    print(f"{len(classified)} classified, {failed} failed (model {version})", file=sys.stderr)
    return 1 if failed else 0


def cmd_separate(args) -> int:
    from .separation import separate_files

    results = separate_files(args.files, args.out)
    for result in results:
        if result.ok:
            print(result.output)
        else:
            print(f"error: {result.source}: {result.error}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


# -- parser -----------------------------------------------------------------
POOL_MIN_INPUTS = 200
"""Each pool worker spends seconds importing TensorFlow and loading the model: below this many inputs
one process is faster (docs/performance.md)."""


def classify_jobs(requested: int | None, n_inputs: int) -> int:
    """``--jobs`` as given, else one per core for large batches and 1 for small ones."""
    if requested:
        return max(1, requested)
    return (os.cpu_count() or 1) if n_inputs >= POOL_MIN_INPUTS else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="singtalk", description="Tell singing, talking and no voice apart in any audio.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("features", help="build feature tables from class folders or a manifest CSV")
    p.add_argument("source", help="folder with one subfolder per class, or a CSV with path,label[,speaker,source]")
    p.add_argument("--out", required=True, help="folder for the tables and scaler")
    p.add_argument("--root", help="base folder for relative paths in a manifest (default: its folder)")
    p.add_argument("--classes", help="comma-separated classes to keep, e.g. singing,talking")
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes")
    p.add_argument("--cluster", metavar="ADDRESS", help="extract on the Ray cluster at HOST:PORT instead")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("classify", help="classify files, folders or URLs to CSV")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--csv", help="output CSV (default: stdout)")
    p.add_argument("--timeline", help="per-window CSV (4 s windows every 2 s: start_s,end_s,label,p_<class>)")
    p.add_argument("--segments", metavar="OUT",
                   help="segments tiling each input (path,start_s,end_s,label,confidence); JSON if OUT ends in .json")
    p.add_argument("--separate", action="store_true", help="extract vocals with Spleeter first")
    p.add_argument("--models", help="model store folder (default: $SINGTALK_MODELS or models/)")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes, each loading the model (default: one per core from "
                        f"{POOL_MIN_INPUTS} inputs on, else 1 = this process)")
    p.add_argument("--cluster", metavar="ADDRESS", help="classify on the Ray cluster at HOST:PORT instead")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("separate", help="extract vocals with Spleeter 2stems")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--out", required=True, help="folder for <stem>.vocals.wav files")
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("team-password", help="hash a team password for the app's sign-in (prompted, or on stdin)")
    p.set_defaults(func=cmd_team_password)

    for register in _extra_commands():
        register(sub)
    return parser


def cmd_team_password(args) -> int:
    """Print the hash of a password read twice from the terminal (once from stdin when piped)."""
    import getpass

    from .access import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Team password: ")
        if getpass.getpass("Again: ") != password:
            raise SingtalkError("The two passwords differ.")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(hash_password(password))
    return 0


def _extra_commands():
    """Subcommands defined beside their library modules (train, tune, eda, check, retrain, models, rollback)."""
    from . import cli_model, cli_review

    return [cli_model.register, cli_review.register]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SingtalkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        print(f"error: {err.strerror or err}: {getattr(err, 'filename', '') or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
