"""The native door's own tests, run again over ``/ws``.

Each class here is a test class of ``tests/native/`` whose clients connect
through the web door's ``/ws`` endpoint (wsproto's client on a
StringTransport), one JSON object per text message, instead of straight to
the protocol: accounts, rooms, DMs, history, TOTP, recovery, password
changes, login throttling, audit, contacts, keys. Only the transport
changes; every assertion is the TLS door's. Not here: ``ConnectionTests``,
which is about line framing (``tests/web/test_websocket.py`` covers the
WebSocket framing instead).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.testing import StringTransport

from pingchat.web.door import make_site
from tests.native import test_protocol, test_security
from tests.web.helpers import HTTPConnection, WSPeer


class WebNativeTestClient:
    """The interface of ``pingchat.testing.NativeTestClient``, over ``/ws``."""

    def __init__(self, test: Any, address: str = "127.0.0.1", port: int = 40000) -> None:
        server = test.server
        if not hasattr(test, "_web_site"):
            test._web_site = make_site(
                server.native, server.extras["irc"], test.clock, ping_interval=10**6
            )
        before = set(server.native.connections)
        self.server = server
        self.http = HTTPConnection(test._web_site, peer=address, port=port)
        self.peer = WSPeer(self.http, "/ws")
        assert self.peer.accepted is not None
        (self.protocol,) = set(server.native.connections) - before
        self.events: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.next_id = 0
        self.hello = self._read()[0]

    @property
    def transport(self) -> StringTransport:
        return self.http.transport

    def _read(self) -> list[dict[str, Any]]:
        out = []
        for message in self.peer.messages():
            assert isinstance(message, str) and "\n" not in message, message
            out.append(json.loads(message))
        return out

    def pump(self) -> None:
        for obj in self._read():
            (self.events if "event" in obj else self.replies).append(obj)

    def send_line(self, line: bytes) -> None:
        for one in line.split(b"\n"):
            if one.strip():
                self.peer.send_text(one.decode("utf-8"))

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        self.next_id += 1
        rid = self.next_id
        self.peer.send_text(json.dumps({"id": rid, "op": op, **args}))
        return self.reply(rid)

    def reply(self, rid: Any) -> dict[str, Any]:
        self.pump()
        for i, r in enumerate(self.replies):
            if r.get("id") == rid:
                return self.replies.pop(i)
        raise AssertionError(f"no reply to request {rid}; events: {self.events}")

    def take_events(self, name: str | None = None) -> list[dict[str, Any]]:
        self.pump()
        taken = [e for e in self.events if name is None or e["event"] == name]
        self.events = [e for e in self.events if e not in taken]
        return taken

    def disconnect(self) -> None:
        self.http.lose()


class OverWebSocket:
    """Mixed into a ``tests/native`` test class: its clients use ``/ws``."""

    def client(self, address: str = "127.0.0.1") -> WebNativeTestClient:
        return WebNativeTestClient(self, address)


class AccountTests(OverWebSocket, test_protocol.AccountTests):
    pass


class RoomTests(OverWebSocket, test_protocol.RoomTests):
    pass


class DirectMessageTests(OverWebSocket, test_protocol.DirectMessageTests):
    pass


class HistoryCatchUpTests(OverWebSocket, test_protocol.HistoryCatchUpTests):
    pass


class OTPTests(OverWebSocket, test_security.OTPTests):
    pass


class RecoveryTests(OverWebSocket, test_security.RecoveryTests):
    pass


class PasswordChangeTests(OverWebSocket, test_security.PasswordChangeTests):
    pass


class ThrottleTests(OverWebSocket, test_security.ThrottleTests):
    pass


class AuditTests(OverWebSocket, test_security.AuditTests):
    pass


class ContactTests(OverWebSocket, test_security.ContactTests):
    pass


class KeyDirectoryTests(OverWebSocket, test_security.KeyDirectoryTests):
    pass
