"""Moderation in the chat service: who may delete what, who hears of it, operators."""

from __future__ import annotations

import json
from typing import Any

from pingchat.chat.session import Session
from pingchat.errors import Forbidden, NoSuchMessage, NoSuchUser, NotInRoom
from pingchat.model import Message
from tests.backends import on_postgresql
from tests.chat.helpers import SessionTestCase


class ModerationTestCase(SessionTestCase):
    def audit(self, event: str) -> list[dict[str, Any]]:
        rows = self.successResultOf(self.server.store.recent_audit(100))
        return [
            {**r, "detail": json.loads(r["detail"]) if r["detail"] else None}
            for r in rows
            if r["event"] == event
        ]

    def setUp(self) -> None:
        super().setUp()
        chat = self.server.chat
        self.alice, self.amind = self.session("alice")  # creates #x: its operator
        self.bob, self.bmind = self.session("bob")
        self.carol, self.cmind = self.session("carol")  # in no room
        self.successResultOf(chat.join(self.alice, "#x"))
        self.successResultOf(chat.join(self.bob, "#x"))

    def say(self, who: Session, text: str, room: str = "#x") -> Message:
        return self.successResultOf(self.server.chat.say(who, room, text))

    def dm(self, who: Session, to: str, text: str) -> Message:
        return self.successResultOf(self.server.chat.dm(who, to, text=text))[0]

    def delete(self, who: Session, m: Message, **kw: Any) -> Any:
        return self.server.chat.moderation.delete_message(who, m.id, **kw)


class DeletionRightsTests(ModerationTestCase):
    def test_the_author_deletes_their_own_room_message(self) -> None:
        m = self.say(self.bob, "oops")
        tombstone = self.successResultOf(self.delete(self.bob, m))
        self.assertEqual((tombstone.id, tombstone.text, tombstone.deleted_by), (m.id, None, "bob"))
        self.assertEqual(self.audit("message_deleted"), [])  # one's own: not audited

    def test_a_member_who_is_not_an_operator_cannot_delete_anothers(self) -> None:
        m = self.say(self.alice, "mine")
        self.failureResultOf(self.delete(self.bob, m), Forbidden)
        self.assertIsNone(self.successResultOf(self.server.store.message_by_id(m.id)).deleted_at)

    def test_a_stranger_is_told_there_is_no_such_message(self) -> None:
        m = self.say(self.alice, "members only")
        self.failureResultOf(self.delete(self.carol, m), NoSuchMessage)

    def test_the_room_operator_deletes_anothers_message_and_it_is_audited(self) -> None:
        m = self.say(self.bob, "spam")
        self.successResultOf(self.delete(self.alice, m, reason="spam\r\nSPAM"))
        (row,) = self.audit("message_deleted")
        self.assertEqual((row["account"], row["actor"]), ("bob", "alice"))
        self.assertEqual(
            row["detail"],
            {"msg_id": m.id, "room": "#x", "to": None, "right": "room_operator",
             "reason": "spam SPAM"},
        )

    def test_a_room_operator_cannot_delete_a_dm_between_others(self) -> None:
        m = self.dm(self.bob, "carol", "private")
        self.failureResultOf(self.delete(self.alice, m), NoSuchMessage)

    def test_the_recipient_of_a_dm_cannot_delete_it(self) -> None:
        m = self.dm(self.bob, "carol", "private")
        self.failureResultOf(self.delete(self.carol, m), Forbidden)
        self.successResultOf(self.delete(self.bob, m))

    def test_an_admin_deletes_anything_even_where_they_are_not(self) -> None:
        admin, _ = self.session("moddy", admin=True)
        room_message, dm = self.say(self.bob, "in #x"), self.dm(self.bob, "carol", "a dm")
        self.successResultOf(self.delete(admin, room_message))
        self.successResultOf(self.delete(admin, dm))
        rights = [r["detail"]["right"] for r in self.audit("message_deleted")]
        self.assertEqual(rights, ["operator", "operator"])

    def test_the_author_may_delete_after_leaving_the_room(self) -> None:
        m = self.say(self.bob, "said before leaving")
        self.successResultOf(self.server.chat.part(self.bob, "#x"))
        self.successResultOf(self.delete(self.bob, m))

    def test_deleted_twice_or_never_stored_is_no_such_message(self) -> None:
        m = self.say(self.bob, "once")
        self.successResultOf(self.delete(self.bob, m))
        self.failureResultOf(self.delete(self.bob, m), NoSuchMessage)
        moderation = self.server.chat.moderation
        self.failureResultOf(moderation.delete_message(self.bob, 10**9), NoSuchMessage)

    def test_a_named_conversation_must_be_the_messages(self) -> None:
        self.successResultOf(self.server.chat.join(self.alice, "#y"))
        m = self.say(self.alice, "in #x")
        self.failureResultOf(self.delete(self.alice, m, room="#y"), NoSuchMessage)
        dm = self.dm(self.alice, "bob", "hi")
        self.failureResultOf(self.delete(self.alice, dm, with_="carol"), NoSuchMessage)
        self.failureResultOf(self.delete(self.alice, dm, room="#x"), NoSuchMessage)
        self.successResultOf(self.delete(self.alice, dm, with_="BOB"))

    def test_a_guest_deletes_what_it_said_in_this_session_only(self) -> None:
        chat = self.server.chat
        guest, _ = self.guest("visitor")
        self.successResultOf(chat.join(guest, "#x"))
        m = self.say(guest, "guest words")
        chat.detach(guest)
        self.clock.advance(1)
        later, _ = self.guest("visitor")  # someone else under the same nick
        self.successResultOf(chat.join(later, "#x"))
        self.failureResultOf(self.delete(later, m), Forbidden)
        again = self.say(later, "mine this time")
        self.successResultOf(self.delete(later, again))


