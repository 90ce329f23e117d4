"""AppTest of the two roles (visitor, team) and of typed paths kept inside the app's roots.

``session_env`` binds the app to 127.0.0.1 with no sign-in (open, as on a laptop); these tests change that.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit_webrtc
from streamlit.testing.v1 import AppTest

from singtalk.access import Throttle, hash_password
from singtalk.config import data_dir
from tests.app_fixtures import fake_webrtc_streamer

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
CLASSIFY_HEADER = "Singing, talking, or no voice?"
PASSWORD = "open sesame"
TEAM_PAGES = ("app_pages/training.py", "app_pages/review.py")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def no_browser_parts(monkeypatch):
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", fake_webrtc_streamer)


@pytest.fixture()
def clock(monkeypatch) -> Clock:
    """A fresh sign-in throttle on a clock the test moves (the real one is shared by the server's sessions)."""
    from appkit import access

    clock = Clock()
    monkeypatch.setattr(access, "THROTTLE", Throttle(clock=clock))
    return clock


@pytest.fixture()
def password_env(app_env, clock, monkeypatch):
    monkeypatch.setenv("STREAMLIT_SERVER_ADDRESS", "0.0.0.0")
    monkeypatch.setenv("SINGTALK_TEAM_PASSWORD_HASH", hash_password(PASSWORD, n=2 ** 10))
    return app_env


def fresh_app(secrets: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets.update(secrets or {})
    at.run()
    assert not at.exception, at.exception
    return at


def headers(at: AppTest) -> list[str]:
    return [h.value for h in at.header]


def assert_visitor(at: AppTest) -> None:
    """Classify and Dataset work; the team pages are not registered: switching to one lands on Classify."""
    for page in TEAM_PAGES:
        at.switch_page(page).run()
        assert not at.exception
        assert headers(at) == [CLASSIFY_HEADER], headers(at)
        assert not any(b.label in ("Start", "Retrain", "Run check") for b in at.button)
    at.switch_page("app_pages/dataset.py").run()
    assert not at.exception and not at.main.error, [e.value for e in at.main.error]
    assert headers(at) == ["Dataset"] and [m.value for m in at.metric if m.label == "Clips"]
    assert not at.main.text_input, "a visitor types no path"
    assert not [e for e in at.main.expander if e.label.startswith("Build")], "a visitor builds no table"
    assert not any("/" in c.value for c in at.main.caption), "a visitor sees no server path"
    pca = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("fig-pca")).proto.spec
    assert str(data_dir()) not in pca and str(data_dir().resolve()) not in pca, "clips named from the data folder"


def assert_team(at: AppTest) -> None:
    at.switch_page("app_pages/training.py").run()
    assert not at.exception and headers(at) == ["Training"]
    assert any(b.label == "Start" for b in at.button)
    at.switch_page("app_pages/review.py").run()
    assert not at.exception and headers(at) == ["Review"]
    assert any(b.label == "Run check" for b in at.button)


def sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input(key="access-password").input(password)
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert not at.exception
    return at


# --------------------------------------------------------------------------- modes
@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.20", None])
def test_without_sign_in_configured_a_public_bind_is_visitor_only(app_env, test_store, monkeypatch, address):
    if address:
        monkeypatch.setenv("STREAMLIT_SERVER_ADDRESS", address)
    else:
        monkeypatch.delenv("STREAMLIT_SERVER_ADDRESS")  # unset: all interfaces
    at = fresh_app()
    notes = [i.value for i in at.sidebar.info]
    assert notes and notes[0].startswith("Visitor mode") and "no team sign-in is configured" in notes[0]
    assert_visitor(at)


def test_behind_a_local_proxy_singtalk_public_makes_loopback_visitor_only(app_env, test_store, monkeypatch):
    monkeypatch.setenv("SINGTALK_PUBLIC", "1")
    assert_visitor(fresh_app())


def test_loopback_without_sign_in_is_open_as_on_a_laptop(app_env, test_store):
    at = fresh_app()
    assert not at.sidebar.info and not at.sidebar.expander
    assert_team(at)


def test_a_visitor_can_still_report_a_wrong_answer(app_env, test_store, monkeypatch):
    from tests.app_fixtures import Uploads

    monkeypatch.setenv("STREAMLIT_SERVER_ADDRESS", "0.0.0.0")
    uploads = Uploads(monkeypatch)
    at = fresh_app()
    clip = test_store.talking_clip
    uploads.put(at, "file_uploader", "Audio or video file", clip.read_bytes(), name=clip.name, mime="audio/flac")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    at.button(key="upload-send").click().run()
    assert not at.exception and not at.error
    from singtalk import review

    assert len(review.read_wrong(Path(app_env["SINGTALK_WORK"]) / "wrong_audios.csv")) == 1


# --------------------------------------------------------------------------- the team password
def test_wrong_password_is_refused_then_throttled_per_session_and_address(password_env, test_store, clock):
    at = fresh_app()
    assert [e.label for e in at.sidebar.expander] == ["Team sign-in"]
    for _ in range(5):
        sign_in(at, "guess")
        assert [e.value for e in at.sidebar.error] == ["Wrong password."]
    assert_visitor(at)
    sign_in(at, PASSWORD)
    assert at.sidebar.error[0].value == "Too many wrong passwords. Try again in 2 s.", "even the right one waits"
    assert_visitor(at)

    other = fresh_app()  # another session from the same address waits too
    sign_in(other, PASSWORD)
    assert other.sidebar.error[0].value.startswith("Too many wrong passwords")

    clock.now += 2.5
    sign_in(at, "guess again")
    assert at.sidebar.error[0].value == "Wrong password."
    sign_in(at, PASSWORD)
    assert at.sidebar.error[0].value.startswith("Too many wrong passwords. Try again in 4 s"), "the wait doubles"
    clock.now += 4.5
    sign_in(at, PASSWORD)
    assert not at.sidebar.error and [s.value for s in at.sidebar.success] == ["Signed in: team."]
    assert_team(at)


def test_right_password_reaches_training_and_review_and_sign_out_leaves_them(password_env, test_store):
    at = fresh_app()
    assert_visitor(at)
    sign_in(at, PASSWORD)
    assert_team(at)
    next(b for b in at.sidebar.button if b.label == "Sign out").click().run()
    assert not at.exception
    assert_visitor(at)


def test_password_hash_from_secrets_wins_over_the_environment(password_env, test_store):
    at = fresh_app({"team_password_hash": hash_password("from secrets", n=2 ** 10)})
    sign_in(at, PASSWORD)
    assert at.sidebar.error[0].value == "Wrong password."
    sign_in(at, "from secrets")
    assert_team(at)


def test_a_malformed_hash_signs_nobody_in_and_says_so(password_env, test_store, monkeypatch):
    monkeypatch.setenv("SINGTALK_TEAM_PASSWORD_HASH", "not-a-hash")
    at = sign_in(fresh_app(), "not-a-hash")
    assert "misconfigured" in at.sidebar.error[0].value
    assert_visitor(at)


# --------------------------------------------------------------------------- st.login (OIDC)
OIDC = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                 "client_id": "id", "client_secret": "secret",
                 "server_metadata_url": "https://accounts.example.org/.well-known/openid-configuration"},
        "team_emails": ["ana@team.org", "@lab.team.org"]}


