"""One SQLite writer thread with group commit, and one reader thread.

Every store method is a named *transaction function* ``fn(conn, *args)``
submitted with :meth:`Database.run`. Work asked for during one reactor turn
is handed to the writer thread together, at the end of the turn; the writer
takes whatever work is queued, runs each function inside its own
``SAVEPOINT`` (so one failure does not undo the others) and commits the
batch once. Each caller's Deferred fires
on the reactor thread only after that commit, so an acknowledged write is on
disk. Batching is what lets SQLite sustain tens of thousands of durable writes
per second while every single write still waits for its commit.

History queries go through :meth:`Database.read` instead: a second
connection on a reader thread, which WAL lets read while the writer commits.

:class:`Database` with ``threaded=False`` runs each function immediately on the
calling thread; the command-line tool and the unit tests use it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

from pingchat.errors import BadRequest
from pingchat.model import strings_in
from pingchat.runtime import TURN_TOTAL
from pingchat.store import migrations

T = TypeVar("T")
Txn = Callable[..., Any]

_STOP = object()


class _Checkpoint:
    """A request for a WAL checkpoint: the Deferreds of one reactor turn's callers."""

    def __init__(self) -> None:
        self.waiting: list[Deferred[None]] = []


NUL_REFUSED = "text holding NUL (U+0000) cannot be stored; nothing was changed"
MAX_BATCH = 512
# Committed transactions whose callbacks run in one reactor turn: at most
# this many, and no more once this much time has gone (a login's callbacks
# cost far more than a message's). The time is a trade: every turn ends with
# a TLS record and a send() per connection written to, so the more messages
# a turn delivers, the cheaper each delivery (bench fanout-1000, native:
# 4 ms -> 8-24 us per delivery, 12 ms -> 8.7, 25 ms -> 5.7, no limit -> 3.8).
DELIVER_SLICE = 32
DELIVER_BUDGET = 0.020
DELIVER_MIN = 0.004  # however long the turn's I/O took

BUSY_TIMEOUT = 10.0  # seconds a connection waits for another's lock

