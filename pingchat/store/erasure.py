"""Deleting an account: its messages removed or anonymised, every trace of its name gone.

A deletion is three kinds of transaction, so that no one of them holds the
writer for long (an account may have written 100,000 messages):

1. :func:`_begin_account_deletion`: the account is disabled, its tokens and
   memberships go, and a ``deleted_accounts`` row records the deletion (with
   a keyed digest of the name, never the name). From here no one can log in
   as it, and its id names the placeholder ``deleted-<id>``.
2. :func:`_erase_messages`, repeated until it finds nothing: a batch of the
   account's messages removed (or, for room messages with ``anonymise``,
   rewritten under the placeholder). DMs to or from it are always removed.
3. :func:`_finish_account_deletion`: stragglers, then the name is taken out
   of the audit log, bans, topics and invite codes, and the account row is
   deleted (its contacts, keys, devices, recovery codes, TOTP secret, queued
   events and DM threads with it, by ``ON DELETE CASCADE``).

An interrupted deletion is finished by running it again: step 1 finds its
row and goes on. Deleted rows are overwritten in the file (``secure_delete``,
see :func:`pingchat.store.database.connect`); the caller then empties the WAL
(:meth:`pingchat.store.database.Database.checkpoint`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred

from pingchat.errors import NoSuchUser
from pingchat.model import fold
from pingchat.store.accounts import require_account
from pingchat.store.dialect import insert

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection

MODES = ("remove", "anonymise")
PLACEHOLDER_PREFIX = "deleted-"
BATCH = 200  # messages per transaction: about 4 ms of the writer (bench/retention.py)


def placeholder(deletion_id: int) -> str:
    """The name a deleted account's anonymised messages and audit rows carry."""
    return f"{PLACEHOLDER_PREFIX}{deletion_id}"


@attrs.frozen
class Deletion:
    """A deletion under way: ``name`` is for the caller's messages only, never stored."""

    id: int
    account_id: int
    name: str
    reserved_until: int

    @property
    def placeholder(self) -> str:
        return placeholder(self.id)


@attrs.frozen
class Erased:
    """What a batch (or a whole deletion) did to an account's messages."""

    removed: int = 0
    anonymised: int = 0

    def __add__(self, other: Erased) -> Erased:
        return Erased(self.removed + other.removed, self.anonymised + other.anonymised)

    @property
    def total(self) -> int:
        return self.removed + self.anonymised


def _begin_account_deletion(
    conn: Connection, name: str, name_digest: bytes, now: int, reserved_until: int
) -> Deletion:
    account = require_account(conn, name)
    row = conn.execute(
        "SELECT id, reserved_until FROM deleted_accounts"
        " WHERE account_id = ? AND finished_at IS NULL",
        (account.id,),
    ).fetchone()
    if row is None:
        ident = insert(
            conn,
            "INSERT INTO deleted_accounts (account_id, name_digest, begun_at, reserved_until)"
            " VALUES (?, ?, ?, ?)",
            (account.id, name_digest, now, reserved_until),
        )
        row = (ident, reserved_until)
    conn.execute("UPDATE accounts SET disabled = 1 WHERE id = ?", (account.id,))
    for table in ("tokens", "room_members", "room_invites"):
        conn.execute(f"DELETE FROM {table} WHERE account_id = ?", (account.id,))
    return Deletion(int(row[0]), account.id, account.name, int(row[1]))


def _erase_messages(
    conn: Connection, account_id: int, mode: str, name: str, limit: int | None
) -> Erased:
    """Remove (or anonymise as *name*) up to *limit* messages of the account.

    Room messages it sent are removed, or with ``anonymise`` kept under
    *name* without their link to the account; DMs it sent or received are
    removed either way: a conversation of two cannot be anonymised, and no
    one could name it any more. Returns what it did; nothing once done.
    """
    if mode not in MODES:
        raise ValueError(mode)
    rows = _first(conn, "sender_id", account_id, limit, "id, room_id")
    keep = [r[0] for r in rows if r[1] is not None] if mode == "anonymise" else []
    drop = [r[0] for r in rows if mode == "remove" or r[1] is None]
    if limit is None or len(rows) < limit:  # all it sent is done: the DMs it received
        left = None if limit is None else limit - len(rows)
        drop += [r[0] for r in _first(conn, "recipient_id", account_id, left, "id")]
    for ids, sql, extra in (
        (drop, "DELETE FROM messages WHERE id IN ({})", ()),
        (keep, "UPDATE messages SET sender = ?, sender_id = NULL WHERE id IN ({})", (name,)),
    ):
        for start in range(0, len(ids), 500):  # SQLite's variable limit is 32,766
            chunk = ids[start : start + 500]
            conn.execute(sql.format(",".join("?" * len(chunk))), (*extra, *chunk))
    return Erased(len(drop), len(keep))


def _first(
    conn: Connection, column: str, account_id: int, limit: int | None, columns: str
) -> list[tuple[int, ...]]:
    """The first *limit* (None: all) messages whose *column* is the account."""
    sql = f"SELECT {columns} FROM messages WHERE {column} = ? ORDER BY id"
    if limit is None:
        return [tuple(r) for r in conn.execute(sql, (account_id,))]
    return [tuple(r) for r in conn.execute(sql + " LIMIT ?", (account_id, limit))]


