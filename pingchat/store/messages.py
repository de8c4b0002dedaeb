"""Messages (history) and the offline queue of direct messages."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from pingchat.errors import Forbidden, NoSuchUser
from pingchat.model import Message, fold
from pingchat.store.accounts import require_account
from pingchat.store.contacts import _take_pending_events, is_contact
from pingchat.store.dialect import insert

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection

# The columns in the order of Message's fields, so a row is Message(*row).
_SELECT = (
    "SELECT m.id, m.ts, m.sender, m.body, r.name AS room, a.name AS recipient,"
    " m.ciphertext, m.nonce, m.kind, s.name AS sender_account, m.sender_device, m.envelopes,"
    " m.deleted_at, m.deleted_by, m.conversation, m.seq"
    " FROM messages m"
    " LEFT JOIN rooms r ON r.id = m.room_id"
    " LEFT JOIN accounts a ON a.id = m.recipient_id"
    " LEFT JOIN accounts s ON s.id = m.sender_id"
)


def dm_conversation(a: int, b: int) -> str:
    lo, hi = sorted((a, b))
    return f"d:{lo}:{hi}"


def _row_to_message(row: Any) -> Message:
    # By position: a page of history makes a hundred of these, and looking a
    # Row's columns up by name cost more than building the Message.
    message = Message(*row)
    if message.envelopes is not None:  # stored as JSON text
        message.envelopes = json.loads(message.envelopes)  # type: ignore[arg-type]
    return message


def _add_room_message(
    conn: Connection,
    room_id: int,
    room: str,
    sender: str,
    sender_id: int | None,
    text: str,
    kind: str,
    now: int,
    numbered: bool = False,
) -> Message:
    seq = None
    if numbered:
        # The room's next number first: the row stays locked until the
        # commit, so another writer's message to this room (another node's,
        # on PostgreSQL) takes both its number and its id after this one's.
        seq = conn.execute(
            "UPDATE rooms SET seq = seq + 1 WHERE id = ? RETURNING seq", (room_id,)
        ).fetchone()[0]
    conversation = f"r:{room_id}"
    message_id = insert(
        conn,
        "INSERT INTO messages (ts, conversation, sender, sender_id, room_id, kind, body, seq)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (now, conversation, sender, sender_id, room_id, kind, text, seq),
    )
    return Message(
        id=message_id,
        ts=now,
        sender=sender,
        text=text,
        room=room,
        kind=kind,
        sender_account=sender if sender_id is not None else None,
        conversation=conversation,
        seq=seq,
    )


def _add_dm(
    conn: Connection,
    sender_id: int,
    sender: str,
    recipient: str,
    text: str | None,
    ciphertext: str | None,
    nonce: str | None,
    sender_device: str | None,
    envelopes: list[dict[str, str]] | None,
    kind: str,
    now: int,
    queue: bool,
    numbered: bool = False,
) -> Message:
    # Only the three columns a DM needs: building the whole Account took
    # two thirds of the lookup (15 us of the writer's ~30 per DM).
    row = conn.execute(
        "SELECT id, name, dm_policy FROM accounts WHERE name_folded = ?", (fold(recipient),)
    ).fetchone()
    if row is None:
        raise NoSuchUser(f"no such user: {recipient}")
    target_id, target_name, dm_policy = row
    if (
        dm_policy == "contacts"
        and target_id != sender_id
        and not is_contact(conn, sender_id, target_id)
    ):
        raise Forbidden(f"{target_name} accepts direct messages only from contacts")
    low, high = min(sender_id, target_id), max(sender_id, target_id)
    seq = None
    if numbered:
        # The thread's next number, its row locked before the message's id
        # is taken (as for a room message, _add_room_message).
        seq = conn.execute(
            "INSERT INTO dm_threads (low_id, high_id, last_id, last_ts, seq)"
            " VALUES (?, ?, 0, ?, 1) ON CONFLICT (low_id, high_id) DO UPDATE"
            " SET seq = dm_threads.seq + 1, last_ts = excluded.last_ts RETURNING seq",
            (low, high, now),
        ).fetchone()[0]
    conversation = dm_conversation(sender_id, target_id)
    message_id = insert(
        conn,
        "INSERT INTO messages (ts, conversation, sender, sender_id, recipient_id, kind,"
        " body, ciphertext, nonce, sender_device, envelopes, seq)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            now,
            conversation,
            sender,
            sender_id,
            target_id,
            kind,
            text,
            ciphertext,
            nonce,
            sender_device,
            None if envelopes is None else json.dumps(envelopes, separators=(",", ":")),
            seq,
        ),
    )
    if numbered:
        conn.execute(
            "UPDATE dm_threads SET last_id = ? WHERE low_id = ? AND high_id = ?",
            (message_id, low, high),
        )
    else:
        conn.execute(
            "INSERT INTO dm_threads (low_id, high_id, last_id, last_ts) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (low_id, high_id) DO UPDATE SET last_id = excluded.last_id,"
            " last_ts = excluded.last_ts",
            (low, high, message_id, now),
        )
    if queue:
        conn.execute(
            "INSERT INTO offline_queue (account_id, message_id) VALUES (?, ?)",
            (target_id, message_id),
        )
    return Message(
        id=message_id,
        ts=now,
        sender=sender,
        text=text,
        to=target_name,
        ciphertext=ciphertext,
        nonce=nonce,
        kind=kind,
        sender_account=sender,
        sender_device=sender_device,
        envelopes=envelopes,
        conversation=conversation,
        seq=seq,
    )


def _queue_offline(conn: Connection, message_id: int) -> None:
    conn.execute(
        "INSERT INTO offline_queue (account_id, message_id)"
        " SELECT recipient_id, id FROM messages WHERE id = ? AND recipient_id IS NOT NULL"
        " ON CONFLICT DO NOTHING",
        (message_id,),
    )


def _take_offline(conn: Connection, account_id: int) -> list[Message]:
    rows = conn.execute(
        _SELECT + " JOIN offline_queue q ON q.message_id = m.id"
        " WHERE q.account_id = ? ORDER BY m.id",
        (account_id,),
    ).fetchall()
    if rows:  # most logins find nothing waiting; the DELETE would cost as much again
        conn.execute("DELETE FROM offline_queue WHERE account_id = ?", (account_id,))
    return [_row_to_message(r) for r in rows]


def _take_queued(
    conn: Connection, account_id: int
) -> tuple[list[Message], list[dict[str, Any]]]:
    """Everything waiting for an account at login: DMs and contact events."""
    return _take_offline(conn, account_id), _take_pending_events(conn, account_id)


def _history(
    conn: Connection,
    conversation: str,
    before: int | None,
    after: int | None,
    limit: int,
    newest_first: bool,
) -> list[Message]:
    """Messages of one conversation between the bounds, returned oldest first."""
    clauses = ["m.conversation = ?"]
    params: list[object] = [conversation]
    if before is not None:
        clauses.append("m.id < ?")
        params.append(before)
    if after is not None:
        clauses.append("m.id > ?")
        params.append(after)
    order = "DESC" if newest_first else "ASC"
    rows = conn.execute(
        _SELECT + " WHERE " + " AND ".join(clauses) + f" ORDER BY m.id {order} LIMIT ?",
        (*params, limit),
    ).fetchall()
    messages = [_row_to_message(r) for r in rows]
    if newest_first:
        messages.reverse()
    return messages


def _dm_history(
    conn: Connection,
    me_id: int,
    other: str,
    before: int | None,
    after: int | None,
    limit: int,
    newest_first: bool,
) -> list[Message]:
    peer = require_account(conn, other)
    return _history(conn, dm_conversation(me_id, peer.id), before, after, limit, newest_first)


def _id_at_or_after(conn: Connection, conversation: str, ts: int) -> int | None:
    """Id of the conversation's first message stamped at or after *ts*.

    The index is (conversation, id), and a filter on ``ts`` read every row
    before the answer (270 ms for a recent time in a room of 1,000,000
    messages, and a ``timestamp=`` reference looks up two). Stamps grow with
    ids within a conversation, since the one writer stores messages in the
    order the service stamped them, so this bisects over ids instead: each
    step is one index seek, ~20 for a million ids. Were the wall clock set
    back, stamps would not be ordered and the answer would be some message
    where they cross *ts*, not necessarily the first.
    """
    seek = (
        "SELECT id, ts FROM messages WHERE conversation = ? AND id >= ? ORDER BY id LIMIT 1"
    )
    first = conn.execute(seek, (conversation, 0)).fetchone()
    if first is None or first[1] >= ts:
        return None if first is None else int(first[0])
    last = conn.execute(
        "SELECT id, ts FROM messages WHERE conversation = ? ORDER BY id DESC LIMIT 1",
        (conversation,),
    ).fetchone()
    if last[1] < ts:
        return None
    # The first message at or after id `lo` is stamped before ts; the first at
    # or after `hi` (message `found`) is not.
    lo, hi, found = int(first[0]), int(last[0]), int(last[0])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ident, stamp = conn.execute(seek, (conversation, mid)).fetchone()
        if stamp >= ts:
            hi, found = mid, int(ident)
        else:
            lo = mid
    return found


def _first_id_at(
    conn: Connection, room_id: int | None, me_id: int | None, other: str | None, ts: int
) -> int | None:
    if room_id is not None:
        return _id_at_or_after(conn, f"r:{room_id}", ts)
    assert me_id is not None and other is not None
    peer = require_account(conn, other)
    return _id_at_or_after(conn, dm_conversation(me_id, peer.id), ts)


def _conversation_targets(
    conn: Connection,
    me_id: int | None,
    room_ids: list[int],
    after_ts: int,
    before_ts: int,
    limit: int,
) -> list[tuple[str, int]]:
    """Rooms (among *room_ids*) and DM peers whose latest message is in ``(after_ts, before_ts)``.

    A conversation is listed by its latest message of all, as IRCv3's
    ``CHATHISTORY TARGETS`` asks ("what changed since I last looked"): one
    with older messages in the window but a newer one after it is not. Each
    room costs one index lookup and each DM peer one ``dm_threads`` row, so
    this never scans the messages.
    """
    found: list[tuple[str, int]] = []
    for room_id in room_ids:
        row = conn.execute(
            "SELECT r.name, m.ts FROM rooms r JOIN messages m ON m.id = (SELECT id FROM"
            " messages WHERE conversation = ? ORDER BY id DESC LIMIT 1) WHERE r.id = ?",
            (f"r:{room_id}", room_id),
        ).fetchone()
        if row is not None and after_ts < row[1] < before_ts:
            found.append((row[0], row[1]))
    if me_id is not None:
        found += [
            (row[0], row[1])
            for row in conn.execute(
                "SELECT a.name, t.last_ts FROM dm_threads t JOIN accounts a ON a.id = t.high_id"
                " WHERE t.low_id = ? AND t.last_ts > ? AND t.last_ts < ?"
                " UNION ALL"
                " SELECT a.name, t.last_ts FROM dm_threads t JOIN accounts a ON a.id = t.low_id"
                " WHERE t.high_id = ? AND t.low_id != t.high_id"
                " AND t.last_ts > ? AND t.last_ts < ?",
                (me_id, after_ts, before_ts, me_id, after_ts, before_ts),
            )
        ]
    found.sort(key=lambda t: t[1])
    return found[:limit]


def conversation_heads(conn: Connection) -> list[tuple[str, int, int]]:
    """Each room's conversation, last sequence number and last message id: where
    a node starts numbering at start-up (``pingchat.cluster.node``, with
    ``db.run_sync``), and :meth:`MessageStore.conversation_heads`."""
    rows = conn.execute(
        "SELECT r.id, r.seq, (SELECT m.id FROM messages m WHERE m.conversation = 'r:' || r.id"
        " ORDER BY m.id DESC LIMIT 1) FROM rooms r"
    ).fetchall()
    return [(f"r:{row[0]}", int(row[1]), int(row[2] or 0)) for row in rows]


def _conversation_since(
    conn: Connection, conversation: str, since_ts: int, limit: int
) -> list[Message]:
    first = _id_at_or_after(conn, conversation, since_ts)
    if first is None:
        return []
    return _history(conn, conversation, None, first - 1, limit, False)


def _dm_threads_since(conn: Connection, account_id: int, since_ts: int) -> list[str]:
    rows = conn.execute(
        "SELECT low_id, high_id FROM dm_threads WHERE low_id = ? AND last_ts >= ?"
        " UNION SELECT low_id, high_id FROM dm_threads WHERE high_id = ? AND last_ts >= ?",
        (account_id, since_ts, account_id, since_ts),
    ).fetchall()
    return [f"d:{row[0]}:{row[1]}" for row in rows]


class MessageStore:
    """Message transactions."""

    db: Database

    def add_room_message(
        self,
        room_id: int,
        room: str,
        sender: str,
        sender_id: int | None,
        text: str,
        now: int,
        kind: str = "privmsg",
    ) -> Deferred[Message]:
        return self.db.run(
            "add_room_message",
            _add_room_message,
            room_id,
            room,
            sender,
            sender_id,
            text,
            kind,
            now,
            self.db.numbered,
        )

    def add_dm(
        self,
        sender_id: int,
        sender: str,
        recipient: str,
        now: int,
        *,
        text: str | None = None,
        ciphertext: str | None = None,
        nonce: str | None = None,
        sender_device: str | None = None,
        envelopes: list[dict[str, str]] | None = None,
        kind: str = "privmsg",
        queue: bool = False,
    ) -> Deferred[Message]:
        """Store a DM; with *queue*, also hold it for the recipient's next login.

        The body is one of *text*, *ciphertext* (+ *nonce*: the single-key
        form) or *envelopes* (+ *sender_device*: sealed per device).
        """
        return self.db.run(
            "add_dm",
            _add_dm,
            sender_id,
            sender,
            recipient,
            text,
            ciphertext,
            nonce,
            sender_device,
            envelopes,
            kind,
            now,
            queue,
            self.db.numbered,
        )

    def queue_offline(self, message_id: int) -> Deferred[None]:
        """Hold an already stored DM for its recipient's next login."""
        return self.db.run("queue_offline", _queue_offline, message_id)

    def take_queued(self, account_id: int) -> Deferred[tuple[list[Message], list[dict[str, Any]]]]:
        """Remove and return the queued DMs and contact events of an account."""
        return self.db.run("take_queued", _take_queued, account_id)

    def room_history(
        self,
        room_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> Deferred[list[Message]]:
        return self.db.read(
            "room_history", _history, f"r:{room_id}", before, after, limit, newest_first
        )

    def dm_history(
        self,
        me_id: int,
        other: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> Deferred[list[Message]]:
        return self.db.read(
            "dm_history", _dm_history, me_id, other, before, after, limit, newest_first
        )

    def first_id_at(
        self,
        ts: int,
        *,
        room_id: int | None = None,
        me_id: int | None = None,
        other: str | None = None,
    ) -> Deferred[int | None]:
        """Id of the first message at or after *ts* in a room or a DM conversation."""
        return self.db.read("first_id_at", _first_id_at, room_id, me_id, other, ts)

    def conversation_targets(
        self, me_id: int | None, room_ids: list[int], after_ts: int, before_ts: int, limit: int
    ) -> Deferred[list[tuple[str, int]]]:
        """``(room or peer, latest ts)`` with messages between two times, oldest first."""
        return self.db.read(
            "conversation_targets",
            _conversation_targets,
            me_id,
            room_ids,
            after_ts,
            before_ts,
            limit,
        )

    def conversation_after(
        self, conversation: str, after: int, limit: int
    ) -> Deferred[list[Message]]:
        """Messages of a conversation with ids above *after*, oldest first (catch-up)."""
        return self.db.read(
            "conversation_after", _history, conversation, None, after, limit, False
        )

    def conversation_heads(self) -> Deferred[list[tuple[str, int, int]]]:
        """Each room's last sequence number and message id."""
        return self.db.read("conversation_heads", conversation_heads)

    def conversation_since(
        self, conversation: str, since_ts: int, limit: int
    ) -> Deferred[list[Message]]:
        """Messages of a conversation stamped at or after *since_ts*, oldest first."""
        return self.db.read(
            "conversation_since", _conversation_since, conversation, since_ts, limit
        )

    def dm_threads_since(self, account_id: int, since_ts: int) -> Deferred[list[str]]:
        """DM conversations of an account with messages at or after *since_ts*."""
        return self.db.read("dm_threads_since", _dm_threads_since, account_id, since_ts)
