"""``pingchat store copy``: a community's SQLite file into an empty PostgreSQL database.

Off-line (the caller holds the data dir's lock): both databases are migrated
to the latest schema, every table is copied in one PostgreSQL transaction
(``COPY``, parents before children), the identity sequences are moved past
the copied ids, and then each table is verified on both sides: its row count
and a SHA-256 over its rows in primary-key order, each value written in one
canonical form. Nothing is written to a PostgreSQL database that holds any
pingchat rows already.
"""

from __future__ import annotations

import graphlib
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import attrs

from pingchat.store import migrations
from pingchat.store.database import Database
from pingchat.store.postgresql import PostgreSQLConnection, connect, redact


class CopyRefused(Exception):
    """The copy cannot be made (the target is not empty, ...); nothing was written."""


@attrs.frozen
class TableCheck:
    table: str
    rows: tuple[int, int]  # SQLite, PostgreSQL
    digests: tuple[str, str]

    @property
    def ok(self) -> bool:
        return self.rows[0] == self.rows[1] and self.digests[0] == self.digests[1]


def tables_in_order(conn: Any) -> list[str]:
    """The SQLite database's tables, each after the tables its foreign keys name."""
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'"
        )
    ]
    graph = {
        name: {r["table"] for r in conn.execute(f"PRAGMA foreign_key_list({name})")} - {name}
        for name in names
    }
    return list(graphlib.TopologicalSorter(graph).static_order())


def columns_of(conn: Any, table: str) -> tuple[list[str], list[str]]:
    """A SQLite table's columns, and its primary key's, in order."""
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    key = [r["name"] for r in sorted(info, key=lambda r: r["pk"]) if r["pk"]]
    return [r["name"] for r in info], key


def digest(rows: Iterable[Iterable[Any]]) -> tuple[int, str]:
    """Row count and SHA-256 of rows, each value in a form both databases give alike."""
    h = hashlib.sha256()
    count = 0
    for row in rows:
        count += 1
        for value in row:
            if value is None:
                h.update(b"N;")
            elif isinstance(value, int):
                h.update(b"i%d;" % value)
            elif isinstance(value, bytes | memoryview):
                data = bytes(value)
                h.update(b"b%d:%s;" % (len(data), data))
            else:
                data = str(value).encode("utf-8")
                h.update(b"s%d:%s;" % (len(data), data))
        h.update(b"\n")
    return count, h.hexdigest()


def _postgresql_rows(pg: PostgreSQLConnection, sql: str) -> Iterable[tuple[Any, ...]]:
    """Rows of a query read in slices (a server-side cursor), not all at once."""
    with pg.raw.transaction(), pg.raw.cursor(name="pingchat_copy_check") as cursor:
        cursor.itersize = 5000
        cursor.execute(sql)
        yield from cursor


def copy(sqlite_path: Path, url: str, out: TextIO) -> bool:
    """Copy and verify; print the check as a table to *out*; whether every table matched."""
    source = Database(sqlite_path, threaded=False)
    try:
        pg = connect(url, "store copy")
        try:
            return _copy(source, pg, url, out)
        finally:
            pg.close()
    finally:
        source.stop()


def _copy(source: Database, pg: PostgreSQLConnection, url: str, out: TextIO) -> bool:
    lite = source._conn
    version = migrations.migrate_postgresql(pg)
    if version != source.version:
        raise CopyRefused(
            f"{redact(url)} is at schema version {version}, the SQLite file at"
            f" {source.version}: use the same pingchat for both"
        )
    tables = tables_in_order(lite)
    taken = [t for t in tables if pg.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
    if taken:
        raise CopyRefused(
            f"{redact(url)} is not empty (rows in {', '.join(taken)}): copy into a new"
            " database, or drop this one's tables first"
        )
    shapes = {t: columns_of(lite, t) for t in tables}
    with pg.raw.transaction():
        for table in tables:
            columns, _ = shapes[table]
            names = ", ".join(columns)
            with pg.raw.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copier:
                for row in lite.execute(f"SELECT {names} FROM {table}"):
                    copier.write_row(tuple(row))
            if "id" in columns:
                # Identity columns take the next id from a sequence the COPY
                # did not move: past the largest copied one.
                pg.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id))"
                    f" FROM {table} HAVING max(id) IS NOT NULL"
                )
    checks = []
    for table in tables:
        columns, key = shapes[table]
        query = f"SELECT {', '.join(columns)} FROM {table} ORDER BY {', '.join(key)}"
        count, sqlite_digest = digest(lite.execute(query))
        pg_count, pg_digest = digest(_postgresql_rows(pg, query))
        checks.append(TableCheck(table, (count, pg_count), (sqlite_digest, pg_digest)))
    _print(checks, out)
    return all(c.ok for c in checks)


def _print(checks: list[TableCheck], out: TextIO) -> None:
    width = max(len("table"), *(len(c.table) for c in checks))
    out.write(f"{'table':<{width}}  {'SQLite':>9}  {'PostgreSQL':>10}  checksum (SHA-256)\n")
    for c in checks:
        if c.ok:
            verdict = f"same    {c.digests[0][:16]}"
        else:
            verdict = f"DIFFERENT  {c.digests[0][:16]} / {c.digests[1][:16]}"
        out.write(f"{c.table:<{width}}  {c.rows[0]:>9}  {c.rows[1]:>10}  {verdict}\n")
