"""PROXY listeners (``haproxy:``), in memory: the endpoint string, the order of the
layers, the trusted-proxy check, the door started after the header, the timeout."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.haproxy._wrapper import HAProxyWrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from pingchat.auth.throttle import canonical_address
from pingchat.proxy import (
    HEADER_TIMEOUT,
    NAMED_REFUSALS,
    REFUSAL_WINDOW,
    AfterHeader,
    TrustedPeersOnly,
    behind_proxy,
)
from pingchat.tls import CompactTLSFactory, TLSServerEndpoint, is_tls, server_endpoint
from pingchat.web.policy import TrustedProxies
from tests.client import proxy_v1, proxy_v2, proxy_v2_local
from tests.helpers import Logged

BALANCER = "10.0.0.10"
PROXIES = TrustedProxies.parse([BALANCER])


class Door(Protocol):
    """Records what a door sees: its peer when it starts, and its bytes."""

    def __init__(self) -> None:
        self.received = b""
        self.peer_at_start: Any = None
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.peer_at_start = self.transport.getPeer()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.lost = reason


class DoorFactory(Factory):
    def __init__(self) -> None:
        self.doors: list[Door] = []
        self.addresses: list[Any] = []

    def buildProtocol(self, addr: Any) -> Door:
        self.addresses.append(addr)
        door = Door()
        door.factory = self
        self.doors.append(door)
        return door


class EndpointStringTests(SynchronousTestCase):
    def test_the_prefix_is_read_in_any_case_and_only_in_front(self) -> None:
        self.assertEqual(behind_proxy("haproxy:ssl:7464"), (True, "ssl:7464"))
        self.assertEqual(behind_proxy("HAProxy:tcp:6667"), (True, "tcp:6667"))
        self.assertEqual(behind_proxy("ssl:7464"), (False, "ssl:7464"))
        plain = "tcp:6667:interface=haproxy"
        self.assertEqual(behind_proxy(plain), (False, plain))

    def test_tls_listeners_are_told_behind_the_prefix(self) -> None:
        self.assertTrue(is_tls("ssl:7464"))
        self.assertTrue(is_tls("haproxy:ssl:7464"))
        self.assertFalse(is_tls("haproxy:tcp:7464"))
        self.assertFalse(is_tls("tcp:7464"))


class LayerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-proxy-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def listen(self, description: str, options: Any = None) -> tuple[Any, DoorFactory]:
        door = DoorFactory()
        endpoint = server_endpoint(self.reactor, description, options, PROXIES)
        self.successResultOf(endpoint.listen(door))
        port, factory, _, interface = self.reactor.tcpServers[-1]
        return (port, interface, factory), door

    def chain(self, factory: Any) -> list[type]:
        kinds = []
        while factory is not None:
            kinds.append(type(factory))
            factory = getattr(factory, "wrappedFactory", None)
        return kinds

    def test_haproxy_ssl_reads_the_header_on_tcp_then_does_tls(self) -> None:
        from pingchat.tls import ensure_certificate, server_options

        options = server_options(*ensure_certificate(self.dir, "localhost"))
        for description in ("haproxy:ssl:7464", "HAPROXY:ssl:7464"):
            endpoint = server_endpoint(self.reactor, description, options, PROXIES)
            # TLS outermost as an endpoint: at listen time it wraps the door's factory
            # first, and the PROXY layers wrap that, next to the socket.
            self.assertIsInstance(endpoint, TLSServerEndpoint)
            (port, _, factory), _ = self.listen(description, options)
            self.assertEqual(port, 7464)
            self.assertEqual(
                self.chain(factory),
                [TrustedPeersOnly, HAProxyWrappingFactory, AfterHeader, CompactTLSFactory,
                 DoorFactory],
            )  # fmt: skip

    def test_haproxy_tcp_keeps_the_endpoints_arguments(self) -> None:
        (port, interface, factory), _ = self.listen("haproxy:tcp:6667:interface=10.0.0.11")
        self.assertEqual((port, interface), (6667, "10.0.0.11"))
        self.assertEqual(
            self.chain(factory),
            [TrustedPeersOnly, HAProxyWrappingFactory, AfterHeader, DoorFactory],
        )

    def test_refused_endpoint_strings(self) -> None:
        for description, why in (
            ("haproxy:unix:/tmp/x.sock", "before tcp:, tcp6: or ssl:"),
            ("haproxy:haproxy:tcp:6667", "before tcp:, tcp6: or ssl:"),
        ):
            e = self.assertRaises(
                ValueError, server_endpoint, self.reactor, description, None, PROXIES
            )
            self.assertIn(why, str(e))
        for proxies in (None, TrustedProxies()):
            e = self.assertRaises(
                ValueError, server_endpoint, self.reactor, "haproxy:tcp:6667", None, proxies
            )
            self.assertIn("--trusted-proxy", str(e))

    def test_plain_strings_are_unchanged(self) -> None:
        (_, _, factory), door = self.listen("tcp:6667")
        self.assertIs(factory, door)


class ConnectionTests(SynchronousTestCase):
    """A PROXY listener's connections, driven by hand."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.door = DoorFactory()
        endpoint = server_endpoint(self.reactor, "haproxy:tcp:6667", None, PROXIES)
        self.successResultOf(endpoint.listen(self.door))
        self.factory = self.reactor.tcpServers[-1][1]

    def connect(self, peer: str = BALANCER) -> tuple[Any, StringTransport]:
        address = IPv4Address("TCP", peer, 40000)
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(IPv4Address("TCP", "10.0.0.11", 6667), address)
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport

    def test_v1_header_gives_the_door_the_claimed_address_from_its_start(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(proxy_v1("203.0.113.7", 5000, "10.0.0.11", 6667))
        self.assertEqual(self.door.doors, [])  # the door waits for the client's first byte
        protocol.dataReceived(b"NICK alice\r\n")
        [door] = self.door.doors
        self.assertEqual(door.peer_at_start, IPv4Address("TCP", "203.0.113.7", 5000))
        self.assertEqual(self.door.addresses, [IPv4Address("TCP", "203.0.113.7", 5000)])
        self.assertEqual(door.received, b"NICK alice\r\n")
        assert door.transport is not None
        self.assertEqual(door.transport.getHost(), IPv4Address("TCP", "10.0.0.11", 6667))
        door.transport.write(b"hello\r\n")
        self.assertEqual(transport.value(), b"hello\r\n")
        protocol.dataReceived(b"USER a 0 * :a\r\n")
        self.assertEqual(door.received, b"NICK alice\r\nUSER a 0 * :a\r\n")
        protocol.connectionLost(Failure(ConnectionError("gone")))
        assert door.lost is not None
        self.assertEqual(str(door.lost.value), "gone")

    def test_v2_header_and_data_in_one_packet(self) -> None:
        protocol, _ = self.connect()
        protocol.dataReceived(proxy_v2("2001:db8::7", 5000, "2001:db8::1", 6667) + b"NICK a\r\n")
        [door] = self.door.doors
        # Twisted writes all eight groups; the doors record the usual form.
        self.assertEqual(door.peer_at_start, IPv6Address("TCP", "2001:db8:0:0:0:0:0:7", 5000))
        self.assertEqual(canonical_address(door.peer_at_start.host), "2001:db8::7")
        self.assertEqual(door.received, b"NICK a\r\n")

    def test_a_local_header_leaves_the_balancers_address(self) -> None:
        protocol, _ = self.connect()
        protocol.dataReceived(proxy_v2_local() + b"x")
        [door] = self.door.doors
        self.assertEqual(door.peer_at_start.host, BALANCER)

    def test_a_connection_without_a_header_is_closed_unread(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"NICK alice\r\nUSER a 0 * :a\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.door.doors, [])

    def test_a_header_that_names_no_ip_address_is_closed_unread(self) -> None:
        logged = Logged(self, "refused a connection").events
        protocol, transport = self.connect()
        # Twisted's version 1 parser does not check the addresses.
        protocol.dataReceived(b"PROXY TCP4 not-an-address 10.0.0.11 5000 6667\r\nNICK a\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.door.doors, [])
        self.assertEqual(logged[0]["address"], BALANCER)
        self.assertIn("names no IP address", logged[0]["why"])

    def test_a_malformed_header_is_closed_unread(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(b"PROXY TCP9 1.2.3.4 10.0.0.11 5000 6667\r\nNICK a\r\n")
        self.assertTrue(transport.disconnecting)
        protocol, transport = self.connect()
        protocol.dataReceived(proxy_v2("192.0.2.1", 1, "10.0.0.11", 6667)[:12] + b"\x99" * 8)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.door.doors, [])

    def test_a_silent_connection_is_aborted_after_the_timeout(self) -> None:
        protocol, transport = self.connect()
        self.reactor.advance(HEADER_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionError()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_a_header_without_data_is_aborted_after_the_timeout(self) -> None:
        protocol, transport = self.connect()
        protocol.dataReceived(proxy_v1("203.0.113.7", 5000, "10.0.0.11", 6667))
        self.reactor.advance(HEADER_TIMEOUT)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.door.doors, [])

    def test_the_timeout_ends_with_the_first_data_or_the_connection(self) -> None:
        protocol, _ = self.connect()
        protocol.dataReceived(proxy_v1("203.0.113.7", 5000, "10.0.0.11", 6667) + b"x")
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        protocol, _ = self.connect()
        protocol.connectionLost(Failure(ConnectionError()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_an_untrusted_peer_is_refused_before_anything_is_read(self) -> None:
        logged = Logged(self, "refused a connection").events
        protocol, _ = self.connect("203.0.113.66")
        self.assertIsNone(protocol)  # the port closes the socket
        self.assertEqual(self.door.addresses, [])
        self.assertEqual(len(logged), 1)
        self.assertEqual(logged[0]["address"], "203.0.113.66")
        self.assertEqual(logged[0]["listener"], "haproxy:tcp:6667")

    def test_refusals_are_logged_once_per_address_and_window(self) -> None:
        logged = Logged(self, "refused a connection").events
        for _ in range(5):
            self.assertIsNone(self.connect("203.0.113.66")[0])
        self.assertEqual(len(logged), 1)
        # Many addresses: only so many are named per window, the rest counted.
        for i in range(NAMED_REFUSALS + 10):
            self.connect(f"198.51.100.{i}")
        self.assertEqual(len(logged), NAMED_REFUSALS)
        self.reactor.advance(REFUSAL_WINDOW)
        self.connect("203.0.113.66")
        self.assertEqual(len(logged), NAMED_REFUSALS + 1)
        self.assertEqual(logged[-1]["more"], "; 11 other refused connection(s) not logged")
