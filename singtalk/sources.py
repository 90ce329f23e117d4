"""Where audio comes from: a web link (YouTube or any page yt-dlp reads), bytes, or a file.

:func:`load_audio` dispatches; :func:`fetch_url` downloads one audio track with
yt-dlp into a private temporary folder and decodes it with ffmpeg.

Links are checked before any traffic and at every hop: only ``http``/``https``,
and no host that resolves to a loopback, private, link-local, multicast,
reserved or unspecified address (set ``SINGTALK_ALLOW_PRIVATE_URLS=1`` to allow
them). yt-dlp talks to the network only through a request handler of ours that
re-checks every request, every redirect target and the address each socket
actually connected to (so DNS rebinding gets refused too). Playlists, live
streams, entries known to be too long or too big are refused before download;
the size is also bounded while downloading.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import os
import re
import socket
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import yt_dlp
from yt_dlp.networking._helper import create_connection
from yt_dlp.networking._urllib import (
    HTTPHandler,
    ProxyHandler,
    RedirectHandler,
    UrllibRH,
    _create_http_connection,
)
from yt_dlp.networking.exceptions import HTTPError as YdlHTTPError
from yt_dlp.networking.exceptions import RequestError, TransportError
from yt_dlp.utils import DownloadCancelled

from . import audio
from .errors import DownloadFailed, DownloadRefused, SingtalkError, TooShort

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_MAX_DOWNLOAD_MB = 200.0
ALLOW_PRIVATE_ENV = "SINGTALK_ALLOW_PRIVATE_URLS"
MAX_DOWNLOAD_ENV = "SINGTALK_MAX_DOWNLOAD_MB"

# Only downloaders that go through yt-dlp's request handlers (never ffmpeg/rtmpdump fetching on their own).
AUDIO_FORMAT = (
    "bestaudio[protocol^=http]/bestaudio[protocol^=m3u8]/best[protocol^=http]/best[protocol^=m3u8]"
)

Progress = Callable[[str, Optional[float]], None]


@dataclass(frozen=True)
class FetchedAudio:
    """One downloaded and decoded track: ``samples`` is mono float32 of shape ``(n,)`` at ``sr`` Hz."""

    samples: np.ndarray
    sr: int
    title: str
    source_url: str
    duration_s: float
    size_bytes: int = 0
    """Bytes fetched from the network (the downloaded file's size)."""


# --------------------------------------------------------------------------- URL policy

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_url(text: object) -> bool:
    """True for a string that starts with a scheme (``https:``, ``ftp:``, ``data:``...), not for paths."""
    if not isinstance(text, str):
        return False
    return bool(_SCHEME.match(text.strip()))


def private_urls_allowed() -> bool:
    """Whether ``SINGTALK_ALLOW_PRIVATE_URLS`` lifts the local-network ban (tests, trusted setups)."""
    return os.environ.get(ALLOW_PRIVATE_ENV, "").strip().lower() in ("1", "true", "yes")


def max_download_bytes() -> int:
    """Largest download accepted: ``SINGTALK_MAX_DOWNLOAD_MB`` (default 200 MB)."""
    raw = os.environ.get(MAX_DOWNLOAD_ENV, "").strip()
    try:
        megabytes = float(raw) if raw else DEFAULT_MAX_DOWNLOAD_MB
    except ValueError:
        megabytes = DEFAULT_MAX_DOWNLOAD_MB
    return int(megabytes * 1024 * 1024)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> Optional[ipaddress.IPv4Address]:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_forbidden(ip: Union[ipaddress.IPv4Address, ipaddress.IPv6Address]) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and _is_forbidden(inner):
            return True
    return (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified or not ip.is_global
    )


def _check_address(address: str, host: str) -> None:
    """Refuse ``address`` (an IP string, maybe with ``%zone``) unless it is a public one."""
    if private_urls_allowed():
        return
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if _is_forbidden(ip):
        raise DownloadRefused(
            f"{host} points to a local or private network address ({ip}); such links are refused. "
            "Give a link to a public web page."
        )


def check_url(url: str) -> None:
    """Refuse anything but a public ``http``/``https`` link, before any traffic.

    Raises :class:`DownloadRefused` (bad scheme, credentials, local/private
    host) or :class:`DownloadFailed` (the host name does not resolve).
    """
    if not isinstance(url, str) or not url.strip():
        raise DownloadRefused("No link given.")
    url = url.strip()
    shown = url if len(url) <= 80 else url[:77] + "..."
    match = _SCHEME.match(url)
    if not match:
        raise DownloadRefused(f"'{shown}' is not a web link; it should start with http:// or https://.")
    scheme = match.group(1).lower()
    if scheme not in ALLOWED_SCHEMES:
        raise DownloadRefused(f"Only http:// and https:// links can be downloaded, not {scheme}: links.")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise DownloadRefused(f"'{shown}' is not a valid link ({err}).") from err
    if parts.username is not None or parts.password is not None:
        raise DownloadRefused("Links with a user name or password in them are not accepted.")
    host = parts.hostname
    if not host:
        raise DownloadRefused(f"'{shown}' has no host name.")
    if private_urls_allowed():
        return
    try:
        infos = socket.getaddrinfo(host, port or (443 if scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as err:
        raise DownloadFailed(f"Could not find the host {host}; check the link and your connection.") from err
    if not infos:
        raise DownloadFailed(f"Could not find the host {host}.")
    for *_, sockaddr in infos:
        _check_address(sockaddr[0], host)


# --------------------------------------------------------------------------- guarded yt-dlp networking


class _Blocked(RequestError):
    """A request yt-dlp wanted to make that our policy refuses; carries the user-facing error."""

    def __init__(self, refusal: SingtalkError):
        super().__init__(str(refusal))
        self.refusal = refusal


def _guard(url: str) -> None:
    try:
        check_url(url)
    except SingtalkError as err:
        raise _Blocked(err) from None


class _GuardedRedirectHandler(RedirectHandler):
    """Checks every redirect target before following it."""

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get("location") or headers.get("uri")
        if target:
            try:
                _guard(urllib.parse.urljoin(req.full_url, target))
            except _Blocked:
                fp.close()
                raise
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _GuardedHTTPHandler(HTTPHandler):
    """Checks the address each new socket actually reached (DNS may answer differently the second time)."""

    def __init__(self, *args, proxy_hosts: frozenset = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self._proxy_hosts = proxy_hosts

    def http_open(self, req):
        conn_class = self._make_conn_class(http.client.HTTPConnection, req)
        return self.do_open(functools.partial(self._connection, conn_class), req)

    def https_open(self, req):
        conn_class = self._make_conn_class(http.client.HTTPSConnection, req)
        return self.do_open(functools.partial(self._connection, conn_class), req, context=self._context)

    def _connection(self, http_class, *args, **kwargs):
        conn = _create_http_connection(http_class, self._source_address, *args, **kwargs)
        if hasattr(conn, "_create_connection"):
            conn._create_connection = self._checked_connection
        return conn

    def _checked_connection(self, address, *args, **kwargs):
        sock = create_connection(address, *args, **kwargs)
        if str(address[0]).lower() not in self._proxy_hosts:
            try:
                _check_address(sock.getpeername()[0], str(address[0]))
            except SingtalkError as err:
                sock.close()
                raise _Blocked(err) from None
        return sock


class _GuardedUrllibRH(UrllibRH):
    """yt-dlp's urllib handler restricted to http(s), checking every request and redirect."""

    _SUPPORTED_URL_SCHEMES = ALLOWED_SCHEMES
    RH_NAME = "singtalk-guarded-urllib"

    def __init__(self, **kwargs):
        kwargs["enable_file_urls"] = False
        super().__init__(**kwargs)

    def _send(self, request):
        _guard(request.url)
        return super()._send(request)

    def _create_instance(self, proxies, cookiejar, legacy_ssl_support=None):
        proxy_hosts = frozenset(
            (urllib.parse.urlsplit(p).hostname or "").lower() for p in (proxies or {}).values() if p
        )
        opener = urllib.request.OpenerDirector()
        for handler in (
            ProxyHandler(proxies),
            _GuardedHTTPHandler(
                debuglevel=0,
                context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support),
                source_address=self.source_address,
                proxy_hosts=proxy_hosts,
            ),
            urllib.request.HTTPCookieProcessor(cookiejar),
            urllib.request.UnknownHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
            _GuardedRedirectHandler(),
        ):
            opener.add_handler(handler)
        opener.addheaders = []
        return opener


class _GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """A YoutubeDL whose only way to the network is :class:`_GuardedUrllibRH`."""

    @functools.cached_property
    def _request_director(self):
        return self.build_request_director([_GuardedUrllibRH])


# --------------------------------------------------------------------------- download


class _Abort(DownloadCancelled):
    """Raised from our yt-dlp callbacks to stop at once (yt-dlp may re-raise it without arguments)."""


class _Stop:
    """Per-download record of why our callbacks stopped yt-dlp; :meth:`__call__` raises."""

    def __init__(self):
        self.error: Optional[SingtalkError] = None

    def __call__(self, error: SingtalkError):
        self.error = error
        raise _Abort(str(error))


class _QuietLogger:
    """Keeps yt-dlp's messages instead of printing them."""

    def __init__(self):
        self.messages: list[str] = []

    def debug(self, msg):
        self.messages.append(str(msg))

    info = warning = error = debug


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _short_message(text: str) -> str:
    text = _ANSI.sub("", str(text)).strip()
    text = text.splitlines()[0] if text else ""
    text = re.sub(r"^(ERROR|WARNING):\s*", "", text)
    text = re.sub(r"^\[[\w:]+\]\s*(\S+:\s)?", "", text)
    text = re.split(r";\s*please report this issue|\s*\(caused by ", text, maxsplit=1)[0]
    text = re.sub(r"\[Errno -?\d+\]\s*", "", text).strip()
    return text[:200] or "unknown error"


def _causes(err: BaseException):
    seen, stack = set(), [err]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        exc_info = getattr(current, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            stack.append(exc_info[1])
        stack.extend([getattr(current, "cause", None), current.__cause__, current.__context__])


def _translate(err: BaseException) -> SingtalkError:
    """A yt-dlp failure as a :class:`DownloadFailed` / :class:`DownloadRefused` with a short message."""
    causes = list(_causes(err))
    for cause in causes:
        if isinstance(cause, _Blocked):
            return cause.refusal
    for cause in causes:
        if isinstance(cause, YdlHTTPError):
            return DownloadFailed(f"The server answered HTTP {cause.status} {cause.reason or ''}".rstrip() + ".")
    message = _short_message(str(err))
    if "Unsupported URL" in message:
        return DownloadFailed("No audio or video found at this link (unsupported site or page).")
    if "Requested format is not available" in message:
        return DownloadFailed("This link offers no audio format that can be downloaded safely.")
    for cause in causes:
        if isinstance(cause, TransportError):
            return DownloadFailed(f"Could not reach the server ({_short_message(str(cause))}).")
    return DownloadFailed(f"Download failed: {message}")


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{int(n_bytes)} bytes"


def _too_big(max_bytes: int, size: Optional[float] = None) -> DownloadRefused:
    got = f" ({_mb(size)})" if size else ""
    return DownloadRefused(
        f"The file is too big{got}: downloads are limited to {_mb(max_bytes)}. Try a shorter video."
    )


def _match_filter(max_duration: float, max_bytes: int, stop: _Stop):
    """yt-dlp ``match_filter``: refuse playlists, live streams, known-too-long or too-big entries."""

    def check(info, *, incomplete=False):
        if info.get("playlist_index") is not None or info.get("_type") in ("playlist", "multi_video"):
            stop(DownloadRefused("This link is a playlist; give the link of a single video or track."))
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming", "post_live"):
            stop(DownloadRefused("Live streams cannot be analysed; give the link of a recorded video."))
        duration = info.get("duration")
        if isinstance(duration, (int, float)) and duration > max_duration:
            stop(DownloadRefused(
                f"This video lasts {audio.format_seconds(duration)}, longer than the "
                f"{audio.format_seconds(max_duration)} limit; give a link to a shorter one."
            ))
        size = info.get("filesize") or info.get("filesize_approx")
        if not incomplete and isinstance(size, (int, float)) and size > max_bytes:
            stop(_too_big(max_bytes, size))
        return None

    return check


def _progress_hook(max_bytes: int, report: Progress, stop: _Stop):
    def hook(status):
        if status.get("status") == "downloading":
            done = status.get("downloaded_bytes") or 0
            total = status.get("total_bytes")
            if done > max_bytes or (total and total > max_bytes):
                stop(_too_big(max_bytes, max(done, total or 0)))
            expected = total or status.get("total_bytes_estimate")
            report("download", min(1.0, done / expected) if expected else None)
        elif status.get("status") == "finished":
            report("download", 1.0)

    return hook


_PLAYLIST_MAGIC = (b"#EXTM3U", b"ffconcat", b"<?xml", b"<MPD", b"v=0\r", b"v=0\n", b"[playlist]")


def _downloaded_file(info: Optional[dict], folder: Path) -> Path:
    candidates = [Path(d["filepath"]) for d in (info or {}).get("requested_downloads") or [] if d.get("filepath")]
    candidates += sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith((".part", ".ytdl")))
    for path in candidates:
        if path.is_file() and path.stat().st_size > 0:
            with open(path, "rb") as handle:
                head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
            if head.startswith(_PLAYLIST_MAGIC):
                # A text playlist would make ffmpeg fetch other resources on its own: refuse it.
                raise DownloadRefused("The link serves a playlist or manifest, not an audio or video file.")
            return path
    raise DownloadFailed("Nothing was downloaded from this link.")


def _download(url: str, folder: Path, *, max_duration: float, max_bytes: int, report: Progress) -> tuple[dict, Path]:
    logger, stop = _QuietLogger(), _Stop()
    params = {
        "format": AUDIO_FORMAT,
        "noplaylist": True,
        "extract_flat": "in_playlist",
        "lazy_playlist": True,
        "max_filesize": max_bytes,
        "match_filter": _match_filter(max_duration, max_bytes, stop),
        "progress_hooks": [_progress_hook(max_bytes, report, stop)],
        "outtmpl": {"default": "audio.%(ext)s"},
        "paths": {"home": str(folder), "temp": str(folder)},
        "restrictfilenames": True,
        "cachedir": False,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
        "logger": logger,
        "external_downloader": {"default": "native"},
        "hls_prefer_native": True,
        "enable_file_urls": False,
        "concurrent_fragment_downloads": 1,
        "socket_timeout": 30,
        "retries": 2,
        "fragment_retries": 2,
        "extractor_retries": 1,
        "updatetime": False,
        "overwrites": True,
    }
    try:
        with _GuardedYoutubeDL(params) as ydl:
            info = ydl.extract_info(url, download=True)
    except SingtalkError:
        raise
    except (yt_dlp.utils.YoutubeDLError, OSError) as err:
        raise (stop.error or _translate(err)) from None
    if info and (info.get("_type") in ("playlist", "multi_video") or info.get("entries") is not None):
        raise DownloadRefused("This link is a playlist; give the link of a single video or track.")
    try:
        return info or {}, _downloaded_file(info, folder)
    except DownloadFailed:
        if any("max-filesize" in m for m in logger.messages):
            raise _too_big(max_bytes) from None
        raise


def fetch_url(
    url: str,
    *,
    sr: int = audio.SAMPLE_RATE,
    max_duration: Optional[float] = None,
    max_bytes: Optional[int] = None,
    progress: Optional[Progress] = None,
    spent: Optional[Callable[[int], None]] = None,
) -> FetchedAudio:
    """Download the audio of one web link and decode it to mono float32 at ``sr`` Hz.

    ``max_duration`` defaults to :data:`singtalk.audio.MAX_DURATION_S`, ``max_bytes``
    to ``SINGTALK_MAX_DOWNLOAD_MB`` (200 MB). ``progress(stage, fraction)`` is
    called with ``("download", 0..1 or None)`` then ``("decode", None)``. ``spent(n_bytes)`` is told what the
    download cost, finished or not (a visitor's :class:`singtalk.download_budget.Ticket`).
    Raises :class:`DownloadRefused`, :class:`DownloadFailed`, or the decoding
    errors of :func:`singtalk.audio.decode` (e.g. :class:`TooLong`).
    The download lives in its own temporary folder, removed whatever happens.
    """
    max_duration = audio.MAX_DURATION_S if max_duration is None else float(max_duration)
    max_bytes = max_download_bytes() if max_bytes is None else int(max_bytes)
    report: Progress = progress or (lambda stage, fraction: None)
    check_url(url)
    url = url.strip()
    with tempfile.TemporaryDirectory(prefix="singtalk-download-") as tmp:
        try:
            info, path = _download(url, Path(tmp), max_duration=max_duration, max_bytes=max_bytes, report=report)
        finally:
            size = _folder_bytes(Path(tmp))
            if spent is not None:
                spent(size)
        title = str(info.get("title") or info.get("id") or path.stem)
        report("decode", None)
        samples = audio.decode(path, sr=sr, max_duration=max_duration, name=f'"{title}"')
    return FetchedAudio(samples=samples, sr=int(sr), title=title, source_url=url, duration_s=samples.size / sr,
                        size_bytes=size)


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (finished and partial downloads alike)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def load_audio(
    source,
    *,
    sr: int = audio.SAMPLE_RATE,
    max_duration: Optional[float] = None,
    min_duration: float = 0.0,
    name: Optional[str] = None,
) -> np.ndarray:
    """Mono float32 samples at ``sr`` Hz from bytes, a buffer (``.getvalue()``/``.read()``), a web link or a path."""
    if hasattr(source, "getvalue") or (hasattr(source, "read") and not isinstance(source, (str, os.PathLike))):
        name = name or getattr(source, "name", None)
        source = source.getvalue() if hasattr(source, "getvalue") else source.read()
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    if isinstance(source, str) and is_url(source):
        samples = fetch_url(source, sr=sr, max_duration=max_duration).samples
        if samples.size / sr < min_duration:
            raise TooShort(
                f"{name or 'The download'} lasts {audio.format_seconds(samples.size / sr)}; "
                f"at least {audio.format_seconds(min_duration)} is needed."
            )
        return samples
    return audio.decode(source, sr=sr, max_duration=max_duration, min_duration=min_duration, name=name)
