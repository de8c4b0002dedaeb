"""The web door over real loopback sockets, HTTP and HTTPS, against a built server.

A real server (writer thread, bcrypt pool) listens with the web door on
plain TCP and on TLS with the data dir's certificate, with the native TLS
door and the plain IRC door beside it; blocking stdlib clients (a
WebSocket client of our own, ``tests/web/wsclient.py``) run in a thread.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread
from twisted.web.websocket import WebSocketClientEndpoint

from pingchat.tls import ensure_certificate, server_endpoint, server_options
from pingchat.twisted_internals import pending_output_bytes as unsent_bytes
from pingchat.web.door import make_site
from pingchat.web.policy import OriginPolicy
from tests.helpers import Logged
from tests.live import PASSWORD, LiveServer
from tests.web.wsclient import (
    IRCWS,
    Closed,
    HandshakeRefused,
    NativeWS,
    WSClient,
    http_request,
)


class TCPIRC:
    """A plain IRC client over TCP (stdlib)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def expect(self, *words: str) -> str:
        while True:
            while b"\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\r\n", 1)
            line = raw.decode()
            if line.startswith("PING "):
                self.send("PONG " + line[5:])
            if all(w in line for w in words):
                return line

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def sasl_login(client: Any, name: str) -> str:
    """CAP + SASL PLAIN + NICK/USER; the welcome line."""
    client.send("CAP LS 302")
    client.send("NICK " + name)
    client.send(f"USER {name} 0 * :{name}")
    client.expect("CAP", "LS")
    client.send("CAP REQ :sasl message-tags")
    client.expect("CAP", "ACK")
    client.send("AUTHENTICATE PLAIN")
    client.expect("AUTHENTICATE +")
    client.send("AUTHENTICATE " + base64.b64encode(f"\0{name}\0{PASSWORD}".encode()).decode())
    client.expect(" 903 ")
    client.send("CAP END")
    return client.expect(" 001 ")


class WebLive(LiveServer):
    """LiveServer plus the web door (HTTP and HTTPS) and the plain IRC door."""

    origins: tuple[str, ...] = ()

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        key, cert = ensure_certificate(self.dir, "localhost")
        self.cert = cert
        self.irc = self.server.extras["irc"]
        self.site = make_site(
            self.server.native, self.irc, reactor, origins=OriginPolicy.parse(self.origins)
        )
        tls = server_options(key, cert)
        listening = []
        for description, factory in (
            ("tcp:0:interface=127.0.0.1", self.site),
            ("ssl:0:interface=127.0.0.1", self.site),
            ("tcp:0:interface=127.0.0.1", self.irc),
        ):
            port = yield server_endpoint(reactor, description, tls).listen(factory)
            self.addCleanup(port.stopListening)
            listening.append(port.getHost().port)
        self.http_port, self.https_port, self.irc_port = listening
        self.addCleanup(self._drain_irc)

    def _drain_irc(self) -> Any:
        for conn in list(self.irc.connections):
            conn.transport.loseConnection()
        return self.until(lambda: not self.irc.connections)

    def ws(self, tls: bool = False, **kw: Any) -> NativeWS:
        port = self.https_port if tls else self.http_port
        return NativeWS("127.0.0.1", port, tls=tls, **kw)

    def ws_account(self, name: str, room: str | None = None, **kw: Any) -> NativeWS:
        c = self.ws(**kw)
        assert c.request("register", user=name, password=PASSWORD)["ok"]
        assert c.request("login", user=name, password=PASSWORD)["ok"]
        if room is not None:
            assert c.request("join", room=room)["ok"]
        return c


