"""The SQLite implementation of :class:`pingchat.interfaces.IStore`."""

from __future__ import annotations

from zope.interface import implementer

from pingchat.interfaces import IStore
from pingchat.store.store import Store


@implementer(IStore)
class SQLiteStore(Store):
    """Every transaction of pingchat, run by one SQLite :class:`Database` writer."""
