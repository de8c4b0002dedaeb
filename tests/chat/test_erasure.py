"""Account deletion in the running server: sessions, rooms, the name's
reservation, and deletions made by another process (``pingchat user delete``)."""

from __future__ import annotations

from typing import Any

from pingchat.chat.erasure import DAY_MS, RESERVE_DAYS, name_digest
from pingchat.chat.session import Session
from pingchat.errors import InvalidName, NoSuchUser
from pingchat.store import open_store
from pingchat.testing import RecordingMind
from tests.backends import on_postgresql
from tests.helpers import ServerTestCase


class EraserTests(ServerTestCase):
    def session(
        self, name: str, mind: RecordingMind | None = None
    ) -> tuple[Session, RecordingMind]:
        account = self.successResultOf(self.server.store.get_account(name))
        if account is None:
            self.successResultOf(self.server.accounts.register(name, "password one"))
            account = self.successResultOf(self.server.store.get_account(name))
        mind = mind or RecordingMind()
        return self.server.chat.attach(account, mind, "127.0.0.1"), mind

    def erase(self, name: str, **kw: Any) -> dict[str, Any]:
        eraser = self.server.accounts.eraser
        return self.successResultOf(eraser.erase(name, "ada", "10.1.1.1", **kw))  # type: ignore[no-any-return]

    def test_every_session_ends_and_the_rooms_forget_the_account(self) -> None:
        chat = self.server.chat
        alice, alice_mind = self.session("alice")
        _, alice2_mind = self.session("alice")
        bob, bob_mind = self.session("bob")
        for s in (alice, bob):
            self.successResultOf(chat.join(s, "#lobby"))
        self.successResultOf(chat.say(alice, "#lobby", "hello"))
        result = self.erase("alice")
        self.assertEqual(result["sessions"], 2)
        self.assertEqual(result["removed"], 1)
        self.assertEqual(alice_mind.disconnected, "this account has been deleted")
        self.assertEqual(alice2_mind.disconnected, "this account has been deleted")
        self.assertEqual(list(chat.get_room("#lobby").members), ["bob"])
        parted = ("#lobby", "alice", "this account has been deleted")
        self.assertIn(parted, bob_mind.named("parted"))
        self.assertEqual(chat.rooms_of("alice"), [])
        self.assertIsNone(self.successResultOf(self.server.store.get_account("alice")))
        history = self.successResultOf(chat.history(bob, room="#lobby"))
        self.assertEqual(history, [])

    def test_the_deletion_is_audited_under_the_placeholder(self) -> None:
        self.session("alice")
        result = self.erase("alice")
        rows = self.successResultOf(self.server.store.recent_audit(50))
        self.assertEqual(rows[0]["event"], "account_deleted")
        self.assertEqual(rows[0]["account"], result["placeholder"])
        self.assertEqual(rows[0]["actor"], "ada")
        self.assertIn('"messages": "remove"', rows[0]["detail"])
        self.assertFalse([r for r in rows if "alice" in str(r).lower()], rows)

    def test_a_deleted_name_cannot_be_registered_for_thirty_days(self) -> None:
        self.session("alice")
        self.erase("alice")
        failure = self.failureResultOf(self.server.accounts.register("ALICE", "password two"))
        failure.trap(InvalidName)
        self.assertIn("deleted account", failure.value.message)
        self.clock.advance(RESERVE_DAYS * DAY_MS / 1000)
        self.successResultOf(self.server.accounts.register("ALICE", "password two"))

    def test_an_administrator_may_give_a_deleted_name_out_again(self) -> None:
        self.session("alice")
        self.erase("alice")
        result = self.successResultOf(
            self.server.accounts.create_account_admin("alice", "password two", "ada", "user")
        )
        self.assertEqual(result["account"].name, "alice")

    def test_placeholder_names_cannot_be_registered(self) -> None:
        for name in ("deleted-1", "Deleted-x"):
            self.failureResultOf(self.server.accounts.register(name, "password one"), InvalidName)

    def test_deleting_an_unknown_account_fails(self) -> None:
        self.failureResultOf(
            self.server.accounts.eraser.erase("nobody", "ada"), NoSuchUser  # type: ignore[union-attr]
        )

    def test_topic_setter_and_bans_of_the_name_are_rewritten_in_memory(self) -> None:
        chat = self.server.chat
        alice, _ = self.session("alice")
        self.successResultOf(chat.join(alice, "#lobby"))
        self.successResultOf(chat.set_topic(alice, "#lobby", "welcome"))
        self.successResultOf(chat.change_modes(None, "#lobby", [("+b", "alice"), ("+b", "eve")]))
        result = self.erase("alice")
        room = chat.get_room("#lobby")
        self.assertEqual((room.topic, room.topic_by), ("welcome", result["placeholder"]))
        self.assertEqual(room.bans, ["eve!*@*"])