class NativeOverWebSocketLive(WebLive):
    def test_login_say_and_dm_between_a_browser_and_a_tls_client(self) -> Any:
        def scenario() -> None:
            alice = self.ws_account("alice", "#lobby", origin=f"http://localhost:{self.http_port}")
            carol = self.ws_account("carol", "#lobby", tls=True)
            bob = self.account(self.connect(), "bob", "#lobby")
            try:
                assert alice.request("say", room="#lobby", text="from the browser")["ok"]
                assert bob.event("message", room="#lobby")["text"] == "from the browser"
                assert carol.event("message", room="#lobby")["text"] == "from the browser"
                assert bob.request("say", room="#lobby", text="from the terminal")["ok"]
                assert alice.event("message", room="#lobby")["text"] == "from the terminal"
                assert bob.request("dm", to="alice", text="psst")["delivered"]
                assert alice.event("message", **{"from": "bob"})["text"] == "psst"
                assert alice.request("dm", to="bob", text="hi back")["ok"]
                assert bob.event("message", **{"from": "alice"})["text"] == "hi back"
                token = alice.request("login", user="alice", password=PASSWORD)
                assert token["error"]["code"] == "bad_request"  # already logged in
            finally:
                for c in (alice, bob, carol):
                    c.close()

        return deferToThread(scenario)

    def test_twisteds_own_websocket_client_gets_the_hello(self) -> Any:
        received: list[str] = []
        done: defer.Deferred[None] = defer.Deferred()

        class Client:
            def negotiationStarted(self, transport: Any) -> None:  # noqa: N802
                self.transport = transport

            def negotiationFinished(self) -> None:  # noqa: N802
                pass

            def textMessageReceived(self, message: str) -> None:  # noqa: N802
                received.append(message)
                if len(received) == 1:
                    self.transport.sendTextMessage('{"id": 1, "op": "ping"}')
                else:
                    self.transport.loseConnection()

            def bytesMessageReceived(self, data: bytes) -> None:  # noqa: N802
                pass

            def pongReceived(self, payload: bytes) -> None:  # noqa: N802
                pass

            def connectionLost(self, reason: Any) -> None:  # noqa: N802
                done.callback(None)

        class Factory:
            def buildProtocol(self, url: str) -> Client:  # noqa: N802
                return Client()

        endpoint = WebSocketClientEndpoint.new(reactor, f"http://127.0.0.1:{self.http_port}/ws")

        @defer.inlineCallbacks
        def run() -> Any:
            yield defer.ensureDeferred(endpoint.connect(Factory()))
            yield done.addTimeout(10, reactor)
            self.assertIn('"event":"hello"', received[0])
            self.assertIn('"pong":true', received[1])

        return run()

    def test_a_huge_message_is_closed_with_1009_without_being_buffered(self) -> Any:
        def scenario() -> Closed:
            c = self.ws()
            try:
                # A 64 MiB message announced in the frame header; 1 MiB is sent.
                head = bytes([0x81, 0xFF]) + (64 << 20).to_bytes(8, "big") + b"\0\0\0\0"
                c.sock.sendall(head)
                with contextlib.suppress(OSError):
                    for _ in range(16):
                        c.sock.sendall(b"x" * 65536)
                return c.wait_closed()
            finally:
                c.close()

        def check(closed: Closed) -> Any:
            self.assertEqual(closed.code, 1009)
            return self.until(lambda: not self.server.native.connections)

        return deferToThread(scenario).addCallback(check)

    def test_a_foreign_origin_is_refused(self) -> Any:
        def scenario() -> HandshakeRefused:
            try:
                WSClient("127.0.0.1", self.http_port, "/ws", origin="https://evil.example")
            except HandshakeRefused as e:
                return e
            raise AssertionError("accepted")

        def check(e: HandshakeRefused) -> None:
            self.assertEqual(e.status, 403)
            self.assertIn(b"evil.example", e.body)
            self.assertIn("default-src 'none'", e.headers["content-security-policy"])

        return deferToThread(scenario).addCallback(check)


class MeasuredLive(WebLive):
    def test_output_held_for_a_browser_is_measured_on_its_socket(self) -> Any:
        # BoundedOutput measures what the socket (and TLS) still hold, through
        # wire_transport; None would mean it falls back to counting writes.
        seen: list[int | None] = []

        def measure() -> None:
            for proto in self.server.native.connections:
                seen.append(unsent_bytes(proto.transport))

        def run() -> None:
            for tls in (False, True):
                c = self.ws(tls=tls)
                try:
                    assert c.request("ping")["ok"]
                    self.on_reactor(measure)
                finally:
                    c.close()

        return deferToThread(run).addCallback(lambda _: self.assertEqual(seen, [0, 0]))


