#!/usr/bin/env python
"""Calibrate a stored model's confidence by temperature scaling, and say how much it helped.

    .venv/bin/python scripts/calibrate.py [--models models] [--version V] [--folds 5] [--save] [--promote]
                                          [--robustness ROBUSTNESS.json] [--left-out [--answers CSV]]

The rows are the test side of the model's feature table (``models/tables/features_raw.csv``, split
``test``: speakers the network never heard). The reported "after" figures are cross-fitted: the
temperature is fitted on four fifths of the speaker groups and scored on the fifth left out, in turn
(``singtalk.calibration.cross_fitted``), so they do not flatter the fit. ``--save`` writes a new
version whose output layer is divided by the temperature fitted on all those rows (answers unchanged,
confidence softer), with the figures in its metadata under ``calibration``; ``--promote`` also serves it.
``--robustness`` also scores the confidence on altered audio: the per-clip answers that
``scripts/robustness.py --json`` wrote (one row per condition: ECE as the model gives it, and with the
fitted temperature applied, ``p ** (1 / T)`` renormalised, which is exactly a softmax of the logits / T).
``--left-out`` also scores the confidence on corpora never trained on: the head refitted without each corpus
as ``train_default.py``'s leave-one-source-out run does (:func:`left_out_answers`; the CNNs are not retrained,
the left-out networks of ``models/spectro-folds`` are used), its answers kept in
``tables/left-out-<version>.csv``; per corpus and pooled ECE, and what a temperature fitted on the other
corpora's answers does to each (``calibration.cross_fitted_by_group``).
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
sys.path.insert(0, str(REPO / "scripts"))

from singtalk import atomic, calibration, dataset  # noqa: E402
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


# -- left-out corpora -------------------------------------------------------------------------------------------
def left_out_answers(loaded, *, data_dir: Path | None = None, jobs: int = 2, cache: str = "var/cache",
                     corpora: list[str] | None = None, ensemble: int | None = None) -> pd.DataFrame:
    """Every clean clip of the corpus answered by a head that never trained on its corpus.

    The feature table is ``train_default.prepare``'s (the same clips, augmented copies and CNN logits as the
    served model's training; from ``cache`` when it was extracted before, else about 20 minutes on 2 cores).
    For each corpus C (``dataset.corpus_of``) the head is refitted as ``train_default.py``'s leave-one-source-out
    run fits it (every CNN logit from the networks trained without C where they heard C; the head, gate,
    ensemble and training settings from the version's metadata) and answers C's clean rows; where
    ``train_default.py`` kept that head (``var/left-out/<version>/``, ``left_out_store``) it answers without a
    refit, its CNN logits from the networks it was indexed with. Returns their path,
    corpus, label and one ``p_<class>`` column per class of the model.
    """
    import left_out_store
    import train_default as T

    from singtalk.model import predict_proba
    from singtalk.spectro import SpectroNet

    table, inputs, fold_dirs, names = T.features_of(loaded, data_dir=data_dir, jobs=jobs, cache=cache)
    table = table.assign(corpus=[dataset.corpus_of(s) for s in table["source"]])
    kept = left_out_store.read_index(loaded.version)
    wanted = corpora or sorted(table["corpus"].unique())
    answers = []

    def answer(corpus: str, t: pd.DataFrame, predict) -> None:
        held = t[(t["corpus"] == corpus) & ~t["augmented"] & t["label"].isin(loaded.class_names)]
        proba = predict(held[names].to_numpy())
        part = held[["path", "corpus", "label"]].reset_index(drop=True)
        for i, name in enumerate(loaded.class_names):
            part[f"p_{name}"] = proba[:, i]
        answers.append(part)
        right = np.mean(np.array(loaded.class_names)[proba.argmax(1)] == part["label"].to_numpy())
        print(f"  without {corpus}: {len(part)} clips, {right:.3f} right", file=sys.stderr, flush=True)

    for corpus in [c for c in wanted if c in kept]:  # the heads train_default.py kept: answer, no refit
        head = ModelStore(left_out_store.store_dir(loaded.version)).load(kept[corpus]["version"])
        t = table.copy()  # inputs[view] is in the table's row order
        rows = np.flatnonzero(((table["corpus"] == corpus) & ~table["augmented"]).to_numpy())
        for view, path in kept[corpus]["nets"].items():
            T.set_spectro_logits(t, inputs[view], rows, SpectroNet.load(path), view)
        answer(corpus, t.iloc[rows], head.predict_proba)
    refit = [c for c in wanted if c not in kept]
    for corpus, t, result, scaler, _ in (T.left_out_fits(table, inputs, fold_dirs, names,
                                                         T.head_args_of(loaded.metadata, ensemble), refit)
                                         if refit else ()):
        if list(result.class_names) != list(loaded.class_names):
            raise SystemExit(f"without {corpus} the head has classes {result.class_names}, not {loaded.class_names}")
        answer(corpus, t, lambda X: predict_proba(result.model, scaler.transform(X)))
    return pd.concat(answers, ignore_index=True)


def left_out_path(store: ModelStore, version: str) -> Path:
    """Where the per-clip left-out answers of ``version`` are kept (``tables/left-out-<version>.csv``)."""
    return Path(store.root) / "tables" / f"left-out-{version}.csv"


def left_out_report(answers: pd.DataFrame, class_names: list[str]) -> calibration.LeftOutReport:
    """:func:`calibration.cross_fitted_by_group` over the corpora of :func:`left_out_answers`."""
    proba = answers[[f"p_{c}" for c in class_names]].to_numpy(np.float64)
    y = answers["label"].map({c: i for i, c in enumerate(class_names)}).to_numpy()
    return calibration.cross_fitted_by_group(proba, y, answers["corpus"].to_numpy())


def left_out_markdown(report: calibration.LeftOutReport, version: str, test_ece_with_t: float) -> str:
    r = report
    lines = [f"Confidence on corpora never trained on ({version}'s head refitted without each corpus, "
             f"{r.n} clips, {len(r.groups)} corpora; accuracy {r.accuracy:.3f}). \"after\": each corpus scaled "
             f"by the temperature fitted on the other corpora's answers; on all of them T = {r.temperature:.2f}, "
             f"which gives ECE {test_ece_with_t:.3f} on the test split.", "",
             "| left out | n | right | mean confidence | ECE | ECE after (T) |", "|---|---|---|---|---|---|"]
    for g in r.groups:
        lines.append(f"| {g.group} | {g.n} | {g.accuracy:.3f} | {g.mean_confidence:.3f} | {g.ece_before:.3f} | "
                     f"{g.ece_after:.3f} ({g.temperature:.2f}) |")
    lines.append(f"| **pooled** | {r.n} | {r.accuracy:.3f} | | **{r.ece_before:.3f}** | **{r.ece_after:.3f}** |")
    before, after = (np.median([getattr(g, k) for g in r.groups]) for k in ("ece_before", "ece_after"))
    lines.append(f"| median of the corpora | | | | {before:.3f} | {after:.3f} |")
    lines.append(f"\nLog loss pooled: {r.log_loss_before:.3f} before, {r.log_loss_after:.3f} after.")
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
    parser.add_argument("--left-out", action="store_true",
                        help="also score the confidence on corpora never trained on (the head refitted without "
                             "each corpus; about 15 minutes on 2 cores)")
    parser.add_argument("--answers", metavar="CSV",
                        help="with --left-out: the per-clip answers, read from here when the file exists, else "
                             "computed and written here (default: MODELS/tables/left-out-VERSION.csv, committed for the "
                             "shipped model: delete it to measure again)")
    parser.add_argument("--data", help="with --left-out: the corpus (default: config.data_dir())")
    parser.add_argument("--jobs", type=int, default=2, help="with --left-out: processes extracting features")
    parser.add_argument("--cache", default=str(REPO / "var" / "cache"),
                        help="with --left-out: train_default.py's feature cache ('' off)")
    args = parser.parse_args(argv)
    store = ModelStore(args.models)
    loaded, report, rows = calibrate(store, args.version, folds=args.folds)
    print(markdown(report, loaded.version))
    if args.left_out:
        path = Path(args.answers or left_out_path(store, loaded.version))
        if path.is_file():
            answers = pd.read_csv(path)
        else:
            answers = left_out_answers(loaded, data_dir=Path(args.data) if args.data else None, jobs=args.jobs,
                                       cache=args.cache)
            with atomic.atomic_path(path) as tmp:  # 6 significant digits: tiny probabilities matter to log loss
                answers.to_csv(tmp, index=False, float_format="%.6g")
        left = left_out_report(answers, loaded.class_names)
        X, y, _ = rows
        test_after = calibration.expected_calibration_error(
            calibration.with_temperature(loaded.net, left.temperature)(X), y)
        print("\n" + left_out_markdown(left, loaded.version, test_after))
    if args.robustness:
        print("\n" + under_conditions(args.robustness, loaded.class_names, report.temperature))
    if args.save:
        print(f"\nsaved version {save(store, loaded, report, rows, promote=args.promote)}"
              f"{' (serving)' if args.promote else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
