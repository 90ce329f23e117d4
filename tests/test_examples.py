"""The example clips offered to first visitors: few, small, redistributable, credited, and answered right."""

from __future__ import annotations

import re

import pytest

from appkit import examples
from singtalk.audio import decode
from singtalk.labels import NO_VOICE, SINGING, TALKING

EXPECTED = {
    "talking-librispeech-3807.opus": [TALKING],
    "singing-pjs-016.opus": [SINGING],
    "song-karissa-hobbs-lets-go-fishin.opus": [NO_VOICE, SINGING],  # its segments: the band's intro, then the verse
    "no-voice-berklee-prepared-piano.opus": [NO_VOICE],
}
@pytest.fixture(scope="module")
def classifier():
    from singtalk.classify import Classifier
    from singtalk.config import models_dir
    from singtalk.registry import ModelStore

    return Classifier(ModelStore(models_dir()).load())


ALLOWED = re.compile(r"\*\*(CC BY(-SA)? [34]\.0|Public domain)\*\*")


def test_every_clip_is_listed_credited_small_and_short():
    files = sorted(p.name for p in examples.FOLDER.iterdir() if p.name != "README.md")
    assert files == sorted(e.file for e in examples.EXAMPLES) == sorted(EXPECTED)
    readme = (examples.FOLDER / "README.md").read_text(encoding="utf-8")
    for name in files:
        [line] = [line for line in readme.splitlines() if f"`{name}`" in line]
        assert ALLOWED.search(line), f"{name}: no redistributable licence named in examples/README.md"
    assert sum((examples.FOLDER / name).stat().st_size for name in files) < 300_000
    for example in examples.EXAMPLES:
        assert decode(example.path).size / 16000 <= 20.0


@pytest.mark.parametrize("file", sorted(EXPECTED))
def test_the_shipped_model_answers_each_example_as_its_readme_says(file, classifier):
    prediction = classifier.classify(decode(examples.find(file).path))
    assert prediction.segments["label"].tolist() == EXPECTED[file]
    assert prediction.label == EXPECTED[file][-1]
