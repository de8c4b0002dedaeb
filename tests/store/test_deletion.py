"""Deleting a message in the store: a tombstone, and the text gone from the files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pingchat.store import Database, SQLiteStore
from pingchat.store.deletion import _tombstone
from pingchat.store.store import Store
from tests.backends import StoreBackend, on_postgresql, temp_dir

SECRET = "zebra-unicorn-7411 the launch code"
# Long enough that the tombstone, written where the old row was, cannot cover it.
LONG = SECRET + ", and more words " * 20
ENVELOPE_SECRET = "Q2lwaGVydGV4dFNlY3JldDc0MTE="  # base64, as envelopes carry it



def files_contain(path: Path, needle: str) -> list[str]:
    """Which of the database's files (main, -wal, -shm) hold *needle*'s bytes."""
    found = []
    for suffix in ("", "-wal", "-shm"):
        f = Path(str(path) + suffix)
        if f.exists() and needle.encode() in f.read_bytes():
            found.append(f.name)
    return found


class Fixture(StoreBackend, SynchronousTestCase):
    """A store with alice, bob and #x."""

    def setUp(self) -> None:
        self.db = self.open_database()
        self.store = Store(self.db)
        self.alice = self.successResultOf(self.store.create_account("alice", b"h", 0))
        self.bob = self.successResultOf(self.store.create_account("bob", b"h", 0))
        self.room = self.successResultOf(self.store.create_room("#x", 0))

    def say(self, text: str, ts: int = 1000) -> int:
        m = self.successResultOf(
            self.store.add_room_message(self.room.id, "#x", "alice", self.alice.id, text, ts)
        )
        return m.id


class TombstoneTests(Fixture):
    """What a deletion leaves in the store, on either backend."""

    def test_a_deleted_message_is_a_tombstone_in_its_place_in_history(self) -> None:
        before, doomed, after = self.say("one", 1), self.say(SECRET, 2), self.say("three", 3)
        self.assertTrue(self.successResultOf(self.store.delete_message(doomed, "carol", 50)))
        history = self.successResultOf(self.store.room_history(self.room.id))
        self.assertEqual([m.id for m in history], [before, doomed, after])
        tombstone = history[1]
        self.assertEqual(
            (tombstone.text, tombstone.deleted_at, tombstone.deleted_by, tombstone.sender),
            (None, 50, "carol", "alice"),
        )
        self.assertEqual(
            tombstone.to_event(),
            {"msg_id": doomed, "ts": "1970-01-01T00:00:00.002Z", "from": "alice",
             "room": "#x", "deleted": True},
        )
        self.assertEqual(history[0].to_event()["text"], "one")

    def test_every_body_column_is_emptied(self) -> None:
        envelopes = [{"user": "bob", "device": "laptop-0001", "ciphertext": ENVELOPE_SECRET,
                      "nonce": "A" * 32}]
        m = self.successResultOf(
            self.store.add_dm(self.alice.id, "alice", "bob", 5, envelopes=envelopes,
                              sender_device="phone-00001")
        )
        self.assertTrue(self.successResultOf(self.store.delete_message(m.id, "alice", 6)))
        row = self.db.run_sync(
            lambda c: dict(c.execute("SELECT * FROM messages WHERE id = ?", (m.id,)).fetchone())
        )
        emptied = {k: row[k] for k in ("body", "ciphertext", "nonce", "envelopes", "sender_device")}
        self.assertEqual(emptied, dict.fromkeys(emptied))
        self.assertEqual(
            (row["deleted_at"], row["deleted_by"], row["sender"]), (6, "alice", "alice")
        )

    def test_deleting_twice_or_a_missing_message_changes_nothing(self) -> None:
        doomed = self.say("once")
        self.assertTrue(self.successResultOf(self.store.delete_message(doomed, "alice", 7)))
        self.assertFalse(self.successResultOf(self.store.delete_message(doomed, "bob", 8)))
        self.assertFalse(self.successResultOf(self.store.delete_message(10**6, "bob", 8)))
        m = self.successResultOf(self.store.message_by_id(doomed))
        self.assertEqual((m.deleted_at, m.deleted_by), (7, "alice"))
        self.assertIsNone(self.successResultOf(self.store.message_by_id(10**6)))

    def test_a_queued_dm_that_is_deleted_is_never_delivered(self) -> None:
        kept = self.successResultOf(self.store.add_dm(self.alice.id, "alice", "bob", 1,
                                                      text="kept", queue=True))
        doomed = self.successResultOf(self.store.add_dm(self.alice.id, "alice", "bob", 2,
                                                        text=SECRET, queue=True))
        self.successResultOf(self.store.delete_message(doomed.id, "alice", 3))
        queued, _events = self.successResultOf(self.store.take_queued(self.bob.id))
        self.assertEqual([m.id for m in queued], [kept.id])


