"""Segments from the per-window timeline: synthetic timelines for the rules, real audio through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from singtalk.labels import NO_VOICE, SINGING, TALKING
from singtalk.segments import SEGMENT_COLUMNS, merge_windows

THREE = [SINGING, TALKING, NO_VOICE]
TWO = [SINGING, TALKING]
HOP, WINDOW = 2.0, 4.0


def timeline(labels_per_second: list[str], class_names=THREE, *, confidence: float = 0.9, hop: float = HOP,
             window: float = WINDOW, rng=None, silence: str = "silence") -> tuple[pd.DataFrame, float]:
    """A window timeline (as the classifier writes it) of a ground truth given per second.

    Each window's probabilities are the mix of the classes it hears (weighted by time), sharpened toward
    ``confidence``; seconds marked ``silence`` are not heard: a window with less than 0.5 s of sound has
    label "" and NaN probabilities. ``rng`` adds noise to the probabilities. Windows are spread as
    :func:`singtalk.features.window_bounds` spreads them: first at 0, last ending at the duration.
    """
    duration = float(len(labels_per_second))
    count = int(round((duration - window) / hop)) + 1
    starts = np.linspace(0, duration - window, count) if count > 1 else np.zeros(1)
    rows = []
    for start in starts:
        heard = labels_per_second[int(round(start)):int(round(start + window))]
        sound = [x for x in heard if x != silence]
        row = {"start_s": round(float(start), 3), "end_s": round(float(start + window), 3)}
        if len(sound) < 0.5:
            rows.append({**row, "label": "", **{f"p_{c}": np.nan for c in class_names}})
            continue
        mix = np.array([sound.count(c) for c in class_names], dtype=float) / len(sound)
        p = mix * confidence + (1 - confidence) / len(class_names)
        if rng is not None:
            p = np.clip(p + rng.normal(0, 0.05, size=p.size), 1e-3, None)
        p = p / p.sum()
        rows.append({**row, "label": class_names[int(np.argmax(p))],
                     **{f"p_{c}": float(v) for c, v in zip(class_names, p)}})
    return pd.DataFrame(rows), duration


def assert_tiles(segments: pd.DataFrame, duration: float) -> None:
    assert list(segments.columns) == SEGMENT_COLUMNS
    assert segments["start_s"].iloc[0] == 0.0
    assert segments["end_s"].iloc[-1] == pytest.approx(duration, abs=1e-3)
    np.testing.assert_array_equal(segments["start_s"].to_numpy()[1:], segments["end_s"].to_numpy()[:-1])
    assert (segments["end_s"] > segments["start_s"]).all()
    assert (segments["label"] != segments["label"].shift()).iloc[1:].all(), "equal neighbours are merged"


def song(intro=10, verse=20, solo=12, chorus=24, outro=8) -> tuple[list[str], list[float]]:
    """no_voice intro → singing → no_voice solo → singing → no_voice outro; per second, and the 4 boundaries."""
    parts = [(NO_VOICE, intro), (SINGING, verse), (NO_VOICE, solo), (SINGING, chorus), (NO_VOICE, outro)]
    seconds = [label for label, n in parts for _ in range(n)]
    return seconds, list(np.cumsum([n for _, n in parts])[:-1].astype(float))


# -- the rules on synthetic timelines ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_song_is_five_segments_with_the_right_boundaries(seed):
    seconds, boundaries = song()
    frame, duration = timeline(seconds, rng=np.random.default_rng(seed))
    segments = merge_windows(frame, THREE, duration_s=duration)
    assert_tiles(segments, duration)
    assert list(segments["label"]) == [NO_VOICE, SINGING, NO_VOICE, SINGING, NO_VOICE]
    np.testing.assert_allclose(segments["end_s"].to_numpy()[:-1], boundaries, atol=HOP)
    assert (segments["confidence"] > 0.6).all() and (segments["confidence"] <= 1).all()


def test_boundaries_follow_irregular_hops():
    """A 73 s input: the windows' starts are spread evenly (hop 69/34 = 2.03 s), the segments still tile it."""
    seconds, boundaries = song(outro=7)
    frame, duration = timeline(seconds)
    assert duration == 73 and frame["start_s"].diff().iloc[1] == pytest.approx(69 / 34, abs=1e-3)
    segments = merge_windows(frame, THREE, duration_s=duration)
    assert_tiles(segments, duration)
    assert list(segments["label"]) == [NO_VOICE, SINGING, NO_VOICE, SINGING, NO_VOICE]
    np.testing.assert_allclose(segments["end_s"].to_numpy()[:-1], boundaries, atol=HOP)


