"""What a store function may ask of its connection, on either backend.

Every transaction function ``fn(conn, *args)`` gets a :class:`Connection`:
a ``sqlite3.Connection`` (with ``sqlite3.Row`` rows) on SQLite, a
:class:`pingchat.store.postgresql.PostgreSQLConnection` on PostgreSQL, which
looks the same from here: ``?`` placeholders, rows readable by position and
by column name, ``rowcount``, ``executemany`` and ``conn.IntegrityError``.

The SQL itself is shared wherever both databases understand it, which is
nearly everywhere: ``INSERT ... ON CONFLICT DO NOTHING`` (not ``INSERT OR
IGNORE``), ``ON CONFLICT (...) DO UPDATE``, ``RETURNING``, ``IS DISTINCT
FROM`` (not ``IS NOT``), no scalar ``min()``/``max()``. A new row's id
comes from :func:`insert` (``cursor.lastrowid`` on SQLite, ``RETURNING id``
on PostgreSQL). Where a backend needs SQL of its own, the function branches
on :func:`is_postgresql` (no store function does today; schema differences
live in the migrations, see pingchat/store/migrations.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol


class Cursor(Protocol):
    """The result of one statement."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection inside one named transaction (the writer's or a reader's)."""

    @property
    def IntegrityError(self) -> type[Exception]: ...  # noqa: N802 - DB-API's name

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...


def is_postgresql(conn: Connection) -> bool:
    """Whether *conn* is a PostgreSQL connection (for SQL that must differ)."""
    return getattr(conn, "dialect", "sqlite") == "postgresql"


def insert(conn: Connection, sql: str, parameters: Any) -> int:
    """Run an ``INSERT`` of one row into a table with an ``id``; the new row's id.

    SQLite's ``cursor.lastrowid`` costs nothing, where ``RETURNING id`` cost
    ~2.5 us of the ~11.5 us the writer spends on a room message (84,000 ->
    66,000 messages/s in bench.writes); PostgreSQL has only ``RETURNING``.
    """
    if is_postgresql(conn):
        return int(conn.execute(sql + " RETURNING id", parameters).fetchone()[0])
    return conn.execute(sql, parameters).lastrowid  # type: ignore[attr-defined,no-any-return]
