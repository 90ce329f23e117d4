"""The shipped model in the real app in Chromium: the README's two pictures, and No voice for an instrumental.

One server serves the shipped model for both. Every run writes them to ``test-artifacts/`` and checks what they show: the Classify page answering the
band-then-voice example with its segments, and the Review page listing three real mistakes of the shipped
model (test-split clips it gets wrong). With ``SINGTALK_SCREENSHOTS=docs/img`` the run also replaces the
committed pictures, reduced to a small palette:

    SINGTALK_SCREENSHOTS=docs/img .venv/bin/python -m pytest tests/test_screenshots.py
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from singtalk import review
from singtalk.audio import decode, write_wav
from singtalk.labels import MEANING, NO_VOICE
from tests.test_browser import (NO_VOICE_CLIP, REPO, SHIPPED, browser, fake_mic, no_exception,  # noqa: F401
                                prediction, ready, shot, streamlit_server, three_class_shipped, upload)

pytestmark = pytest.mark.browser

SONG = REPO / "examples" / "song-karissa-hobbs-lets-go-fishin.opus"
MISTAKES = [  # (corpus clip, true label, the shipped model's answer, its confidence)
    ("singing/ravdess/actor09_03-02-06-02-01-01-09.flac", "singing", "talking", 0.94),
    ("talking/speechocean762/so762_014390135.opus", "talking", "singing", 0.66),
    ("no_voice/librosa_data/robin.opus", "no_voice", "singing", 0.98),
]


def reported_mistakes(corpus: Path, work: Path) -> None:
    """The three mistakes filed as the app's "This is wrong" files them: the clip as a WAV in reports/."""
    folder = work / "reports" / "upload"
    folder.mkdir(parents=True)
    for path, label, predicted, confidence in MISTAKES:
        clip = write_wav(folder / f"{Path(path).stem}.wav", decode(str(corpus / path)))
        review.add_report(work / "wrong_audios.csv", clip, label=label, predicted=predicted, confidence=confidence,
                          model_version="shipped", probabilities={predicted: confidence})


def save(page, name: str, artifacts_dir: Path) -> Path:
    """Full-page PNG in test-artifacts/; also into ``$SINGTALK_SCREENSHOTS`` with a 64-colour palette."""
    page.wait_for_timeout(600)
    path = artifacts_dir / f"readme_{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("SINGTALK_SCREENSHOTS")
    if target:
        from PIL import Image

        Path(target).mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").quantize(64).save(Path(target) / f"{name}.png", optimize=True)
    assert path.stat().st_size > 20_000  # a drawn page, not a blank one
    return path


@pytest.fixture(scope="module")
def shipped_server(browser, corpus, tmp_path_factory):
    """The app on the shipped model, on loopback (the team's pages open), with three mistakes reported."""
    work = tmp_path_factory.mktemp("shipped-work")
    reported_mistakes(corpus, work)
    env = dict(os.environ, SINGTALK_MODELS=str(SHIPPED), SINGTALK_WORK=str(work), SINGTALK_ICE_SERVERS="[]")
    for key in ("SINGTALK_TEAM_PASSWORD_HASH", "SINGTALK_PUBLIC", "STREAMLIT_SERVER_ADDRESS"):
        env.pop(key, None)
    with streamlit_server(env, tmp_path_factory.mktemp("log") / "streamlit_shipped.log") as url:
        yield url


@contextlib.contextmanager
def answered(browser, url: str, clip: Path, viewport: dict):
    """A fresh browser context on ``url`` with ``clip`` uploaded; yields the page and its Prediction."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        page.goto(url)
        ready(page)
        upload(page, clip)
        yield page, prediction(page)
    finally:
        context.close()


def test_readme_pictures_of_classify_and_review(browser, shipped_server, artifacts_dir):
    with answered(browser, shipped_server, SONG, {"width": 1200, "height": 1300}) as (page, said):
        assert said == "Singing"
        page.get_by_text("Segments CSV").first.wait_for(timeout=30000)
        charts = page.locator('[data-testid="stVegaLiteChart"]')
        charts.nth(1).wait_for(timeout=30000)  # the bars, then the timeline with its segments
        no_exception(page)
        save(page, "classify", artifacts_dir)

        page.goto(f"{shipped_server}/review")
        try:
            for path, *_ in MISTAKES:
                page.get_by_text(f"{Path(path).stem}.wav", exact=True).first.wait_for(timeout=30000)
        except Exception:
            page.screenshot(path=str(artifacts_dir / "readme_review_failure.png"), full_page=True)
            raise
        no_exception(page)
        save(page, "review", artifacts_dir)


@pytest.mark.xfail(not three_class_shipped(), strict=True,
                   reason="the shipped model is two-class until issue 22's three-class model is promoted in models/: "
                          "it cannot answer No voice. The mark lifts itself once models/CURRENT's metadata lists "
                          "no_voice.")
def test_shipped_model_says_no_voice_for_an_instrumental(browser, shipped_server, manifest, artifacts_dir):
    """The shipped model on a plain no_voice corpus clip: Prediction "No voice", its meaning, its bars."""
    rows = manifest[manifest["path"] == NO_VOICE_CLIP]
    if rows.empty:  # the corpus changed: any no_voice clip of 8-15 s
        pool = manifest[(manifest["label"] == NO_VOICE) & manifest["duration_s"].between(8, 15)]
        rows = pool.sort_values("path").head(1)
    clip = Path(rows["abspath"].iloc[0])
    with answered(browser, shipped_server, clip, {"width": 1300, "height": 1000}) as (page, said):
        shot(page, artifacts_dir, "browser_no_voice")
        assert said == "No voice", f"the shipped model said {said} for {clip.name}"
        page.get_by_text(MEANING[NO_VOICE]).wait_for(timeout=10000)
        page.get_by_text("Probability of each class").first.wait_for(timeout=10000)
        no_exception(page)
