"""Contacts (mutual requests) and pending contact events."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred

from pingchat.store.accounts import require_account

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection


@attrs.frozen
class ContactChange:
    peer: str
    peer_id: int
    mutual: bool
    changed: bool


def _asked(conn: Connection, a: int, b: int) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM contacts WHERE account_id = ? AND peer_id = ?", (a, b)
        ).fetchone()
        is not None
    )


def is_contact(conn: Connection, a: int, b: int) -> bool:
    return _asked(conn, a, b) and _asked(conn, b, a)


def _contact_add(conn: Connection, me_id: int, peer: str, now: int) -> ContactChange:
    target = require_account(conn, peer)
    cur = conn.execute(
        "INSERT INTO contacts (account_id, peer_id, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (me_id, target.id, now),
    )
    return ContactChange(target.name, target.id, _asked(conn, target.id, me_id), cur.rowcount > 0)


def _contact_remove(conn: Connection, me_id: int, peer: str) -> ContactChange:
    target = require_account(conn, peer)
    was_mutual = is_contact(conn, me_id, target.id)
    cur = conn.execute(
        "DELETE FROM contacts WHERE (account_id = ? AND peer_id = ?)"
        " OR (account_id = ? AND peer_id = ?)",
        (me_id, target.id, target.id, me_id),
    )
    return ContactChange(target.name, target.id, was_mutual, cur.rowcount > 0)


def _contacts(conn: Connection, me_id: int) -> dict[str, list[str]]:
    out_rows = {
        r[0]: r[1]
        for r in conn.execute(
            "SELECT a.id, a.name FROM contacts c JOIN accounts a ON a.id = c.peer_id"
            " WHERE c.account_id = ?",
            (me_id,),
        )
    }
    in_rows = {
        r[0]: r[1]
        for r in conn.execute(
            "SELECT a.id, a.name FROM contacts c JOIN accounts a ON a.id = c.account_id"
            " WHERE c.peer_id = ?",
            (me_id,),
        )
    }
    mutual = sorted(out_rows[i] for i in out_rows.keys() & in_rows.keys())
    return {
        "contacts": mutual,
        "outgoing": sorted(out_rows[i] for i in out_rows.keys() - in_rows.keys()),
        "incoming": sorted(in_rows[i] for i in in_rows.keys() - out_rows.keys()),
    }


def _add_pending_event(
    conn: Connection, account_id: int, now: int, payload: dict[str, Any]
) -> None:
    conn.execute(
        "INSERT INTO pending_events (account_id, created_at, payload) VALUES (?, ?, ?)",
        (account_id, now, json.dumps(payload)),
    )


def _take_pending_events(conn: Connection, account_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT payload FROM pending_events WHERE account_id = ? ORDER BY id", (account_id,)
    ).fetchall()
    if rows:
        conn.execute("DELETE FROM pending_events WHERE account_id = ?", (account_id,))
    return [json.loads(r[0]) for r in rows]


class ContactStore:
    db: Database

    def contact_add(self, me_id: int, peer: str, now: int) -> Deferred[ContactChange]:
        return self.db.run("contact_add", _contact_add, me_id, peer, now)

    def contact_remove(self, me_id: int, peer: str) -> Deferred[ContactChange]:
        return self.db.run("contact_remove", _contact_remove, me_id, peer)

    def contacts(self, me_id: int) -> Deferred[dict[str, list[str]]]:
        return self.db.run("contacts", _contacts, me_id)

    def add_pending_event(
        self, account_id: int, now: int, payload: dict[str, Any]
    ) -> Deferred[None]:
        return self.db.run("add_pending_event", _add_pending_event, account_id, now, payload)
