"""History retention: expiring old messages and undelivered offline DMs, in small batches.

Every function here is one short transaction on the writer, so expiring a
million messages is a few thousand jobs interleaved with the server's own
writes, none of which holds the writer for more than a few milliseconds
(``bench/retention.py`` measures it). Messages are walked in id order:
ids grow with time (the one writer stores messages in the order the
service stamped them), and each row's own stamp is checked as well.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection

BATCH = 500


@attrs.frozen
class Expired:
    """What one batch did: where it stopped, what it deleted, whether it is done."""

    cursor: int
    deleted: int
    done: bool
    seconds: float = 0.0


def _first_id_at(conn: Connection, ts: int, conversation: str | None) -> int | None:
    """Id of the first message stamped at or after *ts* (in one conversation, or of all).

    Bisects over ids, one index seek a step (as
    :func:`pingchat.store.messages._id_at_or_after` does), so it never scans.
    None when every message is older.
    """
    where, params = ("conversation = ? AND ", (conversation,)) if conversation else ("", ())
    seek = f"SELECT id, ts FROM messages WHERE {where}id >= ? ORDER BY id LIMIT 1"
    first = conn.execute(seek, (*params, 0)).fetchone()
    if first is None:
        return None
    if first[1] >= ts:
        return int(first[0])
    last = conn.execute(
        f"SELECT id, ts FROM messages WHERE {where}id >= 0 ORDER BY id DESC LIMIT 1", params
    ).fetchone()
    if last[1] < ts:
        return None
    lo, hi, found = int(first[0]), int(last[0]), int(last[0])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ident, stamp = conn.execute(seek, (*params, mid)).fetchone()
        if stamp >= ts:
            hi, found = mid, int(ident)
        else:
            lo = mid
    return found


def _expiry_bound(conn: Connection, cutoff: int, room_id: int | None) -> int:
    """Messages with ids below this one are candidates for expiry (all, or a room's)."""
    conversation = f"r:{room_id}" if room_id is not None else None
    found = _first_id_at(conn, cutoff, conversation)
    if found is not None:
        return found
    row = conn.execute("SELECT max(id) FROM messages").fetchone()
    return int(row[0] or 0) + 1


def _expire_messages(
    conn: Connection,
    room_id: int | None,
    cursor: int,
    bound: int,
    cutoff: int,
    limit: int,
) -> Expired:
    """Delete the messages stamped before *cutoff* among the next *limit* ids
    after *cursor* and below *bound* (of one room, or of all).

    A DM still waiting in the offline queue is kept (until delivered, or
    until ``--offline-days`` drops it from the queue). A DM thread whose
    latest message goes is pointed at the latest one left, or dropped, so
    that ``CHATHISTORY TARGETS`` lists only conversations with history.
    """
    started = time.perf_counter()
    if room_id is None:
        rows = conn.execute(
            "SELECT id, ts, sender_id, recipient_id FROM messages"
            " WHERE id > ? AND id < ? ORDER BY id LIMIT ?",
            (cursor, bound, limit),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT id, ts, sender_id, recipient_id FROM messages"
            " WHERE conversation = ? AND id > ? AND id < ? ORDER BY id LIMIT ?",
            (f"r:{room_id}", cursor, bound, limit),
        ).fetchall()
    old = [r for r in rows if r[1] < cutoff]
    queued: set[int] = set()
    dms = [r[0] for r in old if r[3] is not None]
    if dms:
        queued = {
            q[0]
            for q in conn.execute(
                f"SELECT message_id FROM offline_queue WHERE message_id IN ({_marks(dms)})", dms
            )
        }
    doomed = [r for r in old if r[0] not in queued]
    ids = [r[0] for r in doomed]
    if ids:
        conn.execute(f"DELETE FROM messages WHERE id IN ({_marks(ids)})", ids)
    threads = {
        (min(r[2], r[3]), max(r[2], r[3]))
        for r in doomed
        if r[2] is not None and r[3] is not None
    }
    for low, high in threads:
        _refresh_thread(conn, low, high)
    return Expired(
        rows[-1][0] if rows else cursor,
        len(ids),
        len(rows) < limit,
        time.perf_counter() - started,
    )


def _refresh_thread(conn: Connection, low: int, high: int) -> None:
    """Point a DM thread at its latest message left, or drop it if none is."""
    latest = conn.execute(
        "SELECT id, ts FROM messages WHERE conversation = ? ORDER BY id DESC LIMIT 1",
        (f"d:{low}:{high}",),
    ).fetchone()
    if latest is None:
        conn.execute("DELETE FROM dm_threads WHERE low_id = ? AND high_id = ?", (low, high))
    else:
        conn.execute(
            "UPDATE dm_threads SET last_id = ?, last_ts = ? WHERE low_id = ? AND high_id = ?"
            " AND last_id != ?",
            (latest[0], latest[1], low, high, latest[0]),
        )


def _expire_offline(conn: Connection, bound: int, limit: int) -> Expired:
    """Drop from the offline queue up to *limit* DMs with ids below *bound*.

    The messages stay in history (until the history's own retention takes
    them): only their delivery at the recipient's next login is given up.
    """
    started = time.perf_counter()
    # A DM waits in one queue only (its recipient's): its id names the row.
    cur = conn.execute(
        "DELETE FROM offline_queue WHERE message_id IN"
        " (SELECT message_id FROM offline_queue WHERE message_id < ?"
        " ORDER BY message_id LIMIT ?)",
        (bound, limit),
    )
    return Expired(0, cur.rowcount, cur.rowcount < limit, time.perf_counter() - started)


def _marks(values: list[int]) -> str:
    return ",".join("?" * len(values))


class RetentionStore:
    """Retention transactions."""

    db: Database

    def expiry_bound(self, cutoff: int, room_id: int | None = None) -> Deferred[int]:
        """The id below which messages (of all, or of a room) may be older than *cutoff*."""
        return self.db.read("expiry_bound", _expiry_bound, cutoff, room_id)

    def expire_messages(
        self, room_id: int | None, cursor: int, bound: int, cutoff: int, limit: int = BATCH
    ) -> Deferred[Expired]:
        return self.db.run(
            "expire_messages", _expire_messages, room_id, cursor, bound, cutoff, limit
        )

    def expire_offline(self, bound: int, limit: int = BATCH) -> Deferred[Expired]:
        return self.db.run("expire_offline", _expire_offline, bound, limit)

    def scrub_wal(self) -> Deferred[None]:
        """Checkpoint and truncate the WAL (see :meth:`Database.checkpoint`)."""
        return self.db.checkpoint()

    def backfill_wal(self) -> Deferred[None]:
        """The WAL copied into the database from the reader (:meth:`Database.backfill`)."""
        return self.db.backfill().addCallback(lambda _: None)