TombstoneTestsOnPostgreSQL = on_postgresql(TombstoneTests)


class FileTests(Fixture):
    """SQLite: the deleted text is gone from the database's files themselves."""

    def setUp(self) -> None:
        super().setUp()
        self.path = Path(self.db.path)

    def test_the_text_is_gone_from_the_database_files(self) -> None:
        envelopes = [{"user": "bob", "device": "laptop-0001", "ciphertext": ENVELOPE_SECRET,
                      "nonce": "A" * 32}]
        doomed = self.say(LONG)
        dm = self.successResultOf(self.store.add_dm(self.alice.id, "alice", "bob", 5,
                                                    envelopes=envelopes,
                                                    sender_device="phone-00001"))
        for i in range(20):  # neighbours on the same page, which stays in use
            self.say(f"neighbour {i}")
        self.successResultOf(self.db.checkpoint())  # an old message: in the main file
        self.assertEqual(files_contain(self.path, SECRET), ["db.sqlite3"])
        self.successResultOf(self.store.delete_message(doomed, "alice", 9))
        self.successResultOf(self.store.delete_message(dm.id, "alice", 9))
        self.assertEqual(files_contain(self.path, SECRET), [])
        self.assertEqual(files_contain(self.path, ENVELOPE_SECRET), [])
        self.assertTrue(files_contain(self.path, "neighbour 19"))

    def test_without_secure_delete_the_text_would_stay_in_the_file(self) -> None:
        """The check above can fail: with SQLite's secure_delete off (the default
        of many builds), the emptied row's old bytes stay in the page."""
        doomed = self.say(LONG)
        for i in range(20):
            self.say(f"neighbour {i}")
        self.successResultOf(self.db.checkpoint())
        self.db._conn.execute("PRAGMA secure_delete = OFF")
        self.successResultOf(self.store.delete_message(doomed, "alice", 9))
        self.assertEqual(files_contain(self.path, SECRET), ["db.sqlite3"])

    def test_without_the_checkpoint_the_wal_would_keep_the_text(self) -> None:
        """And the WAL: the tombstone's commit alone leaves the message's earlier
        page image in the -wal file (a recent message is only there)."""
        doomed = self.say(SECRET)
        self.assertEqual(files_contain(self.path, SECRET), ["db.sqlite3-wal"])
        self.assertTrue(self.db.run_sync(_tombstone, doomed, "alice", 9))
        self.assertIn("db.sqlite3-wal", files_contain(self.path, SECRET))
        self.successResultOf(self.db.checkpoint())
        self.assertEqual(files_contain(self.path, SECRET), [])


class ThreadedCheckpointTests(TestCase):
    """On the writer thread, the checkpoint comes after the batches before it."""

    def setUp(self) -> None:
        self.path = temp_dir(self) / "db.sqlite3"
        self.db = Database(self.path, reactor)  # type: ignore[arg-type]
        self.store = SQLiteStore(self.db)
        self.addCleanup(self.db.stop)

    @inlineCallbacks
    def test_delete_fires_after_the_wal_is_emptied(self) -> Any:
        alice = yield self.store.create_account("alice", b"h", 0)
        room = yield self.store.create_room("#x", 0)
        doomed = yield self.store.add_room_message(room.id, "#x", "alice", alice.id, SECRET, 1)
        self.assertTrue(files_contain(self.path, SECRET))
        deleted = yield self.store.delete_message(doomed.id, "alice", 2)
        self.assertTrue(deleted)
        self.assertEqual(Path(str(self.path) + "-wal").stat().st_size, 0)
        self.assertEqual(files_contain(self.path, SECRET), [])

    @inlineCallbacks
    def test_checkpoints_asked_in_one_turn_share_one_run(self) -> Any:
        yield self.store.create_account("alice", b"h", 0)
        calls: list[object] = []
        original = self.db._deliver

        def count(results: list[Any]) -> None:
            calls.append(len(results))
            original(results)

        self.patch(self.db, "_deliver", count)
        yield self.db.checkpoint()
        yield self.db.checkpoint()
        together = [self.db.checkpoint() for _ in range(3)]
        yield DeferredList(together, fireOnOneErrback=True)
        self.assertEqual(calls, [1, 1, 3])
