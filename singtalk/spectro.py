"""The learnt features: three small CNNs over spectrogram-like views, run in NumPy.

Each network reads one view of the sounding frames and gives one logit for "singing"; its
weights file says which normalisation it was trained with (see :func:`normalise`). The two
spectrogram views have each band's mean over the clip removed (the spectrogram's cepstral mean
normalisation: gain, a fixed EQ and the voice's long-term spectrum do not matter):

- ``mel``: the 64-band mel the MFCCs come from (timbre, formants, up to 8 kHz);
- ``harmonic``: 128 log-spaced bands from 80 Hz to 4 kHz (~23 per octave), fine
  enough to resolve the voice's harmonics, so held notes, vibrato and gliding
  speech intonation show as shapes a convolution can learn (a pitch change is a
  shift along the frequency axis);

and the third has no timbre at all:

- ``contour`` (schema st-8): the pitch track drawn as a piano roll, ±12 semitones around the
  clip's median in half-semitone bins, each voiced frame a bump as high as its periodicity
  (``features.contour_image``); one mean removed. Trained with karaoke singing as its only
  singing, it still recognises most of RAVDESS's acted singing, which the spectrogram views
  mostly call talking (docs/model.md).

All have the same architecture: four blocks of 3×3 convolution (batch-norm folded in)
+ ReLU + 2×2 max-pooling, a mean over frequency, a 3-frame 1-D convolution + ReLU,
mean- and max-pooling over time, and a dense layer. Each is trained once by
``scripts/train_spectro.py --view VIEW`` in Keras; :func:`export` folds and saves its
weights and :class:`SpectroNet` runs them with NumPy, so feature extraction needs no
TensorFlow (worker processes stay light) and is deterministic.

The weights are part of the feature schema: ``features.FEATURE_VERSION`` names them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

VIEWS = ("mel", "harmonic", "contour")
"""The views, in feature order (``spectro_logit``, ``harmonic_logit``, ``contour_logit``)."""
SCHEMA_OF_VIEW = {"mel": "st7", "harmonic": "st7", "contour": "st8"}
"""The schema that introduced each view's shipped weights (part of the file name)."""
PER_BAND = {"mel": True, "harmonic": True, "contour": False}
"""How each view's network is trained (:func:`normalise`): a piano roll keeps its one mean."""
WEIGHTS = {view: Path(__file__).resolve().parent / "weights" / f"spectro-{SCHEMA_OF_VIEW[view]}-{view}.npz"
           for view in VIEWS}
N_BLOCKS = 4
MIN_FRAMES = 2 ** N_BLOCKS
"""Shorter inputs are repeated up to this many frames (every pooling needs two)."""
DB_SCALE = 20.0
BN_EPSILON = 1e-3  # Keras' BatchNormalization default


def normalise(spec_db: np.ndarray, per_band: bool = False) -> np.ndarray:
    """``(T, bands)`` dB spectrogram → the network's input: minus its mean, over ``DB_SCALE``.

    ``per_band`` (the shipped networks, schema st-7) removes each band's own mean over time
    instead: gain, a fixed EQ and the voice's long-term spectral envelope all go, and only how
    the spectrum moves is left (README: it cuts cross-validation errors by a third; alone, a
    network that never heard karaoke singing misses more of it, which the ``max`` head's
    linear judge covers).
    """
    x = np.asarray(spec_db, dtype=np.float32)
    return (x - (x.mean(axis=0, keepdims=True) if per_band else x.mean())) / np.float32(DB_SCALE)


def _conv3x3_pool(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'same' 3×3 convolution (no bias) of channel-first ``x (Cin, T, F)``, then 2×2 max-pooling.

    ``kernel`` is ``(Cout, 9·Cin)``, ordered (row, column, channel) as :func:`_channel_first_kernel`
    makes it. Channel-first, the nine shifted copies are long contiguous rows, so building them
    and the one matrix product are cheap (3×3 ``Cin`` = 1 included). Returns ``(Cout, T//2, F//2)``.
    """
    cin, t, f = x.shape
    padded = np.zeros((cin, t + 2, f + 2), dtype=np.float32)
    padded[:, 1:-1, 1:-1] = x
    cols = np.empty((9, cin, t, f), dtype=np.float32)
    for i in range(3):
        for j in range(3):
            cols[3 * i + j] = padded[:, i: i + t, j: j + f]
    out = (kernel @ cols.reshape(9 * cin, t * f)).reshape(-1, t, f)[:, : t // 2 * 2, : f // 2 * 2]
    return np.maximum(np.maximum(out[:, 0::2, 0::2], out[:, 1::2, 0::2]),
                      np.maximum(out[:, 0::2, 1::2], out[:, 1::2, 1::2]))


def _channel_first_kernel(kernel: np.ndarray) -> np.ndarray:
    """Keras' ``(3, 3, Cin, Cout)`` kernel → ``(Cout, 9·Cin)`` for :func:`_conv3x3_pool`."""
    return np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1]).T.astype(np.float32))


