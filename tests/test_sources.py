"""Web links, bytes and files → audio: real yt-dlp against a loopback HTTP server, real ffmpeg.

No test talks to anything but 127.0.0.1; refused links are checked with every
socket connection failing loudly, so a refusal that came after traffic fails.
"""

from __future__ import annotations

import http.server
import io
import os
import socket
import subprocess
import tempfile
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from singtalk import sources
from singtalk.audio import SAMPLE_RATE
from singtalk.errors import DownloadFailed, DownloadRefused, TooLong, TooShort

TONE_S = 3.0
LONG_S = 5.0


def make_tone(path: Path, seconds: float, *codec: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", f"sine=frequency=440:duration={seconds}:sample_rate=44100", *codec, str(path)],
        check=True,
    )
    return path


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``root`` plus a few special routes; logs request paths."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                route, _, query = self.path.partition("?")
                if route == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", urllib.parse.parse_qs(query)["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif route.startswith("/stream/"):  # no Content-Length: the size is only known while reading
                    data = (root / route[len("/stream/"):]).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Type", "video/mp4")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                    self.close_connection = True
                elif route == "/page.html":  # JSON-LD announcing a 5 s video: its duration is known before download
                    body = (
                        '<html><head><title>Tone page</title><script type="application/ld+json">'
                        '{"@context": "https://schema.org", "@type": "VideoObject", "name": "Long tone", '
                        f'"contentUrl": "{server.base}/long.mp4", "duration": "PT5S"}}'
                        "</script></head><body>tone</body></html>"
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return self.base + path

    def media_requests(self, name: str) -> int:
        return sum(1 for p in self.requests if p.split("?")[0].endswith("/" + name))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    make_tone(root / "tone.mp4", TONE_S, "-c:a", "aac")
    make_tone(root / "tone.webm", TONE_S, "-c:a", "libopus")
    make_tone(root / "long.mp4", LONG_S, "-c:a", "aac")
    (root / "feed.rss").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Tones</title>'
        "<link>http://example.invalid/</link><description>two tones</description>"
        '<item><title>One</title><guid>1</guid><enclosure url="/tone.mp4" type="video/mp4" length="1"/></item>'
        '<item><title>Two</title><guid>2</guid><enclosure url="/tone.webm" type="video/webm" length="1"/></item>'
        "</channel></rss>"
    )
    (root / "empty.html").write_text("<html><head><title>Nothing</title></head><body>no media</body></html>")
    srv = LoopbackServer(root)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture()
