"""An IRC REDACT over a real socket, seen by native clients over TLS, on a real
server (writer thread and all): the message goes for everyone, and its text
from the database files."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread

from pingchat.tls import ensure_certificate, server_endpoint, server_options
from tests.live import PASSWORD, LiveServer

SECRET = "the-secret-words-9931 nobody should keep"


class IRCLine:
    """A blocking IRC client: enough to log in, join and wait for lines."""

    def __init__(self, port: int, name: str, caps: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.send("CAP LS 302", f"PASS {name}:{PASSWORD}", f"NICK {name}",
                  f"USER {name} 0 * :{name}", f"CAP REQ :{caps}", "CAP END")
        self.until(lambda line: " 001 " in line)

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

    def until(self, found: Any) -> str:
        while True:
            while b"\r\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\r\n", 1)
                line = raw.decode()
                if found(line):
                    return line
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


class RedactOverSocketsTests(LiveServer):
    @inlineCallbacks
    def test_an_irc_room_operator_redacts_and_native_clients_see_it_go(self) -> Any:
        key, cert = ensure_certificate(self.dir, "localhost")
        irc_port = yield server_endpoint(
            reactor, "tcp:0:interface=127.0.0.1", server_options(key, cert)
        ).listen(self.server.extras["irc"])
        self.addCleanup(irc_port.stopListening)
        self.addCleanup(self._drain_irc)
        db_path = Path(self.server.db.path)

        def scenario() -> dict[str, Any]:
            alice = self.account(self.connect(), "alice")
            bob = self.account(self.connect(), "bob")
            self.account(self.connect(), "opal").close()
            op = IRCLine(irc_port.getHost().port, "opal",
                         "message-tags echo-message draft/message-redaction")
            op.send("JOIN #live")  # first in the room: its operator
            op.until(lambda line: " 366 " in line)
            for c in (alice, bob):
                assert c.request("join", room="#live")["ok"]
            sent = bob.request("say", room="#live", text=SECRET)
            said = op.until(lambda line: "PRIVMSG #live" in line)
            in_files = any(SECRET.encode() in p.read_bytes() for p in
                           (db_path, Path(f"{db_path}-wal")) if p.exists())
            op.send(f"REDACT #live {sent['msg_id']} :off topic")
            echoed = op.until(lambda line: " REDACT " in line)
            events = [c.event("deleted") for c in (alice, bob)]
            history = alice.request("history", room="#live")["messages"]
            files = b"".join(p.read_bytes() for p in
                             (db_path, Path(f"{db_path}-wal")) if p.exists())
            for c in (alice, bob):
                c.close()
            op.close()
            return {"sent": sent, "said": said, "echoed": echoed, "events": events,
                    "history": history, "before": in_files, "after": SECRET.encode() in files}

        r = yield deferToThread(scenario)
        msg_id = r["sent"]["msg_id"]
        self.assertIn(f"msgid={msg_id}", r["said"])
        self.assertTrue(r["echoed"].endswith(f"REDACT #live {msg_id} :off topic"), r["echoed"])
        for event in r["events"]:
            self.assertEqual(
                event,
                {"event": "deleted", "msg_id": msg_id, "ts": r["sent"]["ts"], "from": "bob",
                 "room": "#live", "by": "opal", "reason": "off topic"},
            )
        self.assertEqual(r["history"][-1], {"msg_id": msg_id, "ts": r["sent"]["ts"],
                                            "from": "bob", "room": "#live", "deleted": True})
        self.assertTrue(r["before"])  # it was there: the check below could fail
        self.assertFalse(r["after"])

    def _drain_irc(self) -> Any:
        irc = self.server.extras["irc"]
        for conn in list(irc.connections):
            conn.transport.loseConnection()
        return self.until(lambda: not irc.connections)

