#!/usr/bin/env python
"""Stress-test a model on the speaker-disjoint test split under conditions it may meet.

    .venv/bin/python scripts/robustness.py [--models models] [--version V] [--sources a,b] [--limit N]
                                           [--conditions a,b] [--jobs 2] [--json OUT] [--markdown OUT]
                                           [--left-out [--heads var/left-out] [--cache var/cache]]

This is the command behind the robustness tables of the model card (``docs/robustness.md``).

``--left-out`` measures generalisation instead (issue 30's targets): every corpus's clips, from both sides of
the split, each answered by the served version's head refitted without that corpus, whose CNN logits come from
the spectrogram networks trained without it (:func:`left_out_models`: kept by ``train_default.py`` in
``var/left-out/<version>/``, ``scripts/left_out_store.py``; the missing ones are fitted from its feature cache); ``--limit N`` then keeps N
clips per class and corpus. The report adds a table per corpus (``by_corpus``).

Clips: the test side of ``models/split.json`` (``train_default.labelled_corpus`` +
``train_default.corpus_split``: no speaker of them was trained on) — singing, talking and
no voice, MIR-1K's backing tracks included (decoded by ``dataset.decode_clip``).
``--sources`` keeps some sources (or corpora: ``aishell1`` names both of its sources);
``--limit N`` keeps N clips per class, drawn from its sources in proportion to their size
(a seeded shuffle, then each clip's quantile within its source). A two-class model (singing,
talking) is asked about the voiced clips only; its no-voice columns stay empty.

Every clip is altered in one way at a time and classified exactly as the app does
(``Classifier.classify`` on the 16 kHz samples, the model loaded from the model store).
Conditions (:data:`CONDITIONS`, in this order):

- ``clean``: the clip as decoded;
- ``small room``: an image-source shoebox room (``augment.in_room``, pyroomacoustics), RT60 0.3–0.6 s
  (uniform), microphone 0.5–2 m from the voice (log-uniform);
- ``hall``: the same, RT60 0.7–1.2 s, 1.5–4 m;
- ``reverb tail 0.6 s``: the earlier synthetic room, an exponentially decaying noise response with RT60
  0.6 s behind a direct path of weight 3 (``augment.room_reverb``);
- ``living room (measured)``, ``sports hall (measured)``: a real room's measured impulse response
  (``singtalk.measured_rooms``: OpenAIR, University of York; the hall reverberates for about 5 s), fetched by
  ``make rooms``;
- ``laptop``: a room with RT60 0.4 s at 0.6 m, white noise at 20 dB SNR, a 120 Hz high-pass
  (``augment.laptop``);
- ``telephone``: 300–3400 Hz, 8 kHz, G.711 μ-law and back (``augment.phone_line``);
- ``white noise 10 dB``, ``pink noise 5 dB``: seeded noise at that SNR (``augment.noise``, ``augment.at_snr``);
- ``mp3 32 kb/s``: through ffmpeg's MP3 encoder and back (``augment.mp3_round_trip``);
- ``quiet -35 dB``: peak at −35 dBFS, then rounded to 16-bit PCM (about 10 bits left);
- ``clipped +20 dB``: peak-normalised, +20 dB, hard-clipped at full scale and rounded to 16-bit PCM;
- ``music 10 dB``, ``music 0 dB``, ``sounds 10 dB``, ``sounds 0 dB``: a real no-voice recording from the test
  split mixed in at that SNR (``augment.with_background``: looped or cropped from a seeded offset) —
  instrumental music (``language`` music: Berklee phrases and loops, librosa pieces, MIR-1K backing tracks)
  or everyday sounds (``language`` sound); drawn for each clip among the clips of another speaker group,
  so never the clip itself nor its own song's accompaniment;
- ``pitch -3 st``, ``pitch +3 st``: librosa's phase-vocoder pitch shift (tempo kept);
- ``tempo x0.85``, ``tempo x1.15``: librosa's time stretch (pitch kept);
- ``first 2 s``: only the first two seconds (RAVDESS clips start with about 1 s of silence).

Seeds: the alteration of clip ``c`` under condition ``k`` draws from
``numpy.random.default_rng([SEED, crc32(k), crc32(c)])`` (``c``: the clip's path relative to the
corpus), its background from ``default_rng([SEED, crc32(k), crc32(c), 1])``: a clip gets the same
alteration whatever ``--limit``, ``--sources`` or ``--jobs``, and a run is reproducible.

Scores per condition (:func:`score`): on voiced clips, the judge singing vs talking is the larger of
``p_singing`` and ``p_talking`` (whatever ``p_no_voice`` says): balanced accuracy, singing recall, talking
recall; the share of voiced clips whose answer is ``no_voice``; the no-voice recall (a reverberant
instrumental must still be no voice); the share of clips answered right (the app's label; over the
voiced clips for a two-class model); ``n``, clips that could not be classified (``failed``, counted as
wrong) and the change from ``clean`` (``delta``: condition − clean; negative accuracy is a drop).
Printed as a table; ``--json`` writes everything (with each clip's answers), ``--markdown`` a table ready
to paste into ``docs/robustness.md`` that names the model version, the seeds and the generators.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

from singtalk import atomic, audio, augment, config, dataset, labels, measured_rooms  # noqa: E402

SR = audio.SAMPLE_RATE
SEED = 0
"""The base seed of every condition's random draws (see the module docstring)."""
METRICS = ("balanced_accuracy", "recall_singing", "recall_talking", "voiced_as_no_voice", "recall_no_voice",
           "accuracy")
