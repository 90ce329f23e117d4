"""The README's two pictures, taken from the real app in Chromium with the shipped model.

Every run writes them to ``test-artifacts/`` and checks what they show: the Classify page answering the
band-then-voice example with its segments, and the Review page listing three real mistakes of the shipped
model (test-split clips it gets wrong). With ``SINGTALK_SCREENSHOTS=docs/img`` the run also replaces the
committed pictures, reduced to a small palette:

    SINGTALK_SCREENSHOTS=docs/img .venv/bin/python -m pytest tests/test_screenshots.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from singtalk import review
from singtalk.audio import decode, write_wav
from tests.test_browser import (REPO, SHIPPED, browser, fake_mic, no_exception, prediction,  # noqa: F401
                                ready, streamlit_server, upload)
from tests.app_fixtures import test_store  # noqa: F401

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


def test_readme_pictures_of_classify_and_review(browser, corpus, tmp_path, artifacts_dir):  # noqa: F811
    work = tmp_path / "work"
    reported_mistakes(corpus, work)
    env = dict(os.environ, SINGTALK_MODELS=str(SHIPPED), SINGTALK_WORK=str(work), SINGTALK_ICE_SERVERS="[]")
    for key in ("SINGTALK_TEAM_PASSWORD_HASH", "SINGTALK_PUBLIC", "STREAMLIT_SERVER_ADDRESS"):
        env.pop(key, None)
    with streamlit_server(env, tmp_path / "streamlit_screenshots.log") as url:
        context = browser.new_context(viewport={"width": 1200, "height": 1300})
        page = context.new_page()
        try:
            page.goto(url)
            ready(page)
            upload(page, SONG)
            assert prediction(page) == "Singing"
            page.get_by_text("Segments CSV").first.wait_for(timeout=30000)
            charts = page.locator('[data-testid="stVegaLiteChart"]')
            charts.nth(1).wait_for(timeout=30000)  # the bars, then the timeline with its segments
            no_exception(page)
            save(page, "classify", artifacts_dir)

            page.goto(f"{url}/review")
            try:
                for path, *_ in MISTAKES:
                    page.get_by_text(f"{Path(path).stem}.wav", exact=True).first.wait_for(timeout=30000)
            except Exception:
                page.screenshot(path=str(artifacts_dir / "readme_review_failure.png"), full_page=True)
                raise
            no_exception(page)
            save(page, "review", artifacts_dir)
        finally:
            context.close()
