"""Audit trail of security events: the ``audit_log`` table plus a log event.

Callers pass names and addresses only: never a password, token, OTP secret or
recovery code.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pingchat.interfaces import IStore

log = Logger(namespace="pingchat.audit")


class Auditor:
    def __init__(self, store: IStore, clock: IReactorTime) -> None:
        self.store = store
        self.clock = clock

    def __call__(
        self,
        event: str,
        account: str | None = None,
        actor: str | None = None,
        address: str | None = None,
        **detail: Any,
    ) -> None:
        """Record *event*; failures to write are logged, never raised."""
        log.info(
            "audit: {audit_event} account={account} actor={actor} address={address}",
            audit_event=event,
            account=account,
            actor=actor,
            address=address,
            **detail,
        )
        self.store.add_audit(
            int(self.clock.seconds() * 1000), event, account, actor, address, **detail
        ).addErrback(lambda f: log.failure("could not write the audit log", f))
