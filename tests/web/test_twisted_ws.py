"""Each assumption ``pingchat.web._twisted_ws`` makes about Twisted, tested and named.

When Twisted changes, the failing test says which assumption broke (see the
module's docstring for what each one is and what relies on it).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from pingchat.web import _twisted_ws


class Recorder:
    """A protocol that records what the upgraded connection gives it."""

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
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.protocol = Recorder()
        self.request: Request | None = None

    def render_GET(self, request: Request) -> Any:  # noqa: N802
        self.request = request
        _twisted_ws.upgrade(request.channel, self.protocol)
        return NOT_DONE_YET


class AssumptionTests(SynchronousTestCase):
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

    def check_upgrade_hands_over_the_connection(self) -> None:
        resource, transport, _ = self.upgraded()
        proto = resource.protocol
        msg = "ASSUMPTION 1: the upgraded connection is handed to the protocol"
        self.assertIs(proto.transport, transport, msg)
        self.channel.dataReceived(b"\x81\x00frames")
        self.assertEqual(proto.data, [b"\x81\x00frames"], msg)
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(proto.lost), 1, msg)

    def test_assumption_1_the_private_upgrade_method(self) -> None:
        _twisted_ws.check_upgrade_method()
        self.check_upgrade_hands_over_the_connection()

    def test_assumption_1_fallback_does_the_same_by_hand(self) -> None:
        self.patch(HTTPChannel, _twisted_ws.UPGRADE_METHOD, None)
        self.check_upgrade_hands_over_the_connection()

    def test_assumption_1_check_names_a_missing_method(self) -> None:
        self.patch(HTTPChannel, _twisted_ws.UPGRADE_METHOD, None)
        with self.assertRaisesRegex(_twisted_ws.AssumptionFailed, "ASSUMPTION 1"):
            _twisted_ws.check_upgrade_method()

    def test_assumption_2_no_idle_timeout_after_the_upgrade(self) -> None:
        _twisted_ws.check_timeout_during_request()
        _, transport, clock = self.upgraded()
        clock.advance(3600)
        self.assertFalse(
            transport.disconnecting,
            "ASSUMPTION 2: the Site's idle timeout cut an upgraded connection",
        )

    def test_assumption_3_the_channel_pauses_and_resumes_a_requests_producer(self) -> None:
        _twisted_ws.check_producer_forwarding()
        resource, transport, _ = self.upgraded()
        assert resource.request is not None
        producer = Producer()
        resource.request.registerProducer(producer, True)
        msg = "ASSUMPTION 3: the channel forwards the transport's pause/resume"
        transport.producer.pauseProducing()
        self.assertEqual(producer.state, "paused", msg)
        transport.producer.resumeProducing()
        self.assertEqual(producer.state, "producing", msg)

    def test_all_checks_pass_on_this_twisted(self) -> None:
        _twisted_ws.check_all()
