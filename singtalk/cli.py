"""``singtalk`` command line: every pipeline step headless, thin over the library.

Problems print as one line each (``error: ...``), never a traceback; the exit
status is 0 on success, 1 when some inputs failed, 2 on a usage or setup error,
130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


from .cli_common import classify_jobs, models_root, progress_printer, say
from .errors import SingtalkError


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
    try:
        result = dataset.build_tables(labelled, args.out, test_size=args.test_size, seed=args.seed, jobs=args.jobs,
                                      progress=progress_printer("features", "files"), cluster=args.cluster,
                                      notice=lambda text: say(f"note: {text}"))
    except KeyboardInterrupt:  # the vectors that finished are on disk already
        say(f"interrupted: the features computed so far are kept in {Path(args.out) / dataset.FEATURE_CACHE}; "
            "the same command computes only the rest")
        return 130
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
    from .batch import model_classes, model_version
    from .batch_files import BatchFiles

    inputs = expand_inputs(args.inputs)
    if not inputs:
        raise SingtalkError("No inputs: give files, folders or URLs.")
    version = model_version(models_root(args))
    files = BatchFiles(inputs, version=version, class_names=model_classes(models_root(args), version),
                       csv_path=args.csv, timeline=args.timeline, segments=args.segments, resume=args.resume)
    todo = files.start()
    for saved in files.backups:
        print(f"note: the earlier file is kept as {saved}", file=sys.stderr)
    if args.resume:
        print(f"resuming: {files.kept} inputs kept from {args.csv}, {len(todo)} to classify", file=sys.stderr)
    counts = {"classified": 0, "failed": 0}
    try:
        if todo:
            _classify_into(files, todo, args, counts)
        files.finish()
    except KeyboardInterrupt:  # the rows that finished are on disk already
        where = (f": {args.csv} holds the {files.kept + sum(counts.values())} inputs that finished; the same "
                 "command with --resume classifies the rest") if args.csv else ""
        say(f"interrupted{where}")
        return 130
    except SingtalkError as err:
        if args.csv and files.kept + sum(counts.values()):
            raise SingtalkError(f"{err} ({args.csv} holds the inputs that finished: --resume continues)") from None
        raise
    finally:
        files.close()
    kept = f", {files.kept} kept from {args.csv}" if args.resume else ""
    print(f"{counts['classified']} classified, {counts['failed']} failed{kept} (model {files.version})",
          file=sys.stderr)
    return 1 if counts["failed"] else 0


def _classify_into(files, todo: list[str], args, counts: dict) -> None:
    """Classify ``todo``, each outcome into ``files`` as it finishes; errors shown as they come."""
    import contextlib

    from .batch import classify_many

    version, outcomes = classify_many(todo, models_root=models_root(args), separate=args.separate,
                                      jobs=classify_jobs(args.jobs, todo, separate=args.separate), cluster=args.cluster,
                                      progress=progress_printer("classify"),
                                      notice=lambda text: say(f"note: {text}"))
    files.version = version  # the version that answers (a promotion may have come in between)
    with contextlib.closing(outcomes):
        for source, prediction, error in outcomes:
            if prediction is None:
                say(f"error: {source}: {error}")
            counts["failed" if prediction is None else "classified"] += 1
            files.add(source, prediction, error)


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
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="singtalk", description="Tell singing, talking and no voice apart in any audio.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("features", help="build feature tables from class folders or a manifest CSV")
    p.add_argument("source", help="folder with one subfolder per class, or a CSV with path,label[,speaker,source]")
    p.add_argument("--out", required=True,
                   help="folder for the tables and scaler; the vectors are kept in OUT/feature_cache.jsonl as they "
                        "are computed, so the same command after Ctrl-C or a crash (or with more files) computes "
                        "only the files it has no vector for (delete that file to start afresh)")
    p.add_argument("--root", help="base folder for relative paths in a manifest (default: its folder)")
    p.add_argument("--classes", help="comma-separated classes to keep, e.g. singing,talking")
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes")
    p.add_argument("--cluster", metavar="ADDRESS", help="extract on the Ray cluster at HOST:PORT instead")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("classify", help="classify files, folders or URLs to CSV")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--csv", metavar="OUT",
                   help="output CSV (default: stdout), written row by row as inputs finish; an existing OUT "
                        "(and --timeline, --segments file) is first moved to OUT.bak, unless --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted or crashed run in OUT: keep its rows answered by this model version and classify "
                        "only the other inputs (error rows and rows of another version are redone)")
    p.add_argument("--timeline", help="per-window CSV (4 s windows every 2 s: start_s,end_s,label,p_<class>)")
    p.add_argument("--segments", metavar="OUT",
                   help="segments tiling each input (path,start_s,end_s,label,confidence); JSON if OUT ends in .json")
    p.add_argument("--separate", action="store_true", help="extract vocals with Spleeter first")
    p.add_argument("--models", help="model store folder (default: $SINGTALK_MODELS or models/)")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes, each loading the model (default: one per core for several inputs "
                        "adding up to three minutes of audio or more, else 1 = this process; 1 with --separate)")
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
