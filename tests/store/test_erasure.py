"""Deleting an account in the store (migration 008): the indexes that make it
cheap, what each step removes or rewrites, and that nothing of it is left
in the database file."""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pingchat.errors import NoSuchUser
from pingchat.store import Database
from pingchat.store import erasure as txns
from pingchat.store.erasure import Deletion, Erased
from pingchat.store.store import Store
from tests.backends import StoreBackend, on_postgresql

INDEXES = 8  # the migration that added them


def temp_dir(case: SynchronousTestCase) -> Path:
    path = Path(tempfile.mkdtemp(prefix="pingchat-store-"))
    case.addCleanup(shutil.rmtree, path, True)
    return path


def plan(conn: sqlite3.Connection, sql: str, *params: Any) -> str:
    """SQLite's query plan for *sql*, one line per step."""
    return "\n".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def steps(conn: sqlite3.Connection, sql: str, *params: Any) -> int:
    """How many hundreds of virtual machine instructions *sql* takes, rolled back."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    conn.execute("SAVEPOINT measure")
    conn.set_progress_handler(tick, 100)
    try:
        conn.execute(sql, params)
    finally:
        conn.set_progress_handler(None, 0)
        conn.execute("ROLLBACK TO measure")
        conn.execute("RELEASE measure")
    return count


class IndexTests(SynchronousTestCase):
    """Every foreign key has an index, and the deletes use them."""

    def setUp(self) -> None:
        self.db = Database(temp_dir(self) / "db.sqlite3", threaded=False)
        self.addCleanup(self.db.stop)
        self.conn = self.db._conn

    def test_every_foreign_key_column_leads_an_index(self) -> None:
        conn = self.conn
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        missing = []
        for table in tables:
            leading = {
                conn.execute(f"PRAGMA index_info({index[1]})").fetchone()[2]
                for index in conn.execute(f"PRAGMA index_list({table})")
            }
            for fk in conn.execute(f"PRAGMA foreign_key_list({table})"):
                if fk[3] not in leading:
                    missing.append(f"{table}.{fk[3]} -> {fk[2]}")
        self.assertEqual(missing, [])

    def test_the_deletion_and_expiry_queries_use_the_indexes(self) -> None:
        conn = self.conn
        expected = {
            "SELECT id, room_id FROM messages WHERE sender_id = ? ORDER BY id LIMIT ?":
                "INDEX messages_sender",
            "SELECT id FROM messages WHERE recipient_id = ? ORDER BY id LIMIT ?":
                "INDEX messages_recipient",
            "DELETE FROM messages WHERE room_id = ?": "INDEX messages_room",
            "UPDATE messages SET sender_id = NULL WHERE sender_id = ?":
                "INDEX messages_sender",
            "DELETE FROM offline_queue WHERE message_id = ?": "INDEX offline_queue_message",
            "DELETE FROM room_invites WHERE account_id = ?": "INDEX room_invites_account",
            "UPDATE audit_log SET account = ? WHERE lower(account) = ? AND account IS NOT NULL":
                "INDEX audit_log_account_folded",
            "UPDATE audit_log SET actor = ? WHERE lower(actor) = ? AND actor IS NOT NULL":
                "INDEX audit_log_actor_folded",
            "SELECT id, ts FROM messages WHERE conversation = ? AND id > ? AND id < ?"
            " ORDER BY id LIMIT ?": "INDEX messages_conversation",
            "SELECT id, ts FROM messages WHERE id > ? AND id < ? ORDER BY id LIMIT ?":
                "USING INTEGER PRIMARY KEY",
        }
        for sql, index in expected.items():
            params = [1] * sql.count("?")
            found = plan(conn, sql, *params)
            self.assertIn(index, found, sql)
            self.assertNotRegex(found, r"^SCAN messages$|\nSCAN messages$", sql)

    def seed(self, messages: int, mine: int) -> tuple[int, int]:
        """*messages* messages among 50 accounts and two rooms; account 'me'
        wrote *mine* of them. Returns (my id, room id)."""
        conn = self.conn
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO accounts (name, name_folded, password_hash, created_at)"
            " VALUES (?, ?, x'00', 0)",
            [(f"u{i}", f"u{i}") for i in range(50)] + [("me", "me")],
        )
        me = conn.execute("SELECT id FROM accounts WHERE name = 'me'").fetchone()[0]
        for room in ("#a", "#b"):
            conn.execute(
                "INSERT INTO rooms (name, name_folded, created_at) VALUES (?, ?, 0)", (room, room)
            )
        rows = []
        for i in range(messages):
            sender = me if i < mine else 1 + i % 50
            if i % 5 == 0:
                peer = 1 + (i * 7) % 50
                rows.append((i, f"d:{min(sender, peer)}:{max(sender, peer)}", sender, None, peer))
            else:
                rows.append((i, f"r:{1 + i % 2}", sender, 1 + i % 2, None))
        conn.executemany(
            "INSERT INTO messages (ts, conversation, sender, sender_id, room_id, recipient_id,"
            " body) VALUES (?, ?, 'x', ?, ?, ?, 'text')",
            rows,
        )
        conn.execute("COMMIT")
        return me, 2

    def test_deleting_an_account_reads_its_messages_not_everyone_s(self) -> None:
        """The cascade (ON DELETE SET NULL and CASCADE on messages) counted in
        SQLite's instructions: without the indexes it walks all 20,000
        messages (measured on the old schema: ~2,900 hundreds), with them
        only the account's 20."""
        me, _ = self.seed(20_000, 20)
        self.assertLess(steps(self.conn, "DELETE FROM accounts WHERE id = ?", me), 60)

    def test_deleting_a_room_reads_its_messages_not_everyone_s(self) -> None:
        self.seed(20_000, 0)
        self.conn.execute(
            "INSERT INTO rooms (name, name_folded, created_at) VALUES ('#small', '#small', 0)"
        )
        self.conn.execute(
            "INSERT INTO messages (ts, conversation, sender, room_id, body)"
            " VALUES (0, 'r:3', 'x', 3, 'hi')"
        )
        self.assertLess(steps(self.conn, "DELETE FROM rooms WHERE id = 3"), 20)