"""Scores per condition, each in [0, 1] (or None where the clips or the model lack the class)."""


# -- conditions --------------------------------------------------------------------------------------------
Alter = Callable[[np.ndarray, np.random.Generator, "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class Condition:
    """One alteration: ``alter(y, rng, background)`` → samples; ``background`` names the kind of no-voice
    recording (``language`` music or sound) it mixes in, else None."""

    alter: Alter
    how: str
    background: str | None = None


def _pitch(y: np.ndarray, steps: float) -> np.ndarray:
    import librosa

    return librosa.effects.pitch_shift(np.asarray(y, dtype=np.float32), sr=SR, n_steps=steps)


def _tempo(y: np.ndarray, rate: float) -> np.ndarray:
    import librosa

    return librosa.effects.time_stretch(np.asarray(y, dtype=np.float32), rate=rate)


def _reverb_tail(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = augment.room_reverb(y, rng, SR, rt60=0.6, direct=3.0)
    return out * (np.abs(y).max() / max(np.abs(out).max(), 1e-9))


def _pcm16(y: np.ndarray) -> np.ndarray:
    """``y`` as a 16-bit file would hold it (clipped at full scale)."""
    return audio.pcm16(y).astype(np.float32) / 32767.0


def _at_peak(y: np.ndarray, db: float) -> np.ndarray:
    return np.asarray(y, dtype=np.float64) * (10 ** (db / 20) / max(float(np.max(np.abs(y))), 1e-9))


CONDITIONS: dict[str, Condition] = {
    "clean": Condition(lambda y, rng, bg: y, "the clip as decoded"),
    "small room": Condition(
        lambda y, rng, bg: augment.in_room(y, rng, SR, rt60=(0.3, 0.6), distance=(0.5, 2.0)),
        "image-source room (pyroomacoustics), RT60 0.3–0.6 s, 0.5–2 m"),
    "hall": Condition(
        lambda y, rng, bg: augment.in_room(y, rng, SR, rt60=(0.7, 1.2), distance=(1.5, 4.0)),
        "image-source room (pyroomacoustics), RT60 0.7–1.2 s, 1.5–4 m"),
    "reverb tail 0.6 s": Condition(lambda y, rng, bg: _reverb_tail(y, rng),
                                   "exponential noise tail, RT60 0.6 s, direct path ×3"),
    "living room (measured)": Condition(lambda y, rng, bg: measured_rooms.in_room(y, "living room", SR),
                                        measured_rooms.ROOMS["living room"].credit),
    "sports hall (measured)": Condition(lambda y, rng, bg: measured_rooms.in_room(y, "sports hall", SR),
                                        measured_rooms.ROOMS["sports hall"].credit),
    "laptop": Condition(lambda y, rng, bg: augment.laptop(y, rng, SR),
                        "room RT60 0.4 s at 0.6 m + white noise 20 dB SNR + 120 Hz high-pass"),
    "telephone": Condition(lambda y, rng, bg: augment.phone_line(y, SR), "300–3400 Hz, 8 kHz μ-law"),
    "white noise 10 dB": Condition(
        lambda y, rng, bg: augment.at_snr(y, augment.noise(rng, y.size, colour="white"), 10.0),
        "white noise at 10 dB SNR"),
    "pink noise 5 dB": Condition(
        lambda y, rng, bg: augment.at_snr(y, augment.noise(rng, y.size, colour="pink"), 5.0),
        "pink noise at 5 dB SNR"),
    "mp3 32 kb/s": Condition(lambda y, rng, bg: augment.mp3_round_trip(y, SR, 32), "ffmpeg MP3 at 32 kb/s"),
    "quiet -35 dB": Condition(lambda y, rng, bg: _pcm16(_at_peak(y, -35.0)), "peak −35 dBFS, 16-bit"),
    "clipped +20 dB": Condition(lambda y, rng, bg: _pcm16(_at_peak(y, 20.0)),
                                "peak-normalised, +20 dB, hard-clipped, 16-bit"),
    "music 10 dB": Condition(lambda y, rng, bg: augment.with_background(y, rng, bg, 10.0),
                             "test-split instrumental music at 10 dB SNR", "music"),
    "music 0 dB": Condition(lambda y, rng, bg: augment.with_background(y, rng, bg, 0.0),
                            "test-split instrumental music at 0 dB SNR", "music"),
    "sounds 10 dB": Condition(lambda y, rng, bg: augment.with_background(y, rng, bg, 10.0),
                              "test-split everyday sound at 10 dB SNR", "sound"),
    "sounds 0 dB": Condition(lambda y, rng, bg: augment.with_background(y, rng, bg, 0.0),
                             "test-split everyday sound at 0 dB SNR", "sound"),
    "pitch -3 st": Condition(lambda y, rng, bg: _pitch(y, -3), "phase-vocoder pitch shift −3 semitones"),
    "pitch +3 st": Condition(lambda y, rng, bg: _pitch(y, 3), "phase-vocoder pitch shift +3 semitones"),
    "tempo x0.85": Condition(lambda y, rng, bg: _tempo(y, 0.85), "time stretch to 0.85× the tempo"),
    "tempo x1.15": Condition(lambda y, rng, bg: _tempo(y, 1.15), "time stretch to 1.15× the tempo"),
    "first 2 s": Condition(lambda y, rng, bg: y[: 2 * SR], "only the first 2 s"),
}


def condition_rng(condition: str, clip: str, *extra: int) -> np.random.Generator:
    """The random draws of ``condition`` on ``clip`` (its path relative to the corpus)."""
    return np.random.default_rng([SEED, zlib.crc32(condition.encode()), zlib.crc32(clip.encode()), *extra])


# -- clips -------------------------------------------------------------------------------------------------
def corpus_clips(data_dir: Path, split_file: Path):
    """Every labelled clip of the corpus (``path, label, speaker, source, language``) plus ``key`` (path
    relative to the corpus), ``group`` (speaker group), ``corpus`` (``dataset.corpus_of``) and ``test`` (on
    the test side of ``split_file``), sorted by key."""
    import train_default

    labelled = train_default.labelled_corpus(data_dir)
    frame = labelled.assign(group=dataset.speaker_groups(labelled),
                            test=train_default.corpus_split(labelled, split_file),
                            corpus=labelled["source"].map(dataset.corpus_of),
                            key=[train_default.relative(p, data_dir) for p in labelled["path"]])
    return frame.sort_values("key").reset_index(drop=True)


def split_clips(data_dir: Path, split_file: Path):
    """The test side of :func:`corpus_clips`: no speaker of them was trained on."""
    clips = corpus_clips(data_dir, split_file)
    return clips[clips["test"]].reset_index(drop=True)


def left_out_pick(clips, *, sources: list[str] | None = None, limit: int = 0, classes=labels.CLASSES):
    """:func:`pick` corpus by corpus (both sides of the split: a left-out head heard none of its corpus)."""
    import pandas as pd

    kept = pick(clips, sources=sources, classes=classes)
    picked = [pick(rows, limit=limit, classes=classes) for _, rows in kept.groupby("corpus", sort=True)]
    return pd.concat(picked, ignore_index=True).sort_values("key").reset_index(drop=True) if picked else kept


def pick(test, *, sources: list[str] | None = None, limit: int = 0, classes=labels.CLASSES):
    """The clips to measure: ``classes`` only, ``sources`` (source or corpus names) only, at most ``limit``
    per class, drawn from its sources in proportion to their size (stratified: a :data:`SEED`-ed shuffle, then
    the clips in order of their quantile within their source)."""
    from singtalk.errors import DatasetError

    frame = test[test["label"].isin(list(classes))]
    if sources:
        known = set(test["source"]) | {dataset.corpus_of(s) for s in test["source"]}
        unknown = sorted(set(sources) - known)
        if unknown:
            raise DatasetError(f"no test clips from {', '.join(unknown)}; "
                               f"its sources are {', '.join(sorted(set(test['source'])))}")
        frame = frame[frame["source"].isin(sources) | frame["source"].map(dataset.corpus_of).isin(sources)]
    if limit:
        kept = []
        for _, rows in frame.groupby("label", sort=True):
            rows = rows.sample(frac=1.0, random_state=SEED)
            # Each clip's quantile within its source: any first N are spread over the sources as the class is.
            quantile = (rows.groupby("source").cumcount() + 0.5) / rows.groupby("source")["source"].transform("size")
            kept.append(rows.assign(q=quantile).sort_values("q", kind="stable").head(limit).drop(columns="q"))
        frame = frame.loc[sorted(i for rows in kept for i in rows.index)] if kept else frame.iloc[:0]
    return frame.reset_index(drop=True)


def background_plan(clips, test, names: list[str]) -> list[list[str | None]]:
    """Per clip, per condition of ``names``: the path of its background recording, or None.

    The background of a clip is drawn (``condition_rng(name, key, 1)``) among the test split's no-voice clips
    of the condition's kind, leaving out the clip's own speaker group (the clip itself, and for a MIR-1K
    song its own accompaniment).
    """
    pools = {kind: test[(test["label"] == labels.NO_VOICE) & (test["language"] == kind)]
             for kind in {c.background for c in CONDITIONS.values() if c.background}}
    plan = []
    for key, group in zip(clips["key"], clips["group"]):
        row = []
        for name in names:
            kind = CONDITIONS[name].background
            if kind is None:
                row.append(None)
                continue
            pool = pools[kind][pools[kind]["group"] != group]
            row.append(str(pool["path"].iloc[int(condition_rng(name, key, 1).integers(len(pool)))]) if len(pool)
                       else None)
        plan.append(row)
    return plan


# -- measuring ---------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(threads: str | None = None) -> None:
    """Pool workers use one TensorFlow thread each and load each model once (:func:`_classifier`)."""
    if threads:
        os.environ["SINGTALK_TF_THREADS"] = threads
    _WORKER.clear()
    _WORKER.update(classifiers={}, backgrounds={})


def _classifier(model: tuple[str, str, tuple]):
    """The classifier of ``model`` = (model store, version, ((view, path of its spectrogram network), ...): empty
    for the shipped ones), loaded on first use."""
    if model not in _WORKER.setdefault("classifiers", {}):
        import left_out_store

        from singtalk.classify import Classifier
        from singtalk.registry import ModelStore

        root, version, nets = model
        _WORKER["classifiers"][model] = Classifier(ModelStore(root).load(version),
                                                   nets=left_out_store.networks(nets))
    return _WORKER["classifiers"][model]


def left_out_models(loaded, corpora: list[str], *, data_dir: Path | None = None, jobs: int = 2,
                    cache: str = "var/cache", root: Path | None = None) -> dict[str, dict]:
    """{corpus: {"version", "nets"}}: the heads of ``loaded`` refitted without each of ``corpora``, as
    ``left_out_store`` keeps them; the missing ones are fitted now (``train_default.left_out_fits`` on the
    training features, from ``cache`` when they were extracted before) and kept."""
    import left_out_store
    import train_default as T

    root = Path(root) if root else left_out_store.LEFT_OUT_DIR
    missing = [c for c in corpora if c not in left_out_store.read_index(loaded.version, root)]
    if missing:
        table, inputs, fold_dirs, names = T.features_of(loaded, data_dir=data_dir, jobs=jobs, cache=cache)
        for corpus, _, result, scaler, nets in T.left_out_fits(table, inputs, fold_dirs, names,
                                                               T.head_args_of(loaded.metadata), missing):
            kept = left_out_store.keep(loaded.version, loaded.metadata.get("config", {}), corpus, result, scaler,
                                       names, nets=nets, root=root)
            print(f"  head without {corpus}: {kept}", flush=True)
    index = left_out_store.read_index(loaded.version, root)
    return {c: index[c] for c in corpora if c in index}


def _background(path: str) -> np.ndarray:
    cache = _WORKER.setdefault("backgrounds", {})
    if path not in cache:
        cache[path] = dataset.decode_clip(path)
    return cache[path]


def measure_clip(task: tuple[str, str, list[str], list[str | None], tuple[str, str, str]]
                 ) -> list[tuple[dict | None, str]]:
    """``(path, key, condition names, background paths, model)`` → per condition ``(probabilities, "")`` or
    ``(None, why it could not be classified)``. The clip is decoded once; ``model``: :func:`_classifier`."""
    from singtalk.errors import SingtalkError

    path, key, names, backgrounds, model = task
    classifier = _classifier(model)
    try:
        y = dataset.decode_clip(path)
    except SingtalkError as err:
        return [(None, str(err))] * len(names)
    out = []
    for name, background in zip(names, backgrounds):
        if CONDITIONS[name].background and not background:
            out.append((None, f"no {CONDITIONS[name].background} recording of another speaker group to mix in"))
            continue
        try:
            bg = _background(background) if background else None
            altered = CONDITIONS[name].alter(y, condition_rng(name, key), bg)
            prediction = classifier.classify(np.asarray(altered, dtype=np.float32))
            out.append(({**prediction.probabilities, "label": prediction.label}, ""))
        except SingtalkError as err:
            out.append((None, str(err)))
        except Exception as err:  # noqa: BLE001 - one clip must not end a long run; reported at the end
            out.append((None, f"unexpected {type(err).__name__}: {err}"))
    return out


def measure(clips, plan, names: list[str], models: list[tuple[str, str, str]], *, jobs: int,
            progress: Callable[[int, int], None] | None = None) -> list[list[tuple[dict | None, str]]]:
    """:func:`measure_clip` of every clip, each by its model of ``models`` (:func:`_classifier`), in order: in
    this process, or in ``jobs`` spawned workers that each load a model once."""
    tasks = [(p, k, names, b, m) for p, k, b, m in zip(clips["path"], clips["key"], plan, models)]
    results = []
    if jobs <= 1:
        for i, task in enumerate(tasks):
            results.append(measure_clip(task))
            if progress:
                progress(i + 1, len(tasks))
        return results
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=("1",)) as pool:
        for i, result in enumerate(pool.map(measure_clip, tasks, chunksize=1)):
            results.append(result)
            if progress:
                progress(i + 1, len(tasks))
    return results


# -- scores ------------------------------------------------------------------------------------------------
def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def score(truth: np.ndarray, outcomes: list[tuple[dict | None, str]], class_names: list[str]) -> dict:
    """The scores of one condition (see the module docstring); clips that failed count as wrong."""
    answers = np.array([p["label"] if p else "" for p, _ in outcomes], dtype=object)
    p_sing = np.array([p.get(labels.SINGING, np.nan) if p else np.nan for p, _ in outcomes], dtype=float)
    p_talk = np.array([p.get(labels.TALKING, np.nan) if p else np.nan for p, _ in outcomes], dtype=float)
    failed = np.array([p is None for p, _ in outcomes], dtype=bool)
    judge = np.where(failed, "", np.where(p_sing >= p_talk, labels.SINGING, labels.TALKING))
    sing, talk, nv = truth == labels.SINGING, truth == labels.TALKING, truth == labels.NO_VOICE
    three = labels.NO_VOICE in class_names
    recall_singing = _mean(judge[sing] == labels.SINGING)
    recall_talking = _mean(judge[talk] == labels.TALKING)
    recalls = [r for r in (recall_singing, recall_talking) if r is not None]
    known = np.isin(truth, class_names)
    return {
        "n": len(truth), "n_singing": int(sing.sum()), "n_talking": int(talk.sum()), "n_no_voice": int(nv.sum()),
        "failed": int(failed.sum()),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
        "recall_singing": recall_singing,
        "recall_talking": recall_talking,
        "voiced_as_no_voice": _mean(answers[sing | talk] == labels.NO_VOICE) if three else None,
        "recall_no_voice": _mean(answers[nv] == labels.NO_VOICE) if three else None,
        "accuracy": _mean(answers[known] == truth[known]),
    }


def with_deltas(results: dict) -> dict:
    """Each condition's scores plus ``delta``: its metric minus the clean one (None where either is)."""
    clean = results.get("clean", {})
    for scores in results.values():
        scores["delta"] = {m: (None if scores.get(m) is None or clean.get(m) is None else scores[m] - clean[m])
                           for m in METRICS}
    return results


# -- output ------------------------------------------------------------------------------------------------
def generators() -> dict:
    """The versions of what makes the alterations."""
    import subprocess
    from importlib.metadata import version

    out = {name: version(name) for name in ("pyroomacoustics", "librosa", "numpy", "scipy")}
    try:
        first = subprocess.run([audio.ffmpeg_binary(), "-version"], capture_output=True, text=True,
                               timeout=30, check=False).stdout.splitlines()
        out["ffmpeg"] = first[0].split(" version ")[1].split()[0] if first else ""
    except (OSError, IndexError, subprocess.SubprocessError):
        out["ffmpeg"] = ""
    return out


def _cell(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _delta(value: float | None) -> str:
    return "" if value is None else f"{value:+.3f}".replace("-", "−")


COLUMNS = [("condition", "Condition"), ("n", "n"), ("balanced_accuracy", "Sing/talk bal. acc."),
           ("d_balanced_accuracy", "Δ"), ("recall_singing", "Singing recall"), ("recall_talking", "Talking recall"),
           ("voiced_as_no_voice", "Voiced → no voice"), ("recall_no_voice", "No-voice recall"),
           ("accuracy", "Answered right"), ("d_accuracy", "Δ"), ("failed", "Failed")]


def rows(results: dict) -> list[list[str]]:
    """The table's cells, one row per condition (:data:`COLUMNS`)."""
    out = []
    for name, s in results.items():
        cells = {"condition": name, "n": str(s["n"]), "failed": str(s["failed"]),
                 "d_balanced_accuracy": "" if name == "clean" else _delta(s["delta"]["balanced_accuracy"]),
                 "d_accuracy": "" if name == "clean" else _delta(s["delta"]["accuracy"])}
        cells.update({m: _cell(s[m]) for m in METRICS})
        out.append([cells[key] for key, _ in COLUMNS])
    return out


def text_table(results: dict) -> str:
    heads = [title for _, title in COLUMNS]
    body = rows(results)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(heads)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(heads), *map(line, body)])


def corpus_table(by_corpus: dict, *, markdown: bool = False) -> str:
    """Per left-out corpus: its clips, answered right clean, averaged over the other conditions, and its worst
    condition."""
    heads = ["Corpus", "n", "Clean", "Mean of the rest", "Worst condition", "Its score"]
    body = []
    for corpus, results in by_corpus.items():
        rest = {name: s["accuracy"] for name, s in results.items() if name != "clean" and s["accuracy"] is not None}
        worst = min(rest, key=rest.get) if rest else ""
        body.append([corpus, str(results["clean"]["n"]), _cell(results["clean"]["accuracy"]),
                     _cell(float(np.mean(list(rest.values()))) if rest else None), worst,
                     _cell(rest.get(worst)) if worst else "—"])
    if markdown:
        return "\n".join(["| " + " | ".join(heads) + " |", "|---|---:|---:|---:|---|---:|",
                          *("| " + " | ".join(r) + " |" for r in body)])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(heads)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [heads, *body])