def private_temp(tmp_path, monkeypatch) -> Path:
    """Redirect ``tempfile`` to a folder of ours so leftovers can be counted."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture()
def allow_loopback(monkeypatch, private_temp):
    monkeypatch.setenv("SINGTALK_ALLOW_PRIVATE_URLS", "1")
    return private_temp


@pytest.fixture()
def no_network(monkeypatch):
    """Every socket connection attempt fails the test (name lookups from /etc/hosts stay possible)."""
    monkeypatch.delenv("SINGTALK_ALLOW_PRIVATE_URLS", raising=False)
    attempts: list = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise AssertionError(f"network connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


# --------------------------------------------------------------------------- downloads that work


@pytest.mark.parametrize("name", ["tone.mp4", "tone.webm"])
def test_generic_extractor_downloads_and_decodes(server, allow_loopback, name):
    stages = []
    fetched = sources.fetch_url(server.url(f"/{name}"), progress=lambda stage, f: stages.append((stage, f)))
    assert fetched.sr == SAMPLE_RATE and fetched.samples.dtype == np.float32 and fetched.samples.ndim == 1
    assert abs(fetched.duration_s - TONE_S) < 0.1
    assert abs(fetched.samples.size / SAMPLE_RATE - fetched.duration_s) < 1e-9
    assert np.isfinite(fetched.samples).all() and np.max(np.abs(fetched.samples)) > 0.1
    assert fetched.title == "tone" and fetched.source_url == server.url(f"/{name}")
    fractions = [f for stage, f in stages if stage == "download" and f is not None]
    assert fractions and all(0.0 <= f <= 1.0 for f in fractions) and fractions[-1] == 1.0
    assert stages[-1] == ("decode", None)
    assert list(allow_loopback.iterdir()) == []  # the download folder is gone


def test_resample_rate_and_size_unknown_until_read(server, allow_loopback):
    fetched = sources.fetch_url(server.url("/stream/tone.mp4"), sr=8000)
    assert fetched.sr == 8000 and abs(fetched.samples.size / 8000 - TONE_S) < 0.1
    assert list(allow_loopback.iterdir()) == []


def test_load_audio_dispatches_url_bytes_buffer_and_path(server, allow_loopback):
    path = server.root / "tone.webm"
    from_url = sources.load_audio(server.url("/tone.webm"))
    from_path = sources.load_audio(path)
    from_str_path = sources.load_audio(str(path))
    from_bytes = sources.load_audio(path.read_bytes())
    from_buffer = sources.load_audio(io.BytesIO(path.read_bytes()))
    for y in (from_path, from_str_path, from_bytes, from_buffer):
        np.testing.assert_allclose(y, from_url, atol=1e-6)
    with pytest.raises(TooShort):
        sources.load_audio(server.url("/tone.webm"), min_duration=10.0)


# --------------------------------------------------------------------------- refusals and failures


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/a.mp3", "data:audio/wav;base64,UklGRg==", "javascript:alert(1)",
    "www.youtube.com/watch?v=x", "", "http://user:secret@example.com/a.mp4",
    "http://127.0.0.1/", "http://localhost/a.mp4", "http://[::1]/", "http://10.0.0.1/",
    "http://192.168.1.1/", "http://169.254.169.254/latest/meta-data/", "http://224.0.0.1/",
    "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:10.0.0.1]/", "http://2130706433/",
    "http://100.64.0.1/", "http://[fe80::1]/", "http://240.0.0.1/",
])
def test_refused_before_any_traffic(no_network, private_temp, url):
    with pytest.raises(DownloadRefused) as refused:
        sources.fetch_url(url)
    assert refused.value.args[0] and "Traceback" not in str(refused.value)
    assert_plain(str(refused.value))
    assert no_network == [] and list(private_temp.iterdir()) == []


def assert_plain(message: str) -> None:
    """A visitor's message: no server setting to change, and never "https://" alone (http:// works too)."""
    assert "SINGTALK_" not in message and "set by" not in message, message
    assert "https://" not in message or "http://" in message, message


def test_a_bare_host_is_told_both_schemes(no_network):
    with pytest.raises(DownloadRefused) as refused:
        sources.fetch_url("www.youtube.com/watch?v=x")
    assert str(refused.value).endswith("should start with http:// or https://.")


def test_loopback_server_never_reached_without_override(server, no_network):
    before = len(server.requests)
    port = server.httpd.server_port
    for url in (f"http://127.0.0.1:{port}/tone.mp4", f"http://localhost:{port}/tone.mp4"):
        with pytest.raises(DownloadRefused, match="local or private") as refused:
            sources.load_audio(url)
        assert_plain(str(refused.value))
    assert len(server.requests) == before and no_network == []


def test_check_url_accepts_public_literals_without_traffic(no_network):
    sources.check_url("https://93.184.215.14/watch?v=x")
    sources.check_url("http://[2606:4700::1111]:8080/a.mp4")
    assert no_network == []


def test_is_url():
    assert sources.is_url("https://youtu.be/x") and sources.is_url(" ftp://a/b ") and sources.is_url("data:x")
    assert not sources.is_url("/tmp/a.wav") and not sources.is_url("C:\\a.wav") and not sources.is_url(b"http://")
    assert not sources.is_url(Path("http://x"))


@pytest.mark.parametrize("target", ["ftp://example.com/a.mp4", "file:///etc/passwd", "data:audio/wav;base64,AA==",
                                    "http://user:pw@127.0.0.1:1/tone.mp4"])
def test_every_redirect_target_is_checked(server, allow_loopback, target):
    with pytest.raises(DownloadRefused):
        sources.fetch_url(server.url("/redirect?" + urllib.parse.urlencode({"to": target})))
    assert list(allow_loopback.iterdir()) == []


def test_allowed_redirect_is_followed(server, allow_loopback):
    fetched = sources.fetch_url(server.url("/redirect?" + urllib.parse.urlencode({"to": "/tone.webm"})))
    assert abs(fetched.duration_s - TONE_S) < 0.1


