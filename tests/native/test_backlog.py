"""Bounded under load: a client that stops reading is dropped, others carry on.

A real server in-process (writer thread, bcrypt pool) listens with TLS on
127.0.0.1:0; blocking stdlib clients run in a thread while the reactor runs.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from twisted.internet.threads import deferToThread

from pingchat.native.protocol import NativeProtocol
from tests.client import LineClient
from tests.helpers import Logged
from tests.live import LiveServer, watch_output

TEXT = "x" * 4000  # near the 4 KiB limit, so the backlog fills in a few hundred messages


class NonReadingClient(LineClient):
    """A client whose receive buffer is tiny, so the server's output piles up fast."""

    def __init__(self, host: str, port: int, preamble: bytes = b"") -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(10)
        raw.connect((host, port))
        raw.sendall(preamble)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.next_id = 0
        self.hello = self.read()


class BacklogTests(LiveServer):
    def test_client_that_never_reads_is_dropped_while_others_keep_receiving(self) -> Any:
        warnings = Logged(self, "not reading").events

        def carols_protocol() -> NativeProtocol | None:
            for s in self.server.chat.all_sessions():
                if s.name == "carol":
                    return s.mind  # type: ignore[no-any-return]
            return None

        peak: list[list[int]] = []  # the largest measure, once Carol is connected

        def watch_carol() -> NativeProtocol | None:
            proto = carols_protocol()
            if proto is not None:
                peak.append(watch_output(proto))
            return proto

        def scenario() -> dict[str, Any]:
            alice = self.account(self.connect(), "alice", "#flood")
            bob = self.account(self.connect(), "bob", "#flood")
            carol = self.account(
                NonReadingClient("127.0.0.1", self.port.getHost().port, self.preamble()),
                "carol",
                "#flood",
            )
            carol_proto = self.on_reactor(watch_carol)
            assert carol_proto is not None
            sent = 0
            try:
                # Carol never reads again. Alice talks, Bob reads everything.
                while sent < 3000 and self.on_reactor(carols_protocol) is not None:
                    reply = alice.request("say", room="#flood", text=f"{sent} {TEXT}")
                    assert reply["ok"], reply
                    event = bob.event("message", room="#flood")
                    assert event["text"].startswith(f"{sent} "), event["text"][:20]
                    sent += 1
                # After Carol is gone the room still works for the others.
                assert alice.request("say", room="#flood", text="still here")["ok"]
                last = bob.event("message", text="still here")
                return {"sent": sent, "last": last, "carol": carol_proto,
                        "members": alice.request("members", room="#flood")["members"]}
            finally:
                for c in (alice, bob, carol):
                    c.close()

        def check(result: dict[str, Any]) -> None:
            # Dropped well before the 3000 messages (12 MB) Alice could send.
            self.assertLess(result["sent"], 3000)
            self.assertEqual(result["last"]["from"], "alice")
            proto = result["carol"]
            self.assertTrue(proto.closed)
            # Measured through every layer (pending_output_bytes), not counted.
            self.assertFalse(proto._counted)
            # What the server held for her stayed within the bound plus one
            # line (measured after every write, a little more with TLS records).
            self.assertGreater(peak[0][0], self.max_backlog)
            self.assertLessEqual(peak[0][0], self.max_backlog + len(TEXT) + 200 + 512)
            self.assertLessEqual(proto.backlog, self.max_backlog + len(TEXT) + 200 + 512)
            self.assertGreater(proto.backlog, self.max_backlog)
            self.assertEqual(len(warnings), 1)
            self.assertEqual(warnings[0]["user"], "carol")
            self.assertEqual(warnings[0]["address"], self.client_address)
            self.assertEqual(warnings[0]["bound"], self.max_backlog)
            presence = {m["user"]: m["presence"] for m in result["members"]}
            self.assertEqual(presence["carol"], "offline")
            self.assertEqual(presence["bob"], "online")

        return deferToThread(scenario).addCallback(check)


class SmallBacklogTests(BacklogTests):
    """The bound is configurable (``--max-backlog``)."""

    max_backlog = 64 * 1024


class ProxiedBacklogTests(BacklogTests):
    """The same behind a PROXY listener (``haproxy:ssl:``): one more layer
    between TLS and the socket, and the output is still measured."""

    proxied = True
