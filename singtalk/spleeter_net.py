"""Spleeter 2stems without Spleeter's graph: its two U-Nets as plain TensorFlow ops, the STFT in NumPy.

Spleeter builds its model with Keras layers in a TF1 graph: about 2.3 s of Python before the first
input, and its STFT and inverse STFT run in TensorFlow on both (identical, for mono input) channels.
Here the same computation is spelt out: the weights are read from the checkpoint (every variable
must be there, so there is no way to run on random weights), the U-Nets run eagerly on the
magnitude spectrogram, and the STFT, the ratio mask and the inverse STFT follow
``spleeter.model.EstimatorSpecBuilder`` in NumPy on one channel (the inverse STFT is linear, so
the mean of the two channels' vocals is the inverse STFT under the mean of their masks).
``tests/test_separation.py`` checks the result against Spleeter's own graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FRAME_LENGTH = 4096
FRAME_STEP = 1024
BINS = FRAME_LENGTH // 2 + 1
T = 512
"""Frames in one U-Net segment (~11.9 s at 44.1 kHz)."""
F = 1024
"""Frequency bins the U-Nets see (up to ~11 kHz); the mask is zero above."""
FILTERS = (16, 32, 64, 128, 256, 512)
LEAK = 0.2
BN_EPSILON = 1e-3  # Keras BatchNormalization's default
EPSILON = 1e-10  # EstimatorSpecBuilder.EPSILON
WINDOW_COMPENSATION = 2.0 / 3.0
INSTRUMENTS = ("vocals", "accompaniment")
"""In the order Spleeter created their layers: the vocals' U-Net holds the first names of the checkpoint."""


def _hann() -> np.ndarray:
    k = np.arange(FRAME_LENGTH, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2 * np.pi * k / FRAME_LENGTH)).astype(np.float32)  # periodic, as tf.signal


WINDOW = _hann()


