"""The audit log of security events."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection


def _add_audit(
    conn: Connection,
    now: int,
    event: str,
    account: str | None,
    actor: str | None,
    address: str | None,
    detail: str | None,
) -> None:
    conn.execute(
        "INSERT INTO audit_log (ts, event, account, actor, address, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (now, event, account, actor, address, detail),
    )


def _recent_audit(conn: Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT ts, event, account, actor, address, detail FROM audit_log ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [dict(r) for r in rows]


class AuditStore:
    db: Database

    def add_audit(
        self,
        now: int,
        event: str,
        account: str | None = None,
        actor: str | None = None,
        address: str | None = None,
        **detail: Any,
    ) -> Deferred[None]:
        text = json.dumps(detail, sort_keys=True) if detail else None
        return self.db.run("add_audit", _add_audit, now, event, account, actor, address, text)

    def recent_audit(self, limit: int = 50) -> Deferred[list[dict[str, Any]]]:
        return self.db.run("recent_audit", _recent_audit, limit)
