"""The web door's hand-over of an HTTP connection, on Twisted's path and on the fallbacks.

The door takes over the connection of its upgrade request through
``pingchat.twisted_internals`` (``websocket_upgrade``,
``register_websocket_producer``), which rests on three assumptions about
Twisted's HTTP server (``tests/test_twisted_internals.py`` checks each
holds). Here each is broken as a changed Twisted would break it, and the
hand-over still works, with one warning.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from pingchat import twisted_internals
from pingchat.twisted_internals import (
    SHORTCUTS,
    Fence,
    fence,
    register_websocket_producer,
    websocket_upgrade,
)
from tests.helpers import PASSWORD
from tests.test_twisted_internals import FenceTestCase, I, timed_all_content_received
from tests.web.helpers import NativePeer, WebTestCase


class TakenOver:
    """A protocol that records what an upgraded HTTP connection gives it."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.data: list[bytes] = []
        self.lost: list[Failure] = []

    def makeConnection(self, transport: Any) -> None:  # noqa: N802
        self.transport = transport

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data.append(data)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        self.lost.append(reason)


@implementer(IPushProducer)
class Producer:
    state = "producing"

    def pauseProducing(self) -> None:  # noqa: N802
        self.state = "paused"

    def resumeProducing(self) -> None:  # noqa: N802
        self.state = "producing"

    def stopProducing(self) -> None:  # noqa: N802
        self.state = "stopped"


class Upgrading(Resource):
    """Hands every GET's connection over with ``websocket_upgrade``, as the web door does."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.protocol = TakenOver()
        self.request: Request | None = None

    def render_GET(self, request: Request) -> Any:  # noqa: N802
        self.request = request
        websocket_upgrade(request.channel, self.protocol)  # type: ignore[arg-type]
        return NOT_DONE_YET


class WebSocketUpgradeTests(FenceTestCase):
    """The web door's hand-over of an HTTP connection, on Twisted's path and on the fallbacks."""

    def upgraded(self) -> tuple[Upgrading, StringTransport, Clock]:
        clock = Clock()
        resource = Upgrading()
        site = Site(resource, timeout=60, reactor=clock)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
        channel = site.buildProtocol(transport.getPeer())
        assert channel is not None
        channel.makeConnection(transport)
        channel.dataReceived(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        self.channel = channel
        return resource, transport, clock

    def check_the_connection_is_handed_over(self) -> None:
        resource, transport, _ = self.upgraded()
        taken = resource.protocol
        self.assertIs(taken.transport, transport)
        self.channel.dataReceived(b"\x81\x00frames")
        self.assertEqual(taken.data, [b"\x81\x00frames"])
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(taken.lost), 1)

    def test_the_connection_is_handed_over(self) -> None:
        self.check_the_connection_is_handed_over()
        self.assertEqual(self.events, [])

    def test_without_the_private_method_it_is_handed_over_by_hand(self) -> None:
        self.patch(HTTPChannel, "_protocolUpgradeForWebsockets", None)
        self.check_the_connection_is_handed_over()
        [warning] = self.warnings(I.HTTP_UPGRADE)
        self.assertIn("WebSocket hand-over", warning["shortcuts"])

    def check_no_idle_timeout_after_the_upgrade(self) -> None:
        _, transport, clock = self.upgraded()
        clock.advance(3600)
        self.assertFalse(transport.disconnecting)

    def test_no_idle_timeout_after_the_upgrade(self) -> None:
        self.check_no_idle_timeout_after_the_upgrade()
        self.assertEqual(self.events, [])

    def test_no_idle_timeout_when_a_request_no_longer_turns_it_off(self) -> None:
        self.patch(HTTPChannel, "allContentReceived", timed_all_content_received)
        self.check_no_idle_timeout_after_the_upgrade()
        self.assertEqual(len(self.warnings(I.HTTP_TIMEOUT_OFF)), 1)

    def check_the_producer_is_paused_and_resumed(self) -> None:
        resource, transport, _ = self.upgraded()
        assert resource.request is not None
        producer = Producer()
        consumer = register_websocket_producer(resource.request, producer, True)
        transport.producer.pauseProducing()
        self.assertEqual(producer.state, "paused")
        transport.producer.resumeProducing()
        self.assertEqual(producer.state, "producing")
        consumer.unregisterProducer()
        if transport.producer is not None:  # the channel, still there on Twisted's path
            transport.producer.pauseProducing()
        self.assertEqual(producer.state, "producing")

    def test_the_channel_pauses_and_resumes_the_door_producer(self) -> None:
        self.check_the_producer_is_paused_and_resumed()
        self.assertEqual(self.events, [])

    def test_the_transport_pauses_it_when_the_channel_no_longer_forwards(self) -> None:
        self.patch(HTTPChannel, "pauseProducing", lambda self: None)
        self.check_the_producer_is_paused_and_resumed()
        self.assertEqual(len(self.warnings(I.HTTP_REQUEST_PRODUCER)), 1)


class ChangedTwistedTests(WebTestCase):
    """On a Twisted whose HTTP internals changed (every assumption of the web door broken),
    the door works on its fallbacks (pingchat.twisted_internals), with one warning each."""

    settings = {"max_backlog": 4096}
    endpoint_options = {"ping_interval": 86400.0}

    def setUp(self) -> None:
        super().setUp()
        self.patch(twisted_internals, "FENCE", Fence(SHORTCUTS))
        self.warnings: list[dict[str, Any]] = []
        self.patch(fence, "log", Logger(observer=self.warnings.append))
        self.patch(HTTPChannel, "_protocolUpgradeForWebsockets", None)
        self.patch(HTTPChannel, "allContentReceived", timed_all_content_received)
        self.patch(HTTPChannel, "pauseProducing", lambda self: None)

    def test_a_session_works_outlives_the_http_timeout_and_a_stuck_reader_is_dropped(
        self,
    ) -> None:
        alice = NativePeer(self.connect())
        self.assertTrue(alice.request("register", user="alice", password=PASSWORD)["ok"])
        self.assertTrue(alice.request("login", user="alice", password=PASSWORD)["ok"])
        self.assertTrue(alice.request("join", room="#busy")["ok"])
        self.clock.advance(3600)
        self.assertFalse(alice.transport.disconnecting)
        bob = self.account("bob")
        bob.request("join", room="#busy")
        bob.request("say", room="#busy", text="hello")
        self.assertIn("hello", json.dumps(alice.read()))
        alice.transport.producer.pauseProducing()  # the socket's buffer is full
        for i in range(100):
            bob.request("say", room="#busy", text=f"message {i} " + "x" * 100)
            if alice.transport.disconnected:
                break
        self.assertTrue(alice.transport.disconnected)
        self.assertEqual(
            sorted(w["assumption"] for w in self.warnings),
            ["http-channel-upgrade", "http-request-producer", "http-timeout-off-during-request"],
        )