EraserTestsOnPostgreSQL = on_postgresql(EraserTests)


class WalTests(ServerTestCase):
    """SQLite: the WAL, which holds pages as they were, is emptied afterwards."""

    def test_the_wal_is_emptied_afterwards(self) -> None:
        account = self.successResultOf(self.server.accounts.register("alice", "password one"))
        self.assertEqual(account["account"].name, "alice")
        self.successResultOf(self.server.accounts.eraser.erase("alice", "ada"))
        self.successResultOf(self.server.accounts.eraser.wal_emptied)
        wal = self.data_dir / "pingchat.sqlite3-wal"
        self.assertEqual(wal.stat().st_size if wal.exists() else 0, 0)


class WatcherTests(ServerTestCase):
    """A deletion made in another process (the command) reaches this server's memory."""

    def session(self, name: str) -> tuple[Session, RecordingMind]:
        self.successResultOf(self.server.accounts.register(name, "password one"))
        account = self.successResultOf(self.server.store.get_account(name))
        mind = RecordingMind()
        return self.server.chat.attach(account, mind, "127.0.0.1"), mind

    def delete_elsewhere(self, name: str) -> str:
        """Delete *name* as ``pingchat user delete`` does, on a connection of its own."""
        other = open_store(
            self.store_config.get("store"), self.data_dir / "pingchat.sqlite3", threaded=False
        )
        try:
            digest = name_digest(self.server.accounts.sealer, name)
            deletion = self.successResultOf(other.begin_account_deletion(name, digest, 0, 1))
            while self.successResultOf(other.erase_messages(deletion, "remove", 100)).total:
                pass
            self.successResultOf(other.finish_account_deletion(deletion, "remove", 0))
        finally:
            other.db.stop()
        return deletion.placeholder

    def watcher(self) -> Any:
        return self.server.top.getServiceNamed("deletion-watcher")

    def test_sessions_and_memberships_end_at_the_next_look(self) -> None:
        chat = self.server.chat
        alice, alice_mind = self.session("alice")
        bob, bob_mind = self.session("bob")
        for s in (alice, bob):
            self.successResultOf(chat.join(s, "#lobby"))
        self.delete_elsewhere("alice")
        self.assertIsNone(alice_mind.disconnected)  # not yet: another process did it
        self.assertEqual(self.successResultOf(self.watcher().look()), 1)
        self.assertEqual(alice_mind.disconnected, "this account has been deleted")
        self.assertEqual(list(chat.get_room("#lobby").members), ["bob"])
        parted = ("#lobby", "alice", "this account has been deleted")
        self.assertIn(parted, bob_mind.named("parted"))
        self.assertEqual(self.successResultOf(self.watcher().look()), 0)

    def test_an_offline_member_leaves_the_rooms_too(self) -> None:
        chat = self.server.chat
        alice, _ = self.session("alice")
        self.successResultOf(chat.join(alice, "#lobby"))
        chat.detach(alice)
        self.delete_elsewhere("alice")
        self.assertEqual(self.successResultOf(self.watcher().look()), 1)
        self.assertEqual(list(chat.get_room("#lobby").members), [])

    def test_the_watcher_looks_every_two_seconds_once_started(self) -> None:
        _, alice_mind = self.session("alice")
        watcher = self.watcher()
        watcher.startService()
        self.addCleanup(watcher.stopService)
        self.delete_elsewhere("alice")
        self.clock.advance(1.9)
        self.assertIsNone(alice_mind.disconnected)
        self.clock.advance(0.1)
        self.assertEqual(alice_mind.disconnected, "this account has been deleted")

    def test_deletions_before_the_server_started_are_not_looked_at_again(self) -> None:
        self.session("alice")
        self.delete_elsewhere("alice")
        from pingchat.testing import make_server

        self.server.db.stop()
        again = make_server(self.data_dir, **self.store_config)
        self.addCleanup(again.db.stop)
        watcher = again.top.getServiceNamed("deletion-watcher")
        self.assertEqual(watcher.last, 1)
        self.assertEqual(self.successResultOf(again.store.deletions_since(watcher.last)), [])


WatcherTestsOnPostgreSQL = on_postgresql(WatcherTests)
