"""The pretrained voice detector (singtalk.vad): the NumPy port gives Silero's own probabilities, and the
feature schema summarises them."""

import json
from pathlib import Path

import numpy as np
import pytest

from singtalk import audio, config, features, vad

REFERENCE = Path(__file__).parent / "fixtures" / "silero-vad-reference.json"


def _reference() -> dict:
    return json.loads(REFERENCE.read_text())["probabilities"]


@pytest.mark.parametrize("clip", sorted(_reference()))
def test_the_numpy_port_gives_onnxruntimes_probabilities(clip):
    """scripts/convert_silero_vad.py stored onnxruntime's chunk-by-chunk probabilities of the ONNX graph in the
    silero-vad wheel; the port (FFT for the stored STFT basis, one tanh per LSTM step) must reproduce them."""
    expected = np.array(_reference()[clip])
    got = vad.chunk_probabilities(audio.decode(config.data_dir() / clip))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4


def test_a_voice_scores_high_and_crackling_low():
    ref = _reference()
    speech = np.mean(ref["talking/librispeech/445-123857-0000.flac"])
    singing = np.mean(ref["singing/mir1k/amy_15_01.flac"])
    crackle = np.mean(ref["no_voice/olpc_berklee_tonejs/crackling.opus"])
    assert speech > 0.5 and singing > 0.5 and crackle < 0.1


def test_probabilities_do_not_depend_on_gain_and_stay_in_range():
    y = audio.decode(config.data_dir() / "talking/librispeech/445-123857-0000.flac")
    loud, quiet = vad.chunk_probabilities(y), vad.chunk_probabilities(y * np.float32(0.01))
    assert np.abs(loud - quiet).max() < 1e-4
    assert loud.min() >= 0.0 and loud.max() <= 1.0


def test_short_and_silent_inputs_give_zeros_not_errors():
    assert vad.chunk_probabilities(np.zeros(100, np.float32)).size == 0
    assert vad.frame_probabilities(np.zeros(100, np.float32), 3, 160).tolist() == [0.0, 0.0, 0.0]
    assert np.all(vad.chunk_probabilities(np.zeros(2048, np.float32)) < 0.5)


def test_frames_take_their_chunks_probability():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(16000).astype(np.float32) * 0.1
    chunks = vad.chunk_probabilities(y)
    frames = vad.frame_probabilities(y, 101, 160)
    assert frames.shape == (101,)
    assert frames[0] == chunks[0] and frames[4] == chunks[1]  # sample 640 lies in chunk 1
    assert frames[-1] == chunks[-1]  # past the last whole chunk: the last one


def test_the_features_summarise_the_sounding_frames():
    y = audio.decode(config.data_dir() / "no_voice/olpc_berklee_tonejs/crackling.opus")
    frames = features.analyse(y)
    vector = dict(zip(features.FEATURE_NAMES, features.pool(frames)))
    prob = frames.voice_prob[frames.sounding]
    assert vector["voice_prob_mean"] == pytest.approx(prob.mean(), abs=1e-6)
    assert vector["voice_prob_max"] == pytest.approx(prob.max(), abs=1e-6)
    assert vector["voice_prob_fraction"] == pytest.approx((prob > 0.5).mean(), abs=1e-6)
    assert vector["voice_prob_mean"] < 0.1
