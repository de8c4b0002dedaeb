"""Public keys for end-to-end encryption, one per device of an account (docs/e2e.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred

from pingchat.errors import NoSuchDevice, TooManyDevices
from pingchat.model import LEGACY_DEVICE
from pingchat.store.accounts import require_account

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection


@attrs.frozen
class DeviceKey:
    """One device's published key."""

    device: str
    public_key: str
    label: str | None
    published_at: int


@attrs.frozen
class KeyChange:
    """What a publish or a revoke did, and whom to tell.

    ``changed`` is false when the same key and label were published again.
    ``audience``: the names of the accounts that should hear of it (mutual
    contacts and DM partners of the account, not the account itself).
    """

    device: str
    public_key: str
    changed: bool
    audience: list[str]


def _audience(conn: Connection, account_id: int) -> list[str]:
    """Mutual contacts and DM partners of an account (each once, never itself)."""
    rows = conn.execute(
        "SELECT a.name FROM contacts c"
        " JOIN contacts back ON back.account_id = c.peer_id AND back.peer_id = c.account_id"
        " JOIN accounts a ON a.id = c.peer_id WHERE c.account_id = ?"
        " UNION SELECT a.name FROM dm_threads t JOIN accounts a ON a.id = t.high_id"
        " WHERE t.low_id = ? AND t.high_id != t.low_id"
        " UNION SELECT a.name FROM dm_threads t JOIN accounts a ON a.id = t.low_id"
        " WHERE t.high_id = ? AND t.high_id != t.low_id",
        (account_id, account_id, account_id),
    )
    return [r[0] for r in rows]


def _publish_device_key(
    conn: Connection,
    account_id: int,
    device: str,
    key: str,
    label: str | None,
    now: int,
    max_devices: int,
) -> KeyChange:
    """Publish or replace one device's key.

    The legacy ``default`` key is dropped when the same key is published
    under a real device id (a client upgraded in place). ``published_at``
    is when the device's current key was first published: a new label alone
    keeps it.
    """
    row = conn.execute(
        "SELECT public_key, label FROM device_keys WHERE account_id = ? AND device = ?",
        (account_id, device),
    ).fetchone()
    drop_default = 0
    if device != LEGACY_DEVICE:
        drop_default = conn.execute(
            "DELETE FROM device_keys WHERE account_id = ? AND device = ? AND public_key = ?",
            (account_id, LEGACY_DEVICE, key),
        ).rowcount
    if row is None:
        (count,) = conn.execute(
            "SELECT count(*) FROM device_keys WHERE account_id = ?", (account_id,)
        ).fetchone()
        if count >= max_devices:
            raise TooManyDevices(
                f"an account may publish keys for at most {max_devices} devices;"
                " revoke one with key.revoke first"
            )
        conn.execute(
            "INSERT INTO device_keys (account_id, device, public_key, label, published_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (account_id, device, key, label, now),
        )
    elif row[0] != key:
        conn.execute(
            "UPDATE device_keys SET public_key = ?, label = ?, published_at = ?"
            " WHERE account_id = ? AND device = ?",
            (key, label, now, account_id, device),
        )
    elif row[1] != label:
        conn.execute(
            "UPDATE device_keys SET label = ? WHERE account_id = ? AND device = ?",
            (label, account_id, device),
        )
    changed = row is None or tuple(row) != (key, label) or bool(drop_default)
    return KeyChange(device, key, changed, _audience(conn, account_id) if changed else [])


def _revoke_device_key(conn: Connection, account_id: int, device: str) -> KeyChange:
    row = conn.execute(
        "DELETE FROM device_keys WHERE account_id = ? AND device = ? RETURNING public_key",
        (account_id, device),
    ).fetchone()
    if row is None:
        raise NoSuchDevice(f"your account has no key for the device {device}")
    return KeyChange(device, row[0], True, _audience(conn, account_id))


def _device_keys(conn: Connection, name: str) -> tuple[str, list[DeviceKey]]:
    account = require_account(conn, name)
    rows = conn.execute(
        "SELECT device, public_key, label, published_at FROM device_keys"
        " WHERE account_id = ? ORDER BY published_at, id",
        (account.id,),
    )
    return account.name, [DeviceKey(*r) for r in rows]


class KeyStore:
    """Device key transactions."""

    db: Database

    def publish_device_key(
        self,
        account_id: int,
        device: str,
        key: str,
        label: str | None,
        now: int,
        max_devices: int,
    ) -> Deferred[KeyChange]:
        """Publish (or replace) a device's key; fails with ``TooManyDevices``."""
        return self.db.run(
            "publish_device_key",
            _publish_device_key,
            account_id,
            device,
            key,
            label,
            now,
            max_devices,
        )

    def revoke_device_key(self, account_id: int, device: str) -> Deferred[KeyChange]:
        """Remove one of an account's device keys; fails with ``NoSuchDevice``."""
        return self.db.run("revoke_device_key", _revoke_device_key, account_id, device)

    def device_keys(self, name: str) -> Deferred[tuple[str, list[DeviceKey]]]:
        """``(account name, keys oldest first)``; fails with ``NoSuchUser``.

        On the reader thread: a client asks for two accounts' keys before
        every encrypted DM it sends, and the writer has better things to do.
        """
        return self.db.read("device_keys", _device_keys, name)