class World(StoreBackend, SynchronousTestCase):
    """A small world: alice is to be deleted, bob and carol stay."""

    def setUp(self) -> None:
        self.db = self.open_database()
        self.store = store = Store(self.db)
        self.ids = {
            n: self.successResultOf(store.create_account(n, b"hash", 0)).id
            for n in ("alice", "bob", "carol")
        }
        self.room = self.successResultOf(store.create_room("#lobby", 0))
        for who in ("alice", "bob"):
            self.successResultOf(store.add_member(self.room.id, who, who == "alice", 0))
        self.say("alice", "alice says hello")
        self.say("bob", "bob answers")
        self.say("alice", "alice again")
        self.dm("alice", "bob", "a secret for bob")
        self.dm("bob", "alice", "bob's reply to alice")
        self.dm("carol", "alice", "carol writes to alice", queue=True)
        self.dm("bob", "carol", "bob to carol")
        self.successResultOf(store.contact_add(self.ids["alice"], "bob", 0))
        self.successResultOf(store.contact_add(self.ids["bob"], "alice", 0))
        self.successResultOf(store.add_token(self.ids["alice"], b"t" * 32, 0, 10**9))
        self.successResultOf(store.set_recovery_codes(self.ids["alice"], [b"c" * 32]))
        self.successResultOf(
            store.publish_device_key(self.ids["alice"], "laptop-1234", "k" * 44, "laptop", 0, 20)
        )
        self.successResultOf(
            store.add_pending_event(
                self.ids["carol"], 0, {"event": "contact", "user": "Alice", "status": "request"}
            )
        )
        self.successResultOf(store.add_audit(0, "login", "alice", None, "10.0.0.1"))
        self.successResultOf(store.add_audit(0, "login_failed", "ALICE", None, "10.0.0.2"))
        self.successResultOf(store.add_audit(0, "admin_kick", "bob", "alice", None))
        self.successResultOf(store.add_audit(0, "login", "bob", None, "10.0.0.3"))
        self.successResultOf(store.set_topic(self.room.id, "welcome", "alice", 0))
        self.successResultOf(
            store.save_room_modes(
                self.room.id, "nt", None, None, [], [("alice!*@*", True), ("x!*@*", True)],
                "alice", 0,
            )
        )

    def say(self, who: str, text: str) -> None:
        self.successResultOf(
            self.store.add_room_message(self.room.id, "#lobby", who, self.ids[who], text, 1)
        )

    def dm(self, sender: str, to: str, text: str, queue: bool = False) -> None:
        self.successResultOf(
            self.store.add_dm(self.ids[sender], sender, to, 1, text=text, queue=queue)
        )

    def delete(self, name: str, mode: str, batch: int = 2) -> tuple[Deletion, Erased]:
        d = self.successResultOf(self.store.begin_account_deletion(name, b"digest", 5, 100))
        erased = Erased()
        while (step := self.successResultOf(self.store.erase_messages(d, mode, batch))).total:
            erased += step
        erased += self.successResultOf(self.store.finish_account_deletion(d, mode, 6))
        return d, erased

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.db.run_sync(  # type: ignore[no-any-return]
            lambda c: [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                       for r in c.execute(sql, params)]
        )

    def file_bytes(self) -> bytes:
        path = Path(self.db.path)
        data = path.read_bytes()
        for suffix in ("-wal", "-shm"):
            extra = path.with_name(path.name + suffix)
            if extra.exists():
                data += extra.read_bytes()
        return data


