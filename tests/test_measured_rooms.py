"""The two measured rooms (``singtalk.measured_rooms``, fetched by ``scripts/fetch_room_responses.py``): their
responses, the fetch's checks, and real recordings heard in them through the real ``singtalk classify``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from singtalk import augment, dataset, labels, measured_rooms
from singtalk.audio import SAMPLE_RATE, write_wav
from singtalk.config import REPO_ROOT, room_responses_dir

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import fetch_room_responses  # noqa: E402
import robustness  # noqa: E402
import train_default  # noqa: E402


def early_decay_s(ir: np.ndarray) -> float:
    """Early decay time: six times the time the backward-integrated energy takes to fall 10 dB."""
    energy = np.cumsum((ir ** 2)[::-1])[::-1]
    return 6 * int(np.argmax(10 * np.log10(energy / energy[0]) < -10)) / SAMPLE_RATE


def test_the_fetched_rooms_verify_and_a_damaged_copy_is_caught(tmp_path):
    """``make setup-test`` fetched both rooms and the licence naming them; a changed or missing file is named."""
    assert fetch_room_responses.problems(room_responses_dir()) == []
    assert "Public Domain" in (room_responses_dir() / "WAV_LICENSE.md").read_text()
    for room in measured_rooms.ROOMS.values():
        (tmp_path / room.file).write_bytes((room_responses_dir() / room.file).read_bytes())
    (tmp_path / "living_room_1.wav").write_bytes(b"RIFF" + bytes(100))
    assert fetch_room_responses.problems(tmp_path) == ["living_room_1.wav sha256 mismatch", "WAV_LICENSE.md missing"]


@pytest.mark.parametrize("name, shortest, longest", [("living room", 0.1, 0.6), ("sports hall", 3.0, 7.0)])
def test_a_response_starts_at_its_direct_sound_and_decays_as_the_room_does(name, shortest, longest):
    ir = measured_rooms.response(name, SAMPLE_RATE)
    assert int(np.argmax(np.abs(ir))) == augment.IR_LEAD and ir[augment.IR_LEAD] == pytest.approx(1.0)
    assert shortest < early_decay_s(ir) < longest
    click = np.zeros(SAMPLE_RATE)
    click[1000] = 1.0
    heard = measured_rooms.in_room(click, name, SAMPLE_RATE)
    assert heard.size == click.size and int(np.argmax(np.abs(heard))) == 1000  # aligned on the direct sound
    assert np.sum(heard[1001:] ** 2) > 0.05  # and the room's reflections follow it


def test_missing_rooms_stop_the_robustness_run_at_once_with_what_to_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SINGTALK_ROOMS", str(tmp_path))
    measured_rooms.response.cache_clear()
    try:
        assert robustness.main(["--limit", "1", "--conditions", "sports hall (measured)"]) == 2
    finally:
        measured_rooms.response.cache_clear()
    assert "make rooms" in capsys.readouterr().err


def test_speech_in_the_measured_living_room_is_talking_and_music_in_the_sports_hall_no_voice(corpus, tmp_path):
    """A test-split LibriSpeech clip in the OpenAIR living room and the longest test-split instrumental in the
    sports hall (about 5 s of reverberation), through ``singtalk classify`` as a user runs it."""
    test = robustness.split_clips(corpus, train_default.SPLIT_FILE)
    speech = test[test.source == "librispeech"].iloc[0]
    music = test[(test.label == labels.NO_VOICE) & (test.language == "music")]
    music = music.iloc[int(np.argmax(pd.to_numeric(music.duration_s, errors="coerce").fillna(0)))]
    files = {}
    for name, row, room in (("speech", speech, "living room"), ("music", music, "sports hall")):
        wet = measured_rooms.in_room(dataset.decode_clip(row.path), room, SAMPLE_RATE)
        files[name] = write_wav(tmp_path / f"{name}.wav", 0.9 * wet / np.max(np.abs(wet)))
    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "singtalk.cli", "classify", files["speech"], files["music"],
                           "--csv", out, "--models", REPO_ROOT / "models"], capture_output=True, text=True,
                          timeout=600, cwd=REPO_ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    answers = pd.read_csv(out, keep_default_na=False).set_index("path")["label"]
    assert answers[str(files["speech"])] == labels.TALKING, (speech.key, answers.to_dict())
    assert answers[str(files["music"])] == labels.NO_VOICE, (music.key, answers.to_dict())
