"""The native door's ops about people: ``who``, ``whois``, ``away``, ``kill``.

Part of :class:`~pingchat.native.protocol.NativeProtocol`, which inherits it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from pingchat.model import check_account_name, iso_ms
from pingchat.native.base import NativeBase, field


class PeopleOps(NativeBase):
    """Who is online, one account's details, being away, and a server operator's kill."""

    def op_who(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"users": self.factory.service.who()}

    def op_whois(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        user = check_account_name(field(req, "user"))

        def shape(info: dict[str, Any]) -> dict[str, Any]:
            if info.get("last_seen") is not None:
                info["last_seen"] = iso_ms(info["last_seen"])
            return info

        return self.factory.service.whois(user).addCallback(shape)

    def op_away(self, req: dict[str, Any]) -> dict[str, Any]:
        text = field(req, "text", required=False)
        self.factory.service.set_away(self.me, text)
        return {"presence": "away" if text else "online"}

    def op_kill(self, req: dict[str, Any]) -> dict[str, Any]:
        """``kill {user, reason?}``: a server operator closes every session of *user*."""
        user = check_account_name(field(req, "user"))
        reason = field(req, "reason", required=False)
        n = self.factory.service.moderation.kill(self.me, user, reason)
        return {"user": user, "sessions": n}
