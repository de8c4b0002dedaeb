"""What a store function may ask of its connection, on either backend.

Every transaction function ``fn(conn, *args)`` gets a :class:`Connection`:
a ``sqlite3.Connection`` (with ``sqlite3.Row`` rows) on SQLite, a
:class:`pingchat.store.postgresql.PostgreSQLConnection` on PostgreSQL, which
looks the same from here: ``?`` placeholders, rows readable by position and
by column name, ``rowcount``, ``executemany`` and ``conn.IntegrityError``.

The SQL itself is shared wherever both databases understand it, which is
nearly everywhere: ``INSERT ... ON CONFLICT DO NOTHING`` (not ``INSERT OR
IGNORE``), ``ON CONFLICT (...) DO UPDATE``, ``RETURNING id`` (not
``cursor.lastrowid``), ``IS DISTINCT FROM`` (not ``IS NOT``), no scalar
``min()``/``max()``. Where a backend needs SQL of its own, the function
branches on :func:`is_postgresql` (there is no such place today; schema
differences live in the migrations, see pingchat/store/migrations.py).
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
