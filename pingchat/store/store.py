"""Every transaction of pingchat, whichever database runs them."""

from __future__ import annotations

from zope.interface import implementer

from pingchat.interfaces import IStore
from pingchat.store.accounts import AccountStore
from pingchat.store.audit import AuditStore
from pingchat.store.contacts import ContactStore
from pingchat.store.database import Database
from pingchat.store.deletion import DeletionStore
from pingchat.store.erasure import ErasureStore
from pingchat.store.invite_codes import InviteCodeStore
from pingchat.store.keys import KeyStore
from pingchat.store.messages import MessageStore
from pingchat.store.retention import RetentionStore
from pingchat.store.rooms import RoomStore
from pingchat.store.security import SecurityStore


@implementer(IStore)
class Store(
    AccountStore, RoomStore, MessageStore, AuditStore, SecurityStore, ContactStore,
    InviteCodeStore, KeyStore, DeletionStore, ErasureStore, RetentionStore,
):
    """The store methods, one named transaction each, run by one :class:`Database`.

    The SQL is shared: :class:`~pingchat.store.sqlite.SQLiteStore` and
    :class:`~pingchat.store.postgresql.PostgreSQLStore` differ only in their
    ``Database`` (pingchat/store/dialect.py says what the SQL may use).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
