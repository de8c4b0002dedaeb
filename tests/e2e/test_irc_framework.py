"""End to end: an IRC client written by others over pingchat's IRC over
WebSocket. Kiwi IRC's library, irc-framework (npm, pinned by
tests/irc_framework/package-lock.json, installed by ``npm ci`` in
``.ci/run``), runs under node with its WebSocket transport and the
``text.ircv3.net`` subprotocol, logs in with SASL PLAIN, and talks with a
native client over TLS."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
import unittest
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from tests.client import LineClient
from tests.e2e.harness import ServerProcess

PASSWORD = "correct horse battery"
NODE_DIR = Path(__file__).resolve().parents[1] / "irc_framework"


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        raise AssertionError(f"{what}; CI installs it in .ci/run")
    raise unittest.SkipTest(what)


class NodeClient:
    """tests/irc_framework/client.mjs in a subprocess: JSON lines both ways."""

    def __init__(self, port: int, nick: str, password: str, tls: bool = False) -> None:
        node = shutil.which("node")
        if node is None:
            _missing("node is not installed (apt-get install nodejs)")
        if not (NODE_DIR / "node_modules" / "irc-framework").is_dir():
            _missing(f"irc-framework is not installed (cd {NODE_DIR} && npm ci)")
        env = {**os.environ, "IRC_PORT": str(port), "IRC_NICK": nick,
               "IRC_PASSWORD": password, "IRC_TLS": "1" if tls else "0"}
        if tls:
            env["NODE_TLS_REJECT_UNAUTHORIZED"] = "0"  # the data dir's self-signed certificate
        self.proc = subprocess.Popen(
            [str(node), "client.mjs"], cwd=NODE_DIR, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def event(self, name: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        """The next event called *name* with these fields (others are kept in `seen`)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {name} {match} from irc-framework within {timeout}s;"
                                     f" it said:\n{''.join(self.seen)}") from None
            self.seen.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue  # node's own messages (warnings, a stack trace)
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return event  # type: ignore[no-any-return]
            if event.get("event") in ("sasl failed", "irc error", "close"):
                raise AssertionError(f"irc-framework: {event}")

    def command(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.command(quit="bye")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.reader.join(5)


class IrcFrameworkTests(TestCase):
    def setUp(self) -> None:
        self.server = ServerProcess(
            "--web", "ssl:0:interface=127.0.0.1", web="tcp:0:interface=127.0.0.1",
        ).start()
        self.addCleanup(self.server.cleanup)
        self.bob = LineClient("127.0.0.1", self.server.port(), timeout=20)
        self.addCleanup(self.bob.close)
        for name in ("kiwi", "bob"):
            self.assertTrue(self.bob.request("register", user=name, password=PASSWORD)["ok"])
        self.assertTrue(self.bob.request("login", user="bob", password=PASSWORD)["ok"])
        self.assertTrue(self.bob.request("join", room="#web")["ok"])

    def talk(self, port: int, tls: bool) -> None:
        kiwi = NodeClient(port, "kiwi", PASSWORD, tls=tls)
        self.addCleanup(kiwi.stop)
        self.assertEqual(kiwi.event("loggedin")["account"], "kiwi")  # 900: SASL succeeded
        registered = kiwi.event("registered")
        self.assertEqual(registered["nick"], "kiwi")
        self.assertEqual(registered["protocol"], "text.ircv3.net")
        kiwi.command(join="#web")
        kiwi.event("join", nick="kiwi", channel="#web")
        self.assertEqual(self.bob.event("joined", room="#web", user="kiwi")["user"], "kiwi")

        self.assertTrue(self.bob.request("say", room="#web", text="hello irc-framework")["ok"])
        said = kiwi.event("privmsg", target="#web")
        self.assertEqual((said["nick"], said["message"]), ("bob", "hello irc-framework"))
        kiwi.command(say="#web", text="hello bob, from Kiwi IRC's library")
        event = self.bob.event("message", room="#web")
        self.assertEqual((event["from"], event["text"]),
                         ("kiwi", "hello bob, from Kiwi IRC's library"))

        kiwi.command(say="bob", text="and a private word")
        event = self.bob.event("message", to="bob")
        self.assertEqual((event["from"], event["text"]), ("kiwi", "and a private word"))
        self.assertTrue(self.bob.request("dm", to="kiwi", text="private answer")["delivered"])
        said = kiwi.event("privmsg", target="kiwi")
        self.assertEqual((said["nick"], said["message"]), ("bob", "private answer"))
        self.assertEqual(self.bob.request("whois", user="kiwi")["doors"], ["web-irc"])

    def test_irc_framework_over_websocket_logs_in_with_sasl_and_talks_with_a_native_user(
        self,
    ) -> None:
        self.talk(self.server.port("WebSite"), tls=False)

    def test_irc_framework_over_secure_websocket(self) -> None:
        self.talk(self.server.port("WebSite-tls"), tls=True)
