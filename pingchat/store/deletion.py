"""Deleting messages: the lookup that permission checks need, and the tombstone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from pingchat.model import Message
from pingchat.store.dialect import Connection
from pingchat.store.messages import _SELECT, _row_to_message

if TYPE_CHECKING:
    from pingchat.store.database import Database


def _message_by_id(conn: Connection, msg_id: int) -> Message | None:
    row = conn.execute(_SELECT + " WHERE m.id = ?", (msg_id,)).fetchone()
    return None if row is None else _row_to_message(row)


def _tombstone(conn: Connection, msg_id: int, by: str, now: int) -> bool:
    """Empty a message into a tombstone; False if it was gone or deleted already.

    Only the id, time, conversation, sender and kind stay, with who deleted it
    and when. A DM still waiting in the offline queue is taken out of it: its
    recipient never sees it.
    """
    cur = conn.execute(
        "UPDATE messages SET body = NULL, ciphertext = NULL, nonce = NULL, envelopes = NULL,"
        " sender_device = NULL, deleted_at = ?, deleted_by = ?"
        " WHERE id = ? AND deleted_at IS NULL",
        (now, by, msg_id),
    )
    if cur.rowcount != 1:
        return False
    conn.execute("DELETE FROM offline_queue WHERE message_id = ?", (msg_id,))
    return True


class DeletionStore:
    """Message deletion transactions."""

    db: Database

    def message_by_id(self, msg_id: int) -> Deferred[Message | None]:
        """The stored message (or tombstone) *msg_id*, with its room or recipient."""
        return self.db.read("message_by_id", _message_by_id, msg_id)

    def delete_message(self, msg_id: int, by: str, now: int) -> Deferred[bool]:
        """Turn *msg_id* into a tombstone; fires True once its text is gone from the files.

        After the commit, a WAL checkpoint copies the emptied page into the
        database and truncates the WAL, which held the message's earlier
        copies (see :meth:`Database.checkpoint`). False if there was no such
        message, or it was deleted already.
        """
        d = self.db.run("delete_message", _tombstone, msg_id, by, now)

        def forget(deleted: bool) -> Deferred[bool] | bool:
            if not deleted:
                return False
            return self.db.checkpoint().addCallback(lambda _: True)

        return d.addCallback(forget)
