"""Expiry in the store: batches by id, what is kept (queued DMs), DM threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pingchat.store.retention import Expired, _first_id_at
from pingchat.store.store import Store
from tests.backends import StoreBackend, on_postgresql


class Fixture(StoreBackend, SynchronousTestCase):
    """alice, bob, carol, rooms #a and #b, and ways to fill and expire them."""

    def setUp(self) -> None:
        self.db = self.open_database()
        self.store = store = Store(self.db)
        self.ids = {
            n: self.successResultOf(store.create_account(n, b"h", 0)).id
            for n in ("alice", "bob", "carol")
        }
        self.room = self.successResultOf(store.create_room("#a", 0)).id
        self.other = self.successResultOf(store.create_room("#b", 0)).id

    def say(self, ts: int, room: int | None = None, text: str = "hi") -> int:
        room = room or self.room
        m = self.successResultOf(
            self.store.add_room_message(room, "#x", "alice", self.ids["alice"], text, ts)
        )
        return m.id

    def dm(self, ts: int, sender: str, to: str, queue: bool = False) -> int:
        m = self.successResultOf(
            self.store.add_dm(self.ids[sender], sender, to, ts, text="dm", queue=queue)
        )
        return m.id

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.db.run_sync(  # type: ignore[no-any-return]
            lambda c: [tuple(r) for r in c.execute(sql, params)]
        )

    def ids_left(self) -> list[int]:
        return [r[0] for r in self.rows("SELECT id FROM messages ORDER BY id")]

    def expire_all(self, cutoff: int, room: int | None = None, limit: int = 2) -> int:
        bound = self.successResultOf(self.store.expiry_bound(cutoff, room))
        cursor, total = 0, 0
        while True:
            result: Expired = self.successResultOf(
                self.store.expire_messages(room, cursor, bound, cutoff, limit)
            )
            cursor, total = result.cursor, total + result.deleted
            if result.done:
                return total

    def threads(self) -> list[tuple[Any, ...]]:
        return self.rows("SELECT low_id, high_id, last_id, last_ts FROM dm_threads ORDER BY 1, 2")

class ExpiryTests(Fixture):
    """Expiry's transactions, on either backend."""

    def test_messages_before_the_cutoff_go_in_batches_and_the_rest_stay(self) -> None:
        old = [self.say(ts) for ts in (1, 2, 3, 4, 5)]
        new = [self.say(ts) for ts in (10, 11)]
        self.assertEqual(self.expire_all(10, limit=2), 5)
        self.assertEqual(self.ids_left(), new)
        self.assertTrue(old)

    def test_a_stamp_out_of_order_is_judged_by_its_own_time(self) -> None:
        # a clock set back: a later id with an earlier time, and the reverse
        first = self.say(5)
        late = self.say(20)
        self.say(3)
        self.say(30)
        self.assertEqual(self.expire_all(10), 1)
        self.assertIn(late, self.ids_left())
        self.assertNotIn(first, self.ids_left())

    def test_one_room_only(self) -> None:
        a = self.say(1)
        b = self.say(1, self.other)
        self.assertEqual(self.expire_all(10, room=self.room), 1)
        self.assertEqual(self.ids_left(), [b])
        self.assertTrue(a)

    def test_a_dm_waiting_in_the_offline_queue_is_kept(self) -> None:
        queued = self.dm(1, "alice", "bob", queue=True)
        self.dm(2, "alice", "carol")
        self.assertEqual(self.expire_all(10), 1)
        self.assertEqual(self.ids_left(), [queued])

    def test_a_thread_points_at_its_latest_message_left_or_goes(self) -> None:
        a, b, c = self.ids["alice"], self.ids["bob"], self.ids["carol"]
        queued = self.dm(1, "alice", "bob", queue=True)  # kept: waiting for bob
        self.dm(2, "bob", "alice")  # the thread's latest, expired
        self.dm(3, "alice", "carol")
        self.dm(4, "carol", "alice")
        self.assertEqual(self.threads(), [(a, b, 2, 2), (a, c, 4, 4)])
        self.expire_all(10)
        self.assertEqual(self.threads(), [(a, b, queued, 1)])

    def test_dropping_undelivered_dms_from_the_queue_leaves_them_in_history(self) -> None:
        first = self.dm(1, "alice", "bob", queue=True)
        second = self.dm(20, "alice", "bob", queue=True)
        bound = self.successResultOf(self.store.expiry_bound(10))
        self.assertEqual(bound, second)
        result = self.successResultOf(self.store.expire_offline(bound, 500))
        self.assertEqual((result.deleted, result.done), (1, True))
        queue = [r[0] for r in self.rows("SELECT message_id FROM offline_queue")]
        self.assertEqual(queue, [second])
        self.assertEqual(self.ids_left(), [first, second])

    def test_the_bound_is_found_by_bisection(self) -> None:
        for ts in range(0, 1000, 2):
            self.say(ts)
        run = self.db.run_sync
        for ts in (0, 1, 2, 501, 998, 999):
            [(expected,)] = self.rows("SELECT min(id) FROM messages WHERE ts >= ?", ts)
            self.assertEqual(run(_first_id_at, ts, None), expected, ts)
            self.assertEqual(run(_first_id_at, ts, f"r:{self.room}"), expected, ts)
        self.assertIsNone(run(_first_id_at, 999, f"r:{self.other}"))
        # with nothing at or after the cutoff, everything is below the bound
        self.assertEqual(self.successResultOf(self.store.expiry_bound(5000)), 501)



ExpiryTestsOnPostgreSQL = on_postgresql(ExpiryTests)


class FileTests(Fixture):
    """SQLite: the expired text is gone from the database's files."""

    def test_nothing_of_an_expired_message_is_left_in_the_file(self) -> None:
        self.say(1, text="an old secret nobody should find")
        self.say(20, text="a recent line")
        self.expire_all(10)
        self.successResultOf(self.store.scrub_wal())
        path = Path(self.db.path)
        data = path.read_bytes()
        wal = path.with_name(path.name + "-wal")
        data += wal.read_bytes() if wal.exists() else b""
        self.assertFalse(b"an old secret nobody should find" in data)
        self.assertTrue(b"a recent line" in data)