class DeletionEventTests(ModerationTestCase):
    def test_every_session_of_every_member_is_told_and_no_one_else(self) -> None:
        _bob2, bmind2 = self.session("bob")
        m = self.say(self.alice, "to be deleted")
        self.successResultOf(self.delete(self.alice, m, reason="typo"))
        for mind in (self.amind, self.bmind, bmind2):
            ((tombstone, by, reason),) = mind.named("message_deleted")
            self.assertEqual(
                (tombstone.id, tombstone.room, by, reason), (m.id, "#x", "alice", "typo")
            )
            self.assertIsNotNone(tombstone.deleted_at)
        self.assertEqual(self.cmind.named("message_deleted"), [])

    def test_both_parties_of_a_dm_are_told(self) -> None:
        m = self.dm(self.bob, "carol", "private")
        self.successResultOf(self.delete(self.bob, m))
        for mind in (self.bmind, self.cmind):
            self.assertEqual([t.id for t, _, _ in mind.named("message_deleted")], [m.id])
        self.assertEqual(self.amind.named("message_deleted"), [])

    def test_an_admin_outside_the_room_is_told_as_the_deleter(self) -> None:
        admin, rmind = self.session("moddy", admin=True)
        m = self.say(self.bob, "spam")
        self.successResultOf(self.delete(admin, m))
        self.assertEqual([by for _, by, _ in rmind.named("message_deleted")], ["moddy"])

    def test_history_shows_the_tombstone(self) -> None:
        kept, doomed = self.say(self.bob, "kept"), self.say(self.bob, "doomed")
        self.successResultOf(self.delete(self.bob, doomed))
        history = self.successResultOf(self.server.chat.history(self.alice, room="#x"))
        self.assertEqual(
            [m.to_event().get("text", "deleted" if m.to_event().get("deleted") else None)
             for m in history],
            ["kept", "deleted"],
        )
        self.assertEqual([m.id for m in history], [kept.id, doomed.id])


