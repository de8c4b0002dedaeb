"""End to end in a real terminal: ``pingchat client`` in tmux against ``twistd
pingchat`` in a subprocess, driven with send-keys and read with capture-pane.

tmux is required (``.ci/run`` installs it): these tests fail rather than skip
without it.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path

from twisted.trial.unittest import TestCase

from pingchat.tls import certificate_fingerprint
from tests.client import LineClient
from tests.e2e.harness import PINGCHAT, ServerProcess
from tests.e2e.terminal import Tmux, free_port

PASSWORD = "correct horse battery"


class TerminalClientTests(TestCase):
    def setUp(self) -> None:
        self.tmux = Tmux(self)
        self.dirs: list[Path] = []
        self.addCleanup(lambda: [shutil.rmtree(d, ignore_errors=True) for d in self.dirs])

    def server(self, port: int = 0, data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(chat=f"ssl:{port}:interface=127.0.0.1", data_dir=data_dir)
        self.addCleanup(server.cleanup)
        return server.start()

    def config_dir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="pingchat-client-"))
        self.dirs.append(path)
        return path

    def client(self, name: str, port: int, config: Path) -> None:
        self.tmux.start(name, PINGCHAT, "client", "--config-dir", str(config),
                        f"127.0.0.1:{port}")

    def register(self, name: str, port: int, fingerprint: str) -> Path:
        """A new user's first run: trust the server, register, store the codes."""
        config = self.config_dir()
        self.client(name, port, config)
        t = self.tmux
        t.wait_for(name, r"Trust this server\? \(yes/no\)")
        self.assertIn(fingerprint, t.screen(name))
        t.type(name, "yes")
        t.wait_for(name, r"Type  login .* register")
        t.type(name, "register")
        t.wait_for(name, "Choose a user name")
        t.type(name, name)
        t.wait_for(name, r"Choose a password")
        t.type(name, PASSWORD)
        t.wait_for(name, "Type it again")
        t.type(name, PASSWORD)
        t.wait_for(name, "Type  stored  once")
        codes = re.findall(r"\b[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}\b",
                           t.screen(name))
        self.assertEqual(len(codes), 10)
        self.assertNotIn(PASSWORD, t.screen(name))
        t.type(name, "stored")
        t.wait_for(name, f"Logged in as {name}")
        t.wait_for(name, "Published your encryption key")
        self.assertNotIn(codes[0], t.screen(name))
        return config

    def second_device(self, pane: str, name: str, port: int) -> Path:
        """*name* logging in from another install (config dir): another device."""
        config = self.config_dir()
        self.client(pane, port, config)
        t = self.tmux
        t.trust_and_log_in(pane, name, PASSWORD)
        t.wait_for(pane, "Published your encryption key for this device")
        return config

    def test_two_new_users_chat_in_a_room_and_exchange_an_encrypted_dm(self) -> None:
        server = self.server()
        port = server.port()
        fingerprint = certificate_fingerprint(server.data_dir / "tls-cert.pem")
        t = self.tmux
        self.register("alice", port, fingerprint)
        self.register("bob", port, fingerprint)
        # alice also has a second device (another install), told of the first.
        self.second_device("alice2", "alice", port)
        t.wait_for("alice2", r"Your other devices: terminal on ")
        t.wait_for("alice", r"Your account has a new device: terminal on ")
        for name in ("alice", "bob"):
            t.type(name, "/join #lobby")
            t.wait_for(name, "you joined #lobby")
        t.wait_for("alice", "bob joined #lobby")
        t.type("alice", "hello bob, welcome")
        t.wait_for("bob", r"<alice> hello bob, welcome")
        t.wait_for("bob", r"\[bob@127\.0\.0\.1:\d+\] \[connected\] \[2:#lobby\]")

        t.type("bob", "/msg alice psst: the door code is 4711")
        t.wait_for("bob", r"\[to alice\] <bob> \[e2e\] psst: the door code is 4711")
        # Alice is in #lobby: the DM is pointed out there and counted.
        t.wait_for("alice", r"» \[bob, window 3\] <bob> \[e2e\] psst: the door code is 4711")
        t.wait_for("alice", r"\[act: 3:bob\(1\)\]")
        t.keys("alice", "M-3")
        t.wait_for("alice", r"direct messages with bob: end-to-end encrypted")
        t.wait_for("alice", r"<bob> \[e2e\] psst: the door code is 4711")
        t.type("alice", "thanks, got it")
        t.wait_for("bob", r"\[alice, window 3\] <alice> \[e2e\] thanks, got it")
        # The second device (in #lobby too: rooms belong to the account) read
        # bob's DM, and sees what the first answered.
        t.wait_for("alice2", r"» \[bob, window 3\] <bob> \[e2e\] psst: the door code is 4711")
        t.keys("alice2", "M-3")
        t.wait_for("alice2", r"<alice> \[e2e\] thanks, got it")

        db = sqlite3.connect(server.data_dir / "pingchat.sqlite3")
        self.addCleanup(db.close)
        rows = db.execute("SELECT body, ciphertext, envelopes FROM messages"
                          " WHERE recipient_id IS NOT NULL").fetchall()
        self.assertEqual(len(rows), 2)
        for body, ciphertext, envelopes in rows:
            self.assertIsNone(body)
            self.assertIsNone(ciphertext)
            # Sealed per device: bob's for alice's two; alice's for bob and her other one.
            self.assertEqual(len(json.loads(envelopes)), 2)
        everything = json.dumps(db.execute("SELECT * FROM messages").fetchall())
        self.assertIn("hello bob, welcome", everything)  # room messages are not E2E
        self.assertNotIn("4711", everything)
        self.assertNotIn("got it", everything)

        # bob deletes his account: the DMs go, and his client is back at the menu.
        t.type("bob", "/deleteaccount")
        t.wait_for("bob", r"type the account's name \(bob\); anything else keeps it:")
        t.type("bob", "bob")
        t.wait_for("bob", "Password of bob:")
        t.type("bob", PASSWORD)
        t.wait_for("bob", r"Your account bob was deleted\. 2 messages were deleted with it")
        t.wait_for("bob", r"Type  login  if you have an account")
        self.assertNotIn(PASSWORD, t.screen("bob", history=True))
        self.assertEqual(db.execute("SELECT count(*) FROM messages"
                                    " WHERE recipient_id IS NOT NULL").fetchone(), (0,))

    def test_a_swapped_certificate_is_refused_loudly(self) -> None:
        port = free_port()
        server = self.server(port)
        old = certificate_fingerprint(server.data_dir / "tls-cert.pem")
        config = self.config_dir()
        t = self.tmux
        self.client("first", port, config)
        t.wait_for("first", r"Trust this server\?")
        t.type("first", "yes")
        t.wait_for("first", r"Type  login")
        t.type("first", "/quit")
        self.assertEqual(t.wait_exit("first"), 0)
        self.assertIn(old, (config / "known_hosts").read_text())

        server.stop()
        for name in ("tls-cert.pem", "tls-key.pem"):
            (server.data_dir / name).unlink()
        server.start()
        new = certificate_fingerprint(server.data_dir / "tls-cert.pem")
        self.assertNotEqual(old, new)

        self.client("second", port, config)
        t.wait_for("second", rf"THE CERTIFICATE OF 127\.0\.0\.1:{port} HAS CHANGED",
                   history=True)
        self.assertEqual(t.wait_exit("second"), 1)
        screen = t.screen("second", history=True)
        self.assertIn(old, screen)
        self.assertIn(new, screen)
        self.assertNotIn("Trust this server", screen)
        self.assertIn(old, (config / "known_hosts").read_text())

    def test_the_client_reconnects_after_the_server_restarts(self) -> None:
        port = free_port()
        server = self.server(port)
        # An account with a saved session, so the client starts straight into chat.
        setup = LineClient("127.0.0.1", port)
        self.addCleanup(setup.close)
        setup.request("register", user="alice", password=PASSWORD)
        token = setup.request("login", user="alice", password=PASSWORD)["token"]
        setup.request("join", room="#ops")
        setup.close()
        config = self.config_dir()
        (config / "known_hosts").write_text(
            f"127.0.0.1:{port} {certificate_fingerprint(server.data_dir / 'tls-cert.pem')}\n")
        session = config / "servers" / f"127.0.0.1_{port}" / "session.json"
        session.parent.mkdir(parents=True)
        session.write_text(json.dumps({"user": "alice", "token": token}))

        t = self.tmux
        self.client("alice", port, config)
        t.wait_for("alice", r"\[alice@127\.0\.0\.1:\d+\] \[connected\] \[2:#ops\]")
        server.stop()
        t.wait_for("alice", r"reconnecting in \d")
        t.wait_for("alice", r"\[reconnecting\]")
        server.start()
        t.wait_for("alice", r"reconnected", timeout=40)
        t.wait_for("alice", r"\[connected\] \[2:#ops\]")

        bob = LineClient("127.0.0.1", port)
        self.addCleanup(bob.close)
        bob.request("register", user="bob", password=PASSWORD)
        bob.request("login", user="bob", password=PASSWORD)
        bob.request("join", room="#ops")
        bob.request("say", room="#ops", text="anyone back?")
        t.wait_for("alice", r"<bob> anyone back\?")
        t.type("alice", "yes, right here")
        self.assertEqual(bob.event("message", room="#ops")["text"], "yes, right here")
