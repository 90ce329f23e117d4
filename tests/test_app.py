"""AppTest of every page on a tiny real model (see tests/app_fixtures.py)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit_webrtc
from streamlit.testing.v1 import AppTest

from singtalk import review
from singtalk.audio import decode, write_wav
from singtalk.eda import CLASS_COLOURS
from singtalk.features import VOICE_PROB_FEATURES
from singtalk.jobs import runner
from singtalk.labels import MEANING
from tests.app_fixtures import (Uploads, clip_near, copy_store, fake_webrtc_streamer, playing_webrtc_streamer,
                                session_env, to_wav)

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
TIMEOUT = 120


@pytest.fixture()
def uploads(monkeypatch):
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", fake_webrtc_streamer)
    return Uploads(monkeypatch)


def fresh_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no {label!r} metric; errors: {[e.value for e in at.error]}"
    return values[0]


def vega_charts(at: AppTest) -> dict:
    """The page's Vega-Lite charts, ``bars`` and ``timeline`` (told by their titles): spec and data frames.

    ``data`` is the chart's own data; ``datasets`` its named ones (the timeline's ``windows`` and ``segments``).
    """
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df as frame

    charts = {}
    for chart in at.get("arrow_vega_lite_chart"):
        proto = chart.proto
        spec = json.loads(proto.spec)
        name = "bars" if spec.get("title") == "Probability of each class" else \
            "timeline" if str(spec.get("title")).startswith("Per-window") else spec.get("title")
        assert name not in charts, f"two {name} charts"
        charts[name] = {"spec": spec,
                        "data": frame(proto.data.data) if proto.data.data else None,
                        "datasets": {d.name: frame(d.data.data) for d in proto.datasets}}
    return charts


def plotly_figures(at: AppTest) -> dict:
    """The page's Plotly figures by key suffix (``fig-cm`` → ``cm``), as ``plotly.graph_objects.Figure``."""
    import plotly.io

    return {c.proto.id.rsplit("-", 1)[-1]: plotly.io.from_json(c.proto.spec) for c in at.get("plotly_chart")}


def values(data) -> np.ndarray:
    """A Plotly trace array: a list, or the ``{"dtype", "bdata"[, "shape"]}`` form Plotly 6+ writes to JSON."""
    import base64

    if isinstance(data, dict) and "bdata" in data:
        array = np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
        shape = data.get("shape")
        return array.reshape([int(n) for n in str(shape).split(",")]) if shape else array
    return np.asarray(data)


def downloads(at: AppTest) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


ID_SHOWN_AS_ID = re.compile(r"(?<![Vv]ersion )(?<![Vv]ersion id )(?<!rollback )\b\d{8}T\d{6}Z")
"""A version id that no text introduces as one ("version …", "Version id …", "singtalk rollback …")."""


def bare_version_ids(at: AppTest) -> list[str]:
    """Texts of the page that show a model version as a bare timestamp (help texts and the versions table's
    ``version id`` column are where the id belongs)."""
    texts = [e.value for kind in ("markdown", "caption", "success", "warning", "info", "error", "toast")
             for e in at.get(kind)]
    texts += [b.label for b in at.button] + [e.label for e in at.expander] + [m.value for m in at.metric]
    texts += [str(option) for box in at.selectbox for option in box.options] + [box.label for box in at.selectbox]
    for frame in at.dataframe:
        texts += [str(v) for column in frame.value.columns if column != "version id" for v in frame.value[column]]
        texts += [str(c) for c in frame.value.columns]
    return [text for text in texts if ID_SHOWN_AS_ID.search(str(text))]


def version_names(store, versions) -> dict:
    """The names the pages give ``versions`` (``appkit.resources.version_names``)."""
    from appkit import resources

    return resources.version_names(str(store.root), versions)


def wait_for_job(timeout: float = 120):
    job = runner().wait(timeout)
    assert job is not None and not job.running, "the background job did not finish"
    return job


def test_upload_singing_clip_and_report_it_as_wrong(app_env, test_store, uploads, tmp_path):
    at = fresh_app()
    serving = at.sidebar.caption[0]
    assert serving.value.startswith("Serving model: **") and test_store.version not in serving.value
    assert "UTC — " in serving.value and "right on" in serving.value, "its date and figures, not a timestamp"
    assert test_store.version in serving.proto.help
    clip = test_store.singing_clip
    uploads.put(at, "file_uploader", "Audio or video file", clip.read_bytes(), name=clip.name, mime="audio/flac")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metric(at, "Prediction") == "Singing"
    assert any(c.value == MEANING["singing"] for c in at.caption), "the label's meaning is spelled out"
    charts = vega_charts(at)
    bars = charts["bars"]["data"]
    assert list(bars["class"]) == ["Singing", "Talking"], "a two-class model: a bar per class, no No voice"
    assert bars["probability"].sum() == pytest.approx(1.0, abs=1e-3) and bars["probability"].iloc[0] > 0.5
    assert downloads(at) == ["Segments CSV", "Segments JSON", "Windows CSV", "Windows JSON"], "a >8 s clip"
    timeline = charts["timeline"]
    assert "Per-window probability of singing" in timeline["spec"]["title"]
    assert timeline["spec"]["layer"][1]["encoding"]["y"]["title"] == "probability of singing"
    assert set(timeline["datasets"]["windows"]["class"]) == {"Singing"}, "two classes: one line, as before"
    segments = timeline["datasets"]["segments"]
    assert segments["start_s"].iloc[0] == 0 and set(segments["class"]) <= {"Singing", "Talking", "No voice"}
    assert at.radio(key="upload-right").options == ["Singing (the model's answer)", "Talking", "No voice"]
    assert at.radio(key="upload-right").value == "talking", "the first answer that is not the model's"

    at.radio(key="upload-right").set_value("talking")
    at.button(key="upload-send").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    wrong = review.read_wrong(Path(app_env["SINGTALK_WORK"]) / "wrong_audios.csv")
    assert len(wrong) == 1
    row = wrong.iloc[0]
    assert (row["label"], row["predicted"], row["status"], row["origin"]) == ("talking", "singing", "open", "app")
    saved = Path(row["path"])
    assert saved.parent == Path(app_env["SINGTALK_WORK"]).resolve() / "reports" / "upload" and saved.is_file()
    assert saved.name == f"{clip.stem}.wav", "the report keeps the upload's own name"
    assert abs(decode(saved).size / 16000 - decode(clip).size / 16000) < 0.05
    assert row["model_version"] == test_store.version

    # warm: another ~10 s clip
    ten = clip_near(Path(clip).parents[2], "singing", 10.0)
    uploads.put(at, "file_uploader", "Audio or video file", ten.read_bytes(), name=ten.name, mime="audio/flac")
    started = time.perf_counter()
    at.run()
    warm = time.perf_counter() - started
    print(f"\nwarm classification of a {decode(ten).size / 16000:.1f} s upload (AppTest run): {warm:.2f} s")
    assert metric(at, "Prediction") in ("Singing", "Talking")
    assert warm < 3.0


