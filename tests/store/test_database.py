"""The store's database: migrations, the group-committing writer, the reader,
and queries whose cost matters, on SQLite and on PostgreSQL (tests/backends.py)."""

from __future__ import annotations

import os
import stat
import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pingchat.errors import BadRequest, UserExists
from pingchat.store import Database, Store, migrations
from pingchat.store.database import connect
from pingchat.store.messages import _id_at_or_after
from tests.backends import POSTGRESQL, StoreBackend, on_postgresql, temp_dir


def dialect(case: StoreBackend) -> str:
    return migrations.POSTGRESQL if case.backend == POSTGRESQL else migrations.SQLITE


class MigrationTests(StoreBackend, SynchronousTestCase):
    def test_fresh_database_is_at_the_latest_version(self) -> None:
        db = self.open_database()
        latest = migrations.available(dialect(self))[-1][0]
        self.assertEqual(db.version, latest)
        self.assertGreaterEqual(latest, 2)

    def test_migrations_are_applied_once_and_resume_from_the_recorded_version(self) -> None:
        at = self.new_location()
        conn = self.raw_connection(at, target=1)
        conn.execute(
            "INSERT INTO accounts (name, name_folded, password_hash, created_at)"
            " VALUES ('old', 'old', ?, 0)",
            (b"\x00",),
        )
        db = self.open_database(at=at)
        self.assertEqual(db.version, migrations.available(dialect(self))[-1][0])
        names = [a.name for a in self.successResultOf(Store(db).list_accounts())]
        self.assertEqual(names, ["old"])

    def test_concurrent_first_opens_migrate_once_and_all_succeed(self) -> None:
        """Processes opening a new database at once (two ``pingchat user add``,
        the server and the command, or nodes of a cluster) each connect and
        migrate: each migration is applied once and none of them fails.
        (Before the version was read inside the write transaction (SQLite) or
        under the advisory lock (PostgreSQL), nearly every round failed with
        "table accounts already exists".)"""
        latest = migrations.available(dialect(self))[-1][0]
        for n in range(25 if self.backend != POSTGRESQL else 5):
            outcomes = self.open_at_once(self.new_location(), openers=3)
            self.assertEqual(outcomes, [latest] * 3, f"round {n}")

    def open_at_once(self, at: Any, openers: int) -> list[int | str]:
        """Connect and migrate *at* from *openers* threads released together."""
        barrier = threading.Barrier(openers)
        outcomes: list[int | str] = []

        def open_and_migrate() -> None:
            barrier.wait(10)
            try:
                if at.url is None:
                    conn: Any = connect(at.path)
                    run = migrations.migrate
                else:
                    from pingchat.store.postgresql import connect as pg_connect

                    conn = pg_connect(at.url, "test")
                    run = migrations.migrate_postgresql
                try:
                    outcomes.append(run(conn))
                finally:
                    conn.close()
            except Exception as e:
                outcomes.append(f"{type(e).__name__}: {e}")

        threads = [threading.Thread(target=open_and_migrate) for _ in range(openers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return outcomes

    def test_failed_transaction_changes_nothing(self) -> None:
        store = Store(self.open_database())
        self.successResultOf(store.create_account("alice", b"h", 0))
        self.failureResultOf(store.create_account("ALICE", b"h", 0), UserExists)
        self.assertEqual(len(self.successResultOf(store.list_accounts())), 1)


class SQLiteFileTests(SynchronousTestCase):
    """What only an SQLite file has: WAL, foreign keys by pragma, its mode."""

    def test_wal_foreign_keys_and_private_file(self) -> None:
        path = temp_dir(self) / "db.sqlite3"
        db = Database(path, threaded=False)
        self.addCleanup(db.stop)
        mode = db.run_sync(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        fks = db.run_sync(lambda c: c.execute("PRAGMA foreign_keys").fetchone()[0])
        self.assertEqual((mode, fks), ("wal", 1))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)


class MessageRowTests(StoreBackend, SynchronousTestCase):
    def test_the_message_query_selects_the_fields_of_message_in_order(self) -> None:
        # A row becomes Message(*row): a column added, dropped or moved on
        # either side must fail here, not swap two fields in history.
        import attrs

        from pingchat.model import Message
        from pingchat.store.messages import _SELECT

        db = self.open_database()
        cursor = db._conn.execute(_SELECT + " LIMIT 0")
        columns = [c[0].removeprefix("m.") for c in cursor.description]
        # client_tags travel with a live delivery and are never stored.
        fields = [f.name for f in attrs.fields(Message) if f.name != "client_tags"]
        self.assertEqual(columns, [{"text": "body", "to": "recipient"}.get(f, f) for f in fields])


class ConversationTargetsTests(StoreBackend, SynchronousTestCase):
    """``conversation_targets`` (CHATHISTORY TARGETS) lists by latest message."""

    def setUp(self) -> None:
        self.db = self.open_database()
        self.store = store = Store(self.db)
        self.ids = {
            name: self.successResultOf(store.create_account(name, b"h", 0)).id
            for name in ("alice", "bob", "carol")
        }
        self.room = self.successResultOf(store.create_room("#r", 0)).id
        # ts: #r at 10 and 40; alice-bob at 20 and 50; carol-alice at 30;
        # alice to herself at 35.
        self.room_message(10)
        self.dm("alice", "bob", 20)
        self.dm("carol", "alice", 30)
        self.dm("alice", "alice", 35)
        self.room_message(40)
        self.dm("bob", "alice", 50)

    def room_message(self, ts: int) -> None:
        self.successResultOf(
            self.store.add_room_message(self.room, "#r", "alice", self.ids["alice"], "hi", ts)
        )

    def dm(self, sender: str, recipient: str, ts: int) -> None:
        self.successResultOf(
            self.store.add_dm(self.ids[sender], sender, recipient, ts, text="hi")
        )

    def targets(self, who: str, after: int, before: int, limit: int = 10) -> list[Any]:
        return self.successResultOf(
            self.store.conversation_targets(self.ids[who], [self.room], after, before, limit)
        )

    def test_each_conversation_once_with_its_latest_message_oldest_first(self) -> None:
        self.assertEqual(
            self.targets("alice", 0, 100),
            [("carol", 30), ("alice", 35), ("#r", 40), ("bob", 50)],
        )
        self.assertEqual(self.targets("bob", 0, 100), [("#r", 40), ("alice", 50)])
        self.assertEqual(self.targets("alice", 0, 100, limit=2), [("carol", 30), ("alice", 35)])

    def test_a_conversation_whose_latest_message_is_past_the_window_is_left_out(self) -> None:
        # alice-bob has a message at 20, inside (0, 45), but its latest is at 50.
        self.assertEqual(self.targets("alice", 0, 45), [("carol", 30), ("alice", 35), ("#r", 40)])
        self.assertEqual(self.targets("alice", 35, 50), [("#r", 40)])  # bounds exclusive
        self.assertEqual(self.targets("alice", 50, 100), [])

    def test_dms_stored_before_the_table_existed_are_found_after_migrating(self) -> None:
        self.db._conn.execute("DELETE FROM dm_threads")
        sql = dict(migrations.available(dialect(self)))[3]
        backfill = sql[sql.index("INSERT INTO dm_threads") :]
        self.db._conn.execute(backfill)
        self.assertEqual(
            self.targets("alice", 0, 100),
            [("carol", 30), ("alice", 35), ("#r", 40), ("bob", 50)],
        )


class TimestampLookupTests(StoreBackend, SynchronousTestCase):
    """``timestamp=`` references: the first message at or after a time."""

    def setUp(self) -> None:
        self.db = self.open_database()
        self.conn = self.db._conn
        for name in ("#a", "#b"):
            self.conn.execute(
                "INSERT INTO rooms (name, name_folded, created_at) VALUES (?, ?, 0)", (name, name)
            )

    def insert(self, rows: list[tuple[int, int]]) -> None:
        self.conn.execute("BEGIN")  # one commit, not one per row
        self.conn.execute("DELETE FROM messages")
        self.conn.executemany(
            "INSERT INTO messages (ts, conversation, sender, room_id, body)"
            " VALUES (?, ?, 'x', ?, '')",
            [(ts, f"r:{room}", room) for room, ts in rows],
        )
        self.conn.execute("COMMIT")

    # Run by the SQLite class and its PostgreSQL twin: two executors, one test.
    @settings(
        max_examples=200, deadline=None, suppress_health_check=[HealthCheck.differing_executors]
    )
    @given(
        steps=st.lists(st.tuples(st.sampled_from([1, 2]), st.integers(0, 3)), max_size=60),
        probe=st.integers(-1, 200),
    )
    def test_agrees_with_reading_every_row(self, steps: list[tuple[int, int]], probe: int) -> None:
        # Two rooms interleaved (ids of one room have gaps), stamps that
        # never go down and often repeat.
        ts, rows = 0, []
        for room, step in steps:
            ts += step
            rows.append((room, ts))
        self.insert(rows)
        expected = self.conn.execute(
            "SELECT min(id) FROM messages WHERE conversation = 'r:1' AND ts >= ?", (probe,)
        ).fetchone()[0]
        self.assertEqual(_id_at_or_after(self.conn, "r:1", probe), expected)

    def test_reads_a_few_rows_not_the_conversation(self) -> None:
        self.insert([(1 + i % 2, i // 3) for i in range(60_000)])  # 30,000 in r:1
        (first,) = self.conn.execute("SELECT min(id) FROM messages").fetchone()
        if self.backend == POSTGRESQL:
            found, steps = self.pg_rows_read(lambda: _id_at_or_after(self.conn, "r:1", 19_000))
            # Filtering on ts reads the 28,500 rows before the answer.
            limit = 100
        else:
            found, steps = self.sqlite_steps(lambda: _id_at_or_after(self.conn, "r:1", 19_000))
            # Filtering on ts read all 28,500 rows before the answer: ~3,000
            # handler calls. Bisecting is ~20 seeks.
            limit = 60
        self.assertEqual(found, first + 57_000)
        self.assertLess(steps, limit)

    def sqlite_steps(self, lookup: Any) -> tuple[Any, int]:
        """The result of *lookup*, and SQLite's progress-handler calls (per 100 VM steps)."""
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        self.conn.set_progress_handler(count, 100)
        found = lookup()
        self.conn.set_progress_handler(None, 100)
        return found, steps

    def pg_rows_read(self, lookup: Any) -> tuple[Any, int]:
        """The result of *lookup*, and the rows of ``messages`` PostgreSQL read for it
        (this transaction's counters: sequential reads plus index fetches)."""
        self.conn.execute("ANALYZE messages")
        read = (
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
            " FROM pg_stat_xact_user_tables WHERE relid = 'messages'::regclass"
        )
        self.conn.execute("BEGIN")
        try:
            (before,) = self.conn.execute(read).fetchone()
            found = lookup()
            (after,) = self.conn.execute(read).fetchone()
        finally:
            self.conn.execute("COMMIT")
        return found, int(after - before)


class BatchTests(StoreBackend, SynchronousTestCase):
    """One writer batch: one transaction, savepoints only when a job fails."""

    def setUp(self) -> None:
        self.db = self.open_database()
        self.conn = self.db._conn
        self.conn.execute("CREATE TABLE t (x INTEGER UNIQUE)")
        self.conn.execute("CREATE TABLE attempts (x INTEGER)")
        self.statements: list[str] = []
        self.conn.set_trace_callback(self.statements.append)

    def run_batch(self, *values: int) -> list[tuple[bool, Any]]:
        def insert(conn: Any, x: int) -> int:
            conn.execute("INSERT INTO attempts (x) VALUES (?)", (x,))  # undone if the next fails
            conn.execute("INSERT INTO t (x) VALUES (?)", (x,))
            return x

        jobs = [("insert", insert, (v,), None) for v in values]
        return [(ok, value) for _d, ok, value in self.db._run_batch(self.conn, jobs)]

    def stored(self) -> list[int]:
        return [r[0] for r in self.conn.execute("SELECT x FROM t ORDER BY x")]

    def test_a_batch_that_succeeds_runs_no_savepoint(self) -> None:
        self.assertEqual(self.run_batch(1, 2, 3), [(True, 1), (True, 2), (True, 3)])
        self.assertEqual(self.stored(), [1, 2, 3])
        self.assertFalse([s for s in self.statements if "SAVEPOINT" in s])
        self.assertEqual(sum("COMMIT" in s for s in self.statements), 1)

    def test_a_failing_job_loses_only_its_own_changes(self) -> None:
        self.run_batch(5)
        results = self.run_batch(4, 5, 6)  # 5 is taken: its second insert fails
        self.assertEqual([ok for ok, _ in results], [True, False, True])
        self.assertIsInstance(results[1][1].value, self.conn.IntegrityError)
        self.assertEqual(self.stored(), [4, 5, 6])
        # The failed job's first insert is undone, and the jobs that ran
        # before it and again after the rollback count once.
        attempts = [r[0] for r in self.conn.execute("SELECT x FROM attempts ORDER BY x")]
        self.assertEqual(attempts, [4, 5, 6])  # 5 from the first batch


class WriterThreadTests(StoreBackend, TestCase):
    """The real writer thread, with the real reactor."""

    def setUp(self) -> None:
        self.db = self.open_database(reactor, threaded=True)
        self.store = Store(self.db)

    @inlineCallbacks
    def test_concurrent_writes_are_committed_and_acknowledged_in_order(self) -> Any:
        account = yield self.store.create_account("alice", b"h", 0)
        room = yield self.store.create_room("#r", 0)
        ds = [
            self.store.add_room_message(room.id, "#r", "alice", account.id, f"m{i}", i)
            for i in range(500)
        ]
        results = yield DeferredList(ds, fireOnOneErrback=True)
        ids = [r[1].id for r in results]
        self.assertEqual(ids, sorted(ids))
        self.assertGreater(self.db.transactions, self.db.commits)  # batched
        # Read back on the reader's own connection: committed, not just written.
        count = yield self.db.read(
            "count", lambda conn: conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        )
        self.assertEqual(count, 500)

    @inlineCallbacks
    def test_a_failing_job_does_not_undo_its_batch_mates(self) -> Any:
        first = self.store.create_account("alice", b"h", 0)
        clash = self.store.create_account("Alice", b"h", 0)
        third = self.store.create_account("bob", b"h", 0)
        yield first
        yield self.assertFailure(clash, UserExists)
        yield third
        accounts = yield self.store.list_accounts()
        self.assertEqual([a.name for a in accounts], ["alice", "bob"])

    @inlineCallbacks
    def test_a_string_holding_nul_is_bad_request_and_its_batch_mates_commit(self) -> Any:
        # PostgreSQL's text cannot hold NUL, SQLite's can: refused alike on
        # both, before any SQL, and the jobs of the same turn (one batch) stay.
        account = yield self.store.create_account("alice", b"h", 0)
        room = yield self.store.create_room("#r", 0)
        before = self.store.add_room_message(room.id, "#r", "alice", account.id, "one", 1)
        poisoned = [
            self.store.add_audit(2, "login_failed", account="ali\x00ce"),
            self.store.set_topic(room.id, "a \x00 topic", "alice", 2),
            self.db.run("nested", lambda conn, rows: None, [("ok", {"k": "\x00"})]),
            self.db.read("read", lambda conn, name: name, "a\x00"),
        ]
        after = self.store.add_room_message(room.id, "#r", "alice", account.id, "two", 3)
        for d in poisoned:
            failure = yield self.assertFailure(d, BadRequest)
            self.assertIn("NUL", failure.message)
        yield DeferredList([before, after], fireOnOneErrback=True)
        messages = yield self.store.room_history(room.id)
        self.assertEqual([m.text for m in messages], ["one", "two"])
        audit = yield self.store.recent_audit()
        self.assertEqual([a for a in audit if a["event"] == "login_failed"], [])
        rooms = yield self.store.load_rooms()
        self.assertEqual([r.info.topic or "" for r in rooms if r.info.name == "#r"], [""])

    @inlineCallbacks
    def test_a_job_the_database_refuses_does_not_undo_its_batch_mates(self) -> Any:
        # A statement the driver refuses inside the batch (NUL built past the
        # guard on PostgreSQL; a CHECK-like failure on SQLite): the others stay.
        account = yield self.store.create_account("alice", b"h", 0)
        room = yield self.store.create_room("#r", 0)

        def refused(conn: Any) -> None:
            conn.execute("UPDATE rooms SET topic = ? WHERE id = ?", ("x", room.id))
            if self.backend == POSTGRESQL:
                conn.execute("UPDATE rooms SET topic = ? WHERE id = ?", ("a" + chr(0), room.id))
            else:
                conn.execute("SELECT no_such_function()")

        before = self.store.add_room_message(room.id, "#r", "alice", account.id, "one", 1)
        failing = self.db.run("refused", refused)
        after = self.store.add_room_message(room.id, "#r", "alice", account.id, "two", 3)
        yield self.assertFailure(failing, self.db.Error)
        yield DeferredList([before, after], fireOnOneErrback=True)
        messages = yield self.store.room_history(room.id)
        self.assertEqual([m.text for m in messages], ["one", "two"])
        rooms = yield self.store.load_rooms()
        self.assertEqual([r.info.topic or "" for r in rooms if r.info.name == "#r"], [""])

    @inlineCallbacks
    def test_history_reads_do_not_wait_behind_the_writer(self) -> Any:
        import threading

        account = yield self.store.create_account("alice", b"h", 0)
        room = yield self.store.create_room("#r", 0)
        yield self.store.add_room_message(room.id, "#r", "alice", account.id, "hello", 1)
        release = threading.Event()
        self.addCleanup(release.set)
        blocked = self.db.run("blocked", lambda conn: release.wait(10))
        messages = yield self.store.room_history(room.id)
        self.assertFalse(blocked.called)  # the writer is still busy...
        self.assertEqual([m.text for m in messages], ["hello"])  # ...yet history came back
        release.set()
        yield blocked
        name = yield self.db.read("thread", lambda conn: threading.current_thread().name)
        self.assertEqual(name, "pingchat-db-reader")

    @inlineCallbacks
    def test_work_runs_off_the_reactor_thread(self) -> Any:
        import threading

        name = yield self.db.run("thread", lambda conn: threading.current_thread().name)
        self.assertEqual(name, "pingchat-db-writer")


class Recorded:
    """A Timings that records what it is told, and on which thread."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, float, float, str]] = []
        self.reads: list[tuple[str, float, str]] = []

    def batch(self, size: int, seconds: float, commit_seconds: float) -> None:
        self.batches.append((size, seconds, commit_seconds, threading.current_thread().name))

    def read(self, name: str, seconds: float) -> None:
        self.reads.append((name, seconds, threading.current_thread().name))


class TimingsTests(StoreBackend, TestCase):
    """What the writer and the reader tell the metrics: per batch and per read."""

    @inlineCallbacks
    def test_the_writer_tells_each_batch_once_and_the_reader_each_read(self) -> Any:
        db = self.open_database(reactor, threaded=True)
        db.timings = timings = Recorded()
        yield DeferredList([db.run("job", lambda conn: None) for _ in range(5)])
        self.assertEqual(len(timings.batches), 1)
        [(size, seconds, commit_seconds, thread)] = timings.batches
        self.assertEqual((size, thread), (5, "pingchat-db-writer"))
        self.assertGreaterEqual(seconds, commit_seconds)
        self.assertGreater(commit_seconds, 0)
        yield db.read("count_things", lambda conn: 1)
        self.assertEqual([(r[0], r[2]) for r in timings.reads],
                         [("count_things", "pingchat-db-reader")])

    def test_inline_every_transaction_is_a_batch_of_one(self) -> None:
        db = self.open_database()
        db.timings = timings = Recorded()
        db.run("a", lambda conn: None)
        db.run("b", lambda conn: None)
        db.read("c", lambda conn: None)
        self.assertEqual([b[0] for b in timings.batches], [1, 1])
        self.assertEqual([r[0] for r in timings.reads], ["c"])

    def test_nothing_is_measured_without_a_listener(self) -> None:
        db = self.open_database()
        self.assertIsNone(db.timings)
        self.assertEqual(self.successResultOf(db.run("a", lambda conn: 7)), 7)


class DeliverySliceTests(StoreBackend, SynchronousTestCase):
    """Committed batches fire their Deferreds a slice per reactor turn, in order."""

    def test_a_large_batch_is_spread_over_turns_and_later_batches_queue_behind(self) -> None:
        from twisted.internet.defer import Deferred
        from twisted.internet.task import Clock

        from pingchat.store import database

        clock = Clock()
        db = self.open_database(clock, threaded=True)
        db._timer = lambda: 0.0  # callbacks take no time: only the count limits a turn
        fired: list[int] = []

        def batch(start: int, n: int) -> list[tuple[Deferred[object], bool, object]]:
            out = []
            for i in range(start, start + n):
                d: Deferred[object] = Deferred()
                d.addCallback(fired.append)
                out.append((d, True, i))
            return out

        slice_ = database.DELIVER_SLICE
        db._deliver(batch(0, slice_ * 2 + 5))
        self.assertEqual(fired, list(range(slice_)))
        db._deliver(batch(1000, 3))  # a later commit must not jump the queue
        self.assertEqual(len(fired), slice_)
        clock.advance(0)
        clock.advance(0)
        clock.advance(0)
        self.assertEqual(fired, [*range(slice_ * 2 + 5), 1000, 1001, 1002])
        self.assertEqual(clock.getDelayedCalls(), [])


    def test_a_turn_stops_when_its_time_budget_is_spent(self) -> None:
        from twisted.internet.defer import Deferred

        from pingchat.store import database

        turns: list[Any] = []  # what the reactor would run on its next turns

        class Reactor:
            def callLater(self, delay: float, f: Any) -> None:  # noqa: N802
                turns.append(f)

        db = self.open_database(Reactor(), threaded=True)
        now = [0.0]
        db._timer = lambda: now[0]
        fired: list[int] = []

        def slow(i: int) -> None:
            fired.append(i)
            now[0] += database.DELIVER_BUDGET * 0.45  # each costs 45 % of a turn

        batch: list[tuple[Deferred[Any], bool, Any]] = []
        for i in range(7):
            d: Deferred[int] = Deferred()
            d.addCallback(slow)
            batch.append((d, True, i))
        db._deliver(batch)
        self.assertEqual(fired, [0, 1, 2])
        turns.pop(0)()
        self.assertEqual(fired, [0, 1, 2, 3, 4, 5])
        turns.pop(0)()
        self.assertEqual(fired, list(range(7)))
        self.assertEqual(turns, [])


class TurnHandOverTests(StoreBackend, SynchronousTestCase):
    """Jobs asked for in one reactor turn reach the writer together: one commit."""

    def test_a_turns_jobs_share_one_commit(self) -> None:
        import threading

        later: list[Any] = []
        from_thread: list[tuple[Any, tuple[Any, ...]]] = []
        delivered = threading.Event()

        class Reactor:
            def callLater(self, delay: float, f: Any, *args: Any) -> None:  # noqa: N802
                later.append(f)

            def callFromThread(self, f: Any, *args: Any) -> None:  # noqa: N802
                from_thread.append((f, args))
                delivered.set()

        db = self.open_database(Reactor(), threaded=True)
        results: list[int] = []

        def select(conn: Any, i: int) -> int:
            return int(conn.execute("SELECT ?", (i,)).fetchone()[0])

        for i in range(3):
            db.run("job", select, i).addCallback(results.append)
        self.assertEqual(len(later), 1)  # one hand-over scheduled for the whole turn
        self.assertEqual(db.commits, 0)
        later.pop()()  # the end of the turn
        self.assertTrue(delivered.wait(10))
        f, args = from_thread.pop(0)
        f(*args)  # what the reactor thread would run: fire the committed jobs
        self.assertEqual(results, [0, 1, 2])
        self.assertEqual((db.commits, db.transactions), (1, 3))
        writer = db._thread
        assert writer is not None
        db.stop()
        writer.join(10)
        self.assertFalse(writer.is_alive())

    def test_the_queue_depth_counts_the_turns_waiting_for_a_busy_writer(self) -> None:
        later: list[Any] = []
        delivered = threading.Semaphore(0)

        class Reactor:
            def callLater(self, delay: float, f: Any, *args: Any) -> None:  # noqa: N802
                later.append(f)

            def callFromThread(self, f: Any, *args: Any) -> None:  # noqa: N802
                delivered.release()

        db = self.open_database(Reactor(), threaded=True)
        busy, release = threading.Event(), threading.Event()
        self.addCleanup(release.set)

        def block(conn: Any) -> None:
            busy.set()
            release.wait(10)

        db.run("block", block)
        later.pop()()  # the end of a turn: the writer takes it and blocks
        self.assertTrue(busy.wait(10))
        self.assertEqual(db.queue_depth, 0)
        for _ in range(2):  # two more turns, each with a job
            db.run("select", lambda conn: conn.execute("SELECT 1").fetchone())
            later.pop()()
        self.assertEqual(db.queue_depth, 2)
        release.set()
        for _ in range(2):  # the blocked batch, then the two turns in one
            self.assertTrue(delivered.acquire(timeout=10))
        self.assertEqual(db.queue_depth, 0)
        writer = db._thread
        assert writer is not None
        db.stop()
        writer.join(10)
        self.assertFalse(writer.is_alive())

    def test_the_turns_io_time_comes_out_of_the_budget(self) -> None:
        # pingchat.runtime leaves how long a turn's I/O took on the reactor;
        # the callbacks after it get what is left of TURN_TOTAL, and never
        # less than DELIVER_MIN.
        from twisted.internet.defer import Deferred

        from pingchat.store import database

        self.assertEqual(
            (database.DELIVER_BUDGET, database.TURN_TOTAL, database.DELIVER_MIN),
            (0.020, 0.020, 0.004),
        )

        class Reactor:
            pingchat_turn_io: float | None = None

            def callLater(self, delay: float, f: Any) -> None:  # noqa: N802
                pass

        reactor = Reactor()
        db = self.open_database(reactor, threaded=True)
        now = [0.0]
        db._timer = lambda: now[0]

        def fired_in_one_turn(io: float | None) -> int:
            reactor.pingchat_turn_io = io
            fired: list[int] = []

            def costly(i: int) -> None:
                fired.append(i)
                now[0] += 0.0045

            batch: list[tuple[Deferred[Any], bool, Any]] = []
            for i in range(20):
                d: Deferred[int] = Deferred()
                d.addCallback(costly)
                batch.append((d, True, i))
            db._results.clear()
            db._delivering = False
            db._deliver(batch)
            return len(fired)

        self.assertEqual(fired_in_one_turn(None), 5)  # not a bounded reactor: 20 ms
        self.assertEqual(fired_in_one_turn(0.0), 5)  # no I/O this turn: 20 ms
        self.assertEqual(fired_in_one_turn(0.012), 2)  # 8 ms left
        self.assertEqual(fired_in_one_turn(0.019), 1)  # at least 4 ms


# The same tests on PostgreSQL (tests/backends.py).
MigrationTestsOnPostgreSQL = on_postgresql(MigrationTests)
MessageRowTestsOnPostgreSQL = on_postgresql(MessageRowTests)
ConversationTargetsTestsOnPostgreSQL = on_postgresql(ConversationTargetsTests)
TimestampLookupTestsOnPostgreSQL = on_postgresql(TimestampLookupTests)
BatchTestsOnPostgreSQL = on_postgresql(BatchTests)
WriterThreadTestsOnPostgreSQL = on_postgresql(WriterThreadTests)
TimingsTestsOnPostgreSQL = on_postgresql(TimingsTests)
DeliverySliceTestsOnPostgreSQL = on_postgresql(DeliverySliceTests)
TurnHandOverTestsOnPostgreSQL = on_postgresql(TurnHandOverTests)
