"""Storage: SQLite or PostgreSQL behind one writer thread, one named transaction per method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pingchat.store.database import Database
from pingchat.store.sqlite import SQLiteStore
from pingchat.store.store import Store

__all__ = ["Database", "SQLiteStore", "Store", "open_store"]


def open_store(
    url: str | None,
    sqlite_path: Path,
    reactor: Any = None,
    *,
    threaded: bool = True,
    synchronous: str = "FULL",
) -> Store:
    """The store a ``--store`` value names: ``None`` is SQLite at *sqlite_path*,
    ``postgresql://…`` a PostgreSQL database. Connects and migrates; its
    ``db`` is the writer, not yet started. PostgreSQL needs psycopg
    (``pip install 'pingchat[postgresql]'``); an unreachable one raises
    ``StoreUnavailable``."""
    if url is None:
        db = Database(sqlite_path, reactor, threaded=threaded, synchronous=synchronous)
        return SQLiteStore(db)
    try:
        from pingchat.store.postgresql import PostgreSQLDatabase, PostgreSQLStore
    except ImportError as e:
        raise RuntimeError(
            f"--store postgresql://… needs psycopg ({e}): pip install 'pingchat[postgresql]'"
        ) from e
    return PostgreSQLStore(PostgreSQLDatabase(url, reactor, threaded=threaded))
