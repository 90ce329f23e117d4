"""The feature cache: keyed by content and schema, saved in chunks as vectors finish, torn lines skipped."""

from __future__ import annotations

import json
import os
import shutil
import threading

import numpy as np
import pytest

from singtalk import feature_cache
from singtalk.audio import write_wav
from singtalk.feature_cache import FeatureCache, features_for
from singtalk.features import FEATURE_NAMES, FEATURE_VERSION
from tests.conftest import spoken_buzz, sung_tone

N = len(FEATURE_NAMES)


def _cache(path, **kwargs) -> FeatureCache:
    return FeatureCache(path, feature_version=kwargs.pop("version", FEATURE_VERSION), feature_names=FEATURE_NAMES,
                        **kwargs)


def _vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=N).astype(np.float32)


@pytest.fixture()
def clips(tmp_path) -> list[str]:
    """Six short synthetic clips, every one different (sung notes, spoken buzzes)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    paths = [write_wav(folder / f"sung{i}.wav", sung_tone(2.0, notes=(200.0 + 20 * i, 260.0))) for i in range(3)]
    paths += [write_wav(folder / f"spoken{i}.wav", spoken_buzz(2.0 + 0.25 * i)) for i in range(3)]
    return [str(p) for p in paths]


def test_the_key_is_the_content_and_the_schema(tmp_path, clips):
    cache = _cache(tmp_path / "cache.jsonl")
    vector = _vector(0)
    cache.put(clips[0], vector)
    cache.save()

    again = _cache(tmp_path / "cache.jsonl")
    np.testing.assert_array_equal(again.get(clips[0]), vector)  # exactly the numbers put
    copy = tmp_path / "elsewhere" / "renamed.wav"
    copy.parent.mkdir()
    shutil.copyfile(clips[0], copy)
    np.testing.assert_array_equal(again.get(str(copy)), vector)  # a moved or copied file: the same content
    os.utime(clips[0], ns=(1, 1))
    np.testing.assert_array_equal(again.get(clips[0]), vector)  # touched, not changed
    data = bytearray(open(clips[0], "rb").read())
    data[-100] ^= 0xFF  # one sample changed, same size
    open(clips[0], "wb").write(data)
    assert again.get(clips[0]) is None, "rewritten in place: recomputed"
    assert again.get(clips[1]) is None
    assert again.reused == 3
    assert _cache(tmp_path / "cache.jsonl", version="st-0").get(str(copy)) is None, "another schema"
    assert FeatureCache(tmp_path / "cache.jsonl", feature_version=FEATURE_VERSION,
                        feature_names=list(FEATURE_NAMES)[::-1]).get(str(copy)) is None, "other names"


def test_an_unchanged_file_is_found_without_reading_it(tmp_path, clips, monkeypatch):
    cache = _cache(tmp_path / "cache.jsonl")
    cache.put(clips[0], _vector(0))
    cache.save()
    monkeypatch.setattr(feature_cache, "content_key", lambda path: pytest.fail("hashed again"))
    assert _cache(tmp_path / "cache.jsonl").get(clips[0]) is not None


def test_a_backing_clip_is_keyed_by_its_mixture_and_its_vocal(tmp_path):
    from singtalk import dataset

    corpus = tmp_path / "corpus"
    (corpus / "mixture" / "mir1k").mkdir(parents=True)
    (corpus / "singing" / "mir1k").mkdir(parents=True)
    mixture = write_wav(corpus / "mixture" / "mir1k" / "x_mix.wav", sung_tone(2.0) + spoken_buzz(2.0))
    vocal = write_wav(corpus / "singing" / "mir1k" / "x.wav", sung_tone(2.0))
    backing = str(mixture) + dataset.BACKING
    assert feature_cache.source_files(backing) == [str(mixture), str(vocal)]
    cache = _cache(tmp_path / "cache.jsonl")
    cache.put(backing, _vector(1))
    assert cache.get(backing) is not None
    write_wav(vocal, sung_tone(2.0, notes=(300.0,)))
    assert cache.get(backing) is None, "a new vocal is a new backing track"


def test_vectors_are_appended_in_chunks_as_they_come(tmp_path, clips, monkeypatch):
    now = [0.0]
    cache = _cache(tmp_path / "cache.jsonl", clock=lambda: now[0])
    cache.put(clips[0], _vector(0))
    cache.put(clips[1], _vector(1))
    assert not (tmp_path / "cache.jsonl").exists(), "not yet: a chunk is due every few seconds"
    now[0] += feature_cache.SAVE_EVERY_S
    cache.put(clips[2], _vector(2))
    assert len(_cache(tmp_path / "cache.jsonl")) == 3, "the chunk is on disk while the build goes on"
    monkeypatch.setattr(feature_cache, "CHUNK", 2)
    cache.put(clips[3], _vector(3))
    cache.put(clips[4], _vector(4))
    assert len(_cache(tmp_path / "cache.jsonl")) == 5, "or every CHUNK vectors"


def test_a_torn_last_line_is_skipped_and_the_next_chunk_starts_a_line(tmp_path, clips):
    path = tmp_path / "cache.jsonl"
    cache = _cache(path)
    cache.put(clips[0], _vector(0))
    cache.put(clips[1], _vector(1))
    cache.save()
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # killed in the middle of the second record
    again = _cache(path)
    assert len(again) == 1 and again.get(clips[1]) is None
    again.put(clips[2], _vector(2))
    again.save()
    third = _cache(path)
    assert len(third) == 2 and third.get(clips[2]) is not None


def test_a_file_mostly_of_other_records_is_rewritten(tmp_path, clips, monkeypatch):
    path = tmp_path / "cache.jsonl"
    old = _cache(path, version="st-0")
    for i, clip in enumerate(clips):
        old.put(clip, _vector(i))
    old.save()
    monkeypatch.setattr(feature_cache, "COMPACT_MIN_DEAD", 3)
    cache = _cache(path)
    cache.put(clips[0], _vector(9))
    cache.save()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["path"] for r in records] == [clips[0]] and records[0]["schema"] == cache.schema


def test_an_interrupted_run_keeps_what_finished_and_the_next_computes_the_rest(tmp_path, clips):
    path = tmp_path / "cache.jsonl"
    straight, _ = features_for(clips, jobs=1)

    def stop_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        features_for(clips, cache=_cache(path), jobs=1, progress=stop_after_two)
    assert len(_cache(path)) == 2, "Ctrl-C loses nothing finished"

    stop = threading.Event()

    def stop_at_four(done, total):
        if done == 4:
            stop.set()

    cache = _cache(path)
    vectors, _ = features_for(clips, cache=cache, jobs=1, progress=stop_at_four, stop_event=stop)
    assert (cache.reused, cache.computed) == (2, 2) and sum(v is not None for v in vectors) == 4

    notes, cache = [], _cache(path)
    vectors, errors = features_for(clips, cache=cache, jobs=2, notice=notes.append)
    assert (cache.reused, cache.computed) == (4, 2), "only the missing vectors"
    assert notes == [f"4 of 6 files' features kept from an earlier run ({path}); 2 to compute"]
    assert errors == [""] * 6
    for a, b in zip(vectors, straight):
        np.testing.assert_array_equal(a, b)


def test_failures_are_not_kept(tmp_path, clips):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + bytes(64))
    cache = _cache(tmp_path / "cache.jsonl")
    vectors, errors = features_for([clips[0], str(broken)], cache=cache, jobs=1)
    assert vectors[1] is None and errors[1] and cache.computed == 1
    assert len(_cache(tmp_path / "cache.jsonl")) == 1, "a rerun tries the broken file again"
