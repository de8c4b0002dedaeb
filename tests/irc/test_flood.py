"""Flood control over real loopback sockets: a paste is delivered, a flood is dropped."""

from __future__ import annotations

import socket
import time
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread

from pingchat.irc.protocol import IRCProtocol
from tests.irc.helpers import PASSWORD
from tests.irc.test_integration import LoopbackTestCase

RATE = 200.0  # lines a second after the burst: fast, so that the test is short


def flood(port: int, size: int) -> bytes:
    """Log in, send *size* bytes of short lines without reading, then read to the end."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(f"PASS alice:{PASSWORD}\r\nNICK alice\r\nUSER a 0 * :a\r\n".encode())
        line = b"PRIVMSG #x :spam\r\n"
        chunk = line * (65536 // len(line))
        sent = 0
        try:
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # dropped while sending: what it was sent is still readable
        received = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        except OSError:
            pass
        return received
    finally:
        sock.close()


class PasteTests(LoopbackTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.factory.rate = RATE

    def test_a_400_line_paste_reaches_another_member_in_order_at_the_rate(self) -> Any:
        return self.paste(over_tls=False)

    def test_a_400_line_paste_over_tls_reaches_another_member_in_order(self) -> Any:
        return self.paste(over_tls=True)

    @defer.inlineCallbacks
    def paste(self, over_tls: bool) -> Any:
        plain_port = yield self.listen("tcp:0:interface=127.0.0.1")
        tls_port = yield self.listen("ssl:0:interface=127.0.0.1")
        alice = yield self.connect(tls_port if over_tls else plain_port, tls=over_tls)
        bob = yield self.connect(plain_port if over_tls else tls_port, tls=not over_tls)
        yield self.login(alice, "alice")
        yield self.login(bob, "bob")
        for c in (alice, bob):
            c.send("JOIN #paste")
            yield c.wait_for(lambda m: m.command == "366")
        started = time.monotonic()
        # Lines long enough that reading pauses (32 KiB) halfway through.
        text = "of the paste " + "x" * 150
        paste = b"".join(f"PRIVMSG #paste :line {i} {text}\r\n".encode() for i in range(400))
        alice.transport.write(paste)  # one write, as a client pasting does
        yield bob.wait_for(lambda m: m.command == "PRIVMSG" and m.params[1].startswith("line 399 "))
        elapsed = time.monotonic() - started
        said = [m.params[1] for m in bob.lines if m.command == "PRIVMSG"]
        self.assertEqual(said, [f"line {i} {text}" for i in range(400)])
        # The burst at once, then the rate: (400 - 60) / 200 lines a second.
        self.assertGreaterEqual(elapsed, (400 - self.factory.burst) / RATE * 0.9)
        self.assertNotIn("ERROR", [m.command for m in alice.lines])

    @defer.inlineCallbacks
    def test_a_client_flooding_megabytes_without_reading_is_dropped_with_memory_bounded(
        self,
    ) -> Any:
        port = yield self.listen("tcp:0:interface=127.0.0.1")
        peak = [0, 0]  # lines, bytes waiting after a read, before they are weighed
        original = IRCProtocol._check_inbox

        def measured(proto: IRCProtocol) -> None:
            waiting = list(proto._inbox)
            peak[0] = max(peak[0], len(waiting))
            peak[1] = max(peak[1], sum(len(x) for x in waiting if isinstance(x, bytes)))
            original(proto)

        self.patch(IRCProtocol, "_check_inbox", measured)
        received = yield deferToThread(flood, port, 8 * 1024 * 1024)
        self.assertIn(b"ERROR :Closing Link: 127.0.0.1 (Excess Flood)\r\n", received)
        yield self.until_closed()
        self.assertFalse(self.server.chat.is_online("alice"))
        # Bounded: what waited never passed the bound by more than one read.
        self.assertGreater(peak[0], self.factory.max_queue)
        self.assertLessEqual(peak[0], self.factory.max_queue + 65536 // 18)
        self.assertLessEqual(peak[1], self.factory.max_queue_bytes + 65536)

    def until_closed(self) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()

        def check(left: int) -> None:
            if not self.factory.connections or left == 0:
                d.callback(None)
            else:
                reactor.callLater(0.01, check, left - 1)

        check(500)
        return d
