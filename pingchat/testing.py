"""Test doubles shipped with pingchat (as Klein and treq do), for its own tests
and for anyone testing code that talks to the chat service.

* :func:`make_server` builds the whole server *inline* (transactions and
  bcrypt run synchronously) on a temporary data dir, driven by a
  ``task.Clock``: no threads, no sockets, deterministic.
* :class:`RecordingMind` is an :class:`IChatMind` that records every event.
* :class:`NativeTestClient` speaks the native protocol over a
  ``StringTransport``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from pingchat.config import Settings
from pingchat.interfaces import IChatMind
from pingchat.model import Message

START_TIME = 1_790_000_000.0  # 2026-09-21, a fixed "now" for the clock


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def strict_json(line: bytes | str) -> Any:
    """Parse *line* as RFC 8259 JSON: ``NaN`` and ``Infinity``, which Python's
    ``json`` reads and writes by default, raise ``ValueError``; so does text
    that is not UTF-8."""
    if isinstance(line, bytes):
        line = line.decode("utf-8")
    return json.loads(line, parse_constant=_not_json)


def make_server(
    data_dir: Path | None = None, clock: Clock | None = None, bus: Any = None, **settings: Any
) -> Any:
    """An inline :class:`pingchat.server.Server` with no listeners, on a Clock."""
    from pingchat.tap import build

    if clock is None:
        clock = Clock()
        clock.advance(START_TIME)
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="pingchat-test-"))
    defaults: dict[str, Any] = {
        "data_dir": data_dir,
        "chat": (),
        "irc": (),
        "ircs": (),
        "manhole": (),
        "web": (),
        "metrics": (),
        "server_name": "test.pingchat",
        "sqlite_synchronous": "NORMAL",
    }
    defaults.update(settings)
    server = build(Settings(**defaults), clock, inline=True, bus=bus)
    server.extras["clock"] = clock
    return server


@attrs.define
class Event:
    name: str
    args: tuple[Any, ...]


@implementer(IChatMind)
class RecordingMind:
    """Records what the chat service tells a connection."""

    door = "test"

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.address = address
        self.events: list[Event] = []
        self.disconnected: str | None = None

    def _record(self, name: str, *args: Any) -> None:
        self.events.append(Event(name, args))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [e.args for e in self.events if e.name == name]

    def message(self, message: Message, offline: bool = False) -> None:
        self._record("message", message, offline)

    def joined(self, room: str, user: str) -> None:
        self._record("joined", room, user)

    def parted(self, room: str, user: str, reason: str | None) -> None:
        self._record("parted", room, user, reason)

    def kicked(self, room: str, user: str, by: str, reason: str | None) -> None:
        self._record("kicked", room, user, by, reason)

    def topic_changed(self, room: str, topic: str, by: str) -> None:
        self._record("topic", room, topic, by)

    def presence_changed(self, user: str, presence: str, away: str | None) -> None:
        self._record("presence", user, presence, away)

    def modes_changed(self, room: str, by: str, changes: list[tuple[str, str | None]]) -> None:
        self._record("modes", room, by, changes)

    def invited(self, room: str, by: str) -> None:
        self._record("invited", room, by)

    def contact_event(self, user: str, status: str) -> None:
        self._record("contact", user, status)

    def key_changed(self, user: str, device: str, action: str, fingerprint: str) -> None:
        self._record("key", user, device, action, fingerprint)

    def notice(self, text: str, sender: str) -> None:
        self._record("notice", text, sender)

    def message_deleted(self, message: Message, by: str, reason: str | None) -> None:
        self._record("message_deleted", message, by, reason)

    def wallops(self, text: str, sender: str) -> None:
        self._record("wallops", text, sender)

    def disconnect(self, reason: str) -> None:
        self.disconnected = reason
        self._record("disconnect", reason)


class NativeTestClient:
    """One native-protocol connection over a ``StringTransport``."""

    def __init__(self, server: Any, address: str = "127.0.0.1", port: int = 40000) -> None:
        self.server = server
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", address, port))
        self.protocol = server.native.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self.events: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.next_id = 0
        self.hello = self._read()[0]

    def _read(self) -> list[dict[str, Any]]:
        data = self.transport.value()
        self.transport.clear()
        return [strict_json(line) for line in data.splitlines() if line.strip()]

    def pump(self) -> None:
        for obj in self._read():
            (self.events if "event" in obj else self.replies).append(obj)

    def send_line(self, line: bytes) -> None:
        self.protocol.dataReceived(line)

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        """Send a request; return its reply (it must have arrived synchronously)."""
        self.next_id += 1
        rid = self.next_id
        self.send_line(json.dumps({"id": rid, "op": op, **args}).encode() + b"\n")
        return self.reply(rid)

    def reply(self, rid: Any) -> dict[str, Any]:
        self.pump()
        for i, r in enumerate(self.replies):
            if r.get("id") == rid:
                return self.replies.pop(i)
        raise AssertionError(f"no reply to request {rid}; events: {self.events}")

    def take_events(self, name: str | None = None) -> list[dict[str, Any]]:
        self.pump()
        taken = [e for e in self.events if name is None or e["event"] == name]
        self.events = [e for e in self.events if e not in taken]
        return taken

    def disconnect(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))
