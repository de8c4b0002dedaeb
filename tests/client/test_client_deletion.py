"""Deleted messages in the terminal client: the ``deleted`` event, history
tombstones, and ``/delete``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pingchat.client.app import ChatClient
from pingchat.client.commands import CommandError, parse
from pingchat.client.configdir import ConfigDir, ServerAddress
from pingchat.client.testing import FakeConnector, FakeFrontend, FakeServer
from pingchat.client.trust import Insecure
from pingchat.client.view import DELETED

TS = "2026-01-01T10:00:00.000Z"



class ClientTestCase(TestCase):
    """The terminal client logged in as alice to a scripted server."""

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-client-test-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.fake = FakeServer()
        self.fake.on("key.get", lambda a: {"user": a["user"], "public_key": None,
                                           "fingerprint": None})
        self.fake.on("key.publish", lambda a: {"fingerprint": "f"})
        self.fake.on("history", lambda a: {"messages": []})
        self.fake.on("login", lambda a: {"user": a["user"], "token": "t", "expires_at": "x",
                                         "rooms": []})

    def login(self) -> tuple[ChatClient, FakeFrontend]:
        client = ChatClient(Clock(), ServerAddress("chat.example"), ConfigDir(self.dir),
                            Insecure(), connector=FakeConnector())  # type: ignore[arg-type]
        frontend = FakeFrontend("login", "alice", "pw")
        client.start(frontend)
        client.state_changed("logging in", "")
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        return client, frontend


class ParseTests(ClientTestCase):
    def test_delete_takes_an_id_or_a_user_and_a_reason(self) -> None:
        self.assertEqual(parse("/delete").args, {})
        self.assertEqual(parse("/delete 42").args, {"id": "42"})
        self.assertEqual(parse("/del bob spam and more").args,
                         {"user": "bob", "reason": "spam and more"})
        self.assertEqual(parse("/redact 7 wrong room").args, {"id": "7", "reason": "wrong room"})


class DeletionTests(ClientTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client_, self.frontend = self.login()
        self.fake.on("join", lambda a: {"room": a["room"], "topic": None, "members": []})
        self.fake.on("say", lambda a: {"msg_id": 3, "ts": TS})
        self.fake.on("message.delete", lambda a: {})
        self.client_.input("/join #a")

    def event(self, **fields: Any) -> None:
        self.client_.event(self.fake, fields)  # type: ignore[arg-type]

    def lines(self, title: str) -> list[tuple[str | None, str]]:
        window = self.client_.windows.find(title)
        assert window is not None
        return [(line.sender, line.text) for line in window.lines if line.kind != "event"]

    def test_a_deleted_message_is_replaced_and_who_did_it_is_said(self) -> None:
        self.event(event="message", room="#a", **{"from": "bob"}, text="a secret", msg_id=5, ts=TS)
        self.event(event="message", room="#a", **{"from": "bob"}, text="kept", msg_id=6, ts=TS)
        self.event(event="deleted", room="#a", **{"from": "bob"}, msg_id=5, ts=TS, by="carol",
                   reason="spam")
        self.assertEqual(self.lines("#a"), [("bob", DELETED), ("bob", "kept")])
        self.assertIn("carol deleted a message from bob: spam", self.frontend.text())
        self.assertNotIn("a secret", str(self.client_.windows.find("#a").lines))  # type: ignore[union-attr]

    def test_a_deleted_dm_is_found_in_the_conversation_with_the_other_party(self) -> None:
        self.event(event="message", to="alice", **{"from": "bob"}, text="psst", msg_id=8, ts=TS)
        self.event(event="deleted", to="alice", **{"from": "bob"}, msg_id=8, ts=TS, by="bob",
                   reason=None)
        self.assertEqual(self.lines("bob"), [("bob", DELETED)])
        self.assertIn("bob deleted their message", self.frontend.text())

    def test_a_deletion_elsewhere_opens_no_window(self) -> None:
        before = len(self.client_.windows.items)
        self.event(event="deleted", room="#elsewhere", **{"from": "bob"}, msg_id=9, ts=TS,
                   by="bob", reason=None)
        self.assertEqual(len(self.client_.windows.items), before)

    def test_history_shows_tombstones(self) -> None:
        self.fake.on("history", lambda a: {"messages": [
            {"msg_id": 1, "ts": TS, "from": "bob", "room": "#b", "text": "old"},
            {"msg_id": 2, "ts": TS, "from": "bob", "room": "#b", "deleted": True},
        ]})
        self.client_.input("/join #b")
        self.assertEqual(self.lines("#b")[-2:], [("bob", "old"), ("bob", DELETED)])

    def test_delete_without_arguments_deletes_ones_own_last_message_here(self) -> None:
        self.client_.input("hello all")
        self.event(event="message", room="#a", **{"from": "bob"}, text="later", msg_id=4, ts=TS)
        self.client_.input("/delete")
        self.assertEqual(self.fake.sent("message.delete"), [{"op": "message.delete", "msg_id": 3}])

    def test_delete_user_deletes_their_last_message_with_a_reason(self) -> None:
        for msg_id in (4, 5):
            self.event(event="message", room="#a", **{"from": "bob"}, text=f"m{msg_id}",
                       msg_id=msg_id, ts=TS)
        self.event(event="deleted", room="#a", **{"from": "bob"}, msg_id=5, ts=TS, by="alice",
                   reason=None)
        self.client_.input("/delete BOB flooding")
        self.client_.input("/delete 99")
        self.assertEqual(
            self.fake.sent("message.delete"),
            [{"op": "message.delete", "msg_id": 4, "reason": "flooding"},
             {"op": "message.delete", "msg_id": 99}],
        )

    def test_delete_with_nothing_to_delete_says_so(self) -> None:
        self.client_.input("/delete carol")
        self.assertEqual(self.fake.sent("message.delete"), [])
        self.assertIn("no message carol has sent is shown in this window", self.frontend.text())
        self.client_.windows.switch(self.client_.windows.items[0])
        self.client_.input("/delete 5")
        self.assertIn("/delete works in a room or conversation window", self.frontend.text())
        self.assertRaises(CommandError, parse, "/nonesuch")