def markdown(report: dict) -> str:
    """The table for ``docs/robustness.md``, with what it was measured on."""
    g = report["generators"]
    counts = report["counts"]
    parts = [f"{counts[c]} {labels.display(c).lower()}" for c in labels.CLASSES if counts.get(c)]
    lines = [
        (f"Model `{report['model']}` ({', '.join(report['class_names'])}); {report['n']} "
         + ("clips of every corpus, both sides of the split, each answered by the head refitted without its corpus "
            "and the spectrogram networks trained without it (`scripts/left_out_store.py`)" if report.get("left_out")
            else "test-split clips (speakers never trained on, `models/split.json`)")
         + f": {', '.join(parts)}"
         + (f"; sources {', '.join(report['sources'])}" if report["sources"] else "")
         + (f"; at most {report['limit']} per class" + (" and corpus" if report.get("left_out") else "")
            if report["limit"] else "") + "."),
        (f"Seeds: `numpy.random.default_rng([{report['seed']}, crc32(condition), crc32(clip)])`. "
         f"Rooms: pyroomacoustics {g['pyroomacoustics']} (image source to order {augment.ROOM_MAX_ORDER}, then a "
         f"statistical tail); pitch and tempo: librosa {g['librosa']}; MP3: ffmpeg {g['ffmpeg'] or '?'}."),
        (f"Command: `{report['command']}` ({report['seconds'] / 60:.1f} min, {report['jobs']} process"
         f"{'es' if report['jobs'] > 1 else ''})."),
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" if key == "condition" else "---:" for key, _ in COLUMNS) + "|",
        *("| " + " | ".join(cells) + " |" for cells in rows(report["conditions"])),
        "",
        "Sing/talk: on voiced clips, the larger of p(singing) and p(talking). Δ: the condition minus clean. "
        "Answered right: the app's label" + ("" if labels.NO_VOICE in report["class_names"] else
                                             " (voiced clips only: this model has no no-voice class)") + ".",
    ]
    if report.get("by_corpus"):
        lines += ["", "Per corpus left out, answered right:", "", corpus_table(report["by_corpus"], markdown=True)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import train_default

    from singtalk.errors import ModelError, SingtalkError
    from singtalk.registry import ModelStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="the corpus (default: $SINGTALK_DATA or ../shared/data)")
    parser.add_argument("--split", default=str(train_default.SPLIT_FILE), help="speaker groups' sides")
    parser.add_argument("--models", default=str(HERE.parent / "models"), help="the model store (default: models/)")
    parser.add_argument("--version", default=None, help="model version (default: the current one)")
    parser.add_argument("--sources", default="", help="comma-separated sources or corpora to keep")
    parser.add_argument("--limit", type=int, default=0, help="at most N clips per class (for a quick look)")
    parser.add_argument("--conditions", default="", help="comma-separated conditions (default: all; clean is "
                                                          "always measured)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--left-out", action="store_true",
                        help="every corpus's clips (both sides of the split) by the head refitted without that "
                             "corpus, with the spectrogram networks trained without it (kept in var/left-out: "
                             "scripts/left_out_store.py; --limit then counts per class and corpus)")
    parser.add_argument("--cache", default="var/cache", help="with --left-out: train_default.py's feature cache")
    parser.add_argument("--heads", default=None, help="with --left-out: where the left-out heads are kept "
                                                      "(default: var/left-out; scripts/left_out_store.py)")
    parser.add_argument("--json", default=None, help="write the scores and every clip's answers here")
    parser.add_argument("--markdown", default=None, help="write the table for docs/robustness.md here")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    names = [n.strip() for n in args.conditions.split(",") if n.strip()] or list(CONDITIONS)
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        parser.error(f"unknown condition(s) {', '.join(unknown)}; known: {', '.join(CONDITIONS)}")
    names = ["clean", *(n for n in names if n != "clean")]
    try:
        store = ModelStore(args.models)
        version = args.version or store.current_version()
        if version is None:
            raise ModelError(f"No model is installed in {args.models} (no CURRENT file).")
        for name in names:  # a measured room's response must be here before hours of measuring start
            room = name.removesuffix(" (measured)")
            if room in measured_rooms.ROOMS:
                measured_rooms.response(room, SR)
        metadata = store.read_metadata(version)
        store.check_compatible(version, metadata)
        class_names = [str(c) for c in metadata["class_names"]]
        data_dir = Path(args.data) if args.data else config.data_dir()
        every = corpus_clips(data_dir, Path(args.split))
        test = every[every["test"]].reset_index(drop=True)
        sources = [s.strip() for s in args.sources.split(",") if s.strip()]
        classes = [c for c in labels.CLASSES if c in class_names]
        clips = (left_out_pick(every, sources=sources, limit=args.limit, classes=classes) if args.left_out
                 else pick(test, sources=sources, limit=args.limit, classes=classes))
    except SingtalkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    models = [(args.models, version, ())] * len(clips)
    if args.left_out and not clips.empty:
        import left_out_store

        heads_root = Path(args.heads) if args.heads else left_out_store.LEFT_OUT_DIR
        heads = left_out_models(store.load(version), sorted(clips["corpus"].unique()), data_dir=data_dir,
                                jobs=args.jobs, cache=args.cache, root=heads_root)
        clips = clips[clips["corpus"].isin(list(heads))].reset_index(drop=True)
        root = str(left_out_store.store_dir(version, heads_root))
        models = [(root, heads[c]["version"], tuple(sorted(heads[c]["nets"].items()))) for c in clips["corpus"]]
    if clips.empty:
        print("error: no clips to measure", file=sys.stderr)
        return 2
    counts = clips["label"].value_counts().to_dict()
    left_out = int((test["label"] == labels.NO_VOICE).sum()) if labels.NO_VOICE not in class_names else 0
    jobs = max(1, min(args.jobs, len(clips)))
    print(f"model {version} ({', '.join(class_names)}); {len(clips)} "
          + ("clips, each by the head that never heard its corpus: " if args.left_out
             else "test clips (speaker-disjoint): ")
          + ", ".join(f"{counts.get(c, 0)} {c}" for c in labels.CLASSES if c in class_names)
          + (f"; {left_out} no-voice clips left out (the model has no such class)" if left_out else "")
          + f"; {len(names)} conditions; {jobs} process{'es' if jobs > 1 else ''}", flush=True)

    step = max(1, len(clips) // 20)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            print(f"  {done}/{total} clips ({time.perf_counter() - started:.0f} s)", flush=True)

    plan = background_plan(clips, test, names)
    outcomes = measure(clips, plan, names, models, jobs=jobs, progress=progress)
    truth = clips["label"].to_numpy(dtype=object)
    results = with_deltas({name: {"how": CONDITIONS[name].how,
                                  **score(truth, [o[k] for o in outcomes], class_names)}
                           for k, name in enumerate(names)})
    print(text_table(results), flush=True)
    by_corpus = {}
    if args.left_out:
        for corpus in sorted(clips["corpus"].unique()):
            rows_c = np.flatnonzero(clips["corpus"].to_numpy() == corpus)
            by_corpus[corpus] = with_deltas({name: score(truth[rows_c], [outcomes[r][k] for r in rows_c], class_names)
                                             for k, name in enumerate(names)})
        print(corpus_table(by_corpus), flush=True)
    unexpected = sorted({e for o in outcomes for _, e in o if e.startswith("unexpected ")})
    for message in unexpected:
        print(f"warning: {message}", file=sys.stderr)

    command = shlex.join(["python", "scripts/robustness.py", *(argv if argv is not None else sys.argv[1:])])
    report = {
        "model": version, "class_names": class_names, "n": len(clips), "left_out": bool(args.left_out),
        "counts": {c: int(counts.get(c, 0)) for c in labels.CLASSES},
        "split": str(args.split), "sources": sources, "limit": args.limit, "seed": SEED,
        "seeding": "numpy.random.default_rng([seed, crc32(condition), crc32(clip)]); the background's choice "
                   "adds a 1; clip: its path relative to the corpus",
        "generators": generators(), "command": command.strip(), "jobs": jobs,
        "seconds": round(time.perf_counter() - started, 1),
        "conditions": results,
        **({"by_corpus": by_corpus} if args.left_out else {}),
        "clips": [{"path": k, "label": lab, "source": src, **{
            name: {"answer": (o[i][0] or {}).get("label", ""), "error": o[i][1],
                   **{labels.probability_column(c): round(float(o[i][0][c]), 4) for c in class_names if o[i][0]},
                   **({"background": train_default.relative(plan[j][i], data_dir)} if plan[j][i] else {})}
            for i, name in enumerate(names)}}
            for j, (k, lab, src, o) in enumerate(zip(clips["key"], clips["label"], clips["source"], outcomes))],
    }
    if args.json:
        atomic.write_json(args.json, report)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(args.markdown, markdown(report))
    print(f"{report['seconds'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
