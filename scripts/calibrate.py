#!/usr/bin/env python
"""Calibrate a stored model's confidence by temperature scaling, and say how much it helped.

    .venv/bin/python scripts/calibrate.py [--models models] [--version V] [--folds 5] [--save] [--promote]
                                          [--robustness ROBUSTNESS.json]

The rows are the test side of the model's feature table (``models/tables/features_raw.csv``, split
``test``: speakers the network never heard). The reported "after" figures are cross-fitted: the
temperature is fitted on four fifths of the speaker groups and scored on the fifth left out, in turn
(``singtalk.calibration.cross_fitted``), so they do not flatter the fit. ``--save`` writes a new
version whose output layer is divided by the temperature fitted on all those rows (answers unchanged,
confidence softer), with the figures in its metadata under ``calibration``; ``--promote`` also serves it.
``--robustness`` also scores the confidence on altered audio: the per-clip answers that
``scripts/robustness.py --json`` wrote (one row per condition: ECE as the model gives it, and with the
fitted temperature applied, ``p ** (1 / T)`` renormalised, which is exactly a softmax of the logits / T).
This is the command behind the calibration figures of the README's model card.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from singtalk import calibration, dataset  # noqa: E402
from singtalk.registry import ModelStore  # noqa: E402


def test_rows(store: ModelStore, loaded) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Scaled features, class indices and speaker groups of the table's test rows."""
    raw = pd.read_csv(Path(store.root) / "tables" / dataset.RAW_TABLE)
    test = raw[raw["split"] == "test"].reset_index(drop=True)
    test = test[test["label"].isin(loaded.class_names)].reset_index(drop=True)
    X = loaded.scaler.transform(test[loaded.feature_names].to_numpy(np.float32)).astype(np.float32)
    y = test["label"].map({c: i for i, c in enumerate(loaded.class_names)}).to_numpy()
    return X, y, dataset.speaker_groups(test), test


def calibrate(store: ModelStore, version: str | None = None, *, folds: int = 5):
    loaded = store.load(version)
    if loaded.net is None:
        raise SystemExit(f"version {loaded.version} has no NumPy copy of its network; re-save it first")
    if "calibration" in loaded.metadata:
        raise SystemExit(f"version {loaded.version} is calibrated already (T = "
                         f"{loaded.metadata['calibration']['temperature']}); calibrate its parent instead")
    X, y, groups, test = test_rows(store, loaded)
    return loaded, calibration.cross_fitted(loaded.net, X, y, groups, folds=folds), (X, y, test)


def markdown(report: calibration.CalibrationReport, version: str) -> str:
    r = report
    return "\n".join([
        f"Temperature scaling of model {version}: T = {r.temperature:.2f} (per fold: "
        f"{', '.join(f'{t:.2f}' for t in r.fold_temperatures)}); {r.n} test-split clips, {r.n_groups} speaker "
        f"groups, {r.folds} group folds; answers unchanged (accuracy {r.accuracy:.3f}).",
        "",
        "| | before | after (cross-fitted) |",
        "|---|---|---|",
        f"| expected calibration error ({calibration.ECE_BINS} bins) | {r.ece_before:.3f} | {r.ece_after:.3f} |",
        f"| log loss | {r.log_loss_before:.3f} | {r.log_loss_after:.3f} |",
        f"| answers at 99 % or more | {r.share_over_99_before:.0%} | {r.share_over_99_after:.0%} |",
    ])


def under_conditions(path: str, class_names: list[str], temperature: float) -> str:
    """A markdown table: ECE per condition of a robustness run, as served and with ``temperature``."""
    import json

    report = json.loads(Path(path).read_text(encoding="utf-8"))
    index = {c: i for i, c in enumerate(class_names)}
    lines = [f"Confidence on altered audio ({report['model']}, {report['n']} test clips, "
             f"`scripts/robustness.py`; T = {temperature:.2f}):", "",
             "| condition | answered | accuracy | mean confidence | ECE | ECE with T |", "|---|---|---|---|---|---|"]
    for condition in report["conditions"]:
        rows = [(clip["label"], clip[condition]) for clip in report["clips"]
                if not clip[condition].get("error") and clip["label"] in index]
        proba = np.array([[answer.get(f"p_{c}", 0.0) for c in class_names] for _, answer in rows], dtype=float)
        proba /= proba.sum(axis=1, keepdims=True)
        y = np.array([index[label] for label, _ in rows])
        scaled = proba ** (1.0 / temperature)
        scaled /= scaled.sum(axis=1, keepdims=True)
        lines.append(f"| {condition} | {len(rows)} | {(proba.argmax(1) == y).mean():.3f} | "
                     f"{proba.max(1).mean():.3f} | {calibration.expected_calibration_error(proba, y):.3f} | "
                     f"{calibration.expected_calibration_error(scaled, y):.3f} |")
    return "\n".join(lines)


def save(store: ModelStore, loaded, report, rows, *, promote: bool) -> str:
    from sklearn.metrics import roc_auc_score

    X, y, _ = rows
    model = calibration.scale_keras_output(loaded.model, report.temperature)
    meta = copy.deepcopy(loaded.metadata)
    for key in ("version", "created", "format"):
        meta.pop(key, None)
    meta["parent"] = loaded.version
    meta["calibration"] = {**report.to_dict(), "fitted_on": "the test split of models/tables (speakers never "
                           "trained on); *_after figures cross-fitted over speaker groups",
                           "command": "scripts/calibrate.py --save"}
    proba = calibration.with_temperature(loaded.net, report.temperature)(X)
    test = meta.get("metrics", {}).get("test")
    if test and len(set(y)) == len(loaded.class_names):
        test["roc_auc"] = float(roc_auc_score(y, proba, multi_class="ovr"))
    note = f"{loaded.version} with temperature {report.temperature:.2f} (scripts/calibrate.py)"
    return store.save(model, loaded.scaler, meta, promote=promote, note=note)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(REPO / "models"))
    parser.add_argument("--version", help="default: the serving version")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--save", action="store_true", help="write the calibrated network as a new version")
    parser.add_argument("--promote", action="store_true", help="with --save: serve it")
    parser.add_argument("--robustness", metavar="JSON", help="also score a scripts/robustness.py --json report")
    args = parser.parse_args(argv)
    store = ModelStore(args.models)
    loaded, report, rows = calibrate(store, args.version, folds=args.folds)
    print(markdown(report, loaded.version))
    if args.robustness:
        print("\n" + under_conditions(args.robustness, loaded.class_names, report.temperature))
    if args.save:
        print(f"\nsaved version {save(store, loaded, report, rows, promote=args.promote)}"
              f"{' (serving)' if args.promote else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
