"""UTF-8 only on IRC, over real sockets: what native and IRC users see is the same text."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from pingchat.tls import ensure_certificate, server_endpoint, server_options
from tests.live import PASSWORD, LiveServer

TEXT = "café ☕ 𝄞 — naïve Ωmega"  # 2-, 3- and 4-byte characters


class BlockingIRCClient:
    """A minimal IRC client on a plain socket, reading raw lines."""

    def __init__(self, port: int, name: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.send_raw(
            f"PASS {name}:{PASSWORD}\r\nNICK {name}\r\nUSER {name} 0 * :{name}\r\n".encode()
        )
        self.until(lambda line: b" 001 " in line)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def until(self, predicate: Any) -> bytes:
        while True:
            line = self.line()
            if predicate(line):
                return line

    def close(self) -> None:
        self.sock.close()


class UTF8OnlyTests(LiveServer):
    def test_latin1_is_refused_and_utf8_reaches_every_door_byte_identical(self) -> Any:
        key, cert = ensure_certificate(self.dir, "localhost")
        d = server_endpoint(reactor, "tcp:0:interface=127.0.0.1", server_options(key, cert))
        return d.listen(self.server.extras["irc"]).addCallback(self._scenario)

    def _scenario(self, irc_port: Any) -> Any:
        self.addCleanup(irc_port.stopListening)
        self.addCleanup(self._close_irc)
        port = irc_port.getHost().port

        def scenario() -> dict[str, Any]:
            bob = self.account(self.connect(), "bob", "#utf")
            for name in ("alice", "carol"):
                self.account(self.connect(), name).close()
            alice = BlockingIRCClient(port, "alice")
            carol = BlockingIRCClient(port, "carol")
            try:
                for c in (alice, carol):
                    c.send_raw(b"JOIN #utf\r\n")
                    c.until(lambda line: b" 366 " in line)
                alice.send_raw(b"PRIVMSG #utf :caf\xe9 in Latin-1\r\n")
                fail = alice.until(lambda line: b" FAIL " in line)
                body = TEXT.encode("utf-8")
                alice.send_raw(b"PRIVMSG #utf :" + body + b"\r\n")
                said = carol.until(lambda line: b" PRIVMSG #utf " in line)
                event = bob.event("message", room="#utf")
                return {"fail": fail, "said": said, "event": event, "body": body}
            finally:
                for c in (alice, carol, bob):
                    c.close()

        def check(result: dict[str, Any]) -> None:
            self.assertIn(b" FAIL PRIVMSG INVALID_UTF8 :", result["fail"])
            # Nothing of the Latin-1 line reached either member: the first
            # message they saw is the UTF-8 one, byte for byte.
            self.assertTrue(result["said"].endswith(b" PRIVMSG #utf :" + result["body"]))
            self.assertEqual(result["event"]["text"], TEXT)
            self.assertEqual(result["event"]["from"], "alice")

        return deferToThread(scenario).addCallback(check)

    def _close_irc(self) -> Any:
        connections = self.server.extras["irc"].connections
        for conn in list(connections):
            conn.transport.loseConnection()
        return self.until(lambda: not connections)