def n_frames(n: int) -> int:
    """STFT frames of ``n`` samples: a frame of zeros is prepended and the end padded (Spleeter's framing)."""
    return -(-(n + FRAME_LENGTH) // FRAME_STEP)


def stft(y: np.ndarray) -> np.ndarray:
    """Mono float32 ``(n,)`` at 44.1 kHz → complex64 ``(n_frames(n), BINS)``, framed as Spleeter frames it."""
    import scipy.fft

    frames = n_frames(y.size)
    padded = np.zeros((frames - 1) * FRAME_STEP + FRAME_LENGTH, dtype=np.float32)
    padded[FRAME_LENGTH:FRAME_LENGTH + y.size] = y
    windowed = np.lib.stride_tricks.sliding_window_view(padded, FRAME_LENGTH)[::FRAME_STEP] * WINDOW
    return scipy.fft.rfft(windowed, axis=1, workers=-1).astype(np.complex64, copy=False)


def istft(spec: np.ndarray, n: int) -> np.ndarray:
    """The inverse of :func:`stft` as Spleeter computes it (windowed overlap-add, times 2/3), ``(n,)`` float32."""
    import scipy.fft

    frames = scipy.fft.irfft(spec, n=FRAME_LENGTH, axis=1, workers=-1).astype(np.float32, copy=False) * WINDOW
    hops = FRAME_LENGTH // FRAME_STEP
    out = np.zeros((len(spec) + hops - 1, FRAME_STEP), dtype=np.float32)
    for k in range(hops):
        out[k:k + len(spec)] += frames[:, k * FRAME_STEP:(k + 1) * FRAME_STEP]
    return out.reshape(-1)[FRAME_LENGTH:FRAME_LENGTH + n] * np.float32(WINDOW_COMPENSATION)


def segments(magnitude: np.ndarray) -> np.ndarray:
    """``(frames, BINS)`` magnitudes → ``(ceil(frames / T), T, F, 2)`` U-Net input (zero-padded, two channels)."""
    count = -(-len(magnitude) // T)
    out = np.zeros((count * T, F), dtype=np.float32)
    out[:len(magnitude)] = magnitude[:, :F]
    return np.repeat(out.reshape(count, T, F, 1), 2, axis=3)


def _keras_name(base: str, k: int) -> str:
    """The name Keras gave the ``k``-th layer of a kind: ``conv2d``, ``conv2d_1``, ..."""
    return base if k == 0 else f"{base}_{k}"


class UNets:
    """The two U-Nets of Spleeter 2stems, weights read from ``checkpoint`` (a prefix, as tf.train gives).

    Raises ``KeyError``/``ValueError`` when the checkpoint lacks a variable or has one of another shape.
    """

    def __init__(self, checkpoint: Path) -> None:
        import tensorflow as tf

        self._tf = tf
        reader = tf.train.load_checkpoint(str(checkpoint))
        shapes = reader.get_variable_to_shape_map()

        def weight(name: str, shape: tuple | None = None) -> np.ndarray:
            if name not in shapes:
                raise KeyError(f"the checkpoint has no variable {name}")
            value = reader.get_tensor(name)
            if shape is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
            return value

        self._nets = [self._read(weight, i) for i in range(len(INSTRUMENTS))]

    def _read(self, weight, index: int) -> dict:
        """One U-Net's weights: convolutions, transposed convolutions and batch norms as scale and shift."""
        tf = self._tf
        conv = [_keras_name("conv2d", 7 * index + i) for i in range(7)]
        up = [_keras_name("conv2d_transpose", 6 * index + i) for i in range(6)]
        norm = [_keras_name("batch_normalization", 12 * index + i) for i in range(12)]

        def affine(name: str, width: int):
            gamma, beta = weight(f"{name}/gamma", (width,)), weight(f"{name}/beta", (width,))
            mean, var = weight(f"{name}/moving_mean", (width,)), weight(f"{name}/moving_variance", (width,))
            scale = gamma / np.sqrt(var + np.float32(BN_EPSILON))
            return tf.constant(scale), tf.constant(beta - mean * scale)

        inputs = (2, *FILTERS[:-1])
        down = [(tf.constant(weight(f"{conv[i]}/kernel", (5, 5, inputs[i], FILTERS[i]))),
                 tf.constant(weight(f"{conv[i]}/bias", (FILTERS[i],))), *affine(norm[i], FILTERS[i]))
                for i in range(6)]
        outs = (*FILTERS[-2::-1], 1)  # 256, 128, 64, 32, 16, 1
        ins = (FILTERS[-1], *(2 * o for o in outs[:-1]))  # conv6 alone, then [skip, up] concatenated
        ups = [(tf.constant(weight(f"{up[i]}/kernel", (5, 5, outs[i], ins[i]))),
                tf.constant(weight(f"{up[i]}/bias", (outs[i],))), *affine(norm[6 + i], outs[i]))
               for i in range(6)]
        last = (tf.constant(weight(f"{conv[6]}/kernel", (4, 4, 1, 2))), tf.constant(weight(f"{conv[6]}/bias", (2,))))
        return {"down": down, "up": ups, "last": last}

    def _unet(self, net: dict, x):
        """``apply_unet`` of spleeter.model.functions.unet in inference mode: the instrument's spectrogram."""
        tf = self._tf
        skips, h = [], x
        for kernel, bias, scale, shift in net["down"]:
            c = tf.nn.bias_add(tf.nn.conv2d(h, kernel, strides=2, padding="SAME"), bias)
            skips.append(c)  # the decoder takes the convolutions before their batch norm
            h = tf.nn.leaky_relu(c * scale + shift, alpha=LEAK)
        h = skips[-1]
        for i, (kernel, bias, scale, shift) in enumerate(net["up"]):
            shape = tf.shape(h)
            size = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], kernel.shape[2]])
            u = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d_transpose(h, kernel, size, strides=2, padding="SAME"), bias))
            u = u * scale + shift
            h = tf.concat([skips[4 - i], u], axis=-1) if i < 5 else u
        kernel, bias = net["last"]
        mask = tf.sigmoid(tf.nn.bias_add(tf.nn.conv2d(h, kernel, strides=1, padding="SAME", dilations=2), bias))
        return mask * x

    def _mask(self, x):
        tf = self._tf
        vocals, accompaniment = (self._unet(net, x) for net in self._nets)
        v2 = tf.square(vocals)
        mask = (v2 + EPSILON / 2) / (v2 + tf.square(accompaniment) + EPSILON)
        return tf.reduce_mean(mask, axis=-1)

    def vocal_mask(self, batch: np.ndarray) -> np.ndarray:
        """``(B, T, F, 2)`` magnitudes → the vocals' ratio mask, both channels averaged, ``(B, T, F)`` float32.

        Eager: a ``tf.function`` saves about 7% per segment but costs about 0.7 s of tracing and graph
        optimisation first, which a batch of a few minutes of audio never wins back."""
        return self._mask(self._tf.constant(batch)).numpy()


def separate(unets: UNets, y: np.ndarray, *, batch: int = 1) -> np.ndarray:
    """Mono float32 ``(n,)`` at 44.1 kHz → the vocals, ``(n,)`` float32: Spleeter's computation on one input.

    ``batch`` segments go through the U-Nets at a time (memory); each segment is independent of the others.
    """
    spec = stft(y)
    magnitude = segments(np.abs(spec))
    mask = np.concatenate([unets.vocal_mask(magnitude[i:i + batch]) for i in range(0, len(magnitude), batch)])
    mask = mask.reshape(-1, F)[:len(spec)]
    spec[:, :F] *= mask
    spec[:, F:] = 0  # Spleeter's "zeros" mask extension
    return istft(spec, y.size)