def test_bad_upload_shows_an_error_and_the_page_keeps_working(app_env, test_store, uploads):
    at = fresh_app()
    uploads.put(at, "file_uploader", "Audio or video file", b"this is not audio at all" * 50, name="notes.mp3")
    at.run()
    assert not at.exception
    assert at.error and "not audio" in at.error[0].value and "Traceback" not in at.error[0].value
    clip = test_store.talking_clip
    uploads.put(at, "file_uploader", "Audio or video file", clip.read_bytes(), name=clip.name, mime="audio/flac")
    at.run()
    assert not at.exception and not at.error
    assert metric(at, "Prediction") == "Talking"


def test_record_through_audio_input_with_duration_limits(app_env, test_store, uploads, tmp_path):
    at = fresh_app()
    label = "Record from your microphone"
    wav = to_wav(test_store.singing_clip, tmp_path / "take.wav", rate=48000)
    uploads.put(at, "audio_input", label, wav.read_bytes(), name="audio.wav")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metric(at, "Prediction") == "Singing"

    short = to_wav(test_store.singing_clip, tmp_path / "short.wav", rate=48000, seconds=0.3)
    uploads.put(at, "audio_input", label, short.read_bytes(), name="audio.wav")
    at.run()
    assert not at.exception and at.error
    assert "at least" in at.error[0].value and "Record again" in at.error[0].value

    long = tmp_path / "long.wav"
    write_wav(long, np.tile(decode(wav, sr=48000)[: 48000 * 8], 8), sr=48000)  # 64 s
    uploads.put(at, "audio_input", label, long.read_bytes(), name="audio.wav")
    at.run()
    assert not at.exception and at.error
    assert at.error[0].value.startswith("Recordings are limited to 1 min")


def test_every_page_renders(app_env, test_store, uploads):
    at = fresh_app()
    assert at.tabs and [t.label for t in at.tabs] == ["Upload", "Record", "Live", "Link"]
    (expect,) = [e for e in at.expander if e.label == "What to expect"]
    assert "noise" in expect.markdown[0].value and "Extract vocals" in expect.markdown[0].value
    at.switch_page("app_pages/dataset.py").run()
    assert not at.exception and not at.error
    assert metric(at, "Clips") == str(len(table_paths(test_store)))
    assert len(at.get("plotly_chart")) >= 5
    at.switch_page("app_pages/training.py").run()
    assert not at.exception and not at.error
    assert any(b.label == "Start" for b in at.button)
    at.switch_page("app_pages/review.py").run()
    assert not at.exception and not at.error
    assert list(at.dataframe[-1].value["version id"]) == [test_store.version]
    assert not bare_version_ids(at)
    at.switch_page("app_pages/classify.py").run()
    assert not at.exception and [t.label for t in at.tabs][:1] == ["Upload"]


def table_paths(store) -> list:
    import pandas as pd

    return list(pd.read_csv(store.tables / "train_features_scaled.csv")["path"]) + \
        list(pd.read_csv(store.tables / "test_features_scaled.csv")["path"])


def test_training_runs_to_completion_and_promotes(app_env, test_store, uploads, tmp_path, monkeypatch):
    root = copy_store(test_store, tmp_path / "store")
    monkeypatch.setenv("SINGTALK_MODELS", str(root))
    at = fresh_app()
    at.switch_page("app_pages/training.py").run()
    assert at.text_input(key="train-folder").value == str(root / "tables")
    at.text_input(key="train-units").set_value("16")
    at.number_input(key="train-epochs").set_value(4)
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = wait_for_job()
    assert job.state == "done", job.error
    at.run()
    assert not at.exception and not at.error
    assert 0.0 <= float(metric(at, "Accuracy")) <= 1.0
    assert int(metric(at, "Test clips")) > 0
    assert len(at.get("plotly_chart")) >= 3  # curves, confusion matrix, ROC
    events = job.snapshot()["events"]
    assert [e["epoch"] for e in events if e.get("kind") == "epoch"][:1] == [1]
    version = job.snapshot()["result"]["version"]
    assert not bare_version_ids(at)
    promote = next(b for b in at.button if b.label == "Promote this model")
    assert version in promote.help
    promote.click().run()
    assert not at.exception
    assert not bare_version_ids(at)
    assert version in at.sidebar.caption[0].proto.help
    from singtalk.registry import ModelStore

    assert ModelStore(root).current_version() == version


