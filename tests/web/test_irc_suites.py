"""The IRC door's own tests, run again over ``/irc``.

Each class here is a test class of ``tests/irc/`` whose IRC clients connect
through the web door's ``/irc`` endpoint (text subprotocol, wsproto's client
on a StringTransport) instead of straight to the protocol: registration,
SASL, PASS, guests, timeouts, JOIN and the room commands, PRIVMSG/NOTICE/
TAGMSG and tags, CHATHISTORY, the bridge to native clients, flood control,
slow readers. Only the transport changes; every assertion is the TCP door's.
Not here: ``test_robustness.BadInputTests``, which feeds TCP framing (CR
inside lines, partial lines); over WebSocket those are refused instead
(``tests/web/test_websocket.py``).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport
from wsproto.connection import ConnectionState

from pingchat.irc import wire
from pingchat.web.door import make_site
from tests.irc import (
    test_bridge,
    test_commands,
    test_conformance,
    test_ircv3,
    test_registration,
    test_robustness,
)
from tests.irc.helpers import IRCTestClient
from tests.web.helpers import HTTPConnection, WSPeer


class WebIRCTestClient(IRCTestClient):
    """``tests.irc.helpers.IRCTestClient`` over ``/irc``: its lines are WebSocket messages."""

    def __init__(self, test: Any, address: str = "127.0.0.1", port: int = 40000) -> None:
        factory = test.factory
        if not hasattr(test, "_web_site"):
            # A browser answers WebSocket pings by itself, at once; this client
            # answers nothing, so the WebSocket keepalive is kept out of the
            # way of the IRC keepalive these tests are about.
            test._web_site = make_site(test.server.native, factory, test.clock, ping_interval=10**6)
        before = set(factory.connections)
        self.http = HTTPConnection(test._web_site, peer=address, port=port)
        self.peer = WSPeer(self.http, "/irc", subprotocols=["text.ircv3.net"])
        assert self.peer.accepted is not None
        (self.protocol,) = set(factory.connections) - before
        self.received: list[wire.Message] = []

    @property
    def transport(self) -> StringTransport:
        return self.http.transport

    def send(self, *lines: str) -> None:
        for line in lines:
            if self.peer.ws.state is not ConnectionState.OPEN:
                return  # closed by the server: nothing more goes out (as on TCP)
            self.peer.send_text(line)

    def send_raw(self, data: bytes) -> None:
        for line in data.split(b"\r\n"):
            if line:
                self.peer.send_bytes(line)

    def raw(self) -> bytes:
        lines = []
        for message in self.peer.messages():
            assert isinstance(message, str), message
            assert "\r" not in message and "\n" not in message, message
            lines.append(message.encode("utf-8") + b"\r\n")
        return b"".join(lines)

    def disconnect(self) -> None:
        self.http.lose()


class OverWebSocket:
    """Mixed into a ``tests/irc`` test class: its clients use ``/irc``."""

    def irc(self, address: str = "127.0.0.1") -> WebIRCTestClient:
        return WebIRCTestClient(self, address)


class CapabilityTests(OverWebSocket, test_registration.CapabilityTests):
    pass


class WelcomeTests(OverWebSocket, test_registration.WelcomeTests):
    pass


class SASLTests(OverWebSocket, test_registration.SASLTests):
    pass


class PassTests(OverWebSocket, test_registration.PassTests):
    pass


class NoGuestsTests(OverWebSocket, test_registration.NoGuestsTests):
    pass


class GuestTests(OverWebSocket, test_registration.GuestTests):
    pass


class RoomCommandTests(OverWebSocket, test_commands.RoomCommandTests):
    pass


class UserCommandTests(OverWebSocket, test_commands.UserCommandTests):
    pass


class TagTests(OverWebSocket, test_ircv3.TagTests):
    pass


class BridgeTests(OverWebSocket, test_bridge.BridgeTests):
    pass


class SaslEdgeTests(OverWebSocket, test_conformance.SaslEdgeTests):
    pass


class ChannelConformanceTests(OverWebSocket, test_conformance.ChannelConformanceTests):
    pass


class TimeoutTests(OverWebSocket, test_registration.TimeoutTests):
    pass


class ChathistoryTests(OverWebSocket, test_ircv3.ChathistoryTests):
    pass


class GuestBridgeTests(OverWebSocket, test_bridge.GuestBridgeTests):
    pass


class GuestNickTests(OverWebSocket, test_conformance.GuestNickTests):
    pass


class GuestMessageTests(OverWebSocket, test_conformance.GuestMessageTests):
    pass


class RealNameTests(OverWebSocket, test_conformance.RealNameTests):
    pass


class FloodTests(OverWebSocket, test_robustness.FloodTests):
    pass


class SlowReaderTests(OverWebSocket, test_robustness.SlowReaderTests):
    pass


class PipeliningTests(OverWebSocket, test_robustness.PipeliningTests):
    pass


class SlowRateTests(OverWebSocket, test_robustness.SlowRateTests):
    pass
