"""The portal every door logs in through, counting logins and their failures by door.

Each door hands ``portal.login`` its connection as the mind, and the mind
says which door it is (``native``, ``irc``, ``web``, ``web-irc``); a portal
for one door only (the manhole's) is given its name. The counts are plain
numbers that the metrics read when scraped (:mod:`pingchat.admin.metrics`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class CountingPortal(Portal):
    """A :class:`Portal` that counts each door's logins, and its failures by reason."""

    def __init__(self, realm: IRealm, checkers: Any = (), *, door: str | None = None) -> None:
        super().__init__(realm, checkers)
        self.door = door
        self.logins: Counter[str] = Counter()
        # By (door, reason): the error code the door answers with
        # (auth_failed, otp_required, rate_limited, account_disabled...).
        self.failures: Counter[tuple[str, str]] = Counter()

    def login(self, credentials: Any, mind: Any, *interfaces: Any) -> Deferred[Any]:
        door = self.door or str(getattr(mind, "door", "other"))

        def succeeded(result: Any) -> Any:
            self.logins[door] += 1
            return result

        def failed(reason: Failure) -> Failure:
            code = getattr(reason.value, "code", None)
            if not isinstance(code, str):
                code = "auth_failed" if reason.check(UnauthorizedLogin) else "error"
            self.failures[(door, code)] += 1
            return reason

        d: Deferred[Any] = super().login(credentials, mind, *interfaces)
        return d.addCallbacks(succeeded, failed)
