#!/usr/bin/env python
"""A quick leave-one-source-out probe of note-melody and meter features for the singing/talking judge
(docs/model.md, *Probes of the judge's inputs*).

    .venv/bin/python scripts/probe_judge_inputs.py [--jobs 2] [--out var/probe-judge]

On the clean voiced clips of ``train_default.py``'s feature table (its ``--cache``), every voiced corpus is left
out in turn and two quick judges are fitted on the others' hand-crafted features (no CNN logits, no augmented
copies; each corpus and class weighted equally): a logistic regression (C = 0.01) and gradient-boosted trees
(depth 3), once on the features as they are and once with nine candidates computed here from
``features.analyse`` (:data:`MELODY`: notes per second, how close the intervals between held notes are to whole
semitones, jumps between notes, legato, regularity of note onsets, tuning concentration, the notes' spread
against their own wobble, pulse clarity of the level). Prints the left-out corpus's balanced accuracy (accuracy
where it has one class), their mean and the worst, and each candidate's mean per corpus and class. The
candidates are kept in ``--out`` (about 3 minutes on one core).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import train_default as T  # noqa: E402

from singtalk import config, dataset  # noqa: E402

MELODY = ("notes_per_s", "interval_offgrid", "interval_ongrid_frac", "note_jump_frac", "legato_frac", "ioi_cv",
          "tuning_R", "spread_ratio", "pulse_clarity")


def melody_features(fr) -> list[float]:
    """:data:`MELODY` of one clip's ``features.Frames`` (notes: its ``in_note`` runs)."""
    from singtalk import features as F

    rate = fr.frame_rate
    st = fr.semitones.astype(np.float64)
    starts, stops = F._runs(fr.in_note)
    pitch = np.array([np.nanmedian(st[a:b]) for a, b in zip(starts, stops)])
    wobble = np.array([np.nanstd(st[a:b]) for a, b in zip(starts, stops)])
    out = [len(pitch) / max(fr.sounding.sum() / rate, 1e-3)]
    if len(pitch) >= 2:
        step = np.diff(pitch)
        off = np.abs(step - np.round(step))
        gaps = (starts[1:] - stops[:-1]) / rate
        ioi = np.diff(starts) / rate
        out += [off.mean(), (off < 0.2).mean(), (np.abs(step) >= 0.8).mean(), (gaps < 0.08).mean(),
                ioi.std() / max(ioi.mean(), 1e-3)]
    else:
        out += [0.25, 0.0, 0.0, 0.0, 1.0]
    if len(pitch) >= 3:
        angle = 2 * np.pi * np.mod(pitch, 1.0)
        out += [np.hypot(np.cos(angle).mean(), np.sin(angle).mean()), pitch.std() / (wobble.mean() + 0.1)]
    else:
        out += [0.0, 0.0]
    level = np.maximum(fr.level_db.astype(np.float64), -50.0)
    rise = np.convolve(np.maximum(np.diff(level), 0.0), np.ones(5) / 5, mode="same")
    rise -= rise.mean()
    ac = np.correlate(rise, rise, mode="full")[len(rise) - 1:]
    lo, hi = int(0.3 * rate), int(1.0 * rate)
    out.append(float(ac[lo:hi].max() / ac[0]) if len(ac) > hi and ac[0] > 0 else 0.0)
    return [float(v) for v in out]


def _clip(path: str) -> list[float] | None:
    """One clean clip's :data:`MELODY` (None if it cannot be analysed)."""
    from singtalk import audio, features
    from singtalk.errors import SingtalkError

    try:
        y = dataset.decode_clip(path)
        audio.prepare(y)  # as train_default.analysed_copies: checked, analysed untrimmed
        return melody_features(features.analyse(y))
    except SingtalkError:
        return None


def melody_table(paths: list[str], out: Path, jobs: int) -> pd.DataFrame:
    """:data:`MELODY` of each path in order (NaN where it cannot be analysed), computed once and kept in ``out``."""
    kept = out / "melody.pkl"
    if not kept.is_file():
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            rows = list(pool.map(_clip, paths, chunksize=8))
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([r if r is not None else [np.nan] * len(MELODY) for r in rows], columns=MELODY).to_pickle(kept)
    return pd.read_pickle(kept)


def corpus_weights(rows: pd.DataFrame) -> np.ndarray:
    """Every (corpus, class) the same total weight within its class, the two classes the same in all."""
    key = rows["corpus"] + "/" + rows["label"]
    w = 1.0 / key.map(key.value_counts()).to_numpy()
    per_class = pd.Series(w).groupby(rows["label"].to_numpy()).transform("sum").to_numpy()
    return w / per_class * len(rows) / 2


def left_out_scores(clean: pd.DataFrame, columns: list[str], make) -> dict:
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    scores = {}
    for corpus in sorted(clean["corpus"].unique()):
        fit = clean[clean["corpus"] != corpus]
        scaler = StandardScaler().fit(fit[columns])
        judge = make().fit(scaler.transform(fit[columns]), (fit["label"] == "singing").to_numpy(),
                           sample_weight=corpus_weights(fit))
        held = clean[clean["corpus"] == corpus]
        y, said = (held["label"] == "singing").to_numpy(), judge.predict(scaler.transform(held[columns]))
        scores[corpus] = round(float(balanced_accuracy_score(y, said) if len(set(y)) > 1 else np.mean(y == said)), 3)
    return scores


def main(argv: list[str] | None = None) -> int:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="var/cache")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="var/probe-judge",
                        help="where the candidates are kept (delete it to compute them again)")
    args = parser.parse_args(argv)
    table, _, _, names = T.features_of(cache=args.cache)
    table["corpus"] = table["source"].map(dataset.corpus_of)
    clean = table[~table["augmented"] & table["label"].isin(T.VOICED)].drop_duplicates("path").reset_index(drop=True)
    hand = [n for n in names if n not in T.VIEW_FEATURES.values()]
    paths = [str(config.data_dir() / p) for p in clean["path"]]
    melody = melody_table(paths, Path(args.out), args.jobs).assign(path=clean["path"].tolist())
    clean = clean.merge(melody.dropna(), on="path")
    with pd.option_context("display.width", 200):
        print(clean.groupby(["corpus", "label"])[list(MELODY)].mean().round(2).to_string())
    judges = {"linear": lambda: LogisticRegression(C=0.01, max_iter=5000),
              "trees": lambda: HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05, max_iter=300)}
    print(f"{len(clean)} clean voiced clips; balanced accuracy of each corpus left out:")
    for judge, make in judges.items():
        for way, columns in (("base", hand), ("+melody", hand + list(MELODY))):
            scores = left_out_scores(clean, columns, make)
            print(f"  {judge:6s} {way:8s} mean {np.mean(list(scores.values())):.3f} "
                  f"worst {min(scores.values()):.3f} {scores}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
