"""The SQLite implementation of :class:`pingchat.interfaces.IStore`."""

from __future__ import annotations

from zope.interface import implementer

from pingchat.interfaces import IStore
from pingchat.store.accounts import AccountStore
from pingchat.store.audit import AuditStore
from pingchat.store.contacts import ContactStore
from pingchat.store.database import Database
from pingchat.store.invite_codes import InviteCodeStore
from pingchat.store.keys import KeyStore
from pingchat.store.messages import MessageStore
from pingchat.store.rooms import RoomStore
from pingchat.store.security import SecurityStore


@implementer(IStore)
class SQLiteStore(
    AccountStore, RoomStore, MessageStore, AuditStore, SecurityStore, ContactStore,
    InviteCodeStore, KeyStore,
):
    """Every transaction of pingchat, run by one :class:`Database` writer."""

    def __init__(self, db: Database) -> None:
        self.db = db
