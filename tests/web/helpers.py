"""Fixtures for the web door's unit tests: HTTP and WebSocket over StringTransport.

The site is the real one (``make_site``) on an inline pingchat server driven
by a ``task.Clock``; requests go through Twisted's ``HTTPChannel`` as bytes,
and the WebSocket side is wsproto's *client* (another implementation than
the server's framing code), so nothing here opens a socket.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from zope.interface import directlyProvides

from pingchat.web.door import make_site
from pingchat.web.policy import OriginPolicy, TrustedProxies
from pingchat.web.site import WebSite
from tests.helpers import ServerTestCase
from tests.web.wsclient import parse_response


class HTTPConnection:
    """One HTTP connection to a site over a StringTransport."""

    def __init__(
        self, site: WebSite, peer: str = "127.0.0.1", port: int = 40000, secure: bool = False
    ) -> None:
        cls = IPv6Address if ":" in peer else IPv4Address
        self.transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
            peerAddress=cls("TCP", peer, port),
        )
        if secure:
            directlyProvides(self.transport, ISSLTransport)
            self.transport.setTcpNoDelay = lambda enabled: None  # type: ignore[attr-defined]
        self.channel = site.buildProtocol(self.transport.getPeer())
        assert self.channel is not None
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def lose(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


class WSPeer:
    """A WebSocket client (wsproto's) on an :class:`HTTPConnection`."""

    def __init__(
        self,
        http: HTTPConnection,
        path: str = "/ws",
        *,
        host: str = "localhost:8080",
        origin: str | None = None,
        subprotocols: list[str] | None = None,
        headers: list[tuple[str, str]] | None = None,
        extensions: list[Any] | None = None,
    ) -> None:
        self.http = http
        self.ws = WSConnection(ConnectionType.CLIENT)
        extra = [(k.encode(), v.encode()) for k, v in headers or []]
        if origin is not None:
            extra.append((b"Origin", origin.encode()))
        self.pending: list[Event] = []
        self.accepted: AcceptConnection | None = None
        self.rejected: RejectConnection | None = None
        self.reject_body = b""
        http.send(
            self.ws.send(
                Request(
                    host=host,
                    target=path,
                    subprotocols=subprotocols or [],
                    extensions=extensions or [],
                    extra_headers=extra,
                )
            )
        )
        for event in self._events():
            if isinstance(event, AcceptConnection):
                self.accepted = event
            elif isinstance(event, RejectConnection):
                self.rejected = event
            elif isinstance(event, RejectData):
                self.reject_body += event.data
            else:
                self.pending.append(event)

    @property
    def transport(self) -> StringTransport:
        return self.http.transport

    def _events(self) -> list[Event]:
        self.ws.receive_data(self.http.take())
        return list(self.ws.events())

    def events(self) -> list[Event]:
        out, self.pending = self.pending + self._events(), []
        return out

    def messages(self) -> list[str | bytes]:
        return [e.data for e in self.events() if isinstance(e, (TextMessage, BytesMessage))]

    def send_text(self, text: str, finished: bool = True) -> None:
        self.http.send(self.ws.send(TextMessage(text, message_finished=finished)))

    def send_bytes(self, data: bytes, finished: bool = True) -> None:
        self.http.send(self.ws.send(BytesMessage(data, message_finished=finished)))

    def ping(self, payload: bytes = b"p") -> None:
        self.http.send(self.ws.send(Ping(payload)))

    def close_event(self) -> CloseConnection | None:
        for event in self.events():
            if isinstance(event, CloseConnection):
                return event
        return None


class NativePeer(WSPeer):
    """The native protocol over ``/ws`` on a StringTransport."""

    def __init__(self, http: HTTPConnection, **kw: Any) -> None:
        super().__init__(http, "/ws", **kw)
        assert self.accepted is not None, self.rejected
        self.next_id = 0
        self.seen: list[dict[str, Any]] = []
        self.hello = self.read()[0]

    def read(self) -> list[dict[str, Any]]:
        out = []
        for m in self.messages():
            assert isinstance(m, str), m
            out.append(json.loads(m))
        self.seen += out
        return out

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        self.next_id += 1
        rid = self.next_id
        self.send_text(json.dumps({"id": rid, "op": op, **args}))
        for m in self.read():
            if m.get("id") == rid:
                return m
        raise AssertionError(f"no reply to {op}: {self.seen}")


class WebTestCase(ServerTestCase):
    """An inline server, its web site, and a static folder of our own."""

    origins: tuple[str, ...] = ()
    proxies: tuple[str, ...] = ()
    endpoint_options: dict[str, Any] = {}

    def setUp(self) -> None:
        super().setUp()
        self.static = Path(tempfile.mkdtemp(prefix="pingchat-static-"))
        self.addCleanup(shutil.rmtree, self.static, True)
        (self.static / "index.html").write_text("<!doctype html><title>t</title>" + "x" * 2000)
        (self.static / "app.js").write_text("export const a = 1;\n" * 100)
        (self.static / "style.css").write_text("body { color: black; }\n" * 100)
        (self.static / "icon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
        (self.static / "manifest.webmanifest").write_text('{"name": "pingchat"}')
        (self.static / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
        (self.static / "mod.mjs").write_text("export default 1;\n")
        (self.static / ".secret").write_text("hidden")
        (self.static / "notes.orig").write_text("unknown type")
        (self.static / "sub").mkdir()
        (self.static / "sub" / "page.html").write_text("<p>sub</p>")
        self.site = make_site(
            self.server.native,
            self.server.extras["irc"],
            self.clock,
            origins=OriginPolicy.parse(self.origins),
            proxies=TrustedProxies.parse(self.proxies),
            static=self.static,
            **self.endpoint_options,
        )

    def connect(self, **kw: Any) -> HTTPConnection:
        return HTTPConnection(self.site, **kw)

    def get(
        self,
        path: str,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        body: bytes = b"",
        **kw: Any,
    ) -> tuple[int, dict[str, str], bytes]:
        http = self.connect(**kw)
        lines = [f"{method} {path} HTTP/1.1", "Host: localhost:8080"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        http.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        response = parse_response(http.take())
        http.lose()
        return response