def test_known_duration_over_limit_refused_before_download(server, allow_loopback):
    downloads_before = server.media_requests("long.mp4")
    with pytest.raises(DownloadRefused, match=r"lasts 5\.0 s.*2\.0 s limit") as refused:
        sources.fetch_url(server.url("/page.html"), max_duration=2)
    assert_plain(str(refused.value))
    # yt-dlp's extractor probes the media URL once; the download would be a second request.
    assert server.media_requests("long.mp4") - downloads_before <= 1
    assert list(allow_loopback.iterdir()) == []


def test_unknown_duration_over_limit_stopped_at_decode(server, allow_loopback):
    with pytest.raises((TooLong, DownloadRefused), match="longer than 2.0 s"):
        sources.fetch_url(server.url("/long.mp4"), max_duration=2)
    assert list(allow_loopback.iterdir()) == []


@pytest.mark.parametrize("path", ["/tone.mp4", "/stream/tone.mp4"])
def test_too_big_refused(server, allow_loopback, path):
    with pytest.raises((DownloadRefused, DownloadFailed), match="too big.*1000 bytes") as refused:
        sources.fetch_url(server.url(path), max_bytes=1000)
    assert_plain(str(refused.value))
    assert list(allow_loopback.iterdir()) == []


def test_size_limit_from_environment(server, allow_loopback, monkeypatch):
    monkeypatch.setenv("SINGTALK_MAX_DOWNLOAD_MB", "0.001")
    assert sources.max_download_bytes() == 1048
    with pytest.raises(DownloadRefused, match="too big"):
        sources.fetch_url(server.url("/tone.mp4"))


def test_playlist_refused_without_downloading_entries(server, allow_loopback):
    before = server.media_requests("tone.mp4") + server.media_requests("tone.webm")
    with pytest.raises(DownloadRefused, match="playlist"):
        sources.fetch_url(server.url("/feed.rss"))
    assert server.media_requests("tone.mp4") + server.media_requests("tone.webm") == before


def test_http_404_is_download_failed(server, allow_loopback):
    with pytest.raises(DownloadFailed, match="404") as failed:
        sources.fetch_url(server.url("/missing.mp4"))
    message = str(failed.value)
    assert len(message) < 200 and "\x1b[" not in message and "ERROR:" not in message
    assert list(allow_loopback.iterdir()) == []


def test_page_without_media_is_download_failed(server, allow_loopback):
    with pytest.raises(DownloadFailed, match="No audio or video"):
        sources.fetch_url(server.url("/empty.html"))


def test_connection_refused_is_download_failed(allow_loopback):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadFailed):
        sources.fetch_url(f"http://127.0.0.1:{port}/tone.mp4")


def test_temp_folder_removed_on_keyboard_interrupt(server, allow_loopback):
    def interrupt(stage, fraction):
        if stage == "download" and os.listdir(allow_loopback):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sources.fetch_url(server.url("/tone.mp4"), progress=interrupt)
    assert list(allow_loopback.iterdir()) == []


def test_yt_dlp_reaches_the_network_only_through_the_guard(server, monkeypatch):
    """Even past the URL check, a socket that reached a private address is closed before any request."""
    monkeypatch.delenv("SINGTALK_ALLOW_PRIVATE_URLS", raising=False)
    with sources._GuardedYoutubeDL({"quiet": True, "logger": sources._QuietLogger()}) as ydl:
        assert list(ydl._request_director.handlers) == ["_GuardedUrllib"]
        handler = ydl._request_director.handlers["_GuardedUrllib"]
        opener = handler._create_instance(proxies={}, cookiejar=ydl.cookiejar)  # below the per-request check
        before = server.media_requests("tone.webm")
        with pytest.raises(sources._Blocked, match="local or private"):
            opener.open(server.url("/tone.webm"), timeout=5)
        assert server.media_requests("tone.webm") == before


def test_a_download_reports_its_cost_even_when_cut(server, allow_loopback):
    costs = []
    fetched = sources.fetch_url(server.url("/tone.mp4"), spent=costs.append)
    assert costs == [fetched.size_bytes] and fetched.size_bytes > 1000
    with pytest.raises((DownloadRefused, DownloadFailed), match="too big"):
        sources.fetch_url(server.url("/stream/tone.mp4"), max_bytes=1000, spent=costs.append)
    assert len(costs) == 2  # a download cut at the limit is charged too (what reached the disk)