class OperatorTests(ModerationTestCase):
    def test_an_admins_sessions_are_operators_from_login(self) -> None:
        moderation = self.server.chat.moderation
        admin, _ = self.session("moddy", admin=True)
        self.assertEqual((admin.operator, self.bob.operator), ("moddy", None))
        self.assertTrue(moderation.is_operator("moddy"))
        self.assertFalse(moderation.is_operator("bob"))
        self.assertEqual(moderation.operator_count(), 1)
        self.server.chat.detach(admin)
        self.assertEqual(moderation.operator_count(), 0)

    def test_grant_needs_an_administrators_account_and_is_audited(self) -> None:
        moderation = self.server.chat.moderation
        bob_account = self.bob.account
        assert bob_account is not None
        self.assertRaises(Forbidden, moderation.grant, self.carol, bob_account)
        self.session("moddy", admin=True)
        root = self.successResultOf(self.server.store.get_account("moddy"))
        moderation.grant(self.carol, root)
        self.assertEqual(self.carol.operator, "moddy")
        ((row),) = self.audit("oper")
        self.assertEqual((row["account"], row["actor"]), ("moddy", "carol"))

    def test_losing_the_admin_role_ends_the_operator_sessions_it_vouched_for(self) -> None:
        moderation = self.server.chat.moderation
        admin, _ = self.session("moddy", admin=True)
        moddy = self.successResultOf(self.server.store.get_account("moddy"))
        moderation.grant(self.carol, moddy)
        demoted = self.successResultOf(self.server.store.set_role("MODDY", "user"))
        self.assertEqual(moderation.role_changed(demoted), 2)
        self.assertEqual((admin.operator, self.carol.operator), (None, None))
        self.assertEqual(moderation.operator_count(), 0)

    def test_gaining_the_admin_role_makes_the_live_sessions_operators(self) -> None:
        moderation = self.server.chat.moderation
        promoted = self.successResultOf(self.server.store.set_role("bob", "admin"))
        self.assertEqual(moderation.role_changed(promoted), 1)
        self.assertEqual(self.bob.operator, "bob")
        self.assertTrue(moderation.is_operator("bob"))

    def test_an_operator_overrides_kick_mode_and_topic_and_each_is_audited(self) -> None:
        chat = self.server.chat
        admin, _ = self.session("moddy", admin=True)  # not in #x
        self.successResultOf(chat.set_topic(admin, "#x", "set by an operator"))
        self.successResultOf(chat.change_modes(admin, "#x", [("+k", "sekrit"), ("+m", None)]))
        self.successResultOf(chat.kick(admin, "#x", "bob", "enough"))
        room = chat.get_room("#x")
        self.assertEqual((room.topic, room.key, "bob" in room.members), ("set by an operator",
                                                                           "sekrit", False))
        actions = [(r["detail"]["action"], r["actor"]) for r in self.audit("oper_override")]
        self.assertEqual(
            sorted(actions), [("kick", "moddy"), ("mode", "moddy"), ("topic", "moddy")]
        )
        mode_row = next(r for r in self.audit("oper_override") if r["detail"]["action"] == "mode")
        self.assertNotIn("sekrit", json.dumps(mode_row))  # a key is a secret

    def test_without_operator_status_the_room_rules_hold(self) -> None:
        chat = self.server.chat
        self.assertRaises(Forbidden, chat.set_topic, self.bob, "#x", "nope")
        self.assertRaises(NotInRoom, chat.set_topic, self.carol, "#x", "nope")
        self.assertRaises(Forbidden, chat.change_modes, self.bob, "#x", [("+m", None)])
        self.assertRaises(Forbidden, chat.kick, self.bob, "#x", "alice")
        self.assertRaises(NotInRoom, chat.kick, self.carol, "#x", "alice")
        self.successResultOf(chat.kick(self.alice, "#x", "bob"))  # the room's own operator
        self.assertEqual(self.audit("oper_override"), [])

    def test_kill_closes_every_session_of_the_user_and_is_audited(self) -> None:
        moderation = self.server.chat.moderation
        admin, _ = self.session("moddy", admin=True)
        _bob2, bmind2 = self.session("bob")
        self.assertRaises(Forbidden, moderation.kill, self.carol, "bob", "no")
        self.assertIsNone(self.bmind.disconnected)
        self.assertEqual(moderation.kill(admin, "BOB", "flooding"), 2)
        self.assertEqual(self.bmind.disconnected, "Killed by moddy: flooding")
        self.assertEqual(bmind2.disconnected, "Killed by moddy: flooding")
        self.assertRaises(NoSuchUser, moderation.kill, admin, "nobody", None)
        ((row),) = self.audit("kill")
        self.assertEqual((row["account"], row["actor"], row["detail"]["reason"]),
                         ("bob", "moddy", "flooding"))

    def test_wallops_only_from_operators_to_every_mind(self) -> None:
        moderation = self.server.chat.moderation
        admin, rmind = self.session("moddy", admin=True)
        self.assertRaises(Forbidden, moderation.wallops, self.bob, "hello")
        self.assertEqual(self.amind.named("wallops"), [])
        moderation.wallops(admin, "maintenance at noon")
        for mind in (self.amind, self.bmind, self.cmind, rmind):
            self.assertEqual(mind.named("wallops"), [("maintenance at noon", "moddy")])


DeletionRightsTestsOnPostgreSQL = on_postgresql(DeletionRightsTests)
DeletionEventTestsOnPostgreSQL = on_postgresql(DeletionEventTests)
OperatorTestsOnPostgreSQL = on_postgresql(OperatorTests)