class SpectroNet:
    """The exported network: ``net(spec_db)`` → logit (float) of the clip being sung (any number of bands)."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.blocks = [(_channel_first_kernel(weights[f"conv{i}_kernel"]),
                        weights[f"conv{i}_bias"].astype(np.float32)[:, None, None]) for i in range(N_BLOCKS)]
        self.temporal = (weights["temporal_kernel"].astype(np.float32), weights["temporal_bias"].astype(np.float32))
        self.dense = (weights["dense_kernel"].astype(np.float32), weights["dense_bias"].astype(np.float32))
        self.per_band = bool(weights.get("per_band", False))

    @classmethod
    def load(cls, path: str | Path) -> "SpectroNet":
        with np.load(path) as data:
            return cls({k: data[k] for k in data.files})

    def __call__(self, spec_db: np.ndarray) -> float:
        x = normalise(spec_db, self.per_band)
        if x.shape[0] < MIN_FRAMES:
            x = np.tile(x, (int(np.ceil(MIN_FRAMES / max(x.shape[0], 1))), 1))
        x = x[None]  # channel-first (C, T, F)
        for kernel, bias in self.blocks:  # max-pooling commutes with +bias and ReLU: pool first, 4× less work
            x = np.maximum(_conv3x3_pool(x, kernel) + bias, 0.0)
        x = x.mean(axis=2).T  # (T', C): mean over frequency
        kernel, bias = self.temporal  # (3, C, C)
        padded = np.pad(x, ((1, 1), (0, 0)))
        cols = sliding_window_view(padded, 3, axis=0).transpose(0, 2, 1).reshape(x.shape[0], -1)
        x = np.maximum(cols @ kernel.reshape(-1, kernel.shape[-1]) + bias, 0.0)
        pooled = np.concatenate([x.mean(axis=0), x.max(axis=0)])
        kernel, bias = self.dense
        return float(pooled @ kernel[:, 0] + bias[0])


@lru_cache(maxsize=len(VIEWS))
def default_net(view: str = "mel") -> SpectroNet:
    """The shipped network of ``view`` (loaded once per process)."""
    path = WEIGHTS[view]
    if not path.is_file():
        raise FileNotFoundError(f"The {view} spectrogram network's weights are missing: {path}")
    return SpectroNet.load(path)


# -- Keras side (training script and tests only) ------------------------------------
def build_keras(bands: int = 64, dropout: float = 0.3):
    """The same network in Keras, for training: input ``(batch, T, bands)`` normalised, output logit."""
    import tensorflow as tf

    layers = tf.keras.layers
    inputs = tf.keras.Input((None, bands))
    x = layers.Reshape((-1, bands, 1))(inputs)
    for i, channels in enumerate((16, 32, 64, 64)):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"bn{i}")(x)
        x = layers.ReLU()(x)
        x = layers.MaxPool2D(2)(x)
    x = layers.Lambda(lambda v: tf.reduce_mean(v, axis=2), name="mean_over_frequency")(x)
    x = layers.Conv1D(64, 3, padding="same", activation="relu", name="temporal")(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
    x = layers.Dropout(dropout)(x)
    return tf.keras.Model(inputs, layers.Dense(1, name="dense")(x))


def export(model, per_band: bool = False) -> dict[str, np.ndarray]:
    """Weights of a :func:`build_keras` model with batch-norm folded into the convolutions, and how
    its inputs were normalised (``per_band``: see :func:`normalise`)."""
    out: dict[str, np.ndarray] = {"per_band": np.array(per_band)}
    for i in range(N_BLOCKS):
        (kernel,) = model.get_layer(f"conv{i}").get_weights()
        gamma, beta, mean, var = model.get_layer(f"bn{i}").get_weights()
        scale = gamma / np.sqrt(var + BN_EPSILON)
        out[f"conv{i}_kernel"] = (kernel * scale).astype(np.float32)
        out[f"conv{i}_bias"] = (beta - mean * scale).astype(np.float32)
    out["temporal_kernel"], out["temporal_bias"] = model.get_layer("temporal").get_weights()
    out["dense_kernel"], out["dense_bias"] = model.get_layer("dense").get_weights()
    return out
