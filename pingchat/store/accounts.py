"""Accounts and session tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from pingchat.errors import NoSuchUser, UserExists
from pingchat.model import Account, fold
from pingchat.store.dialect import insert

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection

_ACCOUNT_COLUMNS = "id, name, role, disabled, created_at, last_seen, dm_policy"


def row_to_account(row: Any) -> Account:
    return Account(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
        last_seen=row["last_seen"],
        dm_policy=row["dm_policy"],
    )


def find_account(conn: Connection, name: str) -> Account | None:
    row = conn.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE name_folded = ?", (fold(name),)
    ).fetchone()
    return row_to_account(row) if row else None


def require_account(conn: Connection, name: str) -> Account:
    account = find_account(conn, name)
    if account is None:
        raise NoSuchUser(f"no such user: {name}")
    return account


def _create_account(
    conn: Connection, name: str, password_hash: bytes, now: int, role: str
) -> Account:
    try:
        account_id = insert(
            conn,
            "INSERT INTO accounts (name, name_folded, password_hash, role, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (name, fold(name), password_hash, role, now),
        )
    except conn.IntegrityError as e:
        raise UserExists(f"the name {name} is taken") from e
    return Account(id=account_id, name=name, role=role, created_at=now)


def _credentials(conn: Connection, name: str) -> tuple[Account, bytes] | None:
    row = conn.execute(
        f"SELECT {_ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE name_folded = ?",
        (fold(name),),
    ).fetchone()
    if row is None:
        return None
    return row_to_account(row), bytes(row["password_hash"])


def _set_password(
    conn: Connection, name: str, password_hash: bytes, keep_token: bytes | None
) -> Account:
    account = require_account(conn, name)
    conn.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account.id))
    conn.execute(
        "DELETE FROM tokens WHERE account_id = ? AND token_hash IS DISTINCT FROM ?",
        (account.id, keep_token),
    )
    # A device known to the old password is no longer let past the
    # account-wide login ceiling (it logs in again and gets a new one).
    conn.execute("DELETE FROM devices WHERE account_id = ?", (account.id,))
    return account


def _set_flag(conn: Connection, name: str, column: str, value: object) -> Account:
    if column not in ("disabled", "role", "dm_policy"):
        raise ValueError(column)
    account = require_account(conn, name)
    conn.execute(f"UPDATE accounts SET {column} = ? WHERE id = ?", (value, account.id))
    if column == "disabled" and value:
        conn.execute("DELETE FROM tokens WHERE account_id = ?", (account.id,))
    return require_account(conn, name)


def _list_accounts(conn: Connection) -> list[Account]:
    rows = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY name_folded")
    return [row_to_account(r) for r in rows]


def _touch(conn: Connection, account_id: int, now: int) -> None:
    conn.execute("UPDATE accounts SET last_seen = ? WHERE id = ?", (now, account_id))


def _add_token(
    conn: Connection, account_id: int, token_hash: bytes, now: int, ttl: int
) -> int:
    expires = now + ttl
    conn.execute(
        "INSERT INTO tokens (account_id, token_hash, created_at, last_used_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (account_id, token_hash, now, now, expires),
    )
    return expires


def _use_token(
    conn: Connection, token_hash: bytes, now: int, ttl: int
) -> tuple[Account, int] | None:
    row = conn.execute(
        "SELECT t.id AS token_id, t.expires_at, a.id, a.name, a.role, a.disabled,"
        " a.created_at, a.last_seen, a.dm_policy"
        " FROM tokens t JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = ?",
        (token_hash,),
    ).fetchone()
    if row is None:
        return None
    if row["expires_at"] <= now:
        conn.execute("DELETE FROM tokens WHERE id = ?", (row["token_id"],))
        return None
    expires = now + ttl
    conn.execute(
        "UPDATE tokens SET last_used_at = ?, expires_at = ? WHERE id = ?",
        (now, expires, row["token_id"]),
    )
    return row_to_account(row), expires


def _revoke_token(conn: Connection, token_hash: bytes) -> bool:
    return conn.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,)).rowcount > 0


def _purge_expired_tokens(conn: Connection, now: int) -> int:
    return conn.execute("DELETE FROM tokens WHERE expires_at <= ?", (now,)).rowcount


class AccountStore:
    """Account and token transactions."""

    db: Database

    def create_account(
        self, name: str, password_hash: bytes, now: int, role: str = "user"
    ) -> Deferred[Account]:
        return self.db.run("create_account", _create_account, name, password_hash, now, role)

    def get_account(self, name: str) -> Deferred[Account | None]:
        return self.db.run("get_account", find_account, name)

    def get_credentials(self, name: str) -> Deferred[tuple[Account, bytes] | None]:
        return self.db.run("get_credentials", _credentials, name)

    def set_password(
        self, name: str, password_hash: bytes, keep_token: bytes | None = None
    ) -> Deferred[Account]:
        """Change the password, revoke every token except *keep_token*, forget devices."""
        return self.db.run("set_password", _set_password, name, password_hash, keep_token)

    def set_disabled(self, name: str, disabled: bool) -> Deferred[Account]:
        return self.db.run("set_disabled", _set_flag, name, "disabled", int(disabled))

    def set_role(self, name: str, role: str) -> Deferred[Account]:
        return self.db.run("set_role", _set_flag, name, "role", role)

    def set_dm_policy(self, name: str, policy: str) -> Deferred[Account]:
        return self.db.run("set_dm_policy", _set_flag, name, "dm_policy", policy)

    def list_accounts(self) -> Deferred[list[Account]]:
        return self.db.run("list_accounts", _list_accounts)

    def touch_last_seen(self, account_id: int, now: int) -> Deferred[None]:
        return self.db.run("touch_last_seen", _touch, account_id, now)

    def add_token(self, account_id: int, token_hash: bytes, now: int, ttl: int) -> Deferred[int]:
        return self.db.run("add_token", _add_token, account_id, token_hash, now, ttl)

    def use_token(
        self, token_hash: bytes, now: int, ttl: int
    ) -> Deferred[tuple[Account, int] | None]:
        """Look a token up, slide its idle expiry; ``None`` if unknown or expired."""
        return self.db.run("use_token", _use_token, token_hash, now, ttl)

    def revoke_token(self, token_hash: bytes) -> Deferred[bool]:
        return self.db.run("revoke_token", _revoke_token, token_hash)

    def purge_expired_tokens(self, now: int) -> Deferred[int]:
        return self.db.run("purge_expired_tokens", _purge_expired_tokens, now)
