"""``singtalk train | tune | eda | models | rollback``."""

from __future__ import annotations

import sys
import tempfile


def _store(args):
    from .cli_common import models_root
    from .registry import ModelStore

    return ModelStore(models_root(args))


def _config(args):
    from .model import TrainConfig

    return TrainConfig(hidden_units=tuple(int(u) for u in args.units.split(",")), dropout=args.dropout,
                       optimizer=args.optimizer, learning_rate=args.learning_rate, batch_size=args.batch_size,
                       epochs=args.epochs, patience=args.patience, imbalance=args.imbalance, seed=args.seed)


def _print_epoch(event: dict) -> None:
    if event.get("kind") == "epoch":
        parts = [f"{k} {event[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                 if isinstance(event.get(k), float)]
        print(f"epoch {event['epoch']}/{event.get('epochs', '?')}: " + ", ".join(parts), file=sys.stderr)
    elif event.get("kind") == "trial" and event.get("state", "end") == "end":
        print(f"trial {event.get('trial')}: {event.get('score')}", file=sys.stderr)


def cmd_train(args) -> int:
    from .training import headline, load_tables, save_outcome, train_tables

    store = _store(args)
    tables = load_tables(args.data)
    with store.lock(f"train (cli) {args.data}"):
        outcome = train_tables(tables, _config(args), progress=_print_epoch)
        version = save_outcome(store, outcome, promote=args.promote, note=args.note or "singtalk train")
    print(f"{headline(outcome.metrics)}; saved as {version}{' (now current)' if args.promote else ''}")
    return 0


def cmd_tune(args) -> int:
    from .training import headline, load_tables, save_outcome, tune_tables

    store = _store(args)
    tables = load_tables(args.data)
    with store.lock(f"tune (cli) {args.data}"), tempfile.TemporaryDirectory(prefix="singtalk-tune-") as work:
        outcome = tune_tables(tables, max_trials=args.trials, directory=work, base_config=_config(args),
                              progress=_print_epoch, seed=args.seed)
        version = save_outcome(store, outcome, promote=args.promote, note=args.note or f"tuned, {args.trials} trials")
    for trial in outcome.trials:
        print(f"trial {trial.get('trial_id', '?')}: score {trial.get('score')} {trial.get('hyperparameters')}")
    print(f"best: {headline(outcome.metrics)}; saved as {version}")
    return 0


def cmd_eda(args) -> int:
    import pandas as pd

    from .eda import write_report
    from .training import load_tables

    tables = load_tables(args.data)
    table = pd.concat([tables.train, tables.test], ignore_index=True)
    written = write_report(table, tables.feature_names, args.out)
    print(f"{len(written)} files written to {args.out}")
    return 0


def cmd_models(args) -> int:
    store = _store(args)
    if args.delete:
        print(f"deleted {store.delete(args.delete)}")
        return 0
    versions = store.list_versions()
    if not versions:
        print(f"no models in {store.root}")
        return 0
    for info in versions:  # the classes say which versions answer no_voice (three-class) and which do not
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in info.metrics.items() if isinstance(v, float))
        classes = "/".join(store.read_metadata(info.version).get("class_names") or [])
        print(f"{'*' if info.is_current else ' '} {info.version}  {info.created or ''}  {classes}  {metrics}  "
              f"{info.note}")
    return 0


def cmd_rollback(args) -> int:
    store = _store(args)
    version = store.rollback(args.version)
    print(f"current model is now {version}")
    return 0


def register(sub) -> None:
    def model_options(p):
        p.add_argument("--models", help="model store folder (default: $SINGTALK_MODELS or models/)")

    def train_options(p):
        p.add_argument("--data", required=True, help="folder with the scaled feature tables and scaler.json")
        p.add_argument("--units", default="128,64", help="hidden layer sizes, comma-separated")
        p.add_argument("--dropout", type=float, default=0.3)
        p.add_argument("--optimizer", choices=["adam", "rmsprop", "sgd"], default="adam")
        p.add_argument("--learning-rate", type=float, default=1e-3)
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--epochs", type=int, default=100)
        p.add_argument("--patience", type=int, default=10, help="early-stopping patience on validation loss")
        p.add_argument("--imbalance", choices=["class_weight", "smote", "none"], default="class_weight")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--promote", action="store_true", help="make the new model the current one")
        p.add_argument("--note", default="")
        model_options(p)

    p = sub.add_parser("train", help="train a model on feature tables and save it in the store")
    train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="search hyper-parameters with Keras Tuner and save the best model")
    train_options(p)
    p.add_argument("--trials", type=int, default=10, help="trial budget")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("eda", help="write class balance, counts and feature plots for feature tables")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_eda)

    p = sub.add_parser("models", help="list model versions with their metrics")
    p.add_argument("--delete", metavar="VERSION",
                   help="delete a version that is not serving (e.g. a retrain the verdict refused)")
    model_options(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("rollback", help="make an earlier model version current again")
    p.add_argument("version", nargs="?", help="version to restore (default: the one before the current)")
    model_options(p)
    p.set_defaults(func=cmd_rollback)
