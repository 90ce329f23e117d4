"""How likely each 32 ms of audio holds a voice: Silero VAD, a pretrained detector, as a feature track.

Silero VAD 5.1.2 (MIT; licence in ``weights/silero-vad-LICENSE``) was trained on far more speech, noise and
music than this corpus holds. It cannot tell singing from talking (both score high), which is why it feeds
the voice gate rather than judging (docs/model.md, *A pretrained voice detector in the gate*).

Run here in NumPy from ``weights/silero-vad-5.1.2.npz``: the 16 kHz branch of the wheel's ONNX graph, exported
by ``scripts/convert_silero_vad.py``; ``tests/test_vad.py`` holds it to onnxruntime's own probabilities. The
network reads 512-sample chunks with 64 samples of context: a reflect-padded STFT (a convolution with a stored
basis, 4 frames), four convolutions, an LSTM cell whose state runs from chunk to chunk, and a sigmoid. Only the
LSTM is sequential, so the rest runs on every chunk at once and a minute of audio costs tens of milliseconds.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft

CHUNK = 512
"""Samples per probability (32 ms at 16 kHz, the only rate the detector was exported for)."""
CONTEXT = 64
"""Samples of the previous chunk each chunk is read with."""
ENCODE_BLOCK = 2048
"""Chunks (about 65 s) encoded at once: bounds the memory of a long input's batched convolutions (~25 MB)."""
LEVEL_RMS = 0.1
"""Inputs are scaled to this RMS (−20 dBFS) and clipped to ±1 first, so the probabilities do not depend on gain."""
WEIGHTS = Path(__file__).resolve().parent / "weights" / "silero-vad-5.1.2.npz"


@lru_cache(maxsize=1)
def _weights() -> dict[str, np.ndarray]:
    with np.load(WEIGHTS) as stored:
        return {name: stored[name].astype(np.float32) for name in stored.files}


def at_level(y: np.ndarray) -> np.ndarray:
    """``y`` as float32 at RMS :data:`LEVEL_RMS`, clipped to ±1 (silence unchanged)."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    rms = float(np.linalg.norm(y)) / np.sqrt(y.size) if y.size else 0.0
    if rms == 0:
        return y
    scaled = y * np.float32(LEVEL_RMS / rms)
    return np.clip(scaled, -1.0, 1.0, out=scaled)


def _conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """1-D convolution, kernel 3, padding 1, then ReLU: ``x`` (n, time, in) → (n, time', out), as one matrix
    product over the three taps side by side."""
    n, _, width = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    steps = (padded.shape[1] - 3) // stride + 1
    taps = np.concatenate([padded[:, k: k + stride * (steps - 1) + 1: stride] for k in range(3)], axis=2)
    kernel = weight.transpose(2, 1, 0).reshape(3 * width, -1)  # (tap, in) rows, out columns
    out = taps.reshape(n * steps, 3 * width) @ kernel + bias
    return np.maximum(out, 0.0, out=out).reshape(n, steps, -1)


def _encode(chunks: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """Every chunk's 128-d encoding at once: ``chunks`` (n, 576) → (n, 128). The stored STFT basis is a Hann
    window times the real and imaginary DFT rows, so its magnitudes are taken by an FFT of the windowed frames."""
    padded = np.concatenate([chunks, chunks[:, -2:-CONTEXT - 2:-1]], axis=1)  # reflect pad 64 on the right
    frames = np.stack([padded[:, k * 128: k * 128 + 256] for k in range(4)], axis=1)  # n, 4, 256
    window = w["stft.forward_basis_buffer"][0, 0]  # the DC row: the window itself
    x = np.abs(scipy.fft.rfft(frames * window, axis=2)).astype(np.float32)  # n, 4, 129
    for k, stride in enumerate((1, 2, 2, 1)):
        x = _conv(x, w[f"encoder.{k}.reparam_conv.weight"], w[f"encoder.{k}.reparam_conv.bias"], stride)
    return x[:, 0, :]


def chunk_probabilities(y: np.ndarray) -> np.ndarray:
    """Voice probability of each whole 512-sample chunk of 16 kHz mono ``y`` (scaled by :func:`at_level`);
    shape ``(len(y) // 512,)``, empty for less than one chunk."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    n = y.size // CHUNK
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    w = _weights()
    padded = np.zeros(CONTEXT + n * CHUNK, dtype=np.float32)  # no context before the first chunk
    padded[CONTEXT:] = y[: n * CHUNK]
    padded[CONTEXT:] = at_level(padded[CONTEXT:])
    chunks = np.lib.stride_tricks.sliding_window_view(padded, CHUNK + CONTEXT)[::CHUNK][:n]
    # torch.nn.LSTMCell, gates in the order input, forget, cell, output; sigmoid(x) = (1 + tanh(x / 2)) / 2, so
    # the sigmoid gates' rows are halved once and each step takes a single tanh
    half = np.where(np.arange(512) // 128 == 2, 1.0, 0.5).astype(np.float32)
    encoded = np.concatenate([_encode(chunks[k: k + ENCODE_BLOCK], w) for k in range(0, n, ENCODE_BLOCK)])
    gates_in = encoded @ w["decoder.rnn.weight_ih"].T
    gates_in += w["decoder.rnn.bias_ih"] + w["decoder.rnn.bias_hh"]
    gates_in *= half
    w_hh = np.ascontiguousarray(w["decoder.rnn.weight_hh"].T * half)
    h = np.zeros(128, np.float32)
    c = np.zeros(128, np.float32)
    hidden = np.empty((n, 128), np.float32)
    for t in range(n):
        g = np.tanh(gates_in[t] + h @ w_hh)
        s = 0.5 * g + 0.5
        c = s[128:256] * c + s[:128] * g[256:384]
        h = s[384:] * np.tanh(c)
        hidden[t] = h
    logit = np.maximum(hidden, 0.0) @ w["decoder.decoder.2.weight"][0, :, 0] + w["decoder.decoder.2.bias"][0]
    return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)


def frame_probabilities(y: np.ndarray, n_frames: int, hop: int) -> np.ndarray:
    """:func:`chunk_probabilities` on the frame grid of :func:`singtalk.features.analyse` (frame ``t`` at sample
    ``t · hop``): each frame takes its chunk's probability; frames past the last whole chunk take the last one
    (0 when there is none)."""
    probs = chunk_probabilities(y)
    if probs.size == 0:
        return np.zeros(n_frames, dtype=np.float32)
    index = np.minimum(np.arange(n_frames) * hop // CHUNK, probs.size - 1)
    return probs[index]
