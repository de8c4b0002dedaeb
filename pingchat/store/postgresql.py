"""The PostgreSQL backend: SQLite's writer, transactions and SQL, on PostgreSQL.

:class:`PostgreSQLDatabase` is :class:`~pingchat.store.database.Database`
with PostgreSQL connections: one writer connection on the writer thread,
which commits each reactor turn's writes as one transaction (a savepoint per
job only after a failure), and one reader connection on the reader thread.
The store methods and their SQL are the same (:class:`PostgreSQLStore`); a
:class:`PostgreSQLConnection` makes a psycopg connection look like the
``sqlite3`` one they were written for: ``?`` placeholders become ``%s`` here
and only here, rows are read by position or by name.

Why psycopg 3 with our own threads, not psycopg2 through
``twisted.enterprise.adbapi`` as Synapse does: the group commit is the
writer thread's loop (take every queued job, run them in one transaction,
fire their Deferreds after the one COMMIT), which adbapi's one interaction
per pool thread cannot express without rebuilding it; with the loop shared,
PostgreSQL gets SQLite's batching, savepoint recovery and delivery slicing
unchanged. psycopg 3 is the maintained driver (psycopg2 gets fixes only).

Losing the database: a batch whose connection breaks before its COMMIT was
sent is run again at once on a new connection (a restarted server, an idle
connection dropped by a firewall); if none can be had, every job in it fails
with :class:`~pingchat.errors.StoreUnavailable`, so nothing is acknowledged
that is not committed. Until a connection is back, new work fails at once
with the same error, and the server tries again by itself (a probe after
0.5 s, doubling to 10 s). A batch whose COMMIT was sent but never answered
fails the same way: it may have been stored, but it is never acknowledged.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat.errors import StoreUnavailable
from pingchat.interfaces import IStore
from pingchat.model import fold
from pingchat.store import migrations
from pingchat.store.database import Database
from pingchat.store.messages import _add_dm, _add_room_message
from pingchat.store.rooms import _save_room_modes, _set_topic
from pingchat.store.store import Store

log = Logger()

# Connection settings unless the URL says otherwise: give up connecting
# after 5 s, and notice a dead peer (a cable pulled, a host gone) in about
# 15 s instead of TCP's 15 minutes, so a writer never hangs on it.
DEFAULTS = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "15000",
}
RETRY_MIN = 0.5
RETRY_MAX = 10.0

NOT_STORED = "the database is unavailable: nothing was stored; try again shortly"
MAYBE_STORED = (
    "the connection to the database was lost while committing: this may or may not"
    " have been stored; look at the history before sending it again"
)
NOT_READ = "the database is unavailable; try again shortly"


def is_postgresql_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://…"
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


@functools.lru_cache(maxsize=2048)
def _pyformat(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Row(tuple[Any, ...]):
    """A result row read by position or by column name, like ``sqlite3.Row``."""

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    description = cursor.description
    if description is None:
        return tuple
    return _row_class(tuple(c.name for c in description))


class PostgreSQLConnection:
    """A psycopg connection as the transaction functions see it (dialect.Connection).

    In autocommit mode: the writer and the reader say BEGIN and COMMIT
    themselves, as they do on SQLite.
    """

    dialect = "postgresql"
    IntegrityError = psycopg.IntegrityError

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self._trace: Callable[[str], object] | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        if self._trace is not None:
            self._trace(sql)
        return self.raw.execute(_pyformat(sql), parameters)  # type: ignore[call-overload]

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        if self._trace is not None:
            self._trace(sql)
        cursor = self.raw.cursor()
        cursor.executemany(_pyformat(sql), parameters)  # type: ignore[arg-type]
        return cursor

    def set_trace_callback(self, trace: Callable[[str], object] | None) -> None:
        """Call *trace* with each statement (as ``sqlite3``'s, for tests)."""
        self._trace = trace

    @property
    def broken(self) -> bool:
        """Whether the connection is gone (lost, or closed)."""
        return bool(self.raw.broken or self.raw.closed)

    def close(self) -> None:
        self.raw.close()


class _NoConnection:
    """Where a connection will be: the reader's before its first read."""

    broken = True

    def close(self) -> None:
        pass


def connect(url: str, role: str) -> PostgreSQLConnection:
    """Open a connection with pingchat's settings; *role* names it in ``pg_stat_activity``.

    A message is acknowledged only once committed: a server or role whose
    ``synchronous_commit`` is ``off`` would acknowledge writes that a crash
    can lose, so this connection turns it back on.
    """
    params: dict[str, Any] = {
        **DEFAULTS,
        "application_name": f"pingchat {role}",
        **conninfo_to_dict(url),
    }
    raw = psycopg.connect(make_conninfo("", **params), autocommit=True, row_factory=_row_factory)
    conn = PostgreSQLConnection(raw)
    if conn.execute("SHOW synchronous_commit").fetchone()[0] == "off":
        conn.execute("SET synchronous_commit = on")
    return conn


def _ping(conn: PostgreSQLConnection) -> None:
    conn.execute("SELECT 1")


class PostgreSQLDatabase(Database):
    """The single writer (and one reader) of a pingchat PostgreSQL database.

    Opening it connects and migrates (under an advisory lock, so nodes that
    start at once migrate once); it fails with ``StoreUnavailable`` if the
    database cannot be reached.
    """

    BEGIN = "BEGIN"
    BEGIN_READ = "BEGIN TRANSACTION READ ONLY"
    Error = psycopg.Error
    # No WAL file of ours to empty after a deletion: a deleted message's old
    # row version stays in the table until (auto)VACUUM (docs/admin.md).
    CHECKPOINT = None

    def __init__(
        self,
        url: str,
        reactor: IReactorFromThreads | None = None,
        *,
        threaded: bool = True,
        synchronous: str = "FULL",
    ) -> None:
        self.url = url
        self.where = redact(url)
        self.available = True
        self._retry_at = 0.0
        self._backoff = RETRY_MIN
        self._probe: Any = None
        self._commit_sent = False
        self._committed = False
        self._monotonic: Callable[[], float] = time.monotonic
        super().__init__(url, reactor, threaded=threaded, synchronous=synchronous)

    # -- the backend ----------------------------------------------------------

    def _connect_writer(self, synchronous: str) -> PostgreSQLConnection:
        try:
            return connect(self.url, "writer")
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"cannot connect to {self.where}: {_reason(e)}") from e

    def _connect_reader(self) -> Any:
        # Connected by the reader thread at its first read: no wait here.
        return _NoConnection()

    def _migrate(self, conn: Any) -> int:
        return migrations.migrate_postgresql(conn)

    def stop(self) -> Deferred[None]:
        if self._probe is not None and self._probe.active():
            self._probe.cancel()
        self._probe = None
        return super().stop()

    # -- the writer: row locks in one order ----------------------------------------

    def _lock_rows(self, conn: Any, jobs: list[Any]) -> None:
        """Lock, before any job runs, the rooms and DM threads the batch numbers.

        A message takes its conversation's next number under that row's lock
        (pingchat.store.messages), held until the batch commits. Two nodes
        whose batches took two rooms' locks in opposite orders would wait
        for each other until PostgreSQL's deadlock detector (a second) failed
        one of them; taken here in the order of their keys, every writer
        waits at most for the other's commit. Only rows that exist are
        locked: a new DM thread is inserted by its first message.
        """
        if not self.numbered:
            return
        rooms = {args[0] for _name, fn, args, _d in jobs if fn in _ROOM_LOCKING}
        if rooms:
            conn.execute(
                "SELECT id FROM rooms WHERE id = ANY(?) ORDER BY id FOR UPDATE", (sorted(rooms),)
            )
        dms = [(args[0], fold(args[2])) for _name, fn, args, _d in jobs if fn is _add_dm]
        if not dms:
            return
        ids = dict(
            conn.execute(
                "SELECT name_folded, id FROM accounts WHERE name_folded = ANY(?)",
                (sorted({name for _, name in dms}),),
            ).fetchall()
        )
        pairs = sorted(
            {(min(a, ids[name]), max(a, ids[name])) for a, name in dms if name in ids}
        )
        conn.execute(
            "SELECT 1 FROM dm_threads WHERE (low_id, high_id) IN"
            " (SELECT * FROM unnest(?::bigint[], ?::bigint[]))"
            " ORDER BY low_id, high_id FOR UPDATE",
            ([low for low, _ in pairs], [high for _, high in pairs]),
        )

    # -- the writer: a lost connection ------------------------------------------

    def _run_batch(self, conn: Any, jobs: list[Any]) -> list[tuple[Deferred[Any], bool, Any]]:
        """The batch on the live connection; see the module's docstring for a lost one."""
        if not self._writer_connected(at_once=False):
            return self._refuse(jobs, NOT_STORED)
        results = self._attempt(jobs)
        if self._committed or not self._conn.broken:
            return results
        if self._commit_sent:
            self._lost()
            return self._refuse(jobs, MAYBE_STORED)
        # Nothing of it was committed: once more, on a new connection.
        if not self._writer_connected(at_once=True):
            return self._refuse(jobs, NOT_STORED)
        results = self._attempt(jobs)
        if self._committed or not self._conn.broken:
            return results
        self._lost()
        return self._refuse(jobs, MAYBE_STORED if self._commit_sent else NOT_STORED)

    def _attempt(self, jobs: list[Any]) -> list[tuple[Deferred[Any], bool, Any]]:
        self._commit_sent = self._committed = False
        return super()._run_batch(self._conn, jobs)

    def _commit(
        self, conn: Any, jobs: list[Any], results: list[tuple[Deferred[Any], bool, Any]]
    ) -> list[tuple[Deferred[Any], bool, Any]]:
        self._commit_sent = not conn.broken
        commits = self.commits
        results = super()._commit(conn, jobs, results)
        self._committed = self.commits > commits
        return results

    def _refuse(self, jobs: list[Any], message: str) -> list[tuple[Deferred[Any], bool, Any]]:
        failure = Failure(StoreUnavailable(message))
        return [(job[3], False, failure) for job in jobs]

    def _writer_connected(self, at_once: bool) -> bool:
        """Whether the writer has a live connection, connecting if it is time to."""
        if not self._conn.broken:
            return True
        wait = self._retry_at - self._monotonic()
        if not at_once and wait > 0:
            self._from_thread(self._schedule_probe, wait)
            return False
        try:
            fresh = connect(self.url, "writer")
        except psycopg.Error as e:
            self._lost(e)
            return False
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        self._conn = fresh
        self._backoff = RETRY_MIN
        if not self.available:
            self.available = True
            self._from_thread(log.info, "store: connected to {where} again", where=self.where)
        return True

    def _lost(self, error: BaseException | None = None) -> None:
        """The writer has no connection: refuse work until the next attempt is due."""
        self._retry_at = self._monotonic() + self._backoff
        delay, self._backoff = self._backoff, min(self._backoff * 2, RETRY_MAX)
        if self.available:
            self.available = False
            self._from_thread(
                log.warn,
                "store: lost the connection to {where}{why}; writes are refused until it is"
                " back (retrying)",
                where=self.where,
                why=f" ({_reason(error)})" if error is not None else "",
            )
        self._from_thread(self._schedule_probe, delay)

    def _from_thread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self._reactor is not None and self._thread is not None:
            self._reactor.callFromThread(f, *args, **kwargs)

    def _schedule_probe(self, delay: float) -> None:
        """On the reactor: try to reconnect after *delay*, with no client waiting."""
        if self._stopped is not None or (self._probe is not None and self._probe.active()):
            return
        self._probe = self._reactor.callLater(delay, self._send_probe)  # type: ignore[union-attr]

    def _send_probe(self) -> None:
        self._probe = None
        if not self.available and self._stopped is None:
            self.run("reconnect", _ping).addErrback(lambda _: None)

    # -- the reader --------------------------------------------------------------

    def _read(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """A read on the reader's connection, reconnecting once if it was lost."""
        for attempt in (1, 2):
            if self._read_conn.broken:
                if not self.available and self._monotonic() < self._retry_at:
                    # The writer has just failed to connect: do not wait for
                    # a connect timeout of our own (its probe tries again).
                    raise StoreUnavailable(NOT_READ)
                try:
                    fresh = connect(self.url, "reader")
                except psycopg.Error as e:
                    raise StoreUnavailable(NOT_READ) from e
                self._read_conn.close()
                self._read_conn = fresh
            try:
                return super()._read(fn, args)
            except psycopg.Error as e:
                if not self._read_conn.broken:
                    raise
                if attempt == 2:
                    raise StoreUnavailable(NOT_READ) from e
        raise AssertionError("unreachable")


# Transactions that lock a room's row (the room's sequence, topic or modes).
_ROOM_LOCKING = frozenset({_add_room_message, _set_topic, _save_room_modes})


def _reason(error: BaseException) -> str:
    """The first line of a driver error (libpq's messages run to several)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


@implementer(IStore)
class PostgreSQLStore(Store):
    """Every transaction of pingchat, run by one :class:`PostgreSQLDatabase` writer."""
