#!/usr/bin/env python
"""Convert Silero VAD's ONNX graph (16 kHz branch) to the NumPy arrays ``singtalk.vad`` runs.

    pip install onnx==1.16.2 onnxruntime==1.19.2     # once, outside the app's requirements
    .venv/bin/python scripts/convert_silero_vad.py WHEEL_OR_ONNX [--reference CLIP ...]

WHEEL_OR_ONNX: ``silero_vad-5.1.2-py3-none-any.whl`` (``pip download --no-deps silero-vad==5.1.2``) or the
``silero_vad.onnx`` inside it. Writes ``singtalk/weights/silero-vad-5.1.2.npz`` (the 16 kHz branch's
constants under their PyTorch names) and, with ``--reference``, ``tests/fixtures/silero-vad-reference.json``:
onnxruntime's probabilities for each CLIP (a path relative to the corpus), which ``tests/test_vad.py``
holds the NumPy port to.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ONNX_IN_WHEEL = "silero_vad/data/silero_vad.onnx"
NAMES = ["stft.forward_basis_buffer"] + [f"encoder.{k}.reparam_conv.{p}" for k in range(4) for p in ("weight", "bias")] + [
    "decoder.rnn.weight_ih", "decoder.rnn.weight_hh", "decoder.rnn.bias_ih", "decoder.rnn.bias_hh",
    "decoder.decoder.2.weight", "decoder.decoder.2.bias"]


def onnx_bytes(path: Path) -> bytes:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return wheel.read(ONNX_IN_WHEEL)
    return path.read_bytes()


def constants(model) -> dict[str, np.ndarray]:
    """The 16 kHz branch's (``then_branch`` of the top ``If`` on sr == 16000) named constants."""
    from onnx import numpy_helper

    branch = next(a.g for n in model.graph.node if n.op_type == "If" for a in n.attribute if a.name == "then_branch")
    found = {}
    for node in branch.node:
        if node.op_type == "Constant":
            name = node.output[0].replace("If_0_then_branch__Inline_0__", "")
            if name in NAMES:
                found[name] = numpy_helper.to_array(node.attribute[0].t).astype(np.float32)
    missing = sorted(set(NAMES) - set(found))
    if missing:
        raise SystemExit(f"error: not in the graph: {', '.join(missing)}")
    return found


def reference(raw: bytes, clips: list[str]) -> dict:
    """onnxruntime's probabilities, chunk by chunk as Silero's own wrapper feeds them."""
    import onnxruntime

    from singtalk import audio, config, vad

    session = onnxruntime.InferenceSession(raw, providers=["CPUExecutionProvider"])
    out = {}
    for clip in clips:
        y = vad.at_level(audio.decode(config.data_dir() / clip))
        n = y.size // vad.CHUNK
        state, context, probs = np.zeros((2, 1, 128), np.float32), np.zeros((1, vad.CONTEXT), np.float32), []
        for k in range(n):
            chunk = y[k * vad.CHUNK:(k + 1) * vad.CHUNK][None]
            p, state = session.run(None, {"input": np.concatenate([context, chunk], 1), "state": state,
                                          "sr": np.array(16000, dtype=np.int64)})
            probs.append(round(float(p[0, 0]), 6))
            context = chunk[:, -vad.CONTEXT:]
        out[clip] = probs
    return out


def main(argv: list[str] | None = None) -> int:
    import onnx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--reference", nargs="*", default=[])
    args = parser.parse_args(argv)
    raw = onnx_bytes(args.source)
    from singtalk import atomic, vad

    arrays = constants(onnx.load_from_string(raw))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic.write_bytes(vad.WEIGHTS, buffer.getvalue())
    print(f"wrote {vad.WEIGHTS.relative_to(ROOT)} ({len(arrays)} arrays)")
    if args.reference:
        path = ROOT / "tests" / "fixtures" / "silero-vad-reference.json"
        path.parent.mkdir(exist_ok=True)
        atomic.write_json(path, {"model": "silero-vad 5.1.2 (onnxruntime)", "level_rms": vad.LEVEL_RMS,
                                 "probabilities": reference(raw, args.reference)})
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