def logged_in(monkeypatch, **claims) -> None:
    import streamlit.user_info as user_info

    monkeypatch.setattr(user_info, "_get_user_info", lambda: {"is_logged_in": True, **claims})


def test_oidc_configured_offers_st_login_and_a_visitor_has_no_team_page(app_env, test_store, monkeypatch):
    monkeypatch.setenv("SINGTALK_TEAM_PASSWORD_HASH", hash_password("unused", n=2 ** 10))  # [auth] wins
    at = fresh_app(OIDC)
    assert [b.label for b in at.sidebar.button] == ["Team sign-in"] and not at.sidebar.expander
    assert_visitor(at)


@pytest.mark.parametrize("email,verified,team", [("ana@team.org", True, True), ("bo@lab.team.org", None, True),
                                                 ("eve@example.org", True, False), ("ana@team.org", False, False)])
def test_oidc_team_is_the_team_emails_list(app_env, test_store, monkeypatch, email, verified, team):
    logged_in(monkeypatch, email=email, **({} if verified is None else {"email_verified": verified}))
    at = fresh_app(OIDC)
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    if team:
        assert at.sidebar.success[0].value == f"Signed in: {email} (team)."
        assert_team(at)
    else:
        assert "not on this server's team list" in at.sidebar.warning[0].value
        assert_visitor(at)


