"""Schema migrations: numbered ``schema/NNN_name.sql`` files applied in order.

The database's ``PRAGMA user_version`` records the last applied number.
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

_NAME = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")


def available() -> list[tuple[int, str]]:
    """Return ``(version, sql)`` for every shipped schema file, in order."""
    found = []
    for entry in resources.files("pingchat.store").joinpath("schema").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the database; return the final version.

    Each migration runs in its own write transaction together with the
    version bump, so a failed migration leaves the database at the previous
    version. The version is read inside that transaction: another process
    opening the same new database at the same moment (the server and a
    ``pingchat user add``, say) waits for the lock and then finds the
    migration done, instead of running it a second time.
    """
    pending = available()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)
            todo = [(number, sql) for number, sql in pending if number > version]
            if todo:
                number, sql = todo[0]
                for statement in _split(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number:d}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if not todo:
            return version


def _split(sql: str) -> list[str]:
    """Split a schema file into statements (no triggers with inner ';' are used)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