class DeletionTests(World):
    """The three steps, on either backend."""

    def test_remove_takes_every_message_it_sent_or_received(self) -> None:
        deletion, erased = self.delete("alice", "remove")
        self.assertEqual(deletion.placeholder, f"deleted-{deletion.id}")
        self.assertEqual(erased, Erased(removed=5, anonymised=0))
        self.assertEqual(
            self.rows("SELECT sender, body FROM messages ORDER BY id"),
            [("bob", "bob answers"), ("bob", "bob to carol")],
        )

    def test_anonymise_keeps_room_messages_under_the_placeholder_and_removes_dms(self) -> None:
        deletion, erased = self.delete("alice", "anonymise")
        self.assertEqual(erased, Erased(removed=3, anonymised=2))
        self.assertEqual(
            self.rows("SELECT sender, sender_id, body FROM messages ORDER BY id"),
            [
                (deletion.placeholder, None, "alice says hello"),
                ("bob", self.ids["bob"], "bob answers"),
                (deletion.placeholder, None, "alice again"),
                ("bob", self.ids["bob"], "bob to carol"),
            ],
        )

    def test_the_account_and_everything_hanging_from_it_are_gone(self) -> None:
        alice = self.ids["alice"]
        self.delete("alice", "remove")
        self.assertIsNone(self.successResultOf(self.store.get_account("alice")))
        for table, column in (
            ("tokens", "account_id"),
            ("room_members", "account_id"),
            ("recovery_codes", "account_id"),
            ("device_keys", "account_id"),
            ("contacts", "account_id"),
            ("contacts", "peer_id"),
            ("offline_queue", "account_id"),
            ("dm_threads", "low_id"),
            ("dm_threads", "high_id"),
        ):
            self.assertEqual(self.rows(f"SELECT * FROM {table} WHERE {column} = ?", alice), [])
        # bob and carol keep their own conversation
        self.assertEqual(len(self.rows("SELECT * FROM dm_threads")), 1)

    def test_the_name_is_replaced_wherever_it_was_kept(self) -> None:
        deletion, _ = self.delete("alice", "remove")
        name = deletion.placeholder
        self.assertEqual(
            self.rows("SELECT event, account, actor, address FROM audit_log ORDER BY id"),
            [
                ("login", name, None, "10.0.0.1"),
                ("login_failed", name, None, "10.0.0.2"),
                ("admin_kick", "bob", name, None),
                ("login", "bob", None, "10.0.0.3"),
            ],
        )
        self.assertEqual(self.rows("SELECT topic, topic_by FROM rooms"), [("welcome", name)])
        self.assertEqual(self.rows("SELECT mask, set_by FROM room_bans"), [("x!*@*", name)])
        self.assertEqual(self.rows("SELECT * FROM pending_events"), [])

    def test_the_deletion_is_recorded_by_digest_only(self) -> None:
        deletion, _ = self.delete("alice", "remove")
        self.assertEqual(
            self.rows("SELECT id, name_digest, finished_at, reserved_until FROM deleted_accounts"),
            [(deletion.id, b"digest", 6, 100)],
        )
        self.assertEqual(self.successResultOf(self.store.name_reserved(b"digest", 99)), 100)
        self.assertIsNone(self.successResultOf(self.store.name_reserved(b"digest", 100)))
        self.assertIsNone(self.successResultOf(self.store.name_reserved(b"other", 0)))
        self.assertEqual(self.successResultOf(self.store.forget_reservations(99)), 0)
        self.assertEqual(self.successResultOf(self.store.forget_reservations(100)), 1)

    def test_an_interrupted_deletion_goes_on_from_where_it_stopped(self) -> None:
        first = self.successResultOf(
            self.store.begin_account_deletion("alice", b"digest", 5, 100)
        )
        self.successResultOf(self.store.erase_messages(first, "remove", 1))
        # the account can no longer log in meanwhile
        account = self.successResultOf(self.store.get_account("alice"))
        assert account is not None
        self.assertTrue(account.disabled)
        self.assertEqual(self.rows("SELECT * FROM tokens"), [])
        again, erased = self.delete("alice", "remove")
        self.assertEqual(again.id, first.id)
        self.assertEqual(erased.removed, 4)
        self.assertEqual(len(self.rows("SELECT * FROM deleted_accounts")), 1)

    def test_messages_sent_during_the_deletion_are_erased_at_the_end(self) -> None:
        deletion = self.successResultOf(
            self.store.begin_account_deletion("alice", b"digest", 5, 100)
        )
        while self.successResultOf(self.store.erase_messages(deletion, "remove")).total:
            pass
        self.say("alice", "a late one")
        erased = self.successResultOf(self.store.finish_account_deletion(deletion, "remove", 6))
        self.assertEqual(erased.removed, 1)
        self.assertEqual(self.rows("SELECT * FROM messages WHERE body = 'a late one'"), [])

    def test_deleting_an_unknown_account_fails_and_changes_nothing(self) -> None:
        self.failureResultOf(
            self.store.begin_account_deletion("nobody", b"digest", 5, 100), NoSuchUser
        )
        self.assertEqual(self.rows("SELECT * FROM deleted_accounts"), [])

    def test_a_placeholder_is_never_reused_and_a_free_name_leaves_no_digest(self) -> None:
        first, _ = self.delete("alice", "remove")
        self.assertEqual(self.successResultOf(self.store.forget_reservations(10**6)), 1)
        self.assertEqual(self.rows("SELECT id, name_digest FROM deleted_accounts"),
                         [(first.id, b"")])
        second, _ = self.delete("bob", "remove")
        self.assertGreater(second.id, first.id)
        self.assertEqual(self.db.run_sync(txns.last_deletion), second.id)
        self.assertEqual(
            self.successResultOf(self.store.deletions_since(first.id)), [(second.id, b"digest")]
        )

    def test_tombstones_it_made_name_the_placeholder(self) -> None:
        bob_said = self.successResultOf(self.store.add_room_message(
            self.room.id, "#lobby", "bob", self.ids["bob"], "bob's line", 2
        ))
        self.successResultOf(self.store.delete_message(bob_said.id, "Alice", 3))
        deletion, _ = self.delete("alice", "remove")
        self.assertEqual(self.rows("SELECT deleted_by FROM messages WHERE id = ?", bob_said.id),
                         [(deletion.placeholder,)])


