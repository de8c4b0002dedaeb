"""The native door's moderation: ``message.delete``, ``deleted`` events, ``kill``,
operators' overrides, over StringTransport."""

from __future__ import annotations

from tests.backends import on_postgresql
from tests.helpers import ServerTestCase


class MessageDeleteTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("alice")
        self.bob = self.account("bob")
        self.bob2 = self.login("bob")  # a second session of bob's
        self.carol = self.account("carol")
        self.alice.request("join", room="#x")
        self.bob.request("join", room="#x")
        for c in (self.alice, self.bob, self.bob2, self.carol):
            c.take_events()

    def test_the_author_deletes_and_every_member_session_gets_deleted(self) -> None:
        sent = self.bob.request("say", room="#x", text="regrettable")
        reply = self.bob.request("message.delete", msg_id=sent["msg_id"], reason="typo")
        self.assertEqual(reply, {"id": reply["id"], "ok": True})
        expected = {
            "event": "deleted", "msg_id": sent["msg_id"], "ts": sent["ts"], "from": "bob",
            "room": "#x", "by": "bob", "reason": "typo",
        }
        for c in (self.alice, self.bob, self.bob2):
            self.assertEqual(c.take_events("deleted"), [expected])
        self.assertEqual(self.carol.take_events("deleted"), [])

    def test_history_holds_a_tombstone_where_the_message_was(self) -> None:
        kept = self.alice.request("say", room="#x", text="kept")
        doomed = self.bob.request("say", room="#x", text="regrettable")
        self.bob.request("message.delete", msg_id=doomed["msg_id"])
        messages = self.alice.request("history", room="#x")["messages"]
        self.assertEqual(
            messages,
            [
                {"msg_id": kept["msg_id"], "ts": kept["ts"], "from": "alice", "room": "#x",
                 "text": "kept"},
                {"msg_id": doomed["msg_id"], "ts": doomed["ts"], "from": "bob", "room": "#x",
                 "deleted": True},
            ],
        )

    def test_refusals_name_what_went_wrong(self) -> None:
        mine = self.alice.request("say", room="#x", text="alice's")
        self.assertError(self.bob.request("message.delete", msg_id=mine["msg_id"]), "forbidden")
        self.assertError(
            self.carol.request("message.delete", msg_id=mine["msg_id"]), "no_such_message"
        )
        self.assertError(self.bob.request("message.delete", msg_id=10**9), "no_such_message")
        self.assertError(self.bob.request("message.delete", msg_id="1"), "bad_request")
        self.assertError(self.bob.request("message.delete", msg_id=2**64), "bad_request")
        self.assertError(
            self.alice.request("message.delete", msg_id=mine["msg_id"], reason=7), "bad_request"
        )
        self.assertEqual(self.alice.take_events("deleted"), [])

    def test_a_dm_is_deleted_for_both_parties_and_a_queued_one_never_arrives(self) -> None:
        sent = self.alice.request("dm", to="carol", text="hello carol")
        self.alice.request("message.delete", msg_id=sent["msg_id"])
        event = {"event": "deleted", "msg_id": sent["msg_id"], "ts": sent["ts"], "from": "alice",
                 "to": "carol", "by": "alice", "reason": None}
        self.assertEqual(self.carol.take_events("deleted"), [event])
        self.assertEqual(self.alice.take_events("deleted"), [event])
        self.assertEqual(self.bob.take_events("deleted"), [])
        # dave is offline: his DM waits in the queue, then is deleted
        self.account("dave").request("logout")
        queued = self.alice.request("dm", to="dave", text="while you were out")
        self.assertFalse(queued["delivered"])
        self.alice.request("message.delete", msg_id=queued["msg_id"])
        dave = self.login("dave")
        self.assertEqual(dave.take_events("message"), [])


class OperatorTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("alice")
        self.bob = self.account("bob")
        self.alice.request("join", room="#x")
        self.bob.request("join", room="#x")
        self.account("moddy")
        self.successResultOf(self.server.store.set_role("moddy", "admin"))
        self.admin = self.login("moddy")  # logged in after promotion: an operator
        for c in (self.alice, self.bob, self.admin):
            c.take_events()

    def test_an_admin_deletes_any_message(self) -> None:
        sent = self.bob.request("say", room="#x", text="spam")
        self.bob.take_events()
        self.assertTrue(self.admin.request("message.delete", msg_id=sent["msg_id"])["ok"])
        (event,) = self.bob.take_events("deleted")
        self.assertEqual(event["by"], "moddy")

    def test_an_admin_kicks_and_sets_modes_and_topic_without_being_in_the_room(self) -> None:
        self.assertTrue(self.admin.request("topic", room="#x", topic="calm down")["ok"])
        reply = self.admin.request("mode", room="#x", set="+m")
        self.assertEqual(reply["applied"], [["+m", None]])
        self.assertTrue(self.admin.request("kick", room="#x", user="bob", reason="out")["ok"])
        self.assertEqual(
            [e["event"] for e in self.alice.take_events() if e["event"] != "presence"],
            ["topic", "mode", "kicked"],
        )

    def test_a_user_cannot(self) -> None:
        self.assertError(self.bob.request("topic", room="#x", topic="mine"), "forbidden")
        self.assertError(self.bob.request("kick", room="#x", user="alice"), "forbidden")
        self.assertError(self.bob.request("mode", room="#x", set="+m"), "forbidden")
        self.assertError(self.bob.request("kill", user="alice"), "forbidden")

    def test_kill_disconnects_every_session(self) -> None:
        alice2 = self.login("alice")
        reply = self.admin.request("kill", user="alice", reason="enough")
        self.assertEqual((reply["user"], reply["sessions"]), ("alice", 2))
        for c in (self.alice, alice2):
            self.assertEqual(c.take_events("disconnect"),
                             [{"event": "disconnect", "reason": "Killed by moddy: enough"}])
            self.assertTrue(c.transport.disconnecting)
        self.assertError(self.admin.request("kill", user="alice"), "no_such_user")

    def test_wallops_reach_operators_as_notices(self) -> None:
        self.server.chat.moderation.wallops(self.server.chat.sessions_of("moddy")[-1], "hi ops")
        self.assertEqual(
            self.admin.take_events("notice"),
            [{"event": "notice", "text": "hi ops", "wallops": True, "from": "moddy"}],
        )
        self.assertEqual(self.bob.take_events("notice"), [])


MessageDeleteTestsOnPostgreSQL = on_postgresql(MessageDeleteTests)
