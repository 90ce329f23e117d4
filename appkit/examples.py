"""The example clips a first visitor can try with one click (``examples/``, licences in its README)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from singtalk.config import REPO_ROOT

FOLDER = REPO_ROOT / "examples"


@dataclass(frozen=True)
class Example:
    file: str
    title: str
    credit: str

    @property
    def path(self):
        return FOLDER / self.file


EXAMPLES = (
    Example("talking-librispeech-3807.opus", "Someone reading aloud",
            "LibriSpeech (Panayotov et al., 2015), reader 3807 — CC BY 4.0"),
    Example("singing-pjs-016.opus", "A singer, no band",
            "PJS corpus (Koguchi, Takamichi & Morise, 2020), song 16 — CC BY-SA 4.0"),
    Example("song-karissa-hobbs-lets-go-fishin.opus", "A band, then a voice",
            "Karissa Hobbs, “Let's Go Fishin'” (Free Music Archive) — CC BY 3.0"),
    Example("no-voice-berklee-prepared-piano.opus", "A piano, no voice",
            "OLPC Berklee Sound Library, prepared piano — CC BY 3.0"),
)


def available() -> tuple[Example, ...]:
    """The examples whose file is present (all of them in a checkout)."""
    return tuple(example for example in EXAMPLES if example.path.is_file())


def find(file: str | None) -> Example | None:
    return next((example for example in EXAMPLES if example.file == file), None)


@lru_cache(maxsize=len(EXAMPLES))
def read(file: str) -> bytes:
    """The clip's bytes (cached: a few tens of kB each)."""
    example = find(file)
    if example is None:
        raise KeyError(file)
    return example.path.read_bytes()


CREDITS = "Examples: " + "; ".join(example.credit for example in EXAMPLES) + " (details in `examples/README.md`)."
