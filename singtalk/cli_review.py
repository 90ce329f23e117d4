"""``singtalk check | retrain``: find the model's mistakes on a labelled set, learn from them."""

from __future__ import annotations

import argparse
import os
import sys


def _store(args):
    from .cli_common import models_root
    from .registry import ModelStore

    return ModelStore(models_root(args))


def cmd_check(args) -> int:
    from .cli_common import progress_printer
    from .review import check

    loaded = _store(args).load()
    result = check(loaded, args.labelled, root=args.root, wrong_path=args.wrong, predictions_path=args.predictions,
                   progress=progress_printer("check"), jobs=args.jobs)
    for row in result.predictions[result.predictions["error"] != ""].itertuples(index=False):
        print(f"failed: {row.path}: {row.error}", file=sys.stderr)
    print(f"checked {result.checked}, failed {result.failed}, wrong {result.wrong}, new {result.new}, "
          f"resolved {result.resolved} (model {result.model_version})")
    for label, n in result.skipped.items():
        print(f"skipped {n} labelled {label}: the model has no such class (it knows {', '.join(loaded.class_names)})")
    print(f"wrong list: {result.wrong_path}; predictions: {result.predictions_path}")
    return 0


def _print_event(event: dict) -> None:
    if event.get("kind") == "stage":
        print(f"{event['stage']}: {event['message']}", file=sys.stderr)
    elif event.get("kind") == "epoch":
        parts = [f"{k} {event[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                 if isinstance(event.get(k), float)]
        print(f"epoch {event['epoch']}/{event.get('epochs', '?')}: " + ", ".join(parts), file=sys.stderr)


def cmd_retrain(args) -> int:
    from .retrain import default_config, retrain
    from .verdict import Tolerance

    config = default_config().replace(epochs=args.epochs, patience=args.patience,
                                      learning_rate=args.learning_rate)
    recipe = {k: v for k, v in (("replay_ratio", args.replay_ratio), ("distill", args.distill),
                                 ("augment_copies", args.audio_copies)) if v is not None}
    report = retrain(_store(args), args.wrong, tables_dir=args.tables, config=config, imbalance=args.imbalance,
                     **recipe, force=args.force, labelled=args.labelled,
                     labelled_root=args.root,
                     tolerance=Tolerance(clips=args.tolerance_clips, points=args.tolerance_points),
                     test_fraction=args.test_fraction, seed=args.seed, trainable_layers=args.trainable_layers,
                     add_layers=args.add_layers, progress=_print_event, jobs=args.jobs)
    print(report.summary())
    print(f"log: {report.log_path}")
    return 0


def register(sub) -> None:
    def model_options(p):
        p.add_argument("--models", help="model store folder (default: $SINGTALK_MODELS or models/)")

    p = sub.add_parser("check", help="predict a labelled set and upsert the mistakes into a wrong list")
    p.add_argument("labelled", metavar="LABELLED.csv",
                   help="CSV with path,label (relative paths under --root); labels: the model's classes "
                        "(rows labelled no_voice are skipped, and counted, for a model without that class)")
    p.add_argument("--root", help="base folder for relative paths (default: the CSV's folder)")
    p.add_argument("--wrong", required=True, help="the wrong list to update, e.g. wrong_audios.csv")
    p.add_argument("--predictions", help="predictions CSV (default: <wrong stem>.predictions.csv beside it)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel feature processes")
    model_options(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("retrain", help="fine-tune the current model on the reviewed mistakes")
    p.add_argument("--wrong", required=True, help="the wrong list (rows not dismissed are used)")
    p.add_argument("--tables", help="the original scaled tables (default: <models>/tables)")
    p.add_argument("--labelled", metavar="PREDICTIONS.csv",
                   help="the labelled set the mistakes came from, judged whole: the predictions file `check` wrote "
                        "(default: <wrong stem>.predictions.csv beside the wrong list, when there is one) or any "
                        "path,label[,source] CSV")
    p.add_argument("--root", help="base folder for the labelled set's relative paths (default: its folder)")
    p.add_argument("--force", action="store_true",
                   help="experts: promote even when the verdict says no (the output says it was overridden)")
    p.add_argument("--tolerance-clips", type=int, default=1,
                   help="more errors one class or source may make after retraining (default 1 clip) ...")
    p.add_argument("--tolerance-points", type=float, default=1.0,
                   help="... or this many percentage points of its clips, whichever is more (default 1)")
    p.add_argument("--imbalance", choices=["class_weight", "smote", "none"], default="class_weight")
    p.add_argument("--replay-ratio", type=float,
                   help="original training rows replayed per mistake (default: inf, the whole training table; "
                        "docs/model.md)")
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=None,
                   help="the replayed rows keep the serving model's probabilities as targets (default: on)")
    p.add_argument("--audio-copies", type=int,
                   help="altered copies (room, device, noise) of each mistake's audio added to training")
    p.add_argument("--test-fraction", type=float, default=0.3, help="mistakes held out to measure the gain")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--trainable-layers", type=int, help="fine-tune only the last N Dense layers (default: all)")
    p.add_argument("--add-layers", type=int, default=0,
                   help="the seed's recipe: freeze the network and insert N new Dense layers before the output "
                        "(identity-initialised, so training starts from the current model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel feature processes")
    model_options(p)
    p.set_defaults(func=cmd_retrain)