DeletionTestsOnPostgreSQL = on_postgresql(DeletionTests)


class FileTests(World):
    """SQLite: nothing of the account is left in the database's files."""

    def test_nothing_of_a_removed_account_is_left_in_the_file(self) -> None:
        self.delete("alice", "remove")
        self.successResultOf(self.db.checkpoint())
        data = self.file_bytes()
        for text in (b"alice says hello", b"alice again", b"a secret for bob",
                     b"bob's reply to alice", b"carol writes to alice", b"laptop"):
            self.assertFalse(text in data, f"{text!r} is in the file")
        self.assertFalse(b"alice" in data.lower(), "the name is in the file")
        self.assertTrue(b"bob to carol" in data)  # the search does find what stays

    def test_anonymise_leaves_the_room_text_but_not_the_name(self) -> None:
        self.delete("alice", "anonymise")
        self.successResultOf(self.db.checkpoint())
        data = self.file_bytes()
        self.assertTrue(b"alice says hello" in data)
        for text in (b"a secret for bob", b"bob's reply to alice", b"carol writes to alice"):
            self.assertFalse(text in data, f"{text!r} is in the file")
        # "alice" is in the kept text itself; not anywhere else:
        self.assertEqual(data.lower().count(b"alice"), 2)



class PendingEventTests(StoreBackend, SynchronousTestCase):
    def test_only_events_about_the_deleted_account_go(self) -> None:
        db = self.open_database()
        store = Store(db)
        ids = [self.successResultOf(store.create_account(n, b"h", 0)).id for n in ("al", "bo")]
        for user in ("AL", "alice", "bo"):
            payload = {"event": "contact", "user": user, "status": "request"}
            self.successResultOf(store.add_pending_event(ids[1], 0, payload))
        d = self.successResultOf(store.begin_account_deletion("al", b"d", 0, 1))
        self.successResultOf(store.finish_account_deletion(d, "remove", 0))
        payloads = db.run_sync(
            lambda c: [r[0] for r in c.execute("SELECT payload FROM pending_events ORDER BY id")]
        )
        self.assertEqual([json.loads(p)["user"] for p in payloads], ["alice", "bo"])


PendingEventTestsOnPostgreSQL = on_postgresql(PendingEventTests)