def test_a_one_window_flicker_is_absorbed():
    """One window reads talking with certainty inside a song: it flips the two hop slots it covers (one
    window's length), which is not a segment of its own."""
    frame, duration = timeline([SINGING] * 30, TWO)
    flicker = 7
    frame.loc[flicker, ["label", "p_singing", "p_talking"]] = [TALKING, 0.0, 1.0]
    segments = merge_windows(frame, TWO, duration_s=duration)
    assert list(segments["label"]) == [SINGING] and segments["end_s"].iloc[0] == duration
    # the flicker costs confidence where it was heard: the mean over the slots, not the mean of the windows
    assert 0.8 < segments["confidence"].iloc[0] < frame["p_singing"].drop(flicker).mean()
    # two windows in a row saying talking are heard by three slots (6 s): a segment
    frame.loc[flicker + 1, ["label", "p_singing", "p_talking"]] = [TALKING, 0.0, 1.0]
    segments = merge_windows(frame, TWO, duration_s=duration)
    assert list(segments["label"]) == [SINGING, TALKING, SINGING]
    assert segments["end_s"].iloc[1] - segments["start_s"].iloc[1] == pytest.approx(6.0, abs=0.01)


def test_a_short_run_goes_to_the_neighbour_it_sounds_more_like():
    """A 2 s run between 6 s of singing and 10 s of talking (2 s windows, no overlap: one slot each) goes to
    the neighbour its slot finds more probable, even the shorter one; a silent run, with no probabilities,
    to the longer neighbour."""
    def frame_with(middle):
        p = [(0.9, 0.05, 0.05)] * 3 + [middle] + [(0.05, 0.9, 0.05)] * 5
        return pd.DataFrame({"start_s": np.arange(9) * 2.0, "end_s": np.arange(9) * 2.0 + 2,
                             "label": ["x" if np.isfinite(m).all() else "" for m in p],
                             "p_singing": [m[0] for m in p], "p_talking": [m[1] for m in p],
                             "p_no_voice": [m[2] for m in p]})

    leaning_to_singing = merge_windows(frame_with((0.35, 0.1, 0.55)), THREE, duration_s=18.0)
    assert leaning_to_singing[["end_s", "label"]].values.tolist() == [[8.0, SINGING], [18.0, TALKING]]
    leaning_to_talking = merge_windows(frame_with((0.1, 0.35, 0.55)), THREE, duration_s=18.0)
    assert leaning_to_talking[["end_s", "label"]].values.tolist() == [[6.0, SINGING], [18.0, TALKING]]
    silent = merge_windows(frame_with((np.nan, np.nan, np.nan)), THREE, duration_s=18.0)
    assert silent[["end_s", "label"]].values.tolist() == [[6.0, SINGING], [18.0, TALKING]]
    assert silent["confidence"].tolist() == [0.9, 0.9]  # the silent slot adds nothing to talking's confidence


def test_two_class_timelines_work_and_never_say_no_voice_where_there_is_sound():
    seconds = [SINGING] * 20 + [TALKING] * 20 + [SINGING] * 16
    frame, duration = timeline(seconds, TWO, rng=np.random.default_rng(3))
    assert "p_no_voice" not in frame.columns
    segments = merge_windows(frame, TWO, duration_s=duration)
    assert_tiles(segments, duration)
    assert list(segments["label"]) == [SINGING, TALKING, SINGING]
    np.testing.assert_allclose(segments["end_s"].to_numpy()[:-1], [20, 40], atol=HOP)


@pytest.mark.parametrize("class_names", [TWO, THREE], ids=["two-class", "three-class"])
def test_silence_is_no_voice_without_a_confidence(class_names):
    seconds = [TALKING] * 14 + ["silence"] * 12 + [TALKING] * 14
    frame, duration = timeline(seconds, class_names)
    assert (frame["label"] == "").sum() >= 3
    segments = merge_windows(frame, class_names, duration_s=duration)
    assert_tiles(segments, duration)
    assert list(segments["label"]) == [TALKING, NO_VOICE, TALKING]
    assert np.isnan(segments["confidence"].iloc[1]) and segments["confidence"].iloc[[0, 2]].notna().all()
    np.testing.assert_allclose(segments["end_s"].to_numpy()[:-1], [14, 26], atol=HOP)


