"""The spectrogram networks: NumPy forward pass equal to Keras', the shipped weights, the harmonic view's
filterbank, the features' invariances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from singtalk import features as F
from singtalk import spectro


@pytest.fixture(scope="module", params=[64, 128], ids=["mel", "harmonic"])
def keras_model(request):
    """A Keras network with random weights and random batch-norm statistics (so folding is exercised)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    model = spectro.build_keras(bands=request.param)
    rng = np.random.default_rng(0)
    for i in range(spectro.N_BLOCKS):
        layer = model.get_layer(f"bn{i}")
        shapes = [w.shape for w in layer.get_weights()]
        layer.set_weights([rng.uniform(0.5, 2.0, shapes[0]), rng.normal(0, 0.3, shapes[1]),
                           rng.normal(0, 0.3, shapes[2]), rng.uniform(0.5, 2.0, shapes[3])])
    return model


@pytest.mark.parametrize("frames, per_band", [(5, False), (16, False), (37, True), (150, False), (401, True)])
def test_numpy_forward_matches_keras(keras_model, frames, per_band):
    rng = np.random.default_rng(frames)
    mel = rng.normal(-40, 15, (frames, keras_model.input_shape[-1])).astype(np.float32)
    x = spectro.normalise(mel, per_band)
    if frames < spectro.MIN_FRAMES:
        x = np.tile(x, (int(np.ceil(spectro.MIN_FRAMES / frames)), 1))
    expected = float(keras_model(x[None], training=False)[0, 0])
    got = spectro.SpectroNet(spectro.export(keras_model, per_band))(mel)
    assert got == pytest.approx(expected, abs=1e-4)


def test_a_per_band_network_ignores_a_fixed_eq_and_says_so_in_its_weights(keras_model, tmp_path):
    """A network trained with per-band normalisation gets it back from its file; a fixed EQ (each band
    its own gain) then changes nothing, and an EQ that changes mid-clip does; the default network
    (one mean) does see a fixed EQ."""
    rng = np.random.default_rng(11)
    bands = keras_model.input_shape[-1]
    spec = rng.normal(-40, 10, (90, bands)).astype(np.float32)
    eq = np.linspace(-12.0, 6.0, bands, dtype=np.float32)
    np.savez(tmp_path / "per_band.npz", **spectro.export(keras_model, per_band=True))
    per_band, default = spectro.SpectroNet.load(tmp_path / "per_band.npz"), spectro.SpectroNet(spectro.export(keras_model))
    assert per_band.per_band and not default.per_band
    assert per_band(spec + eq) == pytest.approx(per_band(spec), abs=1e-4)
    changed = spec.copy()
    changed[45:] += eq
    assert per_band(changed) != pytest.approx(per_band(spec), abs=1e-3)
    assert default(spec + eq) != pytest.approx(default(spec), abs=1e-3)
    assert default(spec + 17.0) == pytest.approx(default(spec), abs=1e-4)


@pytest.mark.parametrize("view, bands", F.VIEW_BANDS.items())
def test_shipped_weights_load_and_are_the_default(view, bands):
    net = spectro.default_net(view)
    assert net is spectro.default_net(view) and net is not spectro.default_net("mel" if view != "mel" else "harmonic")
    assert len(net.blocks) == spectro.N_BLOCKS
    assert np.isfinite(net(np.full((120, bands), -30.0, dtype=np.float32)))


def test_harmonic_view_resolves_the_harmonics_of_a_voice():
    """Bands sum to 1 and their centres rise log-evenly; a harmonic tone shows one peak per harmonic
    (to 1.9 kHz), at the harmonic's frequency, for a tone and the semitone above it."""
    from scipy.signal import find_peaks

    bank = F.logfreq_filterbank()
    assert bank.shape == (F.N_FFT // 2 + 1, F.N_LOGF_BANDS)
    np.testing.assert_allclose(bank.sum(axis=0), 1.0, rtol=1e-5)
    freqs = np.linspace(0, F.SAMPLE_RATE / 2, F.N_FFT // 2 + 1)
    centres = freqs @ bank
    assert centres[0] == pytest.approx(F.LOGF_RANGE_HZ[0], rel=0.1) and centres[-1] < F.LOGF_RANGE_HZ[1]
    assert np.all(np.diff(np.log2(centres)) > 0.03)

    def peaks(f0):  # centre frequencies of the spectral peaks between 150 Hz and 1.9 kHz
        t = np.arange(F.SAMPLE_RATE) / F.SAMPLE_RATE
        y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 19)).astype(np.float32)
        profile = F.analyse(y).logf_db[20:-20].mean(axis=0)
        found = centres[find_peaks(profile, prominence=6.0)[0]]  # 6 dB above the valleys around it
        return found[(found > 150) & (found < 1900)]

    for f0 in (220.0, 233.1):  # A3 and the semitone above: harmonics 1–8, each within 3 %, and nothing else
        found = peaks(f0)
        assert len(found) == 8
        np.testing.assert_allclose(found, f0 * np.arange(1, 9), rtol=0.03)


