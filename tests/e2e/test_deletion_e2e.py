"""End to end: ``pingchat user delete`` beside a running ``twistd -n pingchat``,
and an account deleting itself, with the database file searched afterwards."""

from __future__ import annotations

import time

from twisted.trial.unittest import TestCase

from tests.client import LineClient
from tests.e2e.harness import ServerProcess

PASSWORD = "correct horse"


class DeletionEndToEndTests(TestCase):
    def setUp(self) -> None:
        self.server = ServerProcess().start()
        self.addCleanup(self.server.cleanup)
        self.clients: list[LineClient] = []
        self.addCleanup(lambda: [c.close() for c in self.clients])

    def account(self, name: str) -> LineClient:
        c = LineClient("127.0.0.1", self.server.port())
        self.clients.append(c)
        self.assertTrue(c.request("register", user=name, password=PASSWORD)["ok"])
        self.assertTrue(c.request("login", user=name, password=PASSWORD)["ok"])
        return c

    def files(self) -> bytes:
        return b"".join(
            p.read_bytes() for p in self.server.data_dir.glob("pingchat.sqlite3*") if p.is_file()
        )

    def test_the_command_deletes_while_the_server_runs_and_it_ends_the_sessions(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        for c in (alice, bob):
            self.assertTrue(c.request("join", room="#lobby")["ok"])
        self.assertTrue(alice.request("say", room="#lobby", text="unique e1f4c2")["ok"])
        self.assertTrue(alice.request("dm", to="bob", text="private 93ab07")["ok"])
        started = time.monotonic()
        done = self.server.pingchat("user", "delete", "alice", "--yes")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("2 message(s) removed", done.stdout)
        # The server notices within two seconds: alice is told and dropped...
        self.assertEqual(
            alice.event("disconnect"), {"event": "disconnect",
                                        "reason": "this account has been deleted"}
        )
        self.assertLess(time.monotonic() - started, 10)
        # ...bob sees alice leave, and the server goes on as usual.
        self.assertEqual(bob.event("parted", room="#lobby")["user"], "alice")
        self.assertEqual(bob.request("history", room="#lobby")["messages"], [])
        self.assertTrue(bob.request("say", room="#lobby", text="still here")["ok"])
        members = bob.request("members", room="#lobby")["members"]
        self.assertEqual([m["user"] for m in members], ["bob"])
        data = self.files()
        for secret in (b"unique e1f4c2", b"private 93ab07", b"alice"):
            self.assertFalse(secret in data.lower(), secret)

    def test_an_account_deletes_itself_and_nothing_of_it_stays_in_the_files(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        for c in (alice, bob):
            c.request("join", room="#lobby")
        alice.request("say", room="#lobby", text="my words 55d0e3")
        reply = alice.request("account.delete", password=PASSWORD)
        self.assertEqual((reply["ok"], reply["removed"]), (True, 1))
        self.assertEqual(alice.event("disconnect")["reason"], "your account has been deleted")
        bob.event("parted", room="#lobby")
        self.server.stop()  # the files as the server leaves them
        data = self.files()
        self.assertFalse(b"my words 55d0e3" in data)
        self.assertFalse(b"alice" in data.lower())