def test_a_short_pause_inside_speech_is_absorbed():
    seconds = [TALKING] * 14 + ["silence"] * 7 + [TALKING] * 14
    frame, duration = timeline(seconds, TWO)
    assert (frame["label"] == "").sum() >= 2, "two silent windows in a row: a silent slot"
    segments = merge_windows(frame, TWO, duration_s=duration)
    assert list(segments["label"]) == [TALKING]
    assert segments["confidence"].iloc[0] == pytest.approx(0.95, abs=1e-6)  # silent slots do not count


def test_uncovered_tail_and_rounded_edges_still_tile():
    """Windows that stop 0.4 s short of the end (a long input's last sliver) and edges off by a millisecond."""
    frame, _ = timeline([SINGING] * 20, TWO)
    frame["end_s"] = frame["end_s"] + 0.001
    segments = merge_windows(frame, TWO, duration_s=20.4)
    assert_tiles(segments, 20.4)
    assert list(segments["label"]) == [SINGING]


@pytest.mark.parametrize("duration", [3.0, 4.0])
def test_one_window_gives_one_segment(duration):
    frame = pd.DataFrame({"start_s": [0.0], "end_s": [duration], "label": [TALKING], "p_singing": [0.2],
                          "p_talking": [0.8]})
    segments = merge_windows(frame, TWO, duration_s=duration)
    assert segments.to_dict("records") == [{"start_s": 0.0, "end_s": duration, "label": TALKING, "confidence": 0.8}]


def test_input_shorter_than_a_segment_is_one_segment():
    frame, duration = timeline([SINGING, SINGING, SINGING, TALKING, TALKING, TALKING], TWO, window=2.0, hop=1.0)
    segments = merge_windows(frame, TWO, duration_s=duration, min_segment_s=8.0)
    assert_tiles(segments, duration)
    assert len(segments) == 1


def test_missing_probability_column_is_named():
    frame, duration = timeline([SINGING] * 10, TWO)
    with pytest.raises(ValueError, match="p_no_voice"):
        merge_windows(frame, THREE, duration_s=duration)


# -- real audio through the CLI with the served model ----------------------------------------------------------
def served_class_names() -> list[str]:
    from singtalk.config import models_dir
    from singtalk.registry import ModelStore

    store = ModelStore(models_dir())
    return list(store.read_metadata(store.current_version())["class_names"])


