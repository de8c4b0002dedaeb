"""PROXY listeners over real loopback sockets: a stdlib client sends the header a
balancer would (version 1 or 2), then TLS, and logs in on the native door or
registers on the IRC door; the server sees the address the header claims.
(The slow reader behind a PROXY listener: tests/native/test_backlog.py and
tests/irc/test_backlog.py, their Proxied classes.)"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread

from pingchat.tls import ensure_certificate, server_endpoint, server_options
from pingchat.web.policy import TrustedProxies
from tests.client import LineClient, proxy_v1, proxy_v2
from tests.helpers import Logged
from tests.live import PASSWORD, LiveServer


def irc_session(port: int, preamble: bytes, tls: bool, nick: str) -> bytes:
    """Register on the IRC door as *nick* (a guest), quit; everything the server said."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(preamble)
    sock: socket.socket = raw
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
    with sock:
        sock.sendall(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
        said = b""
        while f" 001 {nick} ".encode() not in said:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before registration: {said!r}")
            said += chunk
        sock.sendall(b"QUIT :bye\r\n")
        while chunk := sock.recv(65536):
            said += chunk
    return said


def closed_at_once(port: int, preamble: bytes) -> bytes:
    """Connect, send *preamble* and a TLS handshake; how the server closed the connection."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with raw:
        with contextlib.suppress(OSError):
            raw.sendall(preamble)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            # (A socket the server has reset already is wrapped without a handshake.)
            first = ctx.wrap_socket(raw, server_hostname="localhost").recv(1)
        except (ssl.SSLError, OSError) as e:
            return repr(e).encode()
    if first:
        raise AssertionError(f"the server answered: {first!r}")
    return b"closed"


class ProxiedDoorTests(LiveServer):
    proxied = True
    claimed = "203.0.113.7"

    def irc_listener(self, tls: bool) -> Any:
        key, cert = ensure_certificate(self.dir, "localhost")
        scheme = "ssl" if tls else "tcp"
        endpoint = server_endpoint(
            reactor,
            f"haproxy:{scheme}:0:interface=127.0.0.1",
            server_options(key, cert),
            self.proxies,
        )
        d = endpoint.listen(self.server.extras["irc"])

        def listening(port: Any) -> Any:
            self.addCleanup(port.stopListening)
            self.addCleanup(self._drain_irc)
            return port

        return d.addCallback(listening)

    def _drain_irc(self) -> Any:
        connections = self.server.extras["irc"].connections
        for conn in list(connections):
            conn.transport.loseConnection()
        return self.until(lambda: not connections)

    def native_addresses(self) -> list[str | None]:
        return sorted(str(c.address) for c in self.server.native.connections)

    def test_native_login_is_throttled_by_the_address_the_v1_header_claims(self) -> Any:
        throttle = self.server.accounts.login_throttle
        port = self.port.getHost().port

        def scenario() -> dict[str, Any]:
            first = self.account(self.connect(), "alice")
            addresses = self.on_reactor(self.native_addresses)
            first.close()
            guesser = self.connect()
            replies = [
                guesser.request("login", user="alice", password="wrong guess")
                for _ in range(throttle.free + 1)
            ]
            guesser.close()
            # Another client of the same balancer, with another address: not throttled.
            other = LineClient(
                "127.0.0.1", port, preamble=proxy_v1("198.51.100.8", 41000, "127.0.0.1", port)
            )
            try:
                other_reply = other.request("login", user="alice", password=PASSWORD)
            finally:
                other.close()
            return {"addresses": addresses, "replies": replies, "other": other_reply}

        def check(result: dict[str, Any]) -> None:
            self.assertEqual(result["addresses"], [self.claimed])
            self.assertFalse(result["replies"][-1]["ok"])
            self.assertGreater(throttle.check("alice", self.claimed), 0)
            self.assertEqual(throttle.check("alice", "127.0.0.1"), 0)  # not the balancer's
            self.assertTrue(result["other"]["ok"], result["other"])

        return deferToThread(scenario).addCallback(check)

    def test_native_login_over_a_v2_header_with_an_ipv6_client(self) -> Any:
        port = self.port.getHost().port
        preamble = proxy_v2("2001:db8::7", 41000, "2001:db8::1", port)

        def scenario() -> list[str | None]:
            client = LineClient("127.0.0.1", port, preamble=preamble)
            try:
                self.account(client, "bob")
                return self.on_reactor(self.native_addresses)  # type: ignore[no-any-return]
            finally:
                client.close()

        def check(addresses: list[str | None]) -> None:
            self.assertEqual(addresses, ["2001:db8::7"])  # the usual form, not Twisted's

        return deferToThread(scenario).addCallback(check)

    @inlineCallbacks
    def test_irc_registration_behind_proxy_plaintext_v1_and_tls_v2(self) -> Any:
        for tls, header in ((False, proxy_v1), (True, proxy_v2)):
            port = (yield self.irc_listener(tls)).getHost().port
            nick = f"carol{int(tls)}"
            said = yield deferToThread(
                irc_session, port, header("192.0.2.44", 41000, "127.0.0.1", port), tls, nick
            )
            self.assertIn(b"ERROR :Closing Link: 192.0.2.44 ", said)

    @inlineCallbacks
    def test_a_peer_that_is_not_a_trusted_proxy_is_refused_and_logged_once(self) -> Any:
        logged = Logged(self, "refused a connection").events
        key, cert = ensure_certificate(self.dir, "localhost")
        endpoint = server_endpoint(
            reactor,
            "haproxy:ssl:0:interface=127.0.0.1",
            server_options(key, cert),
            TrustedProxies.parse(["192.0.2.1"]),  # the balancer; this test is not it
        )
        port = yield endpoint.listen(self.server.native)
        self.addCleanup(port.stopListening)
        header = proxy_v1("198.51.100.9", 41000, "127.0.0.1", port.getHost().port)
        for _ in range(3):
            yield deferToThread(closed_at_once, port.getHost().port, header)
        self.assertEqual(self.server.native.connections, set())
        self.assertEqual([e["address"] for e in logged], ["127.0.0.1"])

    @inlineCallbacks
    def test_a_connection_from_the_balancer_without_a_header_is_closed(self) -> Any:
        said = yield deferToThread(closed_at_once, self.port.getHost().port, b"")
        self.assertTrue(said)
        yield self.until(lambda: not self.server.native.connections)
        self.assertEqual(self.server.native.connections, set())
        # And with a header, the same listener serves.
        client = yield deferToThread(self.connect)
        self.assertEqual(client.hello["event"], "hello")
        client.close()
