"""The ``singtalk`` command line on real clips with the shipped model: batch CSV, bad inputs, timeline, segments,
no voice after vocal extraction, URLs."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from singtalk.audio import write_wav
from singtalk.config import REPO_ROOT
from tests.conftest import ffmpeg_convert, sung_tone

CLI = [sys.executable, "-m", "singtalk.cli"]
HEADER = ["path", "label", "confidence", "p_singing", "p_talking", "p_no_voice", "duration_s", "model", "error"]


def run_cli(*args, env_extra=None, timeout=600):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def good_clips(manifest, tmp_path_factory):
    """12 real clips, 6 singing and 6 talking, from every source (copied to tmp, never into the repo)."""
    folder = tmp_path_factory.mktemp("batch")
    picked = manifest[manifest.label.isin(["singing", "talking"])].groupby(["label", "source"]).head(2)
    picked = picked.groupby("label").head(6)
    rows = []
    for row in picked.itertuples():
        dst = folder / f"{row.label}__{Path(row.path).name}"
        dst.write_bytes(Path(row.abspath).read_bytes())
        rows.append((dst, row.label))
    return folder, rows


def test_batch_folder_with_broken_files(good_clips, tmp_path):
    folder, rows = good_clips
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.mp3").write_text("not audio at all\n" * 20)
    write_wav(folder / "silence.wav", sung_tone(5.0) * 0)
    write_wav(folder / "short.wav", sung_tone(0.3))
    out = tmp_path / "out.csv"
    proc = run_cli("classify", folder, "--csv", out)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    assert ["path", *table.columns[:8]] == HEADER
    for name in ("empty.wav", "text.mp3", "silence.wav", "short.wav"):
        row = table.loc[str(folder / name)]
        assert row.label == "" and row.error and row.confidence == "" and row.p_singing == "", name
    assert "silent" in table.loc[str(folder / "silence.wav")].error
    good = table.loc[[str(p) for p, _ in rows]]
    assert (good.error == "").all()
    version = (REPO_ROOT / "models" / "CURRENT").read_text().strip()
    assert (table.model == version).all(), "every row names the model version, error rows too"
    classes = json.loads((REPO_ROOT / "models" / "versions" / version / "metadata.json").read_text())["class_names"]
    p = good[[f"p_{c}" for c in classes]].astype(float)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=2e-4)
    np.testing.assert_allclose(good.confidence.astype(float), p.max(axis=1), atol=1e-4)
    assert (good.label == p.idxmax(axis=1).str[2:]).all()
    if "no_voice" not in classes:
        assert (good.p_no_voice == "").all(), "a two-class model has no p_no_voice"
    truth = [label for _, label in rows]
    accuracy = (good.label.to_numpy() == truth).mean()
    assert accuracy >= 0.9, good[["label", "p_singing"]]


def test_exit_zero_and_stdout_when_all_good(good_clips):
    folder, rows = good_clips
    proc = run_cli("classify", rows[0][0], rows[-1][0])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith(",".join(HEADER))
    assert len(proc.stdout.splitlines()) == 3


def test_timeline_on_long_mixture_with_separation(corpus, tmp_path):
    song = sorted((corpus / "mixture" / "librosa_fishin").glob("*"))[0]
    source = tmp_path / "song_first_64s.flac"  # intro, verse, break, verse, break: the song's first 64 s
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(song), "-t", "64", str(source)], check=True)
    out, timeline, segments = tmp_path / "out.csv", tmp_path / "timeline.csv", tmp_path / "segments.csv"
    proc = run_cli("classify", source, "--separate", "--csv", out, "--timeline", timeline, "--segments", segments)
    assert proc.returncode == 0, proc.stderr
    windows = pd.read_csv(timeline, keep_default_na=False)
    assert list(windows.columns[:5]) == ["path", "start_s", "end_s", "label", "p_singing"]
    assert len(windows) > 25 and (windows.start_s.diff().dropna() > 0).all()
    duration = pd.read_csv(out).duration_s[0]
    assert windows.end_s.max() == pytest.approx(duration, abs=0.5)
    sung = windows[windows.label != ""]
    assert (sung.label == "singing").mean() > 0.5  # a song: most voiced windows sing (breaks are instrumental)
    assert pd.read_csv(out).label[0] == "singing"
    parts = pd.read_csv(segments)
    print(parts.to_string())
    assert list(parts.columns) == ["path", "start_s", "end_s", "label", "confidence"]
    assert parts.start_s.iloc[0] == 0 and parts.end_s.iloc[-1] == pytest.approx(duration, abs=0.01)
    assert (parts.start_s.iloc[1:].to_numpy() == parts.end_s.iloc[:-1].to_numpy()).all()
    assert (parts.end_s - parts.start_s > 4.0).all() or len(parts) == 1
    lengths = (parts.end_s - parts.start_s).groupby(parts.label).sum()
    assert lengths.idxmax() == "singing"  # most of the song is sung
    # its instrumental intro leaves the vocal stem quiet: too little sound in those windows, so no voice
    assert parts.label.iloc[0] == "no_voice" and 4 < parts.end_s.iloc[0] <= 12 and np.isnan(parts.confidence.iloc[0])


def test_separate_answers_no_voice_for_an_accompaniment(corpus, manifest, tmp_path):
    """A real MIR-1K backing track (the mixture is half vocal, half accompaniment, so accompaniment = 2 · mixture
    − vocal) through ``--separate``: Spleeter keeps only leakage, and the answer is ``no_voice`` with a note saying
    why — an answer, not an error, also from a model without a no_voice class — instead of a label of that
    leakage; the song itself, in the same run, is singing. Exit status 0: nothing failed."""
    from singtalk.audio import decode

    stem = "abjones_2_04"
    mixture_path = corpus / "mixture" / "mir1k" / f"{stem}_mix.flac"
    assert f"mixture/mir1k/{stem}_mix.flac" in set(manifest.path), "the corpus should hold this MIR-1K mixture"
    mixture, vocal = decode(mixture_path), decode(corpus / "singing" / "mir1k" / f"{stem}.flac")
    n = min(len(mixture), len(vocal))
    accompaniment = write_wav(tmp_path / "accompaniment.wav", 2 * mixture[:n] - vocal[:n])
    out, segments = tmp_path / "out.csv", tmp_path / "segments.json"
    proc = run_cli("classify", accompaniment, mixture_path, "--separate", "--csv", out, "--segments", segments)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out, keep_default_na=False).set_index("path")
    backing, song = table.loc[str(accompaniment)], table.loc[str(mixture_path)]
    assert backing.label == "no_voice" and backing.error == "", backing.to_dict()
    assert backing.note.startswith("vocal extraction kept only leakage, ") and "dB below the music" in backing.note
    assert float(backing.note.split(", ")[1].split(" dB")[0]) > 20  # NO_VOICE_DB
    assert (float(backing.confidence), float(backing.p_no_voice)) == (1.0, 1.0)
    assert float(backing.p_singing) == float(backing.p_talking) == 0.0
    assert backing.duration_s == pytest.approx(n / 16000, abs=0.01)
    assert song.label == "singing" and song.error == "" and song.note == ""
    assert song.p_no_voice == "" or float(song.p_no_voice) < 0.5  # the model's own answer: empty for two classes
    records = {r["path"]: r["segments"] for r in json.loads(segments.read_text())}
    assert records[str(accompaniment)] == [{"start_s": 0.0, "end_s": round(n / 16000, 3), "label": "no_voice",
                                            "confidence": 1.0}]
    assert records[str(mixture_path)][0]["start_s"] == 0.0
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr


def test_prediction_api_with_the_shipped_model(good_clips):
    """The library answer behind the CLI rows: per-class probabilities, NaN for a class the model lacks,
    and a short clip's one segment carrying the clip's own answer."""
    from singtalk.classify import Classifier
    from singtalk.config import models_dir
    from singtalk.registry import ModelStore

    folder, rows = good_clips
    classifier = Classifier(ModelStore(models_dir()).load())
    path = rows[0][0]
    prediction, samples = classifier.analyse(str(path))
    assert samples.ndim == 1 and samples.size == pytest.approx(prediction.duration_s * 16000, abs=1)
    for name in classifier.class_names:
        assert prediction.probability(name) == prediction.probabilities[name]
    assert prediction.p_singing == prediction.probability("singing")
    assert np.isnan(prediction.probability("rap"))
    if "no_voice" not in classifier.class_names:
        assert np.isnan(prediction.probability("no_voice"))
    assert prediction.note == ""
    assert prediction.segments.to_dict("records") == [{"start_s": 0.0, "end_s": round(prediction.duration_s, 3),
                                                       "label": prediction.label,
                                                       "confidence": round(prediction.confidence, 4)}]
    assert classifier.classify_source(str(path)).probabilities == prediction.probabilities


def test_url_input_from_loopback_server(good_clips, tmp_path):
    folder, rows = good_clips
    singing = next(p for p, label in rows if label == "singing")
    ffmpeg_convert(singing, tmp_path / "clip.mp4", "-c:a", "aac")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/clip.mp4"
        refused = run_cli("classify", url)
        assert refused.returncode == 1 and "private" in refused.stderr.lower() + refused.stdout.lower()
        proc = run_cli("classify", url, env_extra={"SINGTALK_ALLOW_PRIVATE_URLS": "1"})
        assert proc.returncode == 0, proc.stderr
        assert ",singing," in proc.stdout
    finally:
        server.shutdown()


def test_separate_command(good_clips, tmp_path):
    folder, rows = good_clips
    clip = rows[0][0]
    proc = run_cli("separate", clip, tmp_path / "missing.wav", "--out", tmp_path / "vocals")
    assert proc.returncode == 1 and "missing.wav" in proc.stderr
    assert (tmp_path / "vocals" / f"{clip.stem}.vocals.wav").is_file()


def test_setup_errors_are_one_line(tmp_path):
    proc = run_cli("classify", "x.wav", "--models", tmp_path / "nostore")
    assert proc.returncode == 2 and proc.stderr.startswith("error: No model") and "Traceback" not in proc.stderr
    proc = run_cli("models")
    assert proc.returncode == 0 and "*" in proc.stdout
    current = next(line for line in proc.stdout.splitlines() if line.startswith("*"))
    version = current.split()[1]
    classes = json.loads((REPO_ROOT / "models" / "versions" / version / "metadata.json").read_text())["class_names"]
    assert f"  {'/'.join(classes)}  " in current  # which classes the served model answers


def test_features_train_tune_eda_models_rollback(manifest, tmp_path):
    """The headless model-building path end to end on 60 real clips, into a fresh store."""
    subset = manifest[manifest.source.isin(["ravdess", "mir1k", "librispeech"])]
    subset = subset.groupby(["label", "source", "speaker"]).head(1).groupby(["label", "source"]).head(10)
    subset = subset[subset.label.isin(["singing", "talking"])]
    labelled = tmp_path / "labelled.csv"
    subset.assign(path=subset.abspath)[["path", "label", "speaker", "source"]].to_csv(labelled, index=False)
    tables, store = tmp_path / "tables", tmp_path / "store"
    proc = run_cli("features", labelled, "--out", tables, "--jobs", "2", "--test-size", "0.25")
    assert proc.returncode == 0, proc.stderr
    assert (tables / "train_features_scaled.csv").is_file() and "failed files: 0" in proc.stdout
    proc = run_cli("train", "--data", tables, "--models", store, "--epochs", "30", "--patience", "5", "--promote")
    assert proc.returncode == 0, proc.stderr
    assert "test balanced accuracy" in proc.stdout and "epoch 1/" in proc.stderr
    proc = run_cli("tune", "--data", tables, "--models", store, "--trials", "2", "--epochs", "5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("trial ") >= 2
    proc = run_cli("eda", "--data", tables, "--out", tmp_path / "eda")
    assert proc.returncode == 0, proc.stderr
    assert {"class_balance.csv", "correlations.csv", "projection.html"} <= {p.name for p in (tmp_path / "eda").iterdir()}
    listing = run_cli("models", "--models", store).stdout.splitlines()
    assert len(listing) == 2 and sum(line.startswith("*") for line in listing) == 1
    current = next(line for line in listing if line.startswith("*")).split()[1]
    other = next(line for line in listing if not line.startswith("*")).split()[0]
    proc = run_cli("rollback", other, "--models", store)
    assert proc.returncode == 0 and other in proc.stdout
    assert next(line for line in run_cli("models", "--models", store).stdout.splitlines()
                if line.startswith("*")).split()[1] == other != current