def test_review_relabel_writes_the_csv(app_env, test_store, uploads, tmp_path):
    work = Path(app_env["SINGTALK_WORK"])
    clip = write_wav(work / "reports" / "a3f0c1.wav", decode(test_store.talking_clip))
    wrong_csv = work / "wrong_audios.csv"
    review.add_report(wrong_csv, clip, label="singing", predicted="talking", p_singing=0.2, confidence=0.8,
                      model_version=test_store.version)
    at = fresh_app()
    at.switch_page("app_pages/review.py").run()
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) == 1
    assert list(at.dataframe[0].value["model"]) == [version_names(test_store, [test_store.version])[test_store.version]]
    assert not bare_version_ids(at)
    at.text_input(key="reviewer").set_value("ana")
    assert at.selectbox(key="relabel-to-0").value == "talking"
    at.button(key="relabel-0").click().run()
    assert not at.exception and not at.error
    row = review.read_wrong(wrong_csv).iloc[0]
    assert (row["label"], row["status"], row["reviewer"]) == ("talking", "relabelled", "ana")
    # the default filter shows open rows only: the relabelled one left the list
    assert at.get("audio") == [] or len(at.dataframe[0].value) == 0


# --------------------------------------------------------------------------- uploads: names, the reports bound
def test_upload_names_never_become_paths(app_env, test_store, uploads, tmp_path):
    """A name that is an existing file's path, or climbs out of the work folder, is only a label."""
    at = fresh_app()
    talking = test_store.talking_clip.read_bytes()
    decoy = str(test_store.singing_clip)  # a real singing file: reading the name would say "Singing"
    uploads.put(at, "file_uploader", "Audio or video file", talking, name=decoy, mime="audio/flac")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metric(at, "Prediction") == "Talking"

    climbing = "../../../escaped.wav"
    uploads.put(at, "file_uploader", "Audio or video file", talking, name=climbing, mime="audio/wav")
    at.run()
    assert metric(at, "Prediction") == "Talking"
    assert any(climbing in c.value for c in at.caption), "the name is shown as given, as text"
    at.button(key="upload-send").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    work = Path(app_env["SINGTALK_WORK"]).resolve()
    saved = Path(review.read_wrong(work / "wrong_audios.csv").iloc[0]["path"])
    assert saved == work / "reports" / "upload" / "escaped.wav", "only the last part of the name, as a file name"
    assert list(tmp_path.parent.rglob("escaped.wav")) == [saved] and not (work / climbing).resolve().exists()


def test_reports_folder_is_bounded_and_nothing_is_deleted(app_env, test_store, uploads, monkeypatch):
    work = Path(app_env["SINGTALK_WORK"])
    earlier = write_wav(work / "reports" / "earlier.wav", np.zeros(16000 * 15, dtype=np.float32))  # 0.46 MB
    before = earlier.read_bytes()
    monkeypatch.setenv("SINGTALK_MAX_REPORTS_MB", "0.5")
    at = fresh_app()
    clip = test_store.talking_clip
    uploads.put(at, "file_uploader", "Audio or video file", clip.read_bytes(), name=clip.name, mime="audio/flac")
    at.run()
    assert metric(at, "Prediction") == "Talking"
    at.button(key="upload-send").click().run()
    assert not at.exception
    assert at.error and "review folder is full" in at.error[0].value
    assert "SINGTALK_" not in at.error[0].value, "a visitor is not asked to change the server's settings"
    assert "Traceback" not in at.error[0].value
    assert sorted(p.name for p in (work / "reports").iterdir()) == ["earlier.wav"], "refused: nothing written"
    assert earlier.read_bytes() == before, "reviewed material is never removed to make room"
    assert not (work / "wrong_audios.csv").exists() or review.read_wrong(work / "wrong_audios.csv").empty

    monkeypatch.setenv("SINGTALK_MAX_REPORTS_MB", "50")
    at.button(key="upload-send").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(review.read_wrong(work / "wrong_audios.csv")) == 1
    assert len(list((work / "reports").rglob("*.wav"))) == 2


# --------------------------------------------------------------------------- the Link tab
@pytest.fixture()
def media_server(test_store, tmp_path):
    """A loopback ``http.server`` serving an ffmpeg-made AAC mp4 of the singing clip."""
    import functools
    import http.server
    import subprocess
    import threading

    folder = tmp_path / "site"
    folder.mkdir()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(test_store.singing_clip),
                    "-c:a", "aac", "-b:a", "96k", str(folder / "song.mp4")], check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/song.mp4"
    finally:
        server.shutdown()
        server.server_close()


def submit_link(at: AppTest, url: str, *, separate: bool = False) -> AppTest:
    at.text_input(key="link-url").set_value(url)
    at.checkbox(key="link-separate").set_value(separate)
    return next(b for b in at.button if b.label == "Classify link").click().run()


def test_link_from_a_loopback_server_reaches_a_prediction(app_env, test_store, uploads, media_server, monkeypatch):
    monkeypatch.setenv("SINGTALK_ALLOW_PRIVATE_URLS", "1")
    at = submit_link(fresh_app(), media_server)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metric(at, "Prediction") == "Singing"
    assert any(media_server in c.value for c in at.caption)


