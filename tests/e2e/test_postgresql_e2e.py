"""End to end on PostgreSQL: ``twistd -n pingchat --store postgresql://…`` on a
throwaway PostgreSQL server of its own (``.ci/postgresql``), a native client
and an IRC client chat, the server restarts with its history, and the
database stops and comes back under them."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from unittest import SkipTest

from twisted.trial.unittest import TestCase

from tests.backends import under_ci
from tests.client import LineClient
from tests.e2e.harness import ServerProcess, wait_until

PASSWORD = "correct horse"
SCRIPT = Path(__file__).parents[2] / ".ci" / "postgresql"


class PostgreSQLServer:
    """A PostgreSQL server in a temporary directory, to stop and start at will."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-e2e-pg-"))
        self.url = self.run("start").strip()

    def run(self, command: str) -> str:
        done = subprocess.run(
            ["bash", str(SCRIPT), command, str(self.dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f".ci/postgresql {command}: {done.stderr}")
        return done.stdout

    def cleanup(self) -> None:
        with contextlib.suppress(AssertionError):
            self.run("stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def postgresql_server(case: TestCase) -> PostgreSQLServer:
    if shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin")):
        if under_ci():
            case.fail("no initdb: CI must run this test (.ci/run installs postgresql)")
        raise SkipTest("no PostgreSQL installed (apt-get install postgresql)")
    server = PostgreSQLServer()
    case.addCleanup(server.cleanup)
    return server


class IRCClient:
    """A plain-TCP IRC client, registered with PASS account:password."""

    def __init__(self, port: int, nick: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buffer = b""
        self.lines: list[str] = []
        self.send(f"PASS {nick}:{PASSWORD}", f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        self.wait_for(" 001 ")

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(f"{line}\r\n" for line in lines).encode())

    def wait_for(self, needle: str) -> str:
        while True:
            for i, line in enumerate(self.lines):
                if needle in line:
                    del self.lines[: i + 1]
                    return line
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
            *complete, self.buffer = self.buffer.split(b"\r\n")
            for raw in complete:
                line = raw.decode()
                if line.startswith("PING"):
                    self.send("PONG" + line[4:])
                self.lines.append(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class PostgreSQLEndToEndTests(TestCase):
    def setUp(self) -> None:
        self.database = postgresql_server(self)
        self.server = ServerProcess(
            "--store", self.database.url, irc="tcp:0:interface=127.0.0.1"
        ).start()
        self.addCleanup(self.server.cleanup)
        self.clients: list[Any] = []
        self.addCleanup(lambda: [c.close() for c in self.clients])

    def native(self, name: str, register: bool = False) -> LineClient:
        c = LineClient("127.0.0.1", self.server.port(), timeout=30)
        self.clients.append(c)
        if register:
            self.assertTrue(c.request("register", user=name, password=PASSWORD)["ok"])
        reply = c.request("login", user=name, password=PASSWORD)
        self.assertTrue(reply["ok"], reply)
        return c

    def irc(self, nick: str) -> IRCClient:
        c = IRCClient(self.server.port("IRCFactory"), nick)
        self.clients.append(c)
        return c

    def history(self, client: LineClient) -> list[str]:
        reply = client.request("history", room="#pg", limit=50)
        self.assertTrue(reply["ok"], reply)
        return [m["text"] for m in reply["messages"]]

    def test_chat_restart_and_a_database_that_stops_and_comes_back(self) -> None:
        alice = self.native("alice", register=True)
        self.native("bob", register=True).close()
        self.assertTrue(alice.request("join", room="#pg")["ok"])
        bob = self.irc("bob")
        bob.send("JOIN #pg")
        bob.wait_for(" 366 ")
        self.assertTrue(alice.request("say", room="#pg", text="one from native")["ok"])
        bob.wait_for("PRIVMSG #pg :one from native")
        bob.send("PRIVMSG #pg :two from irc")
        alice.event("message", room="#pg", text="two from irc")

        # The server restarts: history and accounts are in PostgreSQL.
        for c in self.clients:
            c.close()
        self.server.stop()
        self.server.start()
        alice = self.native("alice")
        self.assertEqual(self.history(alice), ["one from native", "two from irc"])
        self.assertTrue(alice.request("join", room="#pg")["ok"])
        bob = self.irc("bob")
        bob.send("JOIN #pg")
        bob.wait_for(" 366 ")

        # The database stops: nothing is acknowledged, each client is told why.
        self.database.run("stop")
        reply = alice.request("say", room="#pg", text="three, refused")
        self.assertFalse(reply.get("ok"), reply)
        self.assertEqual(reply["error"]["code"], "store_unavailable", reply)
        bob.send("PRIVMSG #pg :four, refused")
        bob.wait_for("STORE_UNAVAILABLE")
        carol = LineClient("127.0.0.1", self.server.port(), timeout=30)
        self.clients.append(carol)
        reply = carol.request("login", user="alice", password=PASSWORD)
        self.assertEqual(reply["error"]["code"], "store_unavailable", reply)
        self.assertIn("writes are refused", self.server.output())

        # It comes back: the server reconnects by itself, writes succeed again.
        self.database.run("restart")
        wait_until(
            lambda: alice.request("say", room="#pg", text="five, stored")["ok"],
            timeout=30,
            interval=0.5,
            what="a write to succeed after the database came back",
        )
        bob.wait_for("PRIVMSG #pg :five, stored")
        bob.send("PRIVMSG #pg :six from irc")
        alice.event("message", room="#pg", text="six from irc")
        self.assertEqual(
            self.history(alice),
            ["one from native", "two from irc", "five, stored", "six from irc"],
        )
        self.assertIn("connected to postgresql://", self.server.output())