log = Logger()


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch a connection's database to WAL, waiting for other openers.

    Two processes opening a new database at once both ask for WAL; SQLite
    answers one of them "database is locked" at once, without waiting the
    busy timeout (each would wait for the other), so the wait is here.
    It happens once per connection, at start-up or in the command-line tool.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def connect(path: str | Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """Open the database with the settings every pingchat connection uses.

    A new database file is created readable only by its owner: it holds
    password hashes. SQLite gives its -wal and -shm files the same mode.
    """
    if str(path) != ":memory:" and not Path(path).exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(
        str(path), check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT
    )
    conn.row_factory = sqlite3.Row
    if str(path) != ":memory:":
        _use_wal(conn)
    conn.execute("PRAGMA foreign_keys = ON")
    # Deleted content (a deleted message's text, a removed account) is
    # overwritten with zeros in the file, not left in free space. Many builds
    # (Debian's) have it on already; others (macOS, some wheels) do not.
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def holds_nul(args: tuple[Any, ...]) -> bool:
    """Whether a string among *args* (or in a list, tuple, set or dict of them) holds NUL.

    PostgreSQL's ``text`` cannot hold U+0000 (psycopg raises ``DataError``
    inside the batch) where SQLite stores it: such a job is refused before
    any SQL, alike on both backends, with a ``BadRequest`` the doors answer
    as bad input. The doors refuse NUL already (docs/protocol.md); this
    catches what comes another way (the manhole, the command line). Bytes
    (BLOBs, ``bytea``) may hold anything. It costs the reactor about 0.6 us
    for a room message's seven arguments (timeit, this machine).
    """
    for item in args:  # the usual job: a few scalars, looked at without a walk
        if isinstance(item, str):
            if "\0" in item:
                return True
        elif isinstance(item, (list, tuple, set, frozenset, dict)) and any(
            "\0" in text for text in strings_in(item)
        ):
            return True
    return False


def _backfill(conn: Any) -> tuple[int, int, int]:
    busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(frames), int(done)


class Timings(Protocol):
    """Told how long the database's work took (the metrics, pingchat.admin.metrics).

    Called on the writer and reader threads: once per committed batch and
    once per read, never per write.
    """

    def batch(self, size: int, seconds: float, commit_seconds: float) -> None:
        """A batch of *size* jobs took *seconds* (BEGIN to COMMIT), its COMMIT *commit_seconds*."""

    def read(self, name: str, seconds: float) -> None:
        """The read transaction *name* took *seconds*."""


class Database:
    """The single writer to one SQLite file.

    :class:`pingchat.store.postgresql.PostgreSQLDatabase` runs the same writer
    and reader on PostgreSQL: it overrides the statements and the error class
    below, and how connections are opened.
    """

    # What differs between backends (see pingchat.store.postgresql).
    BEGIN = "BEGIN IMMEDIATE"
    BEGIN_READ = "BEGIN"
    Error: type[Exception] = sqlite3.Error
    # After a message is deleted: no copy of it left in the WAL (see checkpoint).
    CHECKPOINT: str | None = "PRAGMA wal_checkpoint(TRUNCATE)"

    def __init__(
        self,
        path: str | Path,
        reactor: IReactorFromThreads | None = None,
        *,
        threaded: bool = True,
        synchronous: str = "FULL",
    ) -> None:
        self.path = str(path)
        self._reactor = reactor
        self._threaded = threaded
        self._conn = self._connect_writer(synchronous)
        self.version = self._migrate(self._conn)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Jobs of the current reactor turn, handed over as one list (see run).
        self._pending: list[Any] = []
        self._checkpoint: _Checkpoint | None = None  # asked for during this turn
        self._results: deque[tuple[Deferred[Any], bool, Any]] = deque()
        self._delivering = False
        self._timer: Callable[[], float] = time.perf_counter
        self._thread: threading.Thread | None = None
        self._read_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader: threading.Thread | None = None
        self._read_conn: Any = None
        self._stopped: Deferred[None] | None = None
        self.transactions = 0
        self.commits = 0
        self.timings: Timings | None = None
        # Messages take their conversation's next sequence number (a node of
        # a cluster, which orders deliveries by them; pingchat.cluster.order).
        # One server does not: it costs an UPDATE per message (4.6 us of the
        # 11.8 a room message costs the writer, bench.writes).
        self.numbered = False
        self._commit_seconds = 0.0  # the writer's last COMMIT

    # -- the backend ----------------------------------------------------------

    def _connect_writer(self, synchronous: str) -> Any:
        return connect(self.path, synchronous)

    def _connect_reader(self) -> Any:
        conn = connect(self.path, "NORMAL")
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _migrate(self, conn: Any) -> int:
        return migrations.migrate(conn)

    # -- running transactions -------------------------------------------------

    def run(self, name: str, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run ``fn(conn, *args)`` in a transaction; fire with its result after commit.

        The job is not given to the writer at once but at the end of the
        reactor turn, with every other job of that turn. Handing jobs over one
        at a time woke the writer thread for each: on a busy one-core server
        it preempted the reactor and committed (and fsynced) batches of one
        or two jobs (8,874 commits for 15,000 DMs; 4,100 now).
        """
        return self._submit(self._add_to_turn, name, fn, args)

    def read(self, name: str, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run a read-only ``fn(conn, *args)`` on the reader thread.

        WAL lets a second connection read while the writer commits, so a
        history query never waits behind a batch of writes. The reader sees
        every write acknowledged before the read was asked for.
        """
        return self._submit(self._read_queue.put, name, fn, args, reading=True)

    def _submit(
        self,
        put: Callable[[Any], None],
        name: str,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        reading: bool = False,
    ) -> Deferred[T]:
        if self._stopped is not None:
            return fail(RuntimeError(f"{name}: the database is closed"))
        if holds_nul(args):
            return fail(BadRequest(NUL_REFUSED))
        if not self._threaded:
            return self._run_inline(name, fn, args, reading)
        if self._thread is None:
            self.start()
        d: Deferred[T] = Deferred()
        put((name, fn, args, d))
        return d

    def _add_to_turn(self, job: Any) -> None:
        if not self._pending:
            self._reactor.callLater(0, self._hand_over)  # type: ignore[union-attr]
        self._pending.append(job)

    def _hand_over(self) -> None:
        if self._pending:
            self._queue.put(self._pending)
            self._pending = []

    @property
    def queue_depth(self) -> int:
        """How many hand-overs wait for the writer: each a turn's jobs (or a
        checkpoint) given to it and not yet taken (the manhole's ``stats()``).
        A writer that falls behind shows here first."""
        return self._queue.qsize()

    def checkpoint(self) -> Deferred[None]:
        """Copy the WAL into the database file and truncate the WAL to nothing.

        A deleted message's text is overwritten in the database (``secure_delete``),
        but older copies of its page stay in the WAL file until a checkpoint
        rewrites the database and the WAL is reset and overwritten. This
        ``wal_checkpoint(TRUNCATE)`` runs on the writer thread, outside any
        transaction, after every batch handed over before it; it fires once
        the WAL is empty. Callers in one reactor turn share one checkpoint.
        A backend without this WAL (PostgreSQL: ``CHECKPOINT = None``) fires at once.
        """
        if self._stopped is not None:
            return fail(RuntimeError("checkpoint: the database is closed"))
        if self.CHECKPOINT is None:
            return succeed(None)
        if not self._threaded:
            try:
                self._checkpoint_now()
            except self.Error:
                return fail(Failure())
            return succeed(None)
        if self._thread is None:
            self.start()
        if self._checkpoint is None:
            self._checkpoint = _Checkpoint()
            self._reactor.callLater(0, self._hand_over_checkpoint)  # type: ignore[union-attr]
        d: Deferred[None] = Deferred()
        self._checkpoint.waiting.append(d)
        return d

    @property
    def closed(self) -> bool:
        """Whether :meth:`stop` was called: nothing more may be asked of it."""
        return self._stopped is not None

    def backfill(self) -> Deferred[tuple[int, int, int]]:
        """Copy the WAL's pages into the database file, from the reader thread.

        A PASSIVE checkpoint: it waits for nobody and holds no writer back.
        Work that writes a lot (an expiry) asks for it between its batches,
        so that the writer's own checkpoints (every 1,000 pages, inside a
        COMMIT, while that batch's callers wait) find little left to copy.
        Fires with SQLite's ``(busy, log frames, checkpointed frames)``;
        ``(0, 0, 0)`` on a backend without this WAL.
        """
        if self._stopped is not None:
            return fail(RuntimeError("backfill: the database is closed"))
        if self.CHECKPOINT is None:
            return succeed((0, 0, 0))
        if not self._threaded:  # no transaction around it: SQLite refuses one inside
            return succeed(_backfill(self._conn))
        return self.read("backfill", _backfill)

    def _checkpoint_now(self) -> None:
        """Run the checkpoint, outside any transaction, waiting (busy timeout) for readers."""
        assert self.CHECKPOINT is not None
        busy, _log, _done = self._conn.execute(self.CHECKPOINT).fetchone()
        if busy:
            raise sqlite3.OperationalError("the WAL checkpoint could not finish: database busy")

    def _hand_over_checkpoint(self) -> None:
        self._hand_over()  # this turn's jobs first
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is not None:
            self._queue.put(checkpoint)

    def _run_inline(
        self, name: str, fn: Callable[..., T], args: tuple[Any, ...], reading: bool = False
    ) -> Deferred[T]:
        conn = self._conn
        started = time.perf_counter()
        conn.execute(self.BEGIN)
        try:
            result = fn(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            self.transactions += 1
            return fail(Failure())
        committing = time.perf_counter()
        conn.execute("COMMIT")
        self.transactions += 1
        self.commits += 1
        if self.timings is not None:
            # Each inline transaction is a batch of its own (or a read).
            done = time.perf_counter()
            if reading:
                self.timings.read(name, done - started)
            else:
                self.timings.batch(1, done - started, done - committing)
        return succeed(result)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a transaction function on the calling thread (command line, tests)."""
        if self._thread is not None:
            raise RuntimeError("run_sync is not allowed while the writer thread runs")
        result: list[Any] = []
        self._run_inline("sync", fn, args).addBoth(result.append)
        if isinstance(result[0], Failure):
            result[0].raiseException()
        return result[0]  # type: ignore[no-any-return]

    # -- the writer thread ----------------------------------------------------

    def start(self) -> None:
        if self._thread is not None or not self._threaded:
            return
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor  # type: ignore[assignment]
        self._thread = threading.Thread(target=self._writer, name="pingchat-db-writer", daemon=True)
        self._thread.start()
        self._reader = threading.Thread(
            target=self._read_loop,
            args=(self._connect_reader(),),
            name="pingchat-db-reader",
            daemon=True,
        )
        self._reader.start()

    def stop(self) -> Deferred[None]:
        """Finish queued work, close the connection; fires when done."""
        if self._stopped is None:
            self._stopped = Deferred()
            if self._thread is None:
                self._conn.close()
                self._stopped.callback(None)
            else:
                self._hand_over()
                self._read_queue.put(_STOP)
                self._queue.put(_STOP)
        return self._stopped

    def _read_loop(self, conn: Any) -> None:
        """The reader thread: one read transaction at a time, on its own connection."""
        reactor = self._reactor
        assert reactor is not None
        self._read_conn = conn
        while True:
            job = self._read_queue.get()
            if job is _STOP:
                break
            name, fn, args, d = job
            started = time.perf_counter()
            try:
                value = self._read(fn, args)
            except BaseException:
                outcome, value = d.errback, Failure()
            else:
                outcome = d.callback
            # Told before the caller hears: what it sees next includes this read.
            if self.timings is not None:
                self.timings.read(name, time.perf_counter() - started)
            reactor.callFromThread(outcome, value)
        self._read_conn.close()

    def _read(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """One read transaction on the reader's connection."""
        conn = self._read_conn
        conn.execute(self.BEGIN_READ)
        try:
            return fn(conn, *args)
        finally:
            conn.execute("COMMIT")

    def _writer(self) -> None:
        reactor = self._reactor
        assert reactor is not None
        running = True
        while running:
            jobs: list[Any] = []
            checkpoint: _Checkpoint | None = None
            item = self._queue.get()
            while True:
                if item is _STOP:
                    running = False
                    break
                if isinstance(item, _Checkpoint):
                    checkpoint = item  # after the jobs handed over before it
                    break
                jobs.extend(item)
                if len(jobs) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if jobs:
                started = time.perf_counter()
                self._commit_seconds = 0.0
                results = self._run_batch(self._conn, jobs)
                if self.timings is not None:
                    self.timings.batch(
                        len(jobs), time.perf_counter() - started, self._commit_seconds
                    )
                reactor.callFromThread(self._deliver, results)
            if checkpoint is not None:
                try:
                    self._checkpoint_now()
                    outcome: tuple[bool, Any] = (True, None)
                except self.Error:
                    outcome = (False, Failure())
                reactor.callFromThread(
                    self._deliver, [(d, *outcome) for d in checkpoint.waiting]
                )
        self._conn.close()
        if self._reader is not None:
            self._reader.join()
        reactor.callFromThread(self._closed)

    def _run_batch(
        self, conn: Any, jobs: list[Any]
    ) -> list[tuple[Deferred[Any], bool, Any]]:
        """Run a batch of jobs in one transaction; each job's result or failure.

        Jobs run back to back first. Should one fail, the whole transaction
        is rolled back and the batch runs again with a savepoint around each
        job, so that only the failed job's changes are lost. Jobs are store
        functions of the connection and their arguments, so running one
        again after a rollback gives what it would have given. (A savepoint
        per job on every batch cost ~3.6 us a job, about a sixth of storing
        a message, for failures that are rare: a DM to no such user, a
        name already taken.)
        """
        try:
            conn.execute(self.BEGIN)
        except self.Error:
            failure = Failure()
            return [(job[3], False, failure) for job in jobs]
        try:
            self._lock_rows(conn, jobs)
            results = [(d, True, fn(conn, *args)) for _name, fn, args, d in jobs]
        except BaseException:
            with contextlib.suppress(self.Error):  # some errors end it themselves
                conn.execute("ROLLBACK")
            try:
                conn.execute(self.BEGIN)
                self._lock_rows(conn, jobs)
            except self.Error:
                failure = Failure()
                return [(job[3], False, failure) for job in jobs]
            results = self._run_isolated(conn, jobs)
        return self._commit(conn, jobs, results)

    def _lock_rows(self, conn: Any, jobs: list[Any]) -> None:
        """Take the row locks the batch's jobs will take, in one order (a hook).

        Nothing to do with one writer, which SQLite's is; PostgreSQL's
        (pingchat.store.postgresql) shares its database with other nodes.
        """

    def _run_isolated(
        self, conn: Any, jobs: list[Any]
    ) -> list[tuple[Deferred[Any], bool, Any]]:
        """Each job in a savepoint of the open transaction: a failure undoes only its own."""
        results: list[tuple[Deferred[Any], bool, Any]] = []
        for _name, fn, args, d in jobs:
            try:
                conn.execute("SAVEPOINT job")
                value = fn(conn, *args)
                conn.execute("RELEASE job")
                results.append((d, True, value))
            except BaseException:
                failure = Failure()
                with contextlib.suppress(self.Error):
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                results.append((d, False, failure))
        return results

    def _commit(
        self,
        conn: Any,
        jobs: list[Any],
        results: list[tuple[Deferred[Any], bool, Any]],
    ) -> list[tuple[Deferred[Any], bool, Any]]:
        started = time.perf_counter()
        try:
            conn.execute("COMMIT")
        except self.Error:
            self._commit_seconds = time.perf_counter() - started
            failure = Failure()
            with contextlib.suppress(self.Error):
                conn.execute("ROLLBACK")
            return [(d, False, failure) for d, _, _ in results]
        self._commit_seconds = time.perf_counter() - started
        self.transactions += len(jobs)
        self.commits += 1
        return results

    def _deliver(self, results: list[tuple[Deferred[Any], bool, Any]]) -> None:
        """Fire the Deferreds of a committed batch, in order, a slice per turn.

        A batch can hold hundreds of messages, each fanning out to every
        member of a room; firing them all in one reactor turn would stall
        every other connection for as long. The rest waits for the next turn
        (after I/O), and later batches queue behind it so order is kept.
        """
        self._results.extend(results)
        if not self._delivering:
            self._deliver_slice()

    def _deliver_slice(self) -> None:
        self._delivering = True
        budget = DELIVER_BUDGET
        # What this turn's I/O took counts too (pingchat.runtime bounds the
        # turns of the real server's reactor): a login storm's turns were
        # 8 ms of TLS handshakes and then 20 ms of logins.
        io = getattr(self._reactor, "pingchat_turn_io", None)
        if io is not None:
            budget = min(budget, max(TURN_TOTAL - io, DELIVER_MIN))
        deadline = self._timer() + budget
        try:
            for _ in range(min(DELIVER_SLICE, len(self._results))):
                d, ok, value = self._results.popleft()
                if ok:
                    d.callback(value)
                else:
                    d.errback(value)
                if self._timer() > deadline:
                    break
        finally:
            if self._results:
                assert self._reactor is not None
                self._reactor.callLater(0, self._deliver_slice)  # type: ignore[attr-defined]
            else:
                self._delivering = False

    def _closed(self) -> None:
        self._thread = None
        if self._stopped is not None:
            self._stopped.callback(None)