def test_feature_is_gain_free_and_finite_on_short_or_empty_input():
    rng = np.random.default_rng(7)
    mel = rng.normal(-40, 10, (90, 64)).astype(np.float32)
    assert F.spectro_feature(mel) == pytest.approx(F.spectro_feature(mel + 17.0), abs=1e-4)  # +17 dB
    assert F.spectro_feature(mel[:3]) == F.spectro_feature(mel[:3])
    assert np.isfinite(F.spectro_feature(mel[:3]))
    assert F.spectro_feature(mel[:0]) == 0.0
    assert F.spectro_feature(mel[:0], view="harmonic") == 0.0
    assert F.FEATURE_NAMES[-3:] == ("spectro_logit", "harmonic_logit", "contour_logit")
    assert F.FEATURE_VERSION == "st-9"


@pytest.mark.parametrize("view", ["mel", "harmonic"])
def test_shipped_networks_are_per_band_as_schema_st7_says(view):
    """st-7 means per-band normalisation: the shipped file of each view says so, and a fixed EQ (a different
    offset per band) leaves its logit unchanged, which a one-mean network's would not."""
    net = spectro.default_net(view)
    assert spectro.WEIGHTS[view].name == f"spectro-st7-{view}.npz" and net.per_band
    rng = np.random.default_rng(3)
    spec = rng.normal(-40, 8, (120, F.VIEW_BANDS[view])).astype(np.float32)
    eq = np.linspace(-12, 12, spec.shape[1])
    assert F.spectro_feature(spec + eq, view=view) == pytest.approx(F.spectro_feature(spec, view=view), abs=1e-4)


def _melody(semitones: list[float], note_s: float = 0.4, gain: float = 0.5) -> np.ndarray:
    """Harmonic tones (five partials, 16 kHz) on ``semitones`` above A2, one after the other."""
    t = np.arange(int(note_s * 16000)) / 16000
    notes = [sum(np.sin(2 * np.pi * k * 110.0 * 2 ** (s / 12) * t) / k for k in range(1, 6)) for s in semitones]
    return (gain * np.concatenate(notes) / 2.5).astype(np.float32)


