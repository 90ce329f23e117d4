"""The dense head in NumPy: classify without importing TensorFlow.

Every model this project trains is a chain of Dense layers (Dropout is inert at inference) or the
average of several such chains (:func:`singtalk.model.average_models`). :func:`from_keras` reads those
weights out of a Keras model, :meth:`NumpyNet.save` writes them to an ``.npz`` beside the Keras file,
and :meth:`NumpyNet.__call__` computes the same class probabilities in float32 (agreeing with Keras to
about 1e-6). Training, tuning and fine-tuning stay in Keras; the registry re-exports on every save.

File layout: ``schema`` (a JSON string: format, combine, one list of activations per tower) and the
arrays ``t{tower}_{layer}_kernel`` / ``t{tower}_{layer}_bias``.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

NET_FORMAT = 1


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "softplus": lambda x: np.logaddexp(np.float32(0), x),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "softmax": _softmax,
}


class NotExportable(ValueError):
    """The Keras model has a layer or an activation this module does not compute."""


@dataclass(frozen=True)
class Dense:
    kernel: np.ndarray  # (n_in, n_out), float32
    bias: np.ndarray  # (n_out,), float32
    activation: str

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ACTIVATIONS[self.activation](x @ self.kernel + self.bias)


@dataclass(frozen=True)
class NumpyNet:
    """Chains of :class:`Dense` over one input; the output is their mean (one chain: its output)."""

    towers: tuple[tuple[Dense, ...], ...]

    def __post_init__(self):
        _check(self.towers)

    @property
    def n_inputs(self) -> int:
        return int(self.towers[0][0].kernel.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.towers[0][-1].kernel.shape[1])

    def __call__(self, X) -> np.ndarray:
        """Class probabilities ``(n_rows, n_outputs)`` for scaled features ``X`` ``(n_rows, n_inputs)``."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"expected rows of {self.n_inputs} features, got shape {X.shape}")
        outputs = []
        for tower in self.towers:
            x = X
            for layer in tower:
                x = layer(x)
            outputs.append(x)
        return (outputs[0] if len(outputs) == 1 else np.mean(outputs, axis=0)).astype(np.float32)

    # -- file ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        schema = {"format": NET_FORMAT, "combine": "average",
                  "towers": [[layer.activation for layer in tower] for tower in self.towers]}
        arrays = {"schema": np.array(json.dumps(schema))}
        for t, tower in enumerate(self.towers):
            for i, layer in enumerate(tower):
                arrays[f"t{t}_{i}_kernel"] = layer.kernel
                arrays[f"t{t}_{i}_bias"] = layer.bias
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> "NumpyNet":
        """Read a file :meth:`save` wrote; ValueError (in words) for anything else."""
        try:
            with np.load(str(path), allow_pickle=False) as data:
                schema = json.loads(str(data["schema"]))
                if schema.get("format") != NET_FORMAT or schema.get("combine") != "average":
                    raise ValueError(f"unknown format {schema.get('format')!r} / combine {schema.get('combine')!r}")
                towers = tuple(
                    tuple(Dense(np.asarray(data[f"t{t}_{i}_kernel"], np.float32),
                                np.asarray(data[f"t{t}_{i}_bias"], np.float32), str(activation))
                          for i, activation in enumerate(activations))
                    for t, activations in enumerate(schema["towers"]))
        except (OSError, EOFError, KeyError, TypeError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{Path(path).name} is not a NumPy network file ({err})") from err
        return cls(towers)


def _check(towers) -> None:
    if not towers or not all(towers):
        raise ValueError("a network needs at least one tower of at least one layer")
    for tower in towers:
        for layer in tower:
            if layer.activation not in ACTIVATIONS:
                raise NotExportable(f"activation {layer.activation!r} is not computed in NumPy")
            if layer.kernel.ndim != 2 or layer.bias.shape != (layer.kernel.shape[1],):
                raise ValueError(f"a Dense layer of kernel {layer.kernel.shape} and bias {layer.bias.shape}")
        for before, after in zip(tower, tower[1:]):
            if before.kernel.shape[1] != after.kernel.shape[0]:
                raise ValueError(f"layers of {before.kernel.shape} then {after.kernel.shape} do not chain")
    if len({(t[0].kernel.shape[0], t[-1].kernel.shape[1]) for t in towers}) != 1:
        raise ValueError("towers of different input or output sizes cannot be averaged")


def from_keras(model) -> NumpyNet:
    """The weights of a Keras chain (or an average of chains) as a :class:`NumpyNet`; NotExportable otherwise."""
    from .model import _tf

    layers = _tf().keras.layers
    body = [layer for layer in model.layers if not isinstance(layer, layers.InputLayer)]
    chain_types, skipped = (layers.Dense,), (layers.Dropout,)
    averaged = bool(body) and isinstance(body[-1], layers.Average)
    if averaged:
        body = body[:-1]
    if any(not isinstance(layer, chain_types + skipped) for layer in body):
        kinds = sorted({type(layer).__name__ for layer in body if not isinstance(layer, chain_types + skipped)})
        raise NotExportable(f"layers {kinds} are not computed in NumPy")
    from .model import towers as keras_towers

    chains = keras_towers(model) if averaged else [body]
    result = []
    for chain in chains:
        dense = [layer for layer in chain if isinstance(layer, layers.Dense)]
        result.append(tuple(
            Dense(np.asarray(layer.kernel.numpy(), np.float32),
                  np.asarray(layer.bias.numpy() if layer.use_bias else np.zeros(layer.units), np.float32),
                  layer.activation.__name__)
            for layer in dense))
    net = NumpyNet(tuple(result))
    n_in, n_out = int(model.inputs[0].shape[-1]), int(model.outputs[0].shape[-1])
    if (net.n_inputs, net.n_outputs) != (n_in, n_out):
        raise NotExportable(f"the chains map {net.n_inputs}→{net.n_outputs}, the model {n_in}→{n_out}")
    return net
