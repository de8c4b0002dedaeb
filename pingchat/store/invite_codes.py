"""Invite codes: admin-issued, counted uses, an expiry, stored as digests only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred

from pingchat.errors import InviteInvalid
from pingchat.model import Account
from pingchat.store.accounts import _create_account
from pingchat.store.dialect import insert

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection

_USABLE = "revoked_at IS NULL AND uses_left > 0 AND (expires_at IS NULL OR expires_at > ?)"


@attrs.frozen
class InviteCode:
    """What is known of an invite code (never the code itself)."""

    id: int
    created_at: int
    created_by: str
    expires_at: int | None
    uses_left: int
    used: int
    revoked_at: int | None

    def state(self, now: int) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.uses_left <= 0:
            return "used"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "usable"


def _add_invite_code(
    conn: Connection,
    code_hash: bytes,
    now: int,
    created_by: str,
    expires_at: int | None,
    uses: int,
) -> int:
    return insert(
        conn,
        "INSERT INTO invite_codes (code_hash, created_at, created_by, expires_at, uses_left)"
        " VALUES (?, ?, ?, ?, ?)",
        (code_hash, now, created_by, expires_at, uses),
    )


def _invite_code_usable(conn: Connection, code_hash: bytes, now: int) -> bool:
    row = conn.execute(
        f"SELECT 1 FROM invite_codes WHERE code_hash = ? AND {_USABLE}", (code_hash, now)
    ).fetchone()
    return row is not None


def _use_invite_code(conn: Connection, code_hash: bytes, now: int) -> int | None:
    """Spend one use of a usable invite; its id, or None."""
    row = conn.execute(
        f"UPDATE invite_codes SET uses_left = uses_left - 1, used = used + 1"
        f" WHERE code_hash = ? AND {_USABLE} RETURNING id",
        (code_hash, now),
    ).fetchone()
    return int(row[0]) if row is not None else None


def _create_invited_account(
    conn: Connection,
    name: str,
    password_hash: bytes,
    now: int,
    role: str,
    code_hash: bytes,
) -> tuple[Account, int]:
    """Spend the invite and create the account, or neither (one transaction)."""
    invite_id = _use_invite_code(conn, code_hash, now)
    if invite_id is None:
        raise InviteInvalid(INVALID_MESSAGE)
    return _create_account(conn, name, password_hash, now, role), invite_id


INVALID_MESSAGE = "this invite code is not valid (wrong, used up, expired or revoked)"


def _list_invite_codes(conn: Connection) -> list[InviteCode]:
    rows = conn.execute(
        "SELECT id, created_at, created_by, expires_at, uses_left, used, revoked_at"
        " FROM invite_codes ORDER BY id"
    )
    return [InviteCode(*row) for row in rows]


def _find_invite_code(conn: Connection, code_hash: bytes) -> int | None:
    row = conn.execute("SELECT id FROM invite_codes WHERE code_hash = ?", (code_hash,)).fetchone()
    return int(row[0]) if row is not None else None


def _revoke_invite_code(conn: Connection, invite_id: int, now: int) -> bool:
    """Revoke a not yet revoked invite; whether there was one."""
    cur = conn.execute(
        "UPDATE invite_codes SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (now, invite_id),
    )
    return cur.rowcount == 1


class InviteCodeStore:
    db: Database

    def add_invite_code(
        self, code_hash: bytes, now: int, created_by: str, expires_at: int | None, uses: int
    ) -> Deferred[int]:
        return self.db.run(
            "add_invite_code", _add_invite_code, code_hash, now, created_by, expires_at, uses
        )

    def invite_code_usable(self, code_hash: bytes, now: int) -> Deferred[bool]:
        return self.db.run("invite_code_usable", _invite_code_usable, code_hash, now)

    def create_invited_account(
        self, name: str, password_hash: bytes, now: int, role: str, code_hash: bytes
    ) -> Deferred[tuple[Account, int]]:
        return self.db.run(
            "create_invited_account",
            _create_invited_account,
            name,
            password_hash,
            now,
            role,
            code_hash,
        )

    def list_invite_codes(self) -> Deferred[list[InviteCode]]:
        return self.db.run("list_invite_codes", _list_invite_codes)

    def find_invite_code(self, code_hash: bytes) -> Deferred[int | None]:
        return self.db.run("find_invite_code", _find_invite_code, code_hash)

    def revoke_invite_code(self, invite_id: int, now: int) -> Deferred[bool]:
        return self.db.run("revoke_invite_code", _revoke_invite_code, invite_id, now)