class HTTPSLive(WebLive):
    def test_https_uses_the_data_dirs_certificate_and_sends_hsts(self) -> Any:
        def scenario() -> tuple[int, dict[str, str], bytes, dict[str, str]]:
            ctx = ssl.create_default_context(cafile=str(self.cert))
            raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=10)
            with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in head.decode().split("\r\n")[1:])
            }
            plain = http_request(
                "127.0.0.1",
                self.http_port,
                b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )[1]
            return int(head.split()[1]), headers, body, plain

        def check(result: tuple[int, dict[str, str], bytes, dict[str, str]]) -> None:
            status, headers, body, plain = result
            self.assertEqual(status, 200)
            self.assertEqual(headers["strict-transport-security"], "max-age=31536000")
            self.assertIn(b"<html", body.lower())
            self.assertNotIn("strict-transport-security", plain)

        return deferToThread(scenario).addCallback(check)


class IRCOverWebSocketLive(WebLive):
    def check_subprotocol(self, subprotocol: str) -> Any:
        def scenario() -> None:
            self.account(self.connect(), "bob", "#mixed")
            native = self.account(self.connect(), "carol", "#mixed")
            setup = self.connect()
            assert setup.request("register", user="alice", password=PASSWORD)["ok"]
            assert setup.request("register", user="dave", password=PASSWORD)["ok"]
            setup.close()
            web = IRCWS("127.0.0.1", self.http_port, subprotocols=[subprotocol])
            tcp = TCPIRC(self.irc_port)
            try:
                assert web.subprotocol == subprotocol
                assert " 001 alice " in sasl_login(web, "alice")
                sasl_login(tcp, "dave")
                web.send_line("JOIN #mixed")
                web.expect(" 366 ")
                tcp.send("JOIN #mixed")
                tcp.expect(" 366 ")
                web.send_line("PRIVMSG #mixed :hello from a web IRC client é")
                assert tcp.expect("PRIVMSG #mixed").endswith(":hello from a web IRC client é")
                message = native.event("message", room="#mixed")
                assert message["text"] == "hello from a web IRC client é", message
                assert message["from"] == "alice"
                tcp.send("PRIVMSG #mixed :hello from irssi")
                assert web.expect("PRIVMSG #mixed").endswith(":hello from irssi")
                assert native.request("say", room="#mixed", text="hello from the terminal")["ok"]
                line = web.expect("PRIVMSG #mixed", "terminal")
                assert line.startswith("@") and "msgid=" in line, line  # message-tags
                # The two IRC doors share one world: the nick is taken on both.
                web.send_line("NICK dave")
                web.expect(" 433 ")
            finally:
                web.close()
                tcp.close()
                native.close()

        return deferToThread(scenario)

    def test_text_subprotocol(self) -> Any:
        return self.check_subprotocol("text.ircv3.net")

    def test_binary_subprotocol(self) -> Any:
        return self.check_subprotocol("binary.ircv3.net")


class BacklogLive(WebLive):
    max_backlog = 64 * 1024

    def test_a_browser_that_never_reads_is_dropped_at_the_backlog(self) -> Any:
        warnings = Logged(self, "not reading").events
        text = "x" * 4000

        def carols() -> Any:
            for s in self.server.chat.sessions_of("carol"):
                return s.mind
            return None

        def scenario() -> dict[str, Any]:
            alice = self.account(self.connect(), "alice", "#flood")
            bob = self.ws_account("bob", "#flood")
            carol = self.ws_account("carol", "#flood", rcvbuf=4096)
            proto = self.on_reactor(carols)
            sent = 0
            try:
                while sent < 3000 and self.on_reactor(carols) is not None:
                    assert alice.request("say", room="#flood", text=f"{sent} {text}")["ok"]
                    assert bob.event("message", room="#flood")["text"].startswith(f"{sent} ")
                    sent += 1
                assert alice.request("say", room="#flood", text="still here")["ok"]
                bob.event("message", text="still here")
                return {"sent": sent, "carol": proto}
            finally:
                for c in (alice, bob, carol):
                    c.close()

        def check(result: dict[str, Any]) -> None:
            self.assertLess(result["sent"], 3000)
            proto = result["carol"]
            self.assertTrue(proto.closed)
            self.assertLessEqual(proto.backlog, self.max_backlog + len(text) + 300)
            self.assertEqual([w["user"] for w in warnings], ["carol"])

        return deferToThread(scenario).addCallback(check)
