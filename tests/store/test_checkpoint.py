"""The WAL copied into the database from the reader thread, between the batches
of a long expiry, so that the writer's COMMITs do not copy it themselves."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pingchat.store import Database, SQLiteStore


class BackfillTests(TestCase):
    def setUp(self) -> None:
        where = Path(tempfile.mkdtemp(prefix="pingchat-store-"))
        self.addCleanup(shutil.rmtree, where, True)
        self.db = Database(where / "db.sqlite3", reactor)
        self.store = SQLiteStore(self.db)
        self.addCleanup(self.db.stop)

    @inlineCallbacks
    def test_the_reader_copies_the_wal_and_the_writer_then_starts_it_over(self) -> Any:
        account = yield self.store.create_account("alice", b"h", 0)
        room = yield self.store.create_room("#r", 0)
        for i in range(50):
            yield self.store.add_room_message(room.id, "#r", "alice", account.id, f"m{i}", i)
        busy, frames, done = yield self.db.backfill()
        self.assertEqual((busy, frames), (0, done))
        self.assertGreater(frames, 0)
        # The next commit finds every frame copied and writes from the WAL's start.
        yield self.store.create_account("bob", b"h", 0)
        _, frames_after, _ = yield self.db.backfill()
        self.assertLess(frames_after, frames)
        yield self.store.backfill_wal()


class InlineBackfillTests(SynchronousTestCase):
    def test_inline_it_runs_outside_any_transaction(self) -> None:
        where = Path(tempfile.mkdtemp(prefix="pingchat-store-"))
        self.addCleanup(shutil.rmtree, where, True)
        db = Database(where / "db.sqlite3", threaded=False)
        self.addCleanup(db.stop)
        self.successResultOf(SQLiteStore(db).create_account("alice", b"h", 0))
        busy, frames, done = self.successResultOf(db.backfill())
        self.assertEqual((busy, frames), (0, done))
        db.stop()
        self.failureResultOf(db.backfill(), RuntimeError)
