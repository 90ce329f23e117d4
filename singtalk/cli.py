"""``singtalk`` command line: every pipeline step headless, thin over the library.

Problems print as one line each (``error: ...``), never a traceback; the exit
status is 0 on success, 1 when some inputs failed, 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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


def cmd_classify(args) -> int:
    import pandas as pd

    from . import atomic
    from .batch import classify_many

    inputs = expand_inputs(args.inputs)
    if not inputs:
        raise SingtalkError("No inputs: give files, folders or URLs.")
    version, outcomes = classify_many(inputs, models_root=models_root(args), separate=args.separate,
                                      jobs=classify_jobs(args.jobs, len(inputs)), cluster=args.cluster,
                                      progress=progress_printer("classify"))
    rows, timelines, failed = [], [], 0
    for source, prediction, error in outcomes:
        row = {"path": source, "label": "", "p_singing": "", "confidence": "", "duration_s": "", "error": error}
        if prediction is not None:
            row.update(label=prediction.label, p_singing=round(prediction.p_singing, 4),
                       confidence=round(prediction.confidence, 4), duration_s=round(prediction.duration_s, 2))
            if args.timeline and len(prediction.timeline):
                timelines.append(prediction.timeline.assign(path=source))
        else:
            failed += 1
            print(f"error: {source}: {error}", file=sys.stderr)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["path", "label", "p_singing", "confidence", "duration_s", "error"])
    if args.csv:
        atomic.write_csv(args.csv, table)
    else:
        table.to_csv(sys.stdout, index=False)
    if args.timeline:
        columns = ["path", "start_s", "end_s", "label", "p_singing"]
        timeline = pd.concat(timelines, ignore_index=True) if timelines else pd.DataFrame(columns=columns)
        ordered = columns + [c for c in timeline.columns if c not in columns]
        atomic.write_csv(args.timeline, timeline.reindex(columns=ordered))
    print(f"{len(rows) - failed} classified, {failed} failed (model {version})", file=sys.stderr)
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
    parser = argparse.ArgumentParser(prog="singtalk", description="Tell talking from singing in any audio.")
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
    p.add_argument("--timeline", help="per-window CSV for long inputs")
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

    for register in _extra_commands():
        register(sub)
    return parser


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