def _finish_account_deletion(
    conn: Connection, deletion: Deletion, mode: str, now: int
) -> Erased:
    """The last step: stragglers, the name everywhere it was, the account row."""
    account_id, folded, name = deletion.account_id, fold(deletion.name), deletion.placeholder
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NoSuchUser(f"no such user: {deletion.name}")
    # Messages stored since the batches (a session that was still sending).
    erased = _erase_messages(conn, account_id, mode, name, None)
    for sql in (
        "UPDATE audit_log SET account = ? WHERE lower(account) = ? AND account IS NOT NULL",
        "UPDATE audit_log SET actor = ? WHERE lower(actor) = ? AND actor IS NOT NULL",
        "UPDATE rooms SET topic_by = ? WHERE lower(topic_by) = ?",
        "UPDATE room_bans SET set_by = ? WHERE lower(set_by) = ?",
        "UPDATE invite_codes SET created_by = ? WHERE lower(created_by) = ?",
        "UPDATE messages SET deleted_by = ? WHERE lower(deleted_by) = ? AND deleted_by IS NOT NULL",
    ):
        conn.execute(sql, (name, folded))
    # A ban of the bare name would hold whoever registers it next.
    conn.execute("DELETE FROM room_bans WHERE lower(mask) = ?", (f"{folded}!*@*",))
    # Contact requests from it, waiting for accounts that were offline (a
    # small table: read whole, portably, rather than with JSON functions).
    doomed = [
        row[0]
        for row in conn.execute("SELECT id, payload FROM pending_events")
        if fold(str(json.loads(row[1]).get("user", ""))) == folded
    ]
    for ident in doomed:
        conn.execute("DELETE FROM pending_events WHERE id = ?", (ident,))
    conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))
    conn.execute("UPDATE deleted_accounts SET finished_at = ? WHERE id = ?", (now, deletion.id))
    return erased


def _name_reserved(conn: Connection, name_digest: bytes, now: int) -> int | None:
    """Until when a deleted account's name is kept from registration, or None."""
    row = conn.execute(
        "SELECT max(reserved_until) FROM deleted_accounts WHERE name_digest = ?",
        (name_digest,),
    ).fetchone()
    return int(row[0]) if row[0] is not None and row[0] > now else None


def _deletions_since(conn: Connection, after: int) -> list[tuple[int, bytes]]:
    """``(id, name digest)`` of the deletions begun after the one numbered *after*."""
    rows = conn.execute(
        "SELECT id, name_digest FROM deleted_accounts WHERE id > ? ORDER BY id", (after,)
    )
    return [(int(r[0]), bytes(r[1])) for r in rows]


def last_deletion(conn: Connection) -> int:
    """The newest deletion's number (rows are never deleted: ids are never reused).

    Read at start-up (``tap.build``, with ``db.run_sync``): the rooms loaded
    then already reflect every deletion up to it (``DeletionWatcher``)."""
    row = conn.execute("SELECT max(id) FROM deleted_accounts").fetchone()
    return int(row[0] or 0)


def _forget_reservations(conn: Connection, now: int) -> int:
    """Blank the digests of finished deletions whose name is free again.

    The row stays, so that its number is never given to another deletion
    (placeholders stay unique, and a server watching for numbers above the
    last it saw misses none), but nothing in it says whose it was.
    """
    return conn.execute(
        "UPDATE deleted_accounts SET name_digest = ? WHERE finished_at IS NOT NULL"
        " AND reserved_until <= ? AND name_digest != ?",
        (b"", now, b""),
    ).rowcount


class ErasureStore:
    """Account deletion transactions."""

    db: Database

    def begin_account_deletion(
        self, name: str, name_digest: bytes, now: int, reserved_until: int
    ) -> Deferred[Deletion]:
        """Disable the account, end its tokens and memberships; fails with ``NoSuchUser``."""
        return self.db.run(
            "begin_account_deletion",
            _begin_account_deletion,
            name,
            name_digest,
            now,
            reserved_until,
        )

    def erase_messages(
        self, deletion: Deletion, mode: str, limit: int = BATCH
    ) -> Deferred[Erased]:
        """One batch of the account's messages; an empty ``Erased`` once none are left."""
        return self.db.run(
            "erase_messages",
            _erase_messages,
            deletion.account_id,
            mode,
            deletion.placeholder,
            limit,
        )

    def finish_account_deletion(self, deletion: Deletion, mode: str, now: int) -> Deferred[Erased]:
        return self.db.run("finish_account_deletion", _finish_account_deletion, deletion, mode, now)

    def name_reserved(self, name_digest: bytes, now: int) -> Deferred[int | None]:
        return self.db.run("name_reserved", _name_reserved, name_digest, now)

    def deletions_since(self, after: int) -> Deferred[list[tuple[int, bytes]]]:
        return self.db.read("deletions_since", _deletions_since, after)

    def forget_reservations(self, now: int) -> Deferred[int]:
        return self.db.run("forget_reservations", _forget_reservations, now)
