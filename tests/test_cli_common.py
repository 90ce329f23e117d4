"""How many worker processes ``singtalk classify`` uses when not told (``cli_common.classify_jobs``)."""

from __future__ import annotations

import numpy as np

from singtalk.audio import write_wav
from singtalk.cli_common import POOL_MIN_AUDIO_S, audio_seconds_at_least, classify_jobs


def tones(folder, seconds: list[float], prefix: str = "tone") -> list[str]:
    paths = []
    for i, s in enumerate(seconds):
        t = np.arange(int(s * 8000)) / 8000
        paths.append(str(write_wav(folder / f"{prefix}{i}.wav", (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 8000)))
    return paths


def test_both_cores_from_three_minutes_of_audio_one_process_below(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    short = tones(tmp_path, [20.0] * 5)  # 100 s
    assert classify_jobs(None, short) == 1
    long = short + tones(tmp_path, [60.0, 30.0], prefix="long")
    assert audio_seconds_at_least(long, POOL_MIN_AUDIO_S) >= POOL_MIN_AUDIO_S
    assert classify_jobs(None, long) == 2
    assert classify_jobs(None, long, separate=True) == 1  # Spleeter already uses both cores
    assert classify_jobs(3, short) == 3 and classify_jobs(None, long[:1]) == 1


def test_unreadable_headers_count_by_size_and_links_as_a_minute_each(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    mp3_like = tmp_path / "long.mp3"
    mp3_like.write_bytes(b"\0" * int(3.5 * 60 * 16_000))  # 3.5 min at 128 kb/s: its size says long
    missing = str(tmp_path / "gone.wav")
    assert audio_seconds_at_least([str(mp3_like), missing], 1e9) >= 200
    assert classify_jobs(None, [str(mp3_like), missing]) == 2
    links = ["https://example.org/a", "https://example.org/b"]
    assert audio_seconds_at_least(links, 1e9) == 120 and classify_jobs(None, links) == 1
    assert classify_jobs(None, links * 2) == 2
