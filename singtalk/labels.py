"""The answers the classifier gives: their names, how they are shown, and what they mean.

A model's own class names live in its metadata (``class_names``); a two-class model (singing,
talking) is served as it is and simply never answers :data:`NO_VOICE`.
"""

from __future__ import annotations

SINGING = "singing"
TALKING = "talking"
NO_VOICE = "no_voice"
CLASSES = (SINGING, TALKING, NO_VOICE)
"""The shipped model's classes, in its output order."""
VOICED = (SINGING, TALKING)

DISPLAY = {SINGING: "Singing", TALKING: "Talking", NO_VOICE: "No voice"}
MEANING = {
    SINGING: "A voice that sings: held notes on a tune, with or without accompaniment.",
    TALKING: "A voice that speaks: reading, conversation, a presenter, with or without music behind it.",
    NO_VOICE: "No human voice was heard: instrumental music, everyday sounds or noise.",
}


def display(label: str) -> str:
    """``no_voice`` → ``No voice``; unknown labels are capitalised."""
    return DISPLAY.get(label, str(label).replace("_", " ").capitalize())


def probability_column(label: str) -> str:
    """The column holding a class's probability: ``singing`` → ``p_singing``."""
    return f"p_{label}"


def probability_columns(class_names=()) -> list[str]:
    """``p_singing, p_talking, p_no_voice``, then one column for each other class of ``class_names``.

    Tables written for any model share the first three columns (empty where a model lacks the class), so a
    file written with a two-class model and one written with a three-class model line up.
    """
    names = list(CLASSES) + [str(c) for c in class_names if str(c) not in CLASSES]
    return [probability_column(name) for name in names]
