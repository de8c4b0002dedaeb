"""Fixtures for the IRC gateway's unit tests: IRC clients over StringTransport
against an inline server (no threads, no sockets) driven by a task.Clock."""

from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from pingchat.irc import wire
from pingchat.irc.factory import IRCFactory
from pingchat.testing import NativeTestClient, make_server

PASSWORD = "correct horse battery"


class IRCTestClient:
    """One IRC connection over a ``StringTransport``; lines are parsed on read."""

    def __init__(self, factory: IRCFactory, address: str = "127.0.0.1", port: int = 40000):
        self.factory = factory
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", address, port))
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        self.received: list[wire.Message] = []

    def send(self, *lines: str) -> None:
        self.send_raw("".join(line + "\r\n" for line in lines).encode("utf-8"))

    def send_raw(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def raw(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def read(self) -> list[wire.Message]:
        """Every message sent to the client since the last read."""
        out = [wire.parse(wire.decode(line)) for line in self.raw().split(b"\r\n") if line]
        self.received += out
        return out

    def commands(self) -> list[str]:
        return [m.command for m in self.read()]

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting) or self.protocol.closed

    def disconnect(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))


def plain(account: str, password: str) -> str:
    return base64.b64encode(f"\0{account}\0{password}".encode()).decode()


class IRCTestCase(TestCase):
    """An inline pingchat server with its IRC factory."""

    settings: dict[str, Any] = {}

    def setUp(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="pingchat-irc-test-"))
        self.addCleanup(shutil.rmtree, self.data_dir, True)
        self.server = make_server(self.data_dir, **self.settings)
        self.clock = self.server.extras["clock"]
        self.addCleanup(self.server.db.stop)
        self.factory: IRCFactory = self.server.extras["irc"]

    def irc(self, address: str = "127.0.0.1") -> IRCTestClient:
        return IRCTestClient(self.factory, address)

    def make_account(self, name: str, password: str = PASSWORD) -> None:
        d = self.server.accounts.register(name, password, "10.0.0.1")
        self.successResultOf(d)

    def native(self, name: str, password: str = PASSWORD) -> NativeTestClient:
        c = NativeTestClient(self.server)
        reply = c.request("login", user=name, password=password)
        self.assertTrue(reply["ok"], reply)
        self.clock.advance(0)
        c.take_events()
        return c

    def connect(
        self,
        nick: str,
        password: str | None = PASSWORD,
        caps: tuple[str, ...] = (),
        how: str = "sasl",
        register: bool = True,
    ) -> IRCTestClient:
        """A registered IRC client: an account logged in with SASL (or PASS), or a guest."""
        if register and password is not None:
            self.make_account(nick, password)
        c = self.irc()
        wanted = list(caps)
        if password is not None and how == "sasl":
            wanted.append("sasl")
        c.send("CAP LS 302")
        if how == "pass" and password is not None:
            c.send(f"PASS :{nick}:{password}")
        c.send(f"NICK {nick}", f"USER {nick} 0 * :Real {nick}")
        if wanted:
            c.send("CAP REQ :" + " ".join(wanted))
        if password is not None and how == "sasl":
            c.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + plain(nick, password))
        c.send("CAP END")
        self.clock.advance(0)
        lines = c.read()
        assert any(m.command == "001" for m in lines), [str(m) for m in lines]
        return c

    def numerics(self, c: IRCTestClient) -> list[str]:
        return [m.command for m in c.read()]

    def find(self, messages: list[wire.Message], command: str) -> wire.Message:
        for m in messages:
            if m.command == command:
                return m
        raise AssertionError(f"no {command} in {[ (m.command, m.params) for m in messages]}")
