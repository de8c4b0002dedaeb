"""``/deleteaccount`` against the real server in-process, over real TLS: the
terminal client deletes its account, the server closes the connection, and
the client comes back on a new one to the account menu, forgetting alice."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from pingchat.client.app import ChatClient
from pingchat.client.configdir import ConfigDir, ServerAddress
from pingchat.client.testing import FakeFrontend
from pingchat.client.trust import Insecure
from pingchat.errors import InvalidName
from tests.live import PASSWORD, LiveServer


class LiveDeleteAccountTests(LiveServer):
    @inlineCallbacks
    def test_the_client_deletes_its_account_and_comes_back_to_the_account_menu(self) -> Any:
        yield self.server.accounts.register("alice", PASSWORD, "127.0.0.1")
        folder = Path(tempfile.mkdtemp(prefix="pingchat-live-delete-"))
        self.addCleanup(shutil.rmtree, folder, True)
        address = ServerAddress("127.0.0.1", self.port.getHost().port)
        client = ChatClient(reactor, address, ConfigDir(folder), Insecure(), user_hint="alice")
        # The password to log in; then the name and the password to delete.
        frontend = FakeFrontend(PASSWORD, "alice", PASSWORD)
        client.start(frontend)
        self.addCleanup(client.connector.closed)
        self.addCleanup(client.quit)
        yield self.until(lambda: "Published your encryption key" in frontend.text())
        server_dir = ConfigDir(folder).server_dir(address)
        self.assertTrue((server_dir / "keys" / "alice.key").exists())

        client.input("/deleteaccount")
        yield self.until(lambda: "Type  login  if you have an account" in frontend.text())
        text = frontend.text()
        self.assertIn("Your account alice was deleted.", text)
        self.assertNotIn("the server ended this session", text)
        self.assertNotIn("reconnecting in", text)
        self.assertEqual(sorted(p.name for p in server_dir.rglob("*alice*")), [])
        self.assertFalse((server_dir / "session.json").exists())
        account = yield self.server.store.get_account("alice")
        self.assertIsNone(account)
        with self.assertRaises(InvalidName):  # reserved for 30 days
            yield self.server.accounts.register("alice", PASSWORD, "127.0.0.1")
