"""The HTTP side of the web door: security headers, the static client, errors.

Every response, whatever produced it (a file, a 404, a refused WebSocket,
Twisted's own 500 page), carries the security headers, because they are
set by :class:`WebRequest` before any resource renders. Static files are
served from one folder by :class:`StaticFiles`: only known file types, no
hidden files, no directory listings, ``GET`` and ``HEAD`` only, revalidated
with an ``ETag`` on every use (``Cache-Control: no-cache``), and text
compressed with gzip when the browser accepts it.
"""

from __future__ import annotations

from email.utils import formatdate, parsedate_to_datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import GzipEncoderFactory, Request, Site

from pingchat.web.policy import ClientView, TrustedProxies

# The page may load its own scripts, styles, images, fonts and manifest, and
# connect back to its own origin (CSP 3: 'self' covers ws:/wss: to the same
# host); nothing inline, nothing from elsewhere, no framing, no forms.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
    " connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none';"
    " form-action 'none'; frame-ancestors 'none'"
)
# Turned off: what a chat page never needs. Notifications are asked for by
# the page through the Notification API, which this header does not govern.
PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
)
SECURITY_HEADERS = (
    (b"Content-Security-Policy", CONTENT_SECURITY_POLICY.encode()),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"X-Frame-Options", b"DENY"),
    (b"Cross-Origin-Opener-Policy", b"same-origin"),
    (b"Cross-Origin-Resource-Policy", b"same-origin"),
    (b"Permissions-Policy", PERMISSIONS_POLICY.encode()),
)
# One year, this host only (the subdomains are not ours to speak for). Sent
# on HTTPS only; browsers ignore it over a certificate they had to be told
# to accept, so the self-signed default does not lock anyone out.
HSTS = b"max-age=31536000"

# An idle HTTP connection is closed after this long; an upgraded WebSocket
# is not (it has its own pings).
HTTP_IDLE_TIMEOUT = 60

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".wasm": "application/wasm",
}
COMPRESSED = frozenset(
    {".html", ".js", ".mjs", ".css", ".svg", ".json", ".map", ".webmanifest", ".txt"}
)


class WebRequest(Request):
    """A request of the web door: security headers first, request bodies ignored."""

    _view: ClientView | None = None

    def client_view(self) -> ClientView:
        """The client's address and scheme, through ``--trusted-proxy`` proxies."""
        if self._view is None:
            site = getattr(self.channel, "site", None)
            proxies: TrustedProxies = getattr(site, "proxies", TrustedProxies())
            peer = str(getattr(self.getClientAddress(), "host", ""))
            headers = self.requestHeaders
            self._view = proxies.view(
                peer,
                bool(self.isSecure()),
                headers.getRawHeaders(b"x-forwarded-for"),
                headers.getRawHeaders(b"x-forwarded-proto"),
                headers.getRawHeaders(b"forwarded"),
            )
        return self._view

    def process(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.setHeader(name, value)
        if self.client_view().scheme == "https":
            self.setHeader(b"Strict-Transport-Security", HSTS)
        super().process()

    # No resource here reads a request body: it is read and thrown away,
    # neither kept in memory nor spooled to a temporary file.
    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's name
        self.content = BytesIO()

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        pass


class WebSite(Site):
    """The web door's HTTP factory; no access log (sessions are logged as at every door)."""

    requestFactory = WebRequest
    displayTracebacks = False

    def __init__(self, root: Resource, proxies: TrustedProxies, reactor: IReactorTime) -> None:
        super().__init__(root, timeout=HTTP_IDLE_TIMEOUT, reactor=reactor)
        self.proxies = proxies

    def startFactory(self) -> None:  # noqa: N802 - Twisted's name
        # HTTPFactory's would open the access log and tick a clock every second for it.
        pass

    def log(self, request: Any) -> None:
        pass


def text_response(
    request: Request, code: int, message: str, headers: dict[bytes, bytes] | None = None
) -> bytes:
    """A short plain-text response (errors and refusals)."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    return message.encode("utf-8") + b"\n"


def not_found(request: Request) -> bytes:
    return text_response(request, 404, "Not found.")


def not_allowed(request: Request, allowed: bytes) -> bytes:
    method = request.method.decode("ascii", "replace")
    return text_response(
        request,
        405,
        f"{method} is not allowed here; use {allowed.decode()}.",
        {b"Allow": allowed},
    )


class StaticFiles(Resource):
    """The files of one folder, read at each request (no restart to update them)."""

    isLeaf = True

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def find(self, segments: list[bytes]) -> Path | None:
        """The file a URL path names, or None: hidden, odd or unknown names are not served."""
        if segments in ([], [b""]):
            segments = [b"index.html"]
        names = []
        for raw in segments:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
            if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
                return None
            names.append(name)
        path = self.root.joinpath(*names)
        if path.suffix.lower() not in CONTENT_TYPES or not path.is_file():
            return None
        return path

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        if request.method not in (b"GET", b"HEAD"):
            return not_allowed(request, b"GET, HEAD")
        path = self.find(request.postpath or [])
        if path is None:
            return not_found(request)
        try:
            stat = path.stat()
            body = path.read_bytes() if request.method == b"GET" else b""
        except OSError:
            return not_found(request)
        suffix = path.suffix.lower()
        etag = f'W/"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        request.setHeader(b"Content-Type", CONTENT_TYPES[suffix].encode())
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"ETag", etag.encode())
        request.setHeader(b"Last-Modified", formatdate(stat.st_mtime, usegmt=True).encode())
        if suffix in COMPRESSED:
            request.setHeader(b"Vary", b"Accept-Encoding")
        if _not_modified(request, etag, stat.st_mtime):
            request.setResponseCode(304)
            return b""
        if request.method == b"HEAD":  # (gzip, when used, takes it off again)
            request.setHeader(b"Content-Length", str(stat.st_size).encode())
        return body


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    """RFC 9110 conditional GET: ``If-None-Match`` (weakly compared) wins over the date."""
    if_none_match = request.getHeader(b"if-none-match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix(b"W/") for t in if_none_match.split(b",")}
        return b"*" in tags or etag.encode().removeprefix(b"W/") in tags
    since = request.getHeader(b"if-modified-since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return int(mtime) <= when


class TextGzip(EncodingResourceWrapper):
    """Gzip for text files when the browser accepts it; images stay as they are."""

    def __init__(self, wrapped: StaticFiles) -> None:
        super().__init__(wrapped, [GzipEncoderFactory()])

    def getEncoder(self, request: Request) -> Any:  # noqa: N802 - Twisted's name
        segments = request.postpath or [b"index.html"]
        name = segments[-1] or b"index.html"
        if Path(name.decode("utf-8", "replace")).suffix.lower() not in COMPRESSED:
            return None
        return super().getEncoder(request)


class WebRoot(Resource):
    """``/ws`` and ``/irc`` are WebSocket endpoints; every other path is a static file."""

    def __init__(self, static: Resource, sockets: dict[bytes, Resource]) -> None:
        super().__init__()
        self.static = static
        for name, resource in sockets.items():
            self.putChild(name, resource)

    def getChild(self, path: bytes, request: Request) -> Resource:  # noqa: N802
        # The static folder sees the whole path, this segment included.
        assert request.prepath is not None and request.postpath is not None
        request.postpath.insert(0, request.prepath.pop())
        return self.static
