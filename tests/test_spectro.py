"""The spectrogram network: NumPy forward pass equal to Keras', the shipped weights, the feature's invariances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from singtalk import features as F
from singtalk import spectro


@pytest.fixture(scope="module")
def keras_model():
    """A Keras network with random weights and random batch-norm statistics (so folding is exercised)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    model = spectro.build_keras()
    rng = np.random.default_rng(0)
    for i in range(spectro.N_BLOCKS):
        layer = model.get_layer(f"bn{i}")
        shapes = [w.shape for w in layer.get_weights()]
        layer.set_weights([rng.uniform(0.5, 2.0, shapes[0]), rng.normal(0, 0.3, shapes[1]),
                           rng.normal(0, 0.3, shapes[2]), rng.uniform(0.5, 2.0, shapes[3])])
    return model


@pytest.mark.parametrize("frames", [5, 16, 37, 150, 401])
def test_numpy_forward_matches_keras(keras_model, frames):
    rng = np.random.default_rng(frames)
    mel = rng.normal(-40, 15, (frames, 64)).astype(np.float32)
    x = spectro.normalise(mel)
    if frames < spectro.MIN_FRAMES:
        x = np.tile(x, (int(np.ceil(spectro.MIN_FRAMES / frames)), 1))
    expected = float(keras_model(x[None], training=False)[0, 0])
    got = spectro.SpectroNet(spectro.export(keras_model))(mel)
    assert got == pytest.approx(expected, abs=1e-4)


def test_shipped_weights_load_and_are_the_default():
    net = spectro.default_net()
    assert len(net.blocks) == spectro.N_BLOCKS
    assert np.isfinite(net(np.full((120, 64), -30.0, dtype=np.float32)))


def test_feature_is_gain_free_and_finite_on_short_or_empty_input():
    rng = np.random.default_rng(7)
    mel = rng.normal(-40, 10, (90, 64)).astype(np.float32)
    assert F.spectro_feature(mel) == pytest.approx(F.spectro_feature(mel + 17.0), abs=1e-4)  # +17 dB
    assert F.spectro_feature(mel[:3]) == F.spectro_feature(mel[:3])
    assert np.isfinite(F.spectro_feature(mel[:3]))
    assert F.spectro_feature(mel[:0]) == 0.0
    assert "spectro_logit" in F.FEATURE_NAMES and F.FEATURE_VERSION == "st-5"


def test_feature_in_pool_uses_sounding_frames_of_the_range():
    rng = np.random.default_rng(5)
    tone = np.sin(2 * np.pi * 220 * np.arange(32000) / 16000).astype(np.float32)
    y = np.concatenate([tone, np.zeros(16000, np.float32), 0.5 * rng.standard_normal(32000).astype(np.float32)])
    frames = F.analyse(y)
    column = F.FEATURE_NAMES.index("spectro_logit")
    first_half = F.pool(frames, 0, 250)[column]
    assert first_half == pytest.approx(F.spectro_feature(F.spectro_input(frames, 0, 250)), abs=1e-5)
    assert first_half != pytest.approx(F.pool(frames, 300, None)[column], abs=1e-3)


def test_training_script_network_learns_real_clips_and_exports_exactly(manifest, corpus):
    """scripts/train_spectro.py's training loop on 48 real clips (RAVDESS actors 1–4 sung and spoken, MIR-1K):
    a few epochs separate the classes on those clips, and the exported NumPy net gives Keras' logits."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import train_spectro

    rows = pd.concat([manifest[(manifest["source"] == "ravdess") & (manifest["label"] == label)].head(16)
                      for label in ("singing", "talking")] +
                     [manifest[manifest["source"] == "mir1k"].query("label == 'singing'").head(8),
                      manifest[manifest["source"] == "librispeech"].head(8)])
    mels_raw = [m for p in rows["path"] for m in train_spectro.clip_mels((str(corpus / p), 0, 0))]
    assert len(mels_raw) == len(rows)
    y = (rows["label"].to_numpy() == "singing").astype(np.float32)
    model = train_spectro.train_network([spectro.normalise(m) for m in mels_raw], y, epochs=30, seed=0)
    net = spectro.SpectroNet(spectro.export(model))
    logits = np.array([net(m) for m in mels_raw])
    keras_logits = np.array([float(model(spectro.normalise(m)[None], training=False)[0, 0]) for m in mels_raw])
    np.testing.assert_allclose(logits, keras_logits, atol=1e-3)
    assert np.mean((logits > 0) == (y == 1)) >= 0.8
