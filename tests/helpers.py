"""Shared fixtures for the unit tests: an inline server on a task.Clock."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from pingchat.testing import NativeTestClient, make_server
from tests.backends import StoreBackend, temp_dir

PASSWORD = "correct horse battery"

__all__ = ["PASSWORD", "Logged", "ServerTestCase", "temp_dir"]


class ServerTestCase(StoreBackend, TestCase):
    """A TestCase with an inline pingchat server (no threads, no sockets).

    On SQLite; its ``on_postgresql`` twin (tests/backends.py) on PostgreSQL.
    """

    settings: dict[str, Any] = {}

    def setUp(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="pingchat-test-"))
        self.addCleanup(shutil.rmtree, self.data_dir, True)
        self.store_config = self.store_settings()
        self.server = make_server(self.data_dir, **self.store_config, **self.settings)
        self.clock = self.server.extras["clock"]
        self.addCleanup(self.server.db.stop)

    def client(self, address: str = "127.0.0.1") -> NativeTestClient:
        return NativeTestClient(self.server, address)

    def account(self, name: str, password: str = PASSWORD, **kw: Any) -> NativeTestClient:
        """A client registered and logged in as *name*."""
        c = self.client(**kw)
        reply = c.request("register", user=name, password=password)
        self.assertTrue(reply["ok"], reply)
        c.recovery_codes = reply["recovery_codes"]  # type: ignore[attr-defined]
        reply = c.request("login", user=name, password=password)
        self.assertTrue(reply["ok"], reply)
        c.token = reply["token"]  # type: ignore[attr-defined]
        self.clock.advance(0)
        return c

    def login(self, name: str, password: str = PASSWORD, **args: Any) -> NativeTestClient:
        c = self.client()
        reply = c.request("login", user=name, password=password, **args)
        self.assertTrue(reply["ok"], reply)
        c.token = reply["token"]  # type: ignore[attr-defined]
        self.clock.advance(0)
        return c

    def assertError(self, reply: dict[str, Any], code: str) -> None:
        self.assertFalse(reply.get("ok"), reply)
        self.assertEqual(reply["error"]["code"], code, reply)
        self.assertTrue(reply["error"]["message"])


class Logged:
    """Collects log events whose format mentions *text*."""

    def __init__(self, test: Any, text: str) -> None:
        self.text = text
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self)
        test.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict[str, Any]) -> None:
        if self.text in str(event.get("log_format", "")):
            self.events.append(event)
