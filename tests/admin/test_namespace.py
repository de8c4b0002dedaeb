"""The manhole's helpers, against a live chat service on an inline server."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from pingchat.admin.namespace import (
    HELPERS,
    AdminTools,
    Done,
    RateMeter,
    Report,
    Table,
)
from pingchat.auth.checkers import LoginDisabled, LoginFailed, PasswordCredentials
from pingchat.errors import BadRequest, Forbidden, InvalidName, NoSuchRoom, NoSuchUser
from pingchat.interfaces import IChatAvatar
from pingchat.model import Account
from pingchat.testing import RecordingMind
from tests.helpers import PASSWORD, ServerTestCase


class FakeIRCFactory:
    """Stands in for the IRC gateway's factory, kept in ``server.extras``."""

    door = "irc"

    def __init__(self) -> None:
        self.connections: set[object] = set()


class AdminTestCase(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.meter = RateMeter(
            self.clock,
            lambda: (self.server.chat.messages_stored, self.server.chat.messages_delivered),
        )
        self.tools = AdminTools(self.server, "root", self.clock, self.meter, "192.0.2.7")
        self.ns = self.tools.namespace()

    def result(self, d: Any) -> Any:
        self.assertIsInstance(d, Deferred)
        return self.successResultOf(d)

    def irc_session(self, name: str, address: str = "198.51.100.9") -> RecordingMind:
        """An IRC connection of the account *name* (a recording mind)."""
        account = self.result(self.server.store.get_account(name))
        mind = RecordingMind(address)
        mind.door = "irc"  # type: ignore[misc]
        self.server.chat.attach(account, mind, address)
        return mind

    def audit_rows(self, event: str) -> list[dict[str, Any]]:
        rows = self.result(self.server.store.recent_audit(100))
        return [r for r in rows if r["event"] == event]

    def password_login(self, name: str, password: str = PASSWORD) -> Any:
        return self.server.portal.login(
            PasswordCredentials(name, password, None, "127.0.0.1"), RecordingMind(), IChatAvatar
        )


class LookingTests(AdminTestCase):
    def test_namespace_offers_the_live_objects_and_every_helper(self) -> None:
        self.assertIs(self.ns["chat"], self.server.chat)
        self.assertIs(self.ns["store"], self.server.store)
        for name in (*HELPERS, "help"):
            self.assertTrue(callable(self.ns[name]), name)

    def test_who_lists_users_with_their_doors(self) -> None:
        self.account("alice")
        self.account("bob")
        self.irc_session("alice")
        table = self.ns["who"]()
        self.assertIsInstance(table, Table)
        rows = {r["user"]: r for r in table}
        self.assertEqual(rows["alice"]["doors"], ["irc", "native"])
        self.assertEqual(rows["alice"]["sessions"], 2)
        self.assertEqual(rows["bob"]["doors"], ["native"])
        text = repr(table)
        self.assertTrue(text.splitlines()[0].startswith("user"))
        self.assertIn("irc, native", text)

    def test_who_with_nobody_online_prints_none(self) -> None:
        self.assertEqual(repr(self.ns["who"]()), "(none)")

    def test_rooms_lists_rooms_with_online_members(self) -> None:
        alice = self.account("alice")
        self.assertTrue(alice.request("join", room="#lobby")["ok"])
        alice.request("topic", room="#lobby", topic="welcome")
        [row] = self.ns["rooms"]()
        self.assertEqual(
            (row["room"], row["members"], row["online"], row["topic"]),
            ("#lobby", 1, 1, "welcome"),
        )

    def test_sessions_of_a_user(self) -> None:
        self.account("alice")
        self.irc_session("alice", "198.51.100.9")
        table = self.ns["sessions"]("ALICE")
        self.assertEqual(
            sorted((r["door"], r["address"]) for r in table),
            [("irc", "198.51.100.9"), ("native", "127.0.0.1")],
        )

    def test_sessions_of_bad_or_absent_names_are_clear_errors(self) -> None:
        self.assertRaises(InvalidName, self.ns["sessions"], "not a name")
        e = self.assertRaises(NoSuchUser, self.ns["sessions"], "ghost")
        self.assertIn("ghost is not connected", str(e))

    def test_accounts_lists_every_account(self) -> None:
        self.account("alice").request("logout")
        self.result(self.server.store.set_role("alice", "admin"))
        table = self.result(self.ns["accounts"]())
        [row] = table
        self.assertEqual((row["account"], row["role"], row["disabled"]), ("alice", "admin", False))

    def test_audit_shows_recent_entries_newest_first(self) -> None:
        self.ns["broadcast"]("one")
        self.ns["broadcast"]("two")
        table = self.result(self.ns["audit"](2))
        self.assertEqual([r["event"] for r in table], ["admin_broadcast", "admin_broadcast"])
        self.assertIn('"two"', table[0]["detail"])
        self.assertRaises(BadRequest, self.ns["audit"], 0)

    def test_help_lists_helpers_and_describes_one(self) -> None:
        text = self.ns["help"]()
        for name in HELPERS:
            self.assertIn(name + "(", text)
        self.assertIn("every session", repr(self.ns["help"](self.ns["kick"])))


class KickTests(AdminTestCase):
    def test_kick_closes_every_session_through_every_door(self) -> None:
        native = self.account("alice")
        irc = self.irc_session("alice")
        bob = self.account("bob")
        done = self.ns["kick"]("alice", "flooding")
        self.assertEqual(done, "kicked alice: 2 session(s) closed")
        self.assertEqual(repr(done), "kicked alice: 2 session(s) closed")
        self.assertEqual(irc.disconnected, "flooding")
        self.assertEqual(native.take_events("disconnect")[0]["reason"], "flooding")
        self.assertTrue(native.transport.disconnecting)
        # The native door ended its session; a recording mind does not hang up by itself.
        self.assertEqual([s.mind for s in self.server.chat.sessions_of("alice")], [irc])
        self.assertFalse(bob.transport.disconnecting)
        [row] = self.audit_rows("admin_kick")
        self.assertEqual(
            (row["account"], row["actor"], row["address"]), ("alice", "root", "192.0.2.7")
        )
        self.assertIn("flooding", row["detail"])

    def test_kick_of_someone_not_connected_changes_nothing(self) -> None:
        self.assertRaises(NoSuchUser, self.ns["kick"], "ghost")
        self.assertRaises(InvalidName, self.ns["kick"], "")
        self.assertEqual(self.audit_rows("admin_kick"), [])


class AccountStateTests(AdminTestCase):
    def test_disable_ends_sessions_and_refuses_login(self) -> None:
        native = self.account("alice")
        irc = self.irc_session("alice")
        done = self.result(self.ns["disable"]("alice"))
        self.assertEqual(done, "alice disabled; 2 session(s) closed")
        self.assertTrue(native.transport.disconnecting)
        self.assertIsNotNone(irc.disconnected)
        account = self.result(self.server.store.get_account("alice"))
        self.assertTrue(account.disabled)
        self.failureResultOf(self.password_login("alice"), LoginDisabled)
        reply = self.client().request("resume", token=native.token)  # type: ignore[attr-defined]
        self.assertFalse(reply["ok"])
        [row] = self.audit_rows("admin_disable")
        self.assertEqual((row["account"], row["actor"]), ("alice", "root"))

    def test_a_login_already_past_its_password_check_is_refused_after_disable(self) -> None:
        self.account("alice").request("logout")
        self.result(self.ns["disable"]("alice"))
        # What the portal does once the password checker has said yes.
        d = self.server.portal.realm.requestAvatar("alice", RecordingMind(), IChatAvatar)
        self.failureResultOf(d, LoginDisabled)
        self.assertFalse(self.server.chat.is_online("alice"))

    def test_enable_lets_the_account_in_again(self) -> None:
        self.account("alice")
        self.result(self.ns["disable"]("alice"))
        self.assertEqual(self.result(self.ns["enable"]("alice")), "alice enabled")
        self.assertEqual(self.successResultOf(self.password_login("alice"))[1].name, "alice")
        self.assertEqual(len(self.audit_rows("admin_enable")), 1)

    def test_disable_of_an_unknown_account_fails_clearly(self) -> None:
        self.failureResultOf(self.ns["disable"]("ghost"), NoSuchUser)
        self.assertEqual(self.audit_rows("admin_disable"), [])

    def test_an_admin_cannot_disable_or_demote_themselves(self) -> None:
        self.assertRaises(Forbidden, self.ns["disable"], "Root")
        self.assertRaises(Forbidden, self.ns["demote"], "root")

    def test_reset_sets_a_new_password_shown_once(self) -> None:
        self.account("alice")
        done = self.result(self.ns["reset"]("alice"))
        password = done.rsplit(" ", 1)[1]
        self.assertGreaterEqual(len(password), 16)
        self.failureResultOf(self.password_login("alice"), LoginFailed)
        logged_in = self.successResultOf(self.password_login("alice", password))
        self.assertEqual(logged_in[1].name, "alice")
        [row] = self.audit_rows("passwd_reset")
        self.assertEqual((row["account"], row["actor"]), ("alice", "root"))
        self.assertNotIn(password, str(self.result(self.server.store.recent_audit(100))))

    def test_reset_of_an_unknown_account_fails(self) -> None:
        self.failureResultOf(self.ns["reset"]("ghost"), NoSuchUser)

    def test_promote_and_demote_change_the_role(self) -> None:
        self.account("alice")
        self.assertTrue(str(self.result(self.ns["promote"]("alice"))).startswith(
            "alice is now admin"))
        account: Account = self.result(self.server.store.get_account("alice"))
        self.assertTrue(account.is_admin)
        self.result(self.ns["demote"]("alice"))
        account = self.result(self.server.store.get_account("alice"))
        self.assertFalse(account.is_admin)
        mind = self.irc_session("alice")  # online: a promotion applies at once
        live = len(self.server.chat.sessions_of("alice"))
        self.assertEqual(str(self.result(self.ns["promote"]("alice"))),
                         f"alice is now admin; {live} live session(s) changed operator status")
        self.assertTrue(self.server.chat.moderation.is_operator("alice"))
        self.result(self.ns["demote"]("alice"))
        self.assertFalse(self.server.chat.moderation.is_operator("alice"))
        self.assertIsNone(mind.disconnected)
        rows = self.audit_rows("admin_promote") + self.audit_rows("admin_demote")
        self.assertEqual(
            [(r["event"], r["actor"]) for r in rows],
            [("admin_promote", "root")] * 2 + [("admin_demote", "root")] * 2,
        )


class ClosedRegistrationAdminTests(AdminTestCase):
    settings = {"registration": "closed"}

    def test_adduser_creates_an_account_whatever_the_policy_and_shows_the_password_once(
        self,
    ) -> None:
        done = self.result(self.ns["adduser"]("alice"))
        first_line = done.splitlines()[0]
        self.assertTrue(first_line.startswith("created user alice; password"), done)
        password = first_line.rsplit(" ", 1)[1]
        self.assertEqual(len([line for line in done.splitlines() if line.startswith("  ")]), 10)
        logged_in = self.successResultOf(self.password_login("alice", password))
        self.assertEqual(logged_in[1].name, "alice")
        self.result(self.ns["adduser"]("ada", admin=True))
        account: Account = self.result(self.server.store.get_account("ada"))
        self.assertTrue(account.is_admin)
        rows = self.audit_rows("register")
        self.assertEqual({(r["account"], r["actor"]) for r in rows},
                         {("alice", "root"), ("ada", "root")})
        self.assertNotIn(password, str(self.result(self.server.store.recent_audit(100))))


class InviteHelperTests(AdminTestCase):
    settings = {"registration": "invite"}

    def test_invite_shows_a_code_once_that_registers_one_account(self) -> None:
        done = self.result(self.ns["invite"]())
        code = done.split(": ", 1)[1].split()[0]
        self.assertRegex(code, r"^[a-z2-9]{4}(-[a-z2-9]{4}){3}$")
        c = self.client()
        self.assertTrue(c.request("register", user="ann", password=PASSWORD, invite=code)["ok"])
        table = self.result(self.ns["invites"]())
        self.assertEqual([(r["id"], r["state"], r["used"]) for r in table], [(1, "used", 1)])
        [row] = self.audit_rows("invite_create")
        self.assertEqual(row["actor"], "root")
        self.assertNotIn(code, str(self.result(self.server.store.recent_audit(100))))

    def test_revoke_invite_and_bad_terms(self) -> None:
        self.result(self.ns["invite"](uses=3, expires_days=0))
        self.assertEqual(self.result(self.ns["revoke_invite"](1)), "invite 1 revoked")
        self.assertEqual(self.result(self.ns["invites"]())[0]["state"], "revoked")
        self.failureResultOf(self.ns["revoke_invite"](1), BadRequest)
        self.assertRaises(BadRequest, self.ns["invite"], uses=0)
        self.assertRaises(BadRequest, self.ns["invite"], expires_days=-1)
        self.assertEqual(len(self.audit_rows("invite_revoke")), 1)


class TalkAndRoomTests(AdminTestCase):
    def test_broadcast_reaches_every_session_on_every_door(self) -> None:
        alice = self.account("alice")
        irc = self.irc_session("alice")
        self.account("bob")
        self.assertEqual(self.ns["broadcast"]("maintenance at noon"), "notice sent to 3 session(s)")
        [event] = alice.take_events("notice")
        self.assertEqual((event["text"], event["from"]), ("maintenance at noon", "test.pingchat"))
        self.assertEqual(irc.named("notice"), [("maintenance at noon", "test.pingchat")])
        [row] = self.audit_rows("admin_broadcast")
        self.assertEqual(row["actor"], "root")

    def test_broadcast_refuses_empty_text(self) -> None:
        self.assertRaises(BadRequest, self.ns["broadcast"], "  ")

    def test_topic_changes_and_is_announced(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#lobby")
        alice.take_events()
        self.assertEqual(self.result(self.ns["topic"]("#LOBBY", "be nice")), "topic of #lobby set")
        self.assertEqual(self.server.chat.get_room("#lobby").topic, "be nice")
        [event] = alice.take_events("topic")
        self.assertEqual((event["topic"], event["by"]), ("be nice", "root"))
        self.assertEqual(len(self.audit_rows("admin_topic")), 1)

    def test_topic_of_an_unknown_room(self) -> None:
        self.assertRaises(NoSuchRoom, self.ns["topic"], "#nowhere", "x")
        self.assertRaises(InvalidName, self.ns["topic"], "nowhere", "x")

    def test_ban_removes_the_user_and_keeps_them_out(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        alice.request("join", room="#lobby")
        bob.request("join", room="#lobby")
        self.assertEqual(self.result(self.ns["ban"]("#lobby", "bob")), "bob banned from #lobby")
        room = self.server.chat.get_room("#lobby")
        self.assertIsNone(room.member("bob"))
        self.assertEqual(bob.request("join", room="#lobby")["error"]["code"], "forbidden")
        self.assertEqual(len(self.audit_rows("admin_ban")), 1)
        self.result(self.ns["unban"]("#lobby", "bob"))
        self.assertTrue(bob.request("join", room="#lobby")["ok"])
        self.failureResultOf(self.ns["unban"]("#lobby", "bob"), BadRequest)


class StatsTests(AdminTestCase):
    def test_stats_counts_connections_per_door_and_sessions(self) -> None:
        irc_factory = FakeIRCFactory()
        irc_factory.connections.update({object(), object()})
        self.server.extras["irc"] = irc_factory
        self.server.extras["ircs"] = irc_factory  # one factory for both listeners
        self.account("alice")
        self.client()  # connected, not logged in
        self.irc_session("alice")
        stats = self.ns["stats"]()
        self.assertIsInstance(stats, Report)
        self.assertEqual(stats["connections"], {"native": 2, "irc": 2})
        self.assertEqual(stats["sessions"], {"irc": 1, "native": 1})
        self.assertEqual(stats["users_online"], 1)
        self.assertGreater(int(stats["memory_rss"].split(".")[0]), 0)
        self.assertIn("connections", repr(stats))
        self.assertIn("native=2, irc=2", repr(stats))

    def test_stats_without_other_doors(self) -> None:
        self.server.extras.pop("irc", None)
        self.server.extras["something"] = object()
        self.assertEqual(self.ns["stats"]()["connections"], {"native": 0})

    def test_message_rate_over_the_last_minute(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#a")
        self.clock.advance(10)
        self.meter.sample()
        for i in range(20):
            self.assertTrue(alice.request("say", room="#a", text=f"m{i}")["ok"])
        self.clock.advance(10)
        stored, _ = self.meter.rates()
        self.assertAlmostEqual(stored, 20 / 20)
        self.assertEqual(self.ns["stats"]()["messages_stored"], 20)
        self.clock.advance(120)
        self.meter.sample()
        self.assertEqual(self.meter.rates(), (0.0, 0.0))


class BufferedTests(ServerTestCase):
    def test_buffered_output_is_what_the_transports_have_not_sent(self) -> None:
        from twisted.internet.abstract import FileDescriptor
        from twisted.internet.testing import StringTransport

        from pingchat.admin.inspection import _buffered

        class Reactor:
            def addWriter(self, fd: object) -> None:  # noqa: N802
                pass

        tcp: Any = FileDescriptor(Reactor())  # type: ignore[arg-type]
        tcp.connected = 1
        tcp.write(b"12345")
        tcp.write(b"678")
        self.assertEqual(_buffered(tcp), 8)
        # Transports it cannot read count as nothing, not as an error.
        self.assertEqual(_buffered(StringTransport()), 0)
        self.assertEqual(_buffered(None), 0)


class ValueTests(ServerTestCase):
    def test_table_aligns_columns(self) -> None:
        table = Table(("a", "long"), [{"a": "xyz", "long": 1}, {"a": None, "long": True}])
        self.assertEqual(repr(table), "a    long\nxyz  1\n-    yes")
        self.assertEqual(table[0]["a"], "xyz")

    def test_done_prints_without_quotes(self) -> None:
        self.assertEqual(repr(Done("ok")), "ok")