def test_contour_view_is_a_timbre_free_piano_roll_around_the_median_pitch():
    """The contour view draws each voiced frame's pitch relative to the clip's median: a held note sits in the
    middle bin, a melody's steps land two bins per semitone apart, and transposing it or changing the gain
    leaves the image (and the shipped network's logit) unchanged; the shipped file is st-8's, one mean."""
    held = F.spectro_input(F.analyse(_melody([7.0] * 4)), view="contour")
    assert held.shape[1] == F.CONTOUR_BANDS
    voiced = held.max(axis=1) > 0
    assert voiced.mean() > 0.9 and np.all(np.abs(held[voiced].argmax(axis=1) - F.CONTOUR_BANDS // 2) <= 1)
    assert held.max() <= F.CONTOUR_DB + 1e-3

    melody = [0.0, 2.0, 4.0, 5.0, 7.0]
    image = F.spectro_input(F.analyse(_melody(melody)), view="contour")
    peaks = image[image.max(axis=1) > 0].argmax(axis=1)
    assert set(np.unique(peaks)) >= {F.CONTOUR_BANDS // 2 - 8, F.CONTOUR_BANDS // 2, F.CONTOUR_BANDS // 2 + 6}
    for other in (_melody([s + 3.0 for s in melody]), _melody(melody, gain=0.05)):
        moved = F.spectro_input(F.analyse(other), view="contour")
        assert moved.shape == image.shape
        assert np.mean(np.abs(moved - image)) < 0.05 * np.mean(image)
        assert F.spectro_feature(moved, view="contour") == pytest.approx(F.spectro_feature(image, view="contour"),
                                                                         abs=0.3)
    net = spectro.default_net("contour")
    assert spectro.WEIGHTS["contour"].name == "spectro-st8-contour.npz" and not net.per_band
    assert not F.spectro_input(F.analyse(np.zeros(16000, np.float32) + 1e-3 * np.random.default_rng(0)
                                         .standard_normal(16000).astype(np.float32)), view="contour").any()


def test_feature_in_pool_uses_sounding_frames_of_the_range():
    rng = np.random.default_rng(5)
    tone = np.sin(2 * np.pi * 220 * np.arange(32000) / 16000).astype(np.float32)
    y = np.concatenate([tone, np.zeros(16000, np.float32), 0.5 * rng.standard_normal(32000).astype(np.float32)])
    frames = F.analyse(y)
    for view, feature in F.VIEW_FEATURES.items():
        column = F.FEATURE_NAMES.index(feature)
        first_half = F.pool(frames, 0, 250)[column]
        assert F.spectro_input(frames, 0, 250, view=view).shape == (int(frames.sounding[:250].sum()),
                                                                    F.VIEW_BANDS[view])
        assert first_half == pytest.approx(F.spectro_feature(F.spectro_input(frames, 0, 250, view=view), view=view),
                                           abs=1e-5)
        assert first_half != pytest.approx(F.pool(frames, 300, None)[column], abs=1e-3)


@pytest.mark.parametrize("view, bands", F.VIEW_BANDS.items())
def test_training_script_network_learns_real_clips_and_exports_exactly(manifest, corpus, view, bands):
    """scripts/train_spectro.py's training loop on 48 real clips (RAVDESS actors 1–4 sung and spoken, MIR-1K),
    for each view the exported NumPy net gives Keras' logits; for the mel view, 15 epochs rank the classes apart
    on those clips (ROC-AUC: after so few steps the batch-norm running statistics have not settled, so a
    threshold is not yet meaningful). The loop is the same for every view (only the bands and their
    normalisation differ, which the export check covers), so the other two train 3 epochs."""
    from sklearn.metrics import roc_auc_score

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_spectro

    rows = pd.concat([manifest[(manifest["source"] == "ravdess") & (manifest["label"] == label)].head(16)
                      for label in ("singing", "talking")] +
                     [manifest[manifest["source"] == "mir1k"].query("label == 'singing'").head(8),
                      manifest[manifest["source"] == "librispeech"].head(8)])
    raw = [m for p in rows["path"] for m in train_spectro.clip_inputs((str(corpus / p), 0, 0), view=view)]
    assert len(raw) == len(rows) and all(m.shape[1] == bands for m in raw)
    y = (rows["label"].to_numpy() == "singing").astype(np.float32)
    per_band = spectro.PER_BAND[view]
    learns = view == "mel"
    model = train_spectro.train_network([spectro.normalise(m, per_band) for m in raw], y, epochs=15 if learns else 3,
                                        seed=0)
    net = spectro.SpectroNet(spectro.export(model, per_band))
    logits = np.array([net(m) for m in raw])
    keras_logits = np.array([float(model(spectro.normalise(m, per_band)[None], training=False)[0, 0]) for m in raw])
    np.testing.assert_allclose(logits, keras_logits, atol=1e-3)
    if learns:
        assert roc_auc_score(y, logits) >= 0.9


def test_resung_inputs_give_a_sung_and_a_talking_copy_of_a_talking_clip(manifest, corpus, tmp_path):
    """``train_spectro.py --resung``: a talking clip yields the re-sung copy's input (longer: vowels held)
    and the re-synthesised copy's (as long as the clip); an unreadable file yields nothing."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_spectro

    path = str(corpus / manifest[(manifest["label"] == "talking") & (manifest["source"] == "ravdess")]["path"].iloc[0])
    (clean,) = train_spectro.clip_inputs((path, 0, 0), view="harmonic")
    sung, resynthesised = train_spectro.resung_inputs((path, 1), view="harmonic")
    assert sung.shape[1] == resynthesised.shape[1] == F.N_LOGF_BANDS
    assert sung.shape[0] > 1.1 * clean.shape[0]
    assert resynthesised.shape[0] == pytest.approx(clean.shape[0], rel=0.1)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    assert train_spectro.resung_inputs((str(broken), 1)) == []


def test_training_script_end_to_end_with_resung_copies(manifest, corpus, tmp_path):
    """``train_spectro.py --resung`` on a 24-clip manifest (6 RAVDESS actors, 2 sung + 2 spoken each), one
    epoch: every training talking clip adds two inputs, the weights and the report are written, and the
    exported networks load and normalise per band (the default since st-7)."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_spectro

    ravdess = manifest[manifest["source"] == "ravdess"]
    actors = sorted(ravdess["speaker"].unique())[:6]
    rows = pd.concat([ravdess[(ravdess["speaker"] == a) & (ravdess["label"] == label)].head(2)
                      for a in actors for label in ("singing", "talking")])
    rows.assign(path=rows["abspath"]).drop(columns="abspath").to_csv(tmp_path / "manifest.csv", index=False)
    weights = tmp_path / "net.npz"
    assert train_spectro.main(["--data", str(tmp_path), "--view", "mel", "--epochs", "1", "--folds", "2",
                               "--no-loso", "--resung", "--jobs", "1", "--out", str(tmp_path / "out"),
                               "--weights", str(weights)]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    n_test = report["test_split"]["n"]
    n_train = len(rows) - n_test
    talking_train = n_train // 2
    assert report["inputs"] == n_test + 3 * n_train + 2 * talking_train
    assert report["out_of_fold_training_speakers"]["n"] == n_train  # re-sung copies are never scored
    assert np.isfinite(spectro.SpectroNet.load(weights)(np.full((50, F.N_MELS), -30.0, np.float32)))
    assert spectro.SpectroNet.load(weights).per_band and spectro.SpectroNet.load(tmp_path / "out" / "fold0.npz").per_band


def test_training_script_loso_only_adds_the_left_out_networks_and_keeps_the_rest(manifest, corpus, tmp_path):
    """``train_spectro.py --loso-only`` (completing a committed folder): one network per left-out corpus, scored
    on that corpus; no fold network, no shipped network written; the earlier report's figures kept."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_spectro

    ravdess = manifest[manifest["source"] == "ravdess"]
    actors = sorted(ravdess["speaker"].unique())[:3]
    rows = pd.concat([ravdess[(ravdess["speaker"] == a) & (ravdess["label"] == label)].head(2)
                      for a in actors for label in ("singing", "talking")] +
                     [manifest[manifest["source"] == source].head(3) for source in ("mir1k", "librispeech")])
    rows.assign(path=rows["abspath"]).drop(columns="abspath").to_csv(tmp_path / "manifest.csv", index=False)
    out, weights = tmp_path / "out", tmp_path / "net.npz"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"view": "mel", "test_split": {"n": 7}}))
    args = ["--data", str(tmp_path), "--view", "mel", "--epochs", "1", "--jobs", "1", "--out", str(out),
            "--weights", str(weights)]
    assert train_spectro.main(args + ["--loso-only"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["test_split"] == {"n": 7}
    assert set(report["leave_one_source_out"]) == {"ravdess", "mir1k", "librispeech"}
    assert report["leave_one_source_out"]["mir1k"]["n"] == 3
    assert sorted(p.name for p in out.glob("*.npz")) == ["without_librispeech.npz", "without_mir1k.npz",
                                                         "without_ravdess.npz"]
    assert not weights.exists()
    assert spectro.SpectroNet.load(out / "without_mir1k.npz").per_band
    with pytest.raises(SystemExit):
        train_spectro.main(args + ["--loso-only", "--no-loso"])

    # --left-out: that corpus's network is trained again, the others' and their scores are kept
    (out / "without_librispeech.npz").unlink()
    earlier = (out / "without_mir1k.npz").read_bytes()
    assert train_spectro.main(args + ["--loso-only", "--left-out", "librispeech", "--epochs", "2"]) == 0
    again = json.loads((out / "report.json").read_text())
    assert set(again["leave_one_source_out"]) == {"ravdess", "mir1k", "librispeech"}
    assert again["leave_one_source_out"]["mir1k"] == report["leave_one_source_out"]["mir1k"]
    assert (out / "without_librispeech.npz").is_file() and (out / "without_mir1k.npz").read_bytes() == earlier
    assert "balanced_accuracy" in again["leave_one_source_out"]["ravdess"]  # both classes
    assert "balanced_accuracy" not in again["leave_one_source_out"]["librispeech"]
    with pytest.raises(SystemExit):
        train_spectro.main(args + ["--loso-only", "--left-out", "nosuchcorpus"])
    with pytest.raises(SystemExit):
        train_spectro.main(args + ["--from-features", "--resung"])  # the cached inputs have no re-sung copies


def test_training_from_the_feature_cache_resumes_only_a_run_of_the_same_settings(manifest, corpus, tmp_path):
    """``train_spectro.py --from-features --resume``: a second run of the same settings keeps every network
    the first one finished (the bytes unchanged, the report the same); other settings train them again."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_spectro

    ravdess = manifest[manifest["source"] == "ravdess"]
    actors = sorted(ravdess["speaker"].unique())[:4]
    rows = pd.concat([ravdess[(ravdess["speaker"] == a) & (ravdess["label"] == label)].head(2)
                      for a in actors for label in ("singing", "talking")])
    rows.assign(path=rows["abspath"]).drop(columns="abspath").to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "out"
    args = ["--data", str(tmp_path), "--view", "contour", "--epochs", "1", "--folds", "2", "--no-loso", "--jobs", "1",
            "--from-features", "--cache", str(tmp_path / "cache"), "--out", str(out),
            "--weights", str(out / "all-training.npz"), "--resume"]
    assert train_spectro.main(args) == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.npz")}
    assert sorted(first) == ["all-training.npz", "fold0.npz", "fold1.npz"]
    report = json.loads((out / "report.json").read_text())
    assert len(rows) < report["inputs"] <= 3 * len(rows)  # the clips and their copies, from train_default's cache
    assert train_spectro.main(args) == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.npz")} == first
    assert {k: v for k, v in json.loads((out / "report.json").read_text()).items() if k != "seconds"} == \
        {k: v for k, v in report.items() if k != "seconds"}
    assert train_spectro.main(args[:5] + ["2"] + args[6:]) == 0  # two epochs: another run
    assert all((out / name).read_bytes() != weights for name, weights in first.items())


def test_a_resumed_run_takes_no_network_of_another_copy_recipe(monkeypatch):
    """``--resume``'s key changes with ``augment.DESCRIPTION`` (a room or noise recipe changed since)."""
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_spectro
    from singtalk import augment

    args = argparse.Namespace(view="mel", epochs=30, seed=0, per_band=True, folds=5, copies=2, resung=False,
                              from_features=True)
    data = train_spectro.Inputs(raw=[], clip=np.array([0]), y=np.array([1.0]), speakers=np.array(["s"]),
                                sources=np.array(["x"]), first=np.array([True]), test_mask=np.array([False]),
                                clip_labels=np.array(["singing"]), clip_groups=np.array(["s"]))
    key = train_spectro.run_key(args, data)
    assert train_spectro.run_key(args, data) == key
    monkeypatch.setattr(augment, "DESCRIPTION", augment.DESCRIPTION + "; and a cathedral")
    assert train_spectro.run_key(args, data) != key


def test_cached_feature_rows_become_the_training_inputs_of_the_voiced_clips():
    """``train_spectro.py --from-features``: train_default's table (a row per clip and per copy) gives the voiced
    rows' inputs in order, one test flag per clip, and marks each clip's own (un-augmented) row."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_spectro

    table = pd.DataFrame({
        "path": ["a.wav", "a.wav", "a.wav", "n.wav", "b.wav", "c.wav", "c.wav"],
        "label": ["singing", "singing", "singing", "no_voice", "talking", "talking", "talking"],
        "split": ["train", "train", "train", "train", "test", "train", "train"],
        "augmented": [False, True, True, False, False, False, True],
        "group": ["s1", "s1", "s1", "n", "s2", "s3", "s3"], "source": ["x", "x", "x", "y", "z", "x", "x"]})
    view_inputs = [np.full((5, 3), i, np.float16) for i in range(len(table))]
    data = train_spectro.voiced_inputs(table, view_inputs)
    assert [int(m[0, 0]) for m in data.raw] == [0, 1, 2, 4, 5, 6]  # the no-voice row left out
    assert data.clip.tolist() == [0, 0, 0, 1, 2, 2]
    assert data.test_mask.tolist() == [False, True, False]
    assert data.clip_labels.tolist() == ["singing", "talking", "talking"]
    assert data.clip_groups.tolist() == ["s1", "s2", "s3"]
    assert data.y.tolist() == [1, 1, 1, 0, 0, 0]
    assert data.first.tolist() == [True, False, False, True, True, False]
    assert data.speakers.tolist() == ["s1"] * 3 + ["s2", "s3", "s3"] and data.sources.tolist()[3] == "z"


def test_the_feature_cache_is_keyed_by_the_shipped_networks_weights(tmp_path, monkeypatch):
    """``train_default.extract_cached`` keeps the shipped networks' logits in its features, so retrained
    networks must not be given a cache extracted with the earlier ones: its key follows their weights."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_default

    tasks, shipped = [("a.flac", 2, 0), ("b.flac", 0, 1)], np.array([False, True])
    key = train_default.cache_key(tasks, shipped, [])
    assert train_default.cache_key(list(tasks), shipped.copy(), []) == key
    assert train_default.cache_key(tasks, ~shipped, []) != key
    with np.load(spectro.WEIGHTS["mel"]) as data:
        weights = {k: data[k] for k in data.files}
    first = next(k for k in weights if weights[k].dtype.kind == "f")
    weights[first] = weights[first] + 1e-3
    np.savez(tmp_path / "retrained-mel.npz", **weights)
    monkeypatch.setitem(spectro.WEIGHTS, "mel", tmp_path / "retrained-mel.npz")
    assert train_default.cache_key(tasks, shipped, []) != key
