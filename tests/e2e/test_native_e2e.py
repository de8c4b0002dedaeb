"""End to end: ``twistd -n pingchat`` in a subprocess, driven by a client that
uses only ``ssl``, ``socket`` and ``json``."""

from __future__ import annotations

import sqlite3

from twisted.trial.unittest import TestCase

from tests.client import LineClient
from tests.e2e.harness import ServerProcess


class NativeEndToEndTests(TestCase):
    def setUp(self) -> None:
        self.server = ServerProcess().start()
        self.addCleanup(self.server.cleanup)
        self.clients: list[LineClient] = []
        self.addCleanup(lambda: [c.close() for c in self.clients])

    def client(self) -> LineClient:
        c = LineClient("127.0.0.1", self.server.port())
        self.clients.append(c)
        return c

    def account(self, name: str, password: str = "correct horse") -> LineClient:
        c = self.client()
        reply = c.request("register", user=name, password=password)
        self.assertTrue(reply["ok"], reply)
        reply = c.request("login", user=name, password=password)
        self.assertTrue(reply["ok"], reply)
        c.token = reply["token"]  # type: ignore[attr-defined]
        return c

    def test_hello_names_protocol_version(self) -> None:
        c = self.client()
        self.assertEqual(c.hello["event"], "hello")
        self.assertEqual(c.hello["protocol"], 1)
        self.assertEqual(c.hello["server"], "localhost")

    def test_room_chat_dm_and_history_between_two_users(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        self.assertTrue(alice.request("join", room="#lobby")["ok"])
        joined = bob.request("join", room="#lobby")
        self.assertEqual({m["user"] for m in joined["members"]}, {"alice", "bob"})
        said = alice.request("say", room="#lobby", text="hello bob")
        self.assertTrue(said["ok"])
        event = bob.event("message", room="#lobby")
        self.assertEqual(
            (event["from"], event["text"], event["msg_id"]), ("alice", "hello bob", said["msg_id"])
        )
        dm = bob.request("dm", to="alice", text="hi alice")
        self.assertEqual(dm["delivered"], True)
        self.assertEqual(alice.event("message", to="alice")["text"], "hi alice")
        history = alice.request("history", room="#lobby")
        self.assertEqual([m["text"] for m in history["messages"]], ["hello bob"])

    def test_offline_dms_arrive_in_order_at_next_login(self) -> None:
        alice = self.account("alice")
        bob = self.account("bob")
        bob.request("logout")
        bob.close()
        for i in range(3):
            reply = alice.request("dm", to="bob", text=f"m{i}")
            self.assertFalse(reply["delivered"])
        again = self.client()
        self.assertTrue(again.request("login", user="bob", password="correct horse")["ok"])
        got = [again.event("message", text=f"m{i}") for i in range(3)]
        self.assertEqual([g["offline"] for g in got], [True, True, True])
        self.assertEqual([g["msg_id"] for g in got], sorted(g["msg_id"] for g in got))

    def test_state_survives_a_restart(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#keep")
        alice.request("topic", room="#keep", topic="still here")
        alice.request("say", room="#keep", text="before restart")
        self.account("bob").close()
        alice.request("dm", to="bob", text="queued")  # bob is offline by now
        token = alice.token  # type: ignore[attr-defined]
        alice.close()
        self.server.stop()
        self.server.start()
        c = self.client()
        resumed = c.request("resume", token=token)
        self.assertTrue(resumed["ok"], resumed)
        self.assertIn("#keep", resumed["rooms"])
        joined = c.request("join", room="#keep")
        self.assertEqual(joined["topic"], "still here")
        history = c.request("history", room="#keep")
        self.assertEqual(history["messages"][-1]["text"], "before restart")
        bob = self.client()
        bob.request("login", user="bob", password="correct horse")
        self.assertEqual(bob.event("message", to="bob")["text"], "queued")

    def test_kill_9_loses_no_acknowledged_message(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#crash")
        acked = []
        for i in range(200):
            alice.send_raw(b'{"id": %d, "op": "say", "room": "#crash", "text": "n%d"}\n' % (i, i))
        for _ in range(200):
            reply = alice.read()
            if reply.get("ok") and "msg_id" in reply:
                acked.append(reply["msg_id"])
            if len(acked) >= 100:
                break
        self.server.kill()
        db = sqlite3.connect(self.server.data_dir / "pingchat.sqlite3")
        stored = {row[0] for row in db.execute("SELECT id FROM messages")}
        db.close()
        self.assertTrue(acked)
        self.assertLessEqual(set(acked), stored)

    def test_bad_input_gets_clear_errors_and_the_connection_survives(self) -> None:
        c = self.client()
        c.send_raw(b'{"op":"ping","pad":"' + b"x" * 20 * 1024 + b'"}\n')
        self.assertEqual(c.read()["error"]["code"], "line_too_long")
        c.send_raw(b"\xff\xfe\xfd\n")
        self.assertEqual(c.read()["error"]["code"], "bad_json")
        c.send_raw(b"{not json\n")
        self.assertEqual(c.read()["error"]["code"], "bad_json")
        self.assertEqual(c.request("frobnicate")["error"]["code"], "unknown_op")
        self.assertEqual(c.request("join", room="#x")["error"]["code"], "not_authenticated")
        self.assertTrue(c.request("ping")["ok"])
