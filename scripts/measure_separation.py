#!/usr/bin/env python
"""Measure vocal extraction on every MIR-1K mixture of the corpus.

For each ``mixture/mir1k/<stem>_mix.flac`` in the manifest, the clean vocal is
``singing/mir1k/<stem>.flac``. Prints the mean SI-SNR (dB) against the clean
vocal of (a) the extracted vocals and (b) the raw mixture, and the separation
time per second of audio.

Usage: python scripts/measure_separation.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from singtalk.audio import decode  # noqa: E402
from singtalk.config import data_dir  # noqa: E402
from singtalk.errors import SingtalkError  # noqa: E402
from singtalk.separation import get_separator, si_snr  # noqa: E402

RATE = 16000  # MIR-1K's own rate


def mir1k_pairs(root: Path) -> list[tuple[Path, Path]]:
    """``(mixture, clean vocal)`` paths of the MIR-1K mixtures listed in the manifest."""
    manifest = pd.read_csv(root / "manifest.csv")
    listed = set(manifest["path"])
    pairs = []
    for rel in sorted(p for p in listed if p.startswith("mixture/mir1k/") and p.endswith("_mix.flac")):
        stem = Path(rel).name[: -len("_mix.flac")]
        clean = f"singing/mir1k/{stem}.flac"
        if clean in listed:
            pairs.append((root / rel, root / clean))
    return pairs


def measure(pairs: list[tuple[Path, Path]]) -> dict:
    separator = get_separator()
    extracted, raw, seconds, spent = [], [], 0.0, 0.0
    for mix_path, clean_path in pairs:
        mix = decode(mix_path, sr=RATE)
        clean = decode(clean_path, sr=RATE)
        start = time.perf_counter()
        vocals = separator.vocals(mix, RATE)
        spent += time.perf_counter() - start
        seconds += mix.size / RATE
        extracted.append(si_snr(vocals, clean))
        raw.append(si_snr(mix, clean))
    return {
        "files": len(pairs),
        "extracted_db": float(np.mean(extracted)),
        "mixture_db": float(np.mean(raw)),
        "audio_s": seconds,
        "time_per_audio_s": spent / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N mixtures")
    args = parser.parse_args(argv)
    root = data_dir()
    try:
        pairs = mir1k_pairs(root)[: args.limit]
        if not pairs:
            print(f"measure_separation: no MIR-1K mixture/vocal pairs in {root}/manifest.csv", file=sys.stderr)
            return 1
        start = time.perf_counter()
        get_separator()
        build_s = time.perf_counter() - start
        result = measure(pairs)
    except (SingtalkError, OSError) as err:
        print(f"measure_separation: {err}", file=sys.stderr)
        return 1
    print(f"MIR-1K mixtures:               {result['files']} ({result['audio_s']:.0f} s of audio)")
    print(f"mean SI-SNR extracted vocals:  {result['extracted_db']:.2f} dB")
    print(f"mean SI-SNR raw mixture:       {result['mixture_db']:.2f} dB")
    print(f"improvement:                   {result['extracted_db'] - result['mixture_db']:.2f} dB")
    print(f"separation time:               {result['time_per_audio_s']:.4f} s per second of audio "
          f"(model load {build_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