def test_segments_of_real_music_silence_and_song_through_the_cli(corpus, manifest, tmp_path):
    """12 s of instrumental music (no_voice in the corpus), 10 s of digital silence, then 12 s of a sung clip,
    classified by the served model through ``singtalk classify --segments``: the segments tile the input, the
    silence is a no_voice stretch whatever the model, and the song ends singing."""
    from singtalk.audio import SAMPLE_RATE, decode, write_wav

    music = manifest[(manifest.label == NO_VOICE) & (manifest.language == "music") & (manifest.duration_s >= 12)]
    sung = manifest[(manifest.label == SINGING) & (manifest.source == "pjs_justln1113") & (manifest.duration_s >= 12)]
    assert len(music) and len(sung), "the corpus should hold long no_voice music and long sung clips"

    def part(path, seconds):
        y = decode(path)[: int(seconds * SAMPLE_RATE)]
        return (0.5 * y / np.max(np.abs(y))).astype(np.float32)  # same peak: neither part hides the other

    intro, song_part = part(music.abspath.iloc[0], 12), part(sung.abspath.iloc[0], 12)
    silence = np.zeros(10 * SAMPLE_RATE, dtype=np.float32)
    source = write_wav(tmp_path / "intro_silence_song.wav", np.concatenate([intro, silence, song_part]))
    duration = (intro.size + silence.size + song_part.size) / SAMPLE_RATE
    out_csv, out_json, segments_csv = tmp_path / "out.csv", tmp_path / "segments.json", tmp_path / "segments.csv"

    proc = subprocess.run([sys.executable, "-m", "singtalk.cli", "classify", str(source), "--csv", str(out_csv),
                           "--segments", str(segments_csv)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    segments = pd.read_csv(segments_csv)
    assert list(segments.columns) == ["path", *SEGMENT_COLUMNS] and set(segments["path"]) == {str(source)}
    assert_tiles(segments.drop(columns="path"), round(duration, 3))
    print(segments.to_string())

    def label_at(t):
        return segments[(segments.start_s <= t) & (t < segments.end_s)]["label"].iloc[0]

    assert label_at(17.0) == NO_VOICE  # the middle of the silence (12-22 s)
    assert label_at(duration - 3) == SINGING
    row = pd.read_csv(out_csv, keep_default_na=False).iloc[0]
    assert row["error"] == "" and row["model"]
    if NO_VOICE in served_class_names():
        # Needs a three-class model: a two-class one can only call the instrumental intro singing or talking.
        assert label_at(3.0) == NO_VOICE
        assert segments.label.tolist()[-1] == SINGING and segments.label.tolist()[0] == NO_VOICE

    # the same segments as JSON records
    proc = subprocess.run([sys.executable, "-m", "singtalk.cli", "classify", str(source), "--csv", str(out_csv),
                           "--segments", str(out_json)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out_json.read_text())
    assert [r["path"] for r in records] == [str(source)]
    as_json = pd.DataFrame(records[0]["segments"])
    assert list(as_json.columns) == SEGMENT_COLUMNS
    pd.testing.assert_frame_equal(as_json.astype({"confidence": float}), segments.drop(columns="path"),
                                  check_dtype=False)


def test_a_long_song_is_singing_and_long_music_with_a_word_stays_no_voice(corpus, manifest, tmp_path):
    """A whole song with its band (133 s, instrumental intro and breaks) is answered singing, with a note saying
    how much of it holds a voice; 40 s of instrumental music with one short spoken phrase stays no voice."""
    assert NO_VOICE in served_class_names()
    from singtalk.audio import SAMPLE_RATE, decode, write_wav

    song = sorted((corpus / "mixture" / "librosa_fishin").glob("*"))[0]
    music = manifest[(manifest.label == NO_VOICE) & (manifest.language == "music") & (manifest.duration_s >= 20)]
    spoken = manifest[(manifest.label == TALKING) & (manifest.source == "librispeech")]
    y_music = np.concatenate([decode(music.abspath.iloc[i]) for i in range(3)])[: 40 * SAMPLE_RATE]
    y_word = decode(spoken.abspath.iloc[0])[: 3 * SAMPLE_RATE]
    peak = lambda y: 0.5 * y / np.max(np.abs(y))  # noqa: E731
    mostly_music = write_wav(tmp_path / "music_with_a_word.wav",
                             np.concatenate([peak(y_music[: 20 * SAMPLE_RATE]), peak(y_word),
                                             peak(y_music[20 * SAMPLE_RATE:])]).astype(np.float32))
    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "singtalk.cli", "classify", str(song), str(mostly_music),
                           "--csv", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(out, keep_default_na=False)
    print(rows.to_string())
    assert rows.label.tolist() == [SINGING, NO_VOICE]
    assert rows.note[0].startswith("a voice in about") and rows.p_no_voice[0] > 0.2
    assert rows.note[1] == ""


@pytest.mark.parametrize("clip_p, expected", [
    ([0.30, 0.10, 0.60], ("singing", 0.30, "a voice in about 40% of the audio")),  # no voice likeliest, voice ≥ 1/3
    ([0.20, 0.10, 0.70], ("no_voice", 0.70, "")),  # a voice in under a third: no voice, no note
    ([0.45, 0.10, 0.45], ("singing", 0.45, "a voice in about 55% of the audio")),  # voiced, but much without
    ([0.10, 0.85, 0.05], ("talking", 0.85, "")),  # a voice nearly throughout: no note
])
def test_a_long_input_is_answered_by_its_voice_and_says_how_much_of_it_has_one(clip_p, expected):
    from singtalk.classify import long_answer

    label, confidence, note = long_answer(["singing", "talking", "no_voice"], np.array(clip_p))
    assert (label, round(confidence, 2)) == expected[:2]
    assert note.startswith(expected[2]) and bool(note) == bool(expected[2])
    assert long_answer(["singing", "talking"], np.array([0.3, 0.7])) == ("talking", 0.7, "")
