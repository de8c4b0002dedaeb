"""Storage: SQLite behind one writer thread, one named transaction per method."""

from pingchat.store.database import Database
from pingchat.store.sqlite import SQLiteStore

__all__ = ["Database", "SQLiteStore"]
