"""The native door over real TLS sockets on 127.0.0.1, with the real writer
thread and bcrypt pool: the in-process server, driven by the stdlib client in
a thread while the reactor runs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from pingchat.config import Settings
from pingchat.tap import build
from pingchat.tls import ensure_certificate, server_endpoint, server_options
from tests.client import LineClient


class LiveServerTestCase(TestCase):
    """A real server (threads and all) listening with TLS on 127.0.0.1:0."""

    @inlineCallbacks
    def setUp(self) -> Any:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-live-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        settings = Settings(
            data_dir=self.dir,
            chat=(),
            irc=(),
            ircs=(),
            manhole=(),
            server_name="localhost",
            sqlite_synchronous="NORMAL",
        )
        self.server = build(settings, reactor)
        self.server.top.startService()
        self.addCleanup(self.server.top.stopService)
        key, cert = ensure_certificate(self.dir, "localhost")
        endpoint = server_endpoint(reactor, "ssl:0:interface=127.0.0.1", server_options(key, cert))
        self.port = yield endpoint.listen(self.server.native)
        self.addCleanup(self._drain)
        self.addCleanup(self.port.stopListening)

    def _drain(self) -> Deferred[None]:
        """Wait until the server has seen every client connection close."""
        for conn in list(self.server.native.connections):
            conn.transport.loseConnection()

        def check(tries: int) -> Any:
            if self.server.native.connections and tries < 200:
                return task.deferLater(reactor, 0.01, check, tries + 1)
            return None

        return check(0)

    def connect(self) -> LineClient:
        return LineClient("127.0.0.1", self.port.getHost().port)


class LiveTests(LiveServerTestCase):
    def test_two_users_chat_over_tls(self) -> Any:
        def scenario() -> list[str]:
            alice, bob = self.connect(), self.connect()
            try:
                for c, name in ((alice, "alice"), (bob, "bob")):
                    assert c.request("register", user=name, password="pass word 1")["ok"]
                    assert c.request("login", user=name, password="pass word 1")["ok"]
                    assert c.request("join", room="#live")["ok"]
                for i in range(20):
                    assert alice.request("say", room="#live", text=f"n{i}")["ok"]
                return [bob.event("message", text=f"n{i}")["text"] for i in range(20)]
            finally:
                alice.close()
                bob.close()

        d = deferToThread(scenario)
        d.addCallback(self.assertEqual, [f"n{i}" for i in range(20)])
        return d

    def test_bcrypt_and_sqlite_stay_off_the_reactor_thread(self) -> Any:
        import threading

        seen: list[str] = []
        from pingchat.auth import passwords

        original = passwords.hash_password_blocking

        def spy(*args: Any) -> bytes:
            seen.append(threading.current_thread().name)
            return original(*args)

        self.patch(passwords, "hash_password_blocking", spy)

        def scenario() -> None:
            c = self.connect()
            try:
                assert c.request("register", user="carol", password="pass word 1")["ok"]
            finally:
                c.close()

        def check(_: Any) -> None:
            self.assertTrue(seen)
            self.assertNotIn(threading.main_thread().name, seen)
            self.assertNotEqual(self.server.db._thread, None)

        return deferToThread(scenario).addCallback(check)