# --------------------------------------------------------------------------- typed paths stay inside the roots
@pytest.fixture()
def outside_link(app_env, tmp_path) -> Path:
    """A symlink in the work folder pointing out of every root, at a folder holding a CSV."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "labelled.csv").write_text("path,label\n/etc/hostname,singing\n")
    work = Path(app_env["SINGTALK_WORK"])
    work.mkdir(parents=True, exist_ok=True)
    (work / "elsewhere").symlink_to(outside)
    return work / "elsewhere"


def refused(message: str) -> bool:
    """The plain refusal, naming no server folder."""
    return "outside the folders this app may use" in message and "/" not in message


def escapes(link: Path) -> list[str]:
    return ["/etc/passwd", "../..", str(link), str(link / "labelled.csv")]


def test_dataset_page_refuses_paths_outside_the_roots(app_env, test_store, outside_link):
    at = fresh_app()
    at.switch_page("app_pages/dataset.py").run()
    for typed in escapes(outside_link):
        at.text_input(key="dataset-folder").input(typed).run()
        assert not at.exception
        assert [w.value for w in at.warning if refused(w.value)], (typed, [w.value for w in at.warning])
        assert not at.metric, "nothing was read"
    for typed in escapes(outside_link):
        at.text_input(key="build-source").input(typed)
        next(b for b in at.button if b.label == "Build feature table").click().run()
        assert not at.exception
        assert [e.value for e in at.error if refused(e.value)], (typed, [e.value for e in at.error])
    at.text_input(key="dataset-folder").input(str(test_store.tables)).run()
    assert not at.exception and [m for m in at.metric if m.label == "Clips"], "inside the model store: shown"


def test_build_refuses_an_output_folder_or_listed_files_outside_the_roots(app_env, test_store, outside_link):
    from singtalk.jobs import runner

    manifest = Path(app_env["SINGTALK_WORK"]) / "manifest.csv"
    manifest.write_text(f"path,label\n{test_store.singing_clip},singing\n{test_store.talking_clip},talking\n")
    at = fresh_app()
    at.switch_page("app_pages/dataset.py").run()
    before = runner().current
    at.text_input(key="build-source").input(str(manifest))
    at.text_input(key="build-out").input(str(outside_link / "tables"))
    next(b for b in at.button if b.label == "Build feature table").click().run()
    assert [e.value for e in at.error if refused(e.value)]

    manifest.write_text(f"path,label\n{test_store.singing_clip},singing\n/etc/passwd,talking\n")
    at.text_input(key="build-out").input(str(Path(app_env["SINGTALK_WORK"]) / "tables"))
    next(b for b in at.button if b.label == "Build feature table").click().run()
    errors = [e.value for e in at.error]
    assert errors and errors[0].startswith("1 of the listed files are outside the folders"), errors
    assert runner().current is before, "no build started"


def test_review_check_refuses_paths_outside_the_roots(app_env, test_store, outside_link):
    at = fresh_app()
    at.switch_page("app_pages/review.py").run()
    for typed in escapes(outside_link):
        at.text_input(key="check-csv").input(typed)
        next(b for b in at.button if b.label == "Run check").click().run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert errors and refused(errors[0]), (typed, errors)
        assert "line" not in errors[0], "the file was never parsed"
    listing = Path(app_env["SINGTALK_WORK"]) / "labelled.csv"
    at.text_input(key="check-csv").input(str(listing))
    at.text_input(key="check-root").input("/etc")
    next(b for b in at.button if b.label == "Run check").click().run()
    assert refused(at.error[0].value), "the folder of relative paths too"

    listing.write_text(f"path,label\n/etc/passwd,singing\n{test_store.singing_clip},singing\n")
    at.text_input(key="check-root").input("")
    next(b for b in at.button if b.label == "Run check").click().run()
    assert at.error[0].value.startswith("1 of the listed files are outside the folders"), at.error[0].value
    assert "/" not in at.error[0].value


def test_training_refuses_a_table_folder_outside_the_roots(app_env, test_store, outside_link):
    at = fresh_app()
    at.switch_page("app_pages/training.py").run()
    at.text_input(key="train-folder").input(str(outside_link))
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.exception and refused(at.error[0].value)
