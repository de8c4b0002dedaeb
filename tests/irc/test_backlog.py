"""``--max-backlog`` on the IRC door, plaintext and TLS, over real sockets.

A real server in-process (tests.live.LiveServer) also listens for IRC on
127.0.0.1:0. Carol joins a busy room from an IRC client whose socket has a
tiny receive buffer and never reads again; Alice talks on the native door
and Bob reads everything. Carol must be dropped once the output the server
holds for her passes the bound, and what it holds must never grow past the
bound by more than one write.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from pingchat.irc.protocol import IRCProtocol
from pingchat.tls import ensure_certificate, server_endpoint, server_options
from tests.helpers import Logged
from tests.live import PASSWORD, LiveServer, watch_output

TEXT = "x" * 4000  # split into 8 IRC lines: ~4.3 KB per message for Carol


class NonReadingIRCClient:
    """An IRC client with a tiny receive buffer that stops reading after it joins."""

    def __init__(
        self, port: int, tls: bool, name: str, room: str, preamble: bytes = b""
    ) -> None:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(10)
        raw.connect(("127.0.0.1", port))
        raw.sendall(preamble)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock: socket.socket = ctx.wrap_socket(raw, server_hostname="localhost")
        else:
            self.sock = raw
        self.sock.sendall(
            f"PASS {name}:{PASSWORD}\r\nNICK {name}\r\nUSER {name} 0 * :{name}\r\n"
            f"JOIN {room}\r\n".encode()
        )
        buffer = b""
        while f" 366 {name} {room} ".encode() not in buffer:  # end of NAMES: joined
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before joining: {buffer!r}")
            buffer += chunk

    def close(self) -> None:
        self.sock.close()


class IRCBacklogTests(LiveServer):
    """A plaintext IRC client that never reads is dropped at the bound."""

    tls = False

    def test_irc_client_that_never_reads_is_dropped_with_output_bounded(self) -> Any:
        key, cert = ensure_certificate(self.dir, "localhost")
        description = "ssl:0:interface=127.0.0.1" if self.tls else "tcp:0:interface=127.0.0.1"
        endpoint = server_endpoint(
            reactor, self.listener(description), server_options(key, cert), self.proxies
        )
        d = endpoint.listen(self.server.extras["irc"])
        return d.addCallback(self._scenario)

    def _scenario(self, irc_port: Any) -> Any:
        self.addCleanup(irc_port.stopListening)
        self.addCleanup(self._drain_irc)
        warnings = Logged(self, "not reading").events
        peak: list[list[int]] = []  # the largest measure, once Carol is connected

        def watch_carol() -> IRCProtocol | None:
            for s in self.server.chat.all_sessions():
                if s.name == "carol":
                    assert isinstance(s.mind, IRCProtocol)
                    peak.append(watch_output(s.mind))
                    return s.mind
            return None

        def carol_online() -> bool:
            return self.server.chat.is_online("carol")  # type: ignore[no-any-return]

        def scenario() -> dict[str, Any]:
            alice = self.account(self.connect(), "alice", "#flood")
            bob = self.account(self.connect(), "bob", "#flood")
            self.account(self.connect(), "carol").close()
            port = irc_port.getHost().port
            carol = NonReadingIRCClient(port, self.tls, "carol", "#flood", self.preamble(port))
            carol_proto = self.on_reactor(watch_carol)
            assert carol_proto is not None
            sent = 0
            try:
                # Carol never reads again. Alice talks, Bob reads everything.
                while sent < 2000 and self.on_reactor(carol_online):
                    reply = alice.request("say", room="#flood", text=f"{sent} {TEXT}")
                    assert reply["ok"], reply
                    event = bob.event("message", room="#flood")
                    assert event["text"].startswith(f"{sent} "), event["text"][:20]
                    sent += 1
                assert alice.request("say", room="#flood", text="still here")["ok"]
                last = bob.event("message", text="still here")
                return {"sent": sent, "last": last, "carol": carol_proto}
            finally:
                for c in (alice, bob, carol):
                    c.close()

        def check(result: dict[str, Any]) -> None:
            # Dropped well before the 2,000 messages (8.6 MB) Alice sent.
            self.assertLess(result["sent"], 2000)
            self.assertEqual(result["last"]["from"], "alice")
            self.assertTrue(result["carol"].closed)
            # Measured through every layer (pending_output_bytes), not counted.
            self.assertFalse(result["carol"]._counted)
            # What the server held for her stayed within the bound plus one
            # message (4.3 KB of IRC lines, a little more with TLS records).
            self.assertGreater(peak[0][0], self.max_backlog)
            self.assertLessEqual(peak[0][0], self.max_backlog + 4400 + 512)
            self.assertEqual(len(warnings), 1)
            self.assertEqual(warnings[0]["user"], "carol")
            self.assertEqual(warnings[0]["address"], self.client_address)
            self.assertEqual(warnings[0]["bound"], self.max_backlog)
            # Counted for the metrics, against her door.
            self.assertEqual(dict(self.server.extras["irc"].backlog_drops), {"irc": 1})

        return deferToThread(scenario).addCallback(check)

    def _drain_irc(self) -> Any:
        connections = self.server.extras["irc"].connections
        for conn in list(connections):
            conn.transport.loseConnection()
        return self.until(lambda: not connections)


class IRCTLSBacklogTests(IRCBacklogTests):
    """The same over TLS."""

    tls = True


class IRCSmallBacklogTests(IRCBacklogTests):
    """A smaller ``--max-backlog`` holds too (above the transport's own 64 KiB)."""

    max_backlog = 128 * 1024


class IRCProxiedBacklogTests(IRCBacklogTests):
    """Behind a PROXY listener (``haproxy:tcp:``)."""

    proxied = True


class IRCTLSProxiedBacklogTests(IRCBacklogTests):
    """Behind a PROXY listener with TLS (``haproxy:ssl:``)."""

    tls = True
    proxied = True
