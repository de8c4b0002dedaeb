"""Second factor (TOTP) state, one-time recovery codes and known devices."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred

from pingchat.store.accounts import find_account, require_account

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection


@attrs.frozen
class OTPState:
    secret: str | None
    pending: str | None
    enabled: bool
    last_step: int


def _otp_state(conn: Connection, account_id: int) -> OTPState:
    row = conn.execute(
        "SELECT otp_secret, otp_pending, otp_enabled, otp_last_step FROM accounts WHERE id = ?",
        (account_id,),
    ).fetchone()
    return OTPState(row[0], row[1], bool(row[2]), int(row[3]))


def _set_otp_pending(conn: Connection, account_id: int, secret: str) -> None:
    conn.execute("UPDATE accounts SET otp_pending = ? WHERE id = ?", (secret, account_id))


def _enable_otp(conn: Connection, account_id: int, secret: str, step: int) -> bool:
    cur = conn.execute(
        "UPDATE accounts SET otp_secret = ?, otp_pending = NULL, otp_enabled = 1,"
        " otp_last_step = ? WHERE id = ? AND otp_pending = ?",
        (secret, step, account_id, secret),
    )
    return cur.rowcount == 1


def _disable_otp(conn: Connection, account_id: int) -> None:
    conn.execute(
        "UPDATE accounts SET otp_secret = NULL, otp_pending = NULL, otp_enabled = 0 WHERE id = ?",
        (account_id,),
    )


def _consume_otp_step(conn: Connection, account_id: int, step: int) -> bool:
    """Record *step* as used; false if it (or a later one) was used already."""
    cur = conn.execute(
        "UPDATE accounts SET otp_last_step = ? WHERE id = ? AND otp_last_step < ?",
        (step, account_id, step),
    )
    return cur.rowcount == 1


def _set_recovery_codes(conn: Connection, account_id: int, hashes: list[bytes]) -> None:
    conn.execute("DELETE FROM recovery_codes WHERE account_id = ?", (account_id,))
    conn.executemany(
        "INSERT INTO recovery_codes (account_id, code_hash) VALUES (?, ?)",
        [(account_id, h) for h in hashes],
    )


def _recover(
    conn: Connection, name: str, code_hash: bytes, password_hash: bytes, now: int
) -> str | None:
    """Spend a recovery code: set the password, revoke every token. Name or None."""
    account = find_account(conn, name)
    if account is None:
        return None
    row = conn.execute(
        "SELECT id FROM recovery_codes WHERE account_id = ? AND code_hash = ? AND used_at IS NULL",
        (account.id, code_hash),
    ).fetchone()
    if row is None:
        return None
    conn.execute("UPDATE recovery_codes SET used_at = ? WHERE id = ?", (now, row[0]))
    conn.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account.id))
    conn.execute("DELETE FROM tokens WHERE account_id = ?", (account.id,))
    conn.execute("DELETE FROM devices WHERE account_id = ?", (account.id,))
    return account.name


def _recovery_codes_left(conn: Connection, name: str) -> int:
    account = require_account(conn, name)
    return int(
        conn.execute(
            "SELECT count(*) FROM recovery_codes WHERE account_id = ? AND used_at IS NULL",
            (account.id,),
        ).fetchone()[0]
    )


def _known_device(conn: Connection, name: str, device_hash: bytes) -> bool:
    account = find_account(conn, name)
    if account is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM devices WHERE account_id = ? AND device_hash = ?",
        (account.id, device_hash),
    ).fetchone()
    return row is not None


def _remember_device(
    conn: Connection,
    account_id: int,
    presented: bytes | None,
    fresh: bytes,
    now: int,
    keep: int,
) -> bool:
    """Note a password login from a device: true if *presented* was known (and
    is kept), else *fresh* is recorded. Only the *keep* most recently used
    devices of the account are remembered."""
    if presented is not None:
        cur = conn.execute(
            "UPDATE devices SET last_used_at = ? WHERE account_id = ? AND device_hash = ?",
            (now, account_id, presented),
        )
        if cur.rowcount == 1:
            return True
    conn.execute(
        "INSERT INTO devices (account_id, device_hash, created_at, last_used_at)"
        " VALUES (?, ?, ?, ?)",
        (account_id, fresh, now, now),
    )
    conn.execute(
        "DELETE FROM devices WHERE account_id = ? AND device_hash NOT IN"
        " (SELECT device_hash FROM devices WHERE account_id = ?"
        "  ORDER BY last_used_at DESC, created_at DESC LIMIT ?)",
        (account_id, account_id, keep),
    )
    return False


class SecurityStore:
    db: Database

    def otp_state(self, account_id: int) -> Deferred[OTPState]:
        return self.db.run("otp_state", _otp_state, account_id)

    def set_otp_pending(self, account_id: int, secret: str) -> Deferred[None]:
        return self.db.run("set_otp_pending", _set_otp_pending, account_id, secret)

    def enable_otp(self, account_id: int, secret: str, step: int) -> Deferred[bool]:
        return self.db.run("enable_otp", _enable_otp, account_id, secret, step)

    def disable_otp(self, account_id: int) -> Deferred[None]:
        return self.db.run("disable_otp", _disable_otp, account_id)

    def consume_otp_step(self, account_id: int, step: int) -> Deferred[bool]:
        return self.db.run("consume_otp_step", _consume_otp_step, account_id, step)

    def set_recovery_codes(self, account_id: int, hashes: list[bytes]) -> Deferred[None]:
        return self.db.run("set_recovery_codes", _set_recovery_codes, account_id, hashes)

    def recover(
        self, name: str, code_hash: bytes, password_hash: bytes, now: int
    ) -> Deferred[str | None]:
        return self.db.run("recover", _recover, name, code_hash, password_hash, now)

    def recovery_codes_left(self, name: str) -> Deferred[int]:
        return self.db.run("recovery_codes_left", _recovery_codes_left, name)

    def known_device(self, name: str, device_hash: bytes) -> Deferred[bool]:
        """Whether a device with this secret's hash logged in to *name* before."""
        return self.db.read("known_device", _known_device, name, device_hash)

    def remember_device(
        self, account_id: int, presented: bytes | None, fresh: bytes, now: int, keep: int
    ) -> Deferred[bool]:
        return self.db.run(
            "remember_device", _remember_device, account_id, presented, fresh, now, keep
        )