def test_a_visitor_past_the_hours_links_is_told_when_to_come_back(app_env, test_store, uploads, media_server,
                                                                   monkeypatch):
    """On a public server a visitor gets ``SINGTALK_LINKS_PER_HOUR`` links; the next one is refused in words."""
    monkeypatch.setenv("SINGTALK_ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setenv("SINGTALK_PUBLIC", "1")
    monkeypatch.setenv("SINGTALK_LINKS_PER_HOUR", "1")
    from appkit import line

    line.download_budget.clear()  # the process-wide budget, fresh for this limit
    try:
        at = submit_link(fresh_app(), media_server)
        assert not at.error and metric(at, "Prediction") == "Singing", [e.value for e in at.error]
        at = submit_link(fresh_app(), media_server + "?again")  # a new session from the same address
        assert not at.exception
        assert at.error and "1 link in the last hour" in at.error[0].value and "Try again in" in at.error[0].value
        assert not [m for m in at.metric if m.label == "Prediction"]
    finally:
        line.download_budget.clear()


@pytest.mark.parametrize("url,words", [("LOOPBACK", "private"), ("file:///etc/passwd", "file")])
def test_refused_link_shows_an_error_without_traceback(app_env, test_store, uploads, media_server, monkeypatch,
                                                       url, words):
    monkeypatch.delenv("SINGTALK_ALLOW_PRIVATE_URLS", raising=False)
    at = submit_link(fresh_app(), media_server if url == "LOOPBACK" else url)
    assert not at.exception
    assert at.error, "a refused link must say why"
    message = at.error[0].value
    assert words in message.lower() and "Traceback" not in message, message
    assert not any(m.label == "Prediction" for m in at.metric)
    at.run()  # the refusal is not retried on the next run
    assert not at.exception and not any(m.label == "Prediction" for m in at.metric)


# --------------------------------------------------------------------------- Spleeter on a real mixture
@pytest.fixture(scope="module")
def spleeter_weights():
    from singtalk import separation
    from tests.test_separation import run_fetch

    proc = run_fetch()
    assert proc.returncode == 0, proc.stderr
    ok, message = separation.weights_status()
    assert ok, message


def test_upload_with_vocal_extraction_on_a_real_mixture(app_env, test_store, uploads, spleeter_weights,
                                                         monkeypatch):
    from appkit import results

    stages, kept_while_working = [], []
    classify = results.classify

    def spy(key, source, *, stage=None, **kwargs):
        def seen(name):
            stages.append(name)
            kept_while_working.append(st_state().get("result:upload") is not None)
            stage(name)
        return classify(key, source, stage=seen if stage else None, **kwargs)

    def st_state():
        import streamlit as st
        return st.session_state

    monkeypatch.setattr(results, "classify", spy)
    corpus = Path(test_store.singing_clip).parents[2]
    mixture = corpus / "mixture" / "mir1k" / "geniusturtle_5_04_mix.flac"  # 11.5 s: it gets a timeline
    at = fresh_app()
    assert "song with instruments" in at.checkbox(key="upload-separate").help
    assert "No voice" in at.checkbox(key="upload-separate").help, "the help says what the timeline's gaps mean"
    talking = test_store.talking_clip
    uploads.put(at, "file_uploader", "Audio or video file", talking.read_bytes(), name=talking.name,
                mime="audio/flac")
    at.run()
    assert metric(at, "Prediction") == "Talking" and stages == [], "no extraction: no stages"
    at.checkbox(key="upload-separate").check()
    uploads.put(at, "file_uploader", "Audio or video file", mixture.read_bytes(), name=mixture.name,
                mime="audio/flac")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert stages == ["load_separator", "decode", "separate", "features", "predict"]
    assert set(results.STAGE_TEXT) >= set(stages), "each stage is named in words"
    assert not any(kept_while_working), "the previous result is dropped before the work starts"
    assert metric(at, "Prediction") in ("Singing", "Talking")
    assert any("vocals extracted with Spleeter" in c.value for c in at.caption)
    assert any(results.GAPS_TEXT in c.value for c in at.caption), "the timeline's gaps are explained"
    result = at.session_state["result:upload"]
    plain = decode(mixture)
    assert result.separated and abs(result.samples.size - plain.size) < 1600
    n = min(result.samples.size, plain.size)
    residual = np.sqrt(np.mean((result.samples[:n] - plain[:n]) ** 2)) / np.sqrt(np.mean(plain[:n] ** 2))
    assert residual > 0.2, f"the model heard the extracted vocals, not the mixture ({residual:.2f})"


# --------------------------------------------------------------------------- Review: check, then retrain
def test_review_check_lists_mistakes_then_retrain_completes(app_env, test_store, uploads, tmp_path, monkeypatch):
    import pandas as pd

    root = copy_store(test_store, tmp_path / "store")
    monkeypatch.setenv("SINGTALK_MODELS", str(root))
    train = pd.read_csv(test_store.tables / "train_features_scaled.csv")
    picked = pd.concat([g.head(4) for _, g in train.groupby("label")])
    flipped = {"singing": "talking", "talking": "singing"}
    labelled = pd.DataFrame({"path": picked["path"],
                             "label": [flipped[x] if i % 2 == 0 else x for i, x in enumerate(picked["label"])]})
    csv = Path(app_env["SINGTALK_WORK"]) / "labelled.csv"  # typed paths must be inside the app's roots
    csv.parent.mkdir(parents=True, exist_ok=True)
    labelled.to_csv(csv, index=False)
    mislabelled = set(labelled["path"][labelled["label"] != picked["label"].to_numpy()])

    at = fresh_app()
    at.switch_page("app_pages/review.py").run()
    assert not at.exception and not at.error
    at.text_input(key="check-csv").set_value(str(csv))
    next(b for b in at.button if b.label == "Run check").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = wait_for_job()
    assert (job.kind, job.state) == ("check", "done"), job.error
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    listed = at.dataframe[0].value
    assert len(listed) >= 1 and set(listed["path"]) <= set(labelled["path"])
    assert len(mislabelled & set(listed["path"])) >= len(mislabelled) // 2, "the flipped labels are found"
    wrong = review.read_wrong(Path(app_env["SINGTALK_WORK"]) / "wrong_audios.csv")
    assert set(wrong["path"]) == set(listed["path"]) and set(wrong["origin"]) == {"check"}
    assert any("checked" in m.value for m in at.markdown) and not bare_version_ids(at)
    assert (wrong["status"] == "open").all()

    next(b for b in at.button if b.label == "Retrain").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = wait_for_job(300)
    assert (job.kind, job.state) == ("retrain", "done"), job.error
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    outcome = [m.value for m in list(at.success) + list(at.warning) if "romoted" in m.value]
    assert outcome, [m.value for m in list(at.success) + list(at.warning)]
    report = job.snapshot()["result"]
    assert report.n_mistakes == len(wrong) and report.n_replay > 0
    assert outcome[0].startswith("Promoted the new model (" if report.promoted else "Not promoted")
    assert not bare_version_ids(at)
    verdict_table = next(d.value for d in at.dataframe if "errors before" in d.value.columns)
    assert {"original test table", "labelled set"} <= set(verdict_table["set"]), "the check's file is judged on"
    labelled_all = verdict_table[(verdict_table["set"] == "labelled set") & (verdict_table["group"] == "all")]
    assert labelled_all["n"].iloc[0] == len(labelled) and verdict_table["errors after"].notna().all()
    reasons = "\n".join(m.value for m in at.markdown)
    assert all(reason in reasons for reason in report.verdict.reasons)
    from singtalk.registry import ModelStore

    store = ModelStore(root)
    assert report.new_version in [v.version for v in store.list_versions()]
    assert store.current_version() == (report.new_version if report.promoted else report.backup_version)


def refused_retrain(test_store, tmp_path, monkeypatch):
    """The Review page after a retrain job patched to return a refused verdict, its version saved unpromoted."""
    from singtalk import retrain
    from singtalk.registry import ModelStore
    from singtalk.verdict import Part, judge

    root = copy_store(test_store, tmp_path / "store")
    monkeypatch.setenv("SINGTALK_MODELS", str(root))
    store = ModelStore(root)
    kept = store.save(store.load().model, store.load().scaler, store.read_metadata(test_store.version),
                      promote=False, note="retrained (not promoted)")
    clip = str(test_store.singing_clip)
    verdict = judge([Part.build("labelled", ["singing", "talking", "talking"], ["singing", "talking", "singing"],
                                ["talking", "singing", "talking"], sources=["a", "a", "b"], paths=[clip, "/x/2.wav", "/x/3.wav"]),
                     Part.build("held_aside", ["talking"], ["singing"], ["talking"])])

    def refused(store, wrong_path, **kwargs):
        return retrain.RetrainReport(promoted=False, reason=verdict.reason, new_version=kept,
                                     backup_version=test_store.version, before={}, after={}, log_path=tmp_path / "log",
                                     run_dir=tmp_path, verdict=verdict)

    monkeypatch.setattr(retrain, "retrain", refused)
    at = fresh_app()
    at.switch_page("app_pages/review.py").run()
    next(b for b in at.button if b.label == "Retrain").click().run()
    assert wait_for_job().state == "done"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at, store, kept, verdict


def test_review_shows_a_refused_verdict_and_offers_to_promote_anyway(app_env, test_store, uploads, tmp_path,
                                                                     monkeypatch):
    """The retrain job is patched to return a refused verdict (the real one runs in the test above)."""
    at, store, kept, verdict = refused_retrain(test_store, tmp_path, monkeypatch)
    names = version_names(store, [test_store.version, kept])
    assert names[kept] != names[test_store.version], "a version made in the same minute is told apart"
    assert [w.value for w in at.warning] == [f"Not promoted: the model of {names[test_store.version]} keeps serving; "
                                             f"the new model ({names[kept]}) is kept unpromoted."]
    assert not bare_version_ids(at)
    assert "- The labelled set did not improve: 1 → 2 errors of 3 clips (fixed 1, broke 2)." in \
        "\n".join(m.value for m in at.markdown)
    table = next(d.value for d in at.dataframe if "errors before" in d.value.columns)
    assert list(table.columns) == list(verdict.table().columns)
    assert "worse beyond tolerance" in set(table["change"]) and len(table) == len(verdict.rows)
    assert any("2 fixed, 2 broken" in e.label for e in at.expander)
    promote = next(b for b in at.button if b.label == "Promote the new model anyway")
    assert kept in promote.help, "the id stays at hand"
    promote.click().run()
    assert store.current_version() == kept
    assert not bare_version_ids(at)


def test_review_discards_a_refused_version_in_one_click(app_env, test_store, uploads, tmp_path, monkeypatch):
    at, store, kept, _ = refused_retrain(test_store, tmp_path, monkeypatch)
    assert kept in [v.version for v in store.list_versions()]
    next(b for b in at.button if b.label == "Discard the new model").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [v.version for v in store.list_versions()] == [test_store.version]
    assert store.current_version() == test_store.version
    assert not any(b.label in ("Discard the new model", "Promote the new model anyway") for b in at.button)
    assert any(c.value == f"The new model ({version_names(store, [test_store.version, kept])[kept]}) was discarded." for c in at.caption)
    assert not bare_version_ids(at)


# --------------------------------------------------------------------------- three classes: singing, talking, no_voice
@pytest.fixture()
def three_env(three_class_store, tmp_path, monkeypatch) -> dict:
    """An app session served by the three-class store, with a fresh work folder."""
    return session_env(three_class_store.root, tmp_path, monkeypatch)


def test_no_voice_upload_says_no_voice_with_three_bars_segments_and_downloads(three_env, three_class_store,
                                                                              uploads):
    at = fresh_app()
    clip = three_class_store.no_voice_clip
    uploads.put(at, "file_uploader", "Audio or video file", clip.read_bytes(), name=clip.name, mime="audio/ogg")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metric(at, "Prediction") == "No voice"
    assert any(c.value == MEANING["no_voice"] for c in at.caption), [c.value for c in at.caption]

    charts = vega_charts(at)
    bars = charts["bars"]
    assert list(bars["data"]["class"]) == ["Singing", "Talking", "No voice"], "a bar per class of the model"
    assert bars["data"]["probability"].idxmax() == 2
    assert bars["data"]["probability"].sum() == pytest.approx(1.0, abs=1e-3)
    colour = bars["spec"]["layer"][0]["encoding"]["color"]["scale"]
    assert dict(zip(colour["domain"], colour["range"])) == {
        "Singing": CLASS_COLOURS["singing"], "Talking": CLASS_COLOURS["talking"], "No voice": CLASS_COLOURS["no_voice"]}

    timeline = charts["timeline"]
    bands, lines = timeline["spec"]["layer"][:2]
    assert bands["mark"]["type"] == "rect" and bands["data"] == {"name": "segments"}
    assert bands["encoding"]["color"]["scale"] == colour, "the same colours as the bars"
    assert lines["encoding"]["y"]["title"] == "probability of each class"
    assert set(timeline["datasets"]["windows"]["class"]) == {"Singing", "Talking", "No voice"}
    segments = timeline["datasets"]["segments"]
    assert "No voice" in set(segments["class"])
    assert segments["start_s"].iloc[0] == 0 and (segments["start_s"].iloc[1:].to_numpy()
                                                == segments["end_s"].iloc[:-1].to_numpy()).all(), "they tile the clip"
    prediction = at.session_state["result:upload"].prediction
    assert segments["end_s"].iloc[-1] == pytest.approx(prediction.duration_s, abs=0.01)
    assert bands["encoding"]["x"]["scale"]["domain"] == [0, prediction.duration_s], "the axis spans the clip"
    assert lines["encoding"]["x"]["scale"]["domain"] == [0, prediction.duration_s]

    assert downloads(at) == ["Segments CSV", "Segments JSON", "Windows CSV", "Windows JSON"]

    right = at.radio(key="upload-right")
    assert right.options == ["Singing", "Talking", "No voice (the model's answer)"], "every class the model knows"
    right.set_value("no_voice").run()
    assert at.button(key="upload-send").disabled, "the model's own answer is no report"
    assert any("choose the answer you heard" in c.value for c in at.caption)
    at.radio(key="upload-right").set_value("talking").run()
    assert not at.button(key="upload-send").disabled
    at.button(key="upload-send").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    row = review.read_wrong(Path(three_env["SINGTALK_WORK"]) / "wrong_audios.csv").iloc[0]
    assert (row["label"], row["predicted"]) == ("talking", "no_voice")
    assert Path(row["path"]).name == f"{clip.stem}.wav", "the report keeps the upload's name"

    at.switch_page("app_pages/review.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert f"**{clip.stem}.wav** · upload" in [m.value for m in at.markdown], "the Review page names the upload"


@pytest.mark.parametrize("label", ["singing", "talking", "no_voice"])
def test_this_is_wrong_files_any_class_under_the_uploads_name(app_env, test_store, uploads, label):
    """Every class of singtalk.labels can be reported (no voice too, with a two-class model); same name twice
    keeps both clips."""
    at = fresh_app()
    clip = test_store.talking_clip
    for _ in range(2):
        uploads.put(at, "file_uploader", "Audio or video file", clip.read_bytes(), name="Memo 12.m4a")
        at.run()
        assert metric(at, "Prediction") == "Talking"
        assert [o.split(" (")[0] for o in at.radio(key="upload-right").options] == ["Singing", "Talking", "No voice"]
        if label == "talking":
            at.radio(key="upload-right").set_value(label).run()
            assert at.button(key="upload-send").disabled
            return
        at.radio(key="upload-right").set_value(label)
        at.button(key="upload-send").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
    wrong = review.read_wrong(Path(app_env["SINGTALK_WORK"]) / "wrong_audios.csv")
    assert [Path(p).name for p in wrong["path"]] == ["Memo 12.wav", "Memo 12 (2).wav"]
    assert list(wrong["label"]) == [label, label] and set(wrong["predicted"]) == {"talking"}


def test_live_meter_says_no_voice_between_takes(app_env, test_store, uploads, monkeypatch):
    """A quiet stretch in the live buffer: the meter says No voice, even with a two-class model."""
    from appkit.live import LiveBuffer

    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", playing_webrtc_streamer)
    buffer = LiveBuffer(seconds=60.0)
    buffer.extend(np.random.default_rng(0).normal(0, 1e-4, 16000 * 5).astype(np.float32))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["live-buffer"] = buffer
    at.run()
    assert not at.exception, at.exception
    meter = [p.proto.text for p in at.get("progress")]
    assert meter and "Live: **No voice**" in meter[0] and "Singing" not in meter[0] and "Talking" not in meter[0]

    buffer.clear()
    buffer.extend(decode(test_store.singing_clip)[: 16000 * 5])
    at.run()
    meter = [p.proto.text for p in at.get("progress")]
    assert meter and "Live: **Singing**" in meter[0], meter


@pytest.mark.parametrize("error", [
    streamlit_webrtc.webrtc.TimeoutError("Processing offer and initializing the worker has not finished in 10 seconds"),
    ValueError("None is not in list"),  # what aiortc raised on an SDP it could not match
], ids=["timeout", "aiortc"])
def test_a_failed_live_connection_is_told_in_plain_words_and_logged(app_env, test_store, uploads, monkeypatch,
                                                                    caplog, error):
    """``webrtc_streamer`` raises (it needs a browser, so it is patched here; the real one raises these): the
    Live tab says what happened and what to try, the raw error only in the server log; the page goes on."""
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", failing)
    with caplog.at_level("WARNING", logger="appkit.live"):
        at = fresh_app()
    said = [w.value for w in at.warning if "live connection" in w.value]
    assert len(said) == 1 and str(error) not in said[0] and type(error).__name__ not in said[0], said
    assert "Record tab" in said[0] and "another browser or network" in said[0]
    assert ("took too long" in said[0]) == isinstance(error, streamlit_webrtc.webrtc.TimeoutError)
    assert str(error) in caplog.text, "the raw error is in the server log"
    assert any(b.label == "Classify everything captured" for b in at.button), "the rest of the tab is drawn"


def test_a_live_stream_with_no_audio_arriving_says_so(app_env, test_store, uploads, monkeypatch):
    """Playing (START took effect) but not one frame received for NO_AUDIO_S: a plain warning replaces
    "listening…"; once audio arrives the meter is back."""
    import time as clock

    from appkit.live import NO_AUDIO_S, NO_AUDIO_TEXT, LiveBuffer

    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", playing_webrtc_streamer)
    buffer = LiveBuffer(seconds=60.0)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["live-buffer"] = buffer
    at.run()
    assert not at.exception and not at.warning
    assert any(m.value == "Live: **listening…**" for m in at.markdown)
    at.session_state["live-started"] = (clock.monotonic() - NO_AUDIO_S - 1, 0.0)
    at.run()
    assert [w.value for w in at.warning] == [NO_AUDIO_TEXT]
    buffer.extend(decode(test_store.singing_clip)[: 16000 * 5])
    at.run()
    assert not at.warning and [p.proto.text for p in at.get("progress")][0].startswith("Live: **")


def test_the_live_tab_explains_the_boxs_microphone_errors(app_env, test_store, uploads, monkeypatch):
    """The WebRTC box shows the browser's error names (NotAllowedError…) inside its frame, out of the page's
    reach: the tab says what each means and what to do, and the box's own messages are replaced."""
    from appkit.live import MICROPHONE_TEXTS

    seen = {}

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return fake_webrtc_streamer()

    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", recording)
    at = fresh_app()
    assert seen["translations"] == MICROPHONE_TEXTS and "Record" in MICROPHONE_TEXTS["device_access_denied"]
    text = next(e for e in at.expander if e.label == "The microphone does not start?").markdown[0].value
    for shown in ("NotAllowedError", "NotFoundError", "Media API not available", "Record"):
        assert shown in text


def test_dataset_page_with_three_classes(three_env, three_class_store, uploads):
    at = fresh_app()
    at.switch_page("app_pages/dataset.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.text_input(key="build-classes").value == "singing, talking, no_voice"
    figures = plotly_figures(at)
    expected = {"Singing": CLASS_COLOURS["singing"], "Talking": CLASS_COLOURS["talking"],
                "No voice": CLASS_COLOURS["no_voice"]}
    for name in ("balance", "source", "pca"):
        assert {t.name: t.marker.color for t in figures[name].data} == expected, name
    balance = {t.name: int(values(t.y).sum()) for t in figures["balance"].data}
    assert all(n > 0 for n in balance.values()) and sum(balance.values()) == int(metric(at, "Clips").replace(",", ""))
    per_source = {s for t in figures["source"].data if t.name == "No voice" for s in values(t.x)}
    assert per_source and per_source <= {"librosa_data", "olpc_berklee_tonejs", "tonejs_loops"}
    assert "corr" not in figures, "no heatmap of every feature against every other"
    by_label = figures["labelcorr"].data[0]
    assert list(by_label.x) == ["Singing", "Talking", "No voice"] and len(by_label.y) == 15
    learnt = {"spectro_logit", "harmonic_logit", "contour_logit", *VOICE_PROB_FEATURES}
    assert set(list(by_label.y)[:5]) <= learnt, "the learnt features (CNN logits, voice detector) go most with a class"
    families = figures["familycorr"].data[0]
    assert list(families.x) == list(families.y) and {"MFCC", "pitch", "chroma", "CNN logits"} <= set(families.x)
    assert len(families.x) <= 9, "one row per family, readable"


def test_training_page_draws_three_by_three_confusion_and_one_roc_per_class(three_env, three_class_store, uploads,
                                                                             tmp_path, monkeypatch):
    root = copy_store(three_class_store, tmp_path / "store")
    monkeypatch.setenv("SINGTALK_MODELS", str(root))
    at = fresh_app()
    at.switch_page("app_pages/training.py").run()
    at.text_input(key="train-units").set_value("16")
    at.number_input(key="train-epochs").set_value(4)
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    job = wait_for_job()
    assert job.state == "done", job.error
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "one-vs-rest" in next(m.label for m in at.metric if m.label.startswith("ROC AUC"))
    figures = plotly_figures(at)
    heat = figures["cm"].data[0]
    assert list(heat.x) == list(heat.y) == ["Singing", "Talking", "No voice"]
    counts = values(heat.customdata)
    assert counts.shape == (3, 3) and counts.sum() == int(metric(at, "Test clips"))
    curves = [t.name.split(" (")[0] for t in figures["roc"].data]
    assert curves == ["Singing vs rest", "Talking vs rest", "No voice vs rest", "chance"]
    assert any("Recall per class" in c.value and "No voice" in c.value for c in at.caption)


def test_review_relabels_to_any_class_of_a_three_class_model(three_env, three_class_store, uploads):
    work = Path(three_env["SINGTALK_WORK"])
    clip = write_wav(work / "reports" / "b71e.wav", decode(three_class_store.no_voice_clip))
    wrong_csv = work / "wrong_audios.csv"
    review.add_report(wrong_csv, clip, label="singing", predicted="talking", p_singing=0.2, confidence=0.7,
                      model_version=three_class_store.version)
    at = fresh_app()
    at.switch_page("app_pages/review.py").run()
    assert not at.exception and not at.error
    relabel = at.selectbox(key="relabel-to-0")
    assert relabel.options == ["Talking", "No voice"], "the model's classes other than the row's label"
    relabel.set_value("no_voice")
    at.button(key="relabel-0").click().run()
    assert not at.exception and not at.error
    row = review.read_wrong(wrong_csv).iloc[0]
    assert (row["label"], row["status"]) == ("no_voice", "relabelled")


def test_review_without_a_model_offers_the_shipped_classes(app_env, test_store, uploads, tmp_path, monkeypatch):
    monkeypatch.setenv("SINGTALK_MODELS", str(tmp_path / "empty-store"))
    work = Path(app_env["SINGTALK_WORK"])
    clip = write_wav(work / "reports" / "c0ffee.wav", decode(test_store.talking_clip))
    review.add_report(work / "wrong_audios.csv", clip, label="talking", predicted="singing", p_singing=0.9,
                      confidence=0.9, model_version="gone")
    at = fresh_app()
    at.switch_page("app_pages/review.py").run()
    assert not at.exception
    assert at.selectbox(key="relabel-to-0").options == ["Singing", "No voice"]


def test_vocal_extraction_finding_no_voice_says_so_even_with_a_two_class_model(app_env, test_store, uploads,
                                                                               spleeter_weights, corpus):
    """A piano pad with vocal extraction: Spleeter keeps only leakage, and the answer is No voice with the
    reason, not an error and not a two-class guess; the report form offers every answer, No voice marked as
    the given one."""
    pad = corpus / "no_voice" / "olpc_berklee_tonejs" / "piano_pad_1.opus"
    at = fresh_app()
    at.checkbox(key="upload-separate").check()
    uploads.put(at, "file_uploader", "Audio or video file", pad.read_bytes(), name=pad.name, mime="audio/ogg")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert metric(at, "Prediction") == "No voice"
    assert any("leakage" in i.value and "dB below the music" in i.value for i in at.info), [i.value for i in at.info]
    bars = vega_charts(at)["bars"]["data"]
    assert dict(zip(bars["class"], bars["probability"])) == {"Singing": 0.0, "Talking": 0.0, "No voice": 1.0}
    assert at.radio(key="upload-right").options == ["Singing", "Talking", "No voice (the model's answer)"]


@pytest.mark.parametrize("name,stem", [
    ("Memo 12.m4a", "Memo 12"), ("../../../escaped.wav", "escaped"), ("/a/b/.bashrc", "bashrc"),
    ("C:\\Users\\x\\song.mp3", "song"), ("https://www.youtube.com/watch?v=abc", "watch"),
    ("the recording", "the recording"), ("", "clip"), ("..", "clip"), ("a<b>|c.flac", "a_b_c"),
])
def test_a_report_keeps_only_a_safe_file_name_from_its_input(name, stem):
    from appkit.results import report_stem

    assert report_stem(name) == stem


def test_examples_answer_with_one_click_under_the_shipped_model(tmp_path, monkeypatch, uploads):
    from appkit import examples
    from singtalk.config import REPO_ROOT
    from singtalk.registry import ModelStore

    session_env(REPO_ROOT / "models", tmp_path, monkeypatch)
    at = fresh_app()
    serving = at.sidebar.caption[0].value
    assert "singing vs talking" in serving and "no voice found" in serving and "UTC" in serving
    assert ModelStore(REPO_ROOT / "models").current_version() not in serving
    assert any(c.value == examples.CREDITS for c in at.caption), "the examples are credited"
    titles = [b.label for b in at.button if b.key and b.key.startswith("example-")]
    assert titles == [e.title for e in examples.available()] and len(titles) == 4

    for file, answer in [("talking-librispeech-3807.opus", "Talking"), ("singing-pjs-016.opus", "Singing"),
                         ("no-voice-berklee-prepared-piano.opus", "No voice")]:
        at.button(key=f"example-{file}").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert metric(at, "Prediction") == answer, file
        assert any(file in c.value and "model of " in c.value and "UTC" in c.value for c in at.caption)
    at.radio(key="example-right").set_value("singing")
    at.button(key="example-send").click().run()
    wrong = review.read_wrong(Path(tmp_path / "work" / "wrong_audios.csv"))
    assert Path(wrong.iloc[0]["path"]).parent.name == "example"
    assert Path(wrong.iloc[0]["path"]).name == "no-voice-berklee-prepared-piano.wav"


def test_a_click_on_the_timeline_moves_the_player_there(app_env, test_store, uploads):
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    clip = test_store.singing_clip
    at = fresh_app()
    uploads.put(at, "file_uploader", "Audio or video file", clip.read_bytes(), name=clip.name, mime="audio/flac")
    at.run()
    [player] = at.get("audio")
    assert player.proto.start_time == 0 and not player.proto.autoplay
    [chart] = [c for c in at.get("arrow_vega_lite_chart") if json.loads(c.proto.spec).get("params")]
    assert list(chart.proto.selection_mode) == ["seek"], "the strip reruns the page on a click"
    starts = vega_charts(at)[None]["data"]["start_s"]
    clicked = float(starts.iloc[2])
    # What the browser sends for a click on the third window (Vega-Lite point selection on start_s).
    uploads.states[chart.proto.id] = WidgetState(
        id=chart.proto.id, string_value=json.dumps({"selection": {"seek": [{"start_s": clicked}]}}))
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [player] = at.get("audio")
    assert player.proto.start_time == int(clicked) > 0 and player.proto.autoplay
    assert metric(at, "Prediction") == "Singing", "the same result, not classified again"


def test_training_keeps_a_finished_run_after_a_later_one_is_cancelled(app_env, test_store, uploads, tmp_path,
                                                                        monkeypatch):
    root = copy_store(test_store, tmp_path / "store")
    monkeypatch.setenv("SINGTALK_MODELS", str(root))
    at = fresh_app()
    at.switch_page("app_pages/training.py").run()
    assert not any(n.key == "train-trials" for n in at.number_input), "no tuner budget in fixed mode"
    at.radio(key="train-mode").set_value("Search with Keras Tuner").run()
    assert at.number_input(key="train-trials").value == 10, "the budget shows in search mode"
    at.radio(key="train-mode").set_value("Fixed hyper-parameters").run()
    at.text_input(key="train-units").set_value("16")
    at.number_input(key="train-epochs").set_value(3)
    next(b for b in at.button if b.label == "Start").click().run()
    job = wait_for_job()
    assert job.state == "done", job.error
    version = job.result["version"]

    at.number_input(key="train-epochs").set_value(500)
    next(b for b in at.button if b.label == "Start").click().run()
    runner().current.cancel()
    assert wait_for_job().state == "cancelled"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("was cancelled" in w.value for w in at.warning)
    assert any("The last finished run" in m.value for m in at.markdown)
    assert any(b.label == "Promote this model" and version in b.help for b in at.button), \
        "its Promote button is still there"
    next(b for b in at.button if b.label == "Promote this model").click().run()
    from singtalk.registry import ModelStore

    assert ModelStore(root).current_version() == version
