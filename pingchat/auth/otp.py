"""Time-based one-time passwords (RFC 6238) through ``pyotp``.

A code is accepted for the current 30-second step and one step either side
(clock drift), and each step can be used once: the account remembers the last
step it accepted, so a code seen on the wire cannot be replayed.
"""

from __future__ import annotations

import hmac
from typing import Any

import pyotp
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IReactorTime

from pingchat.auth.audit import Auditor
from pingchat.auth.sealing import Sealer
from pingchat.interfaces import IStore
from pingchat.model import Account

STEP = 30
ISSUER = "pingchat"


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def matching_step(secret: str, code: object, now: float, window: int = 1) -> int | None:
    """The time step whose code equals *code* (within *window* steps), or None."""
    if not isinstance(code, str):
        return None
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int(now // STEP)
    found = None
    for step in range(current - window, current + window + 1):
        # Compare every candidate so timing does not reveal which one matched.
        if hmac.compare_digest(totp.at(step * STEP), code):
            found = step
    return found


class OTPVerifier:
    """Checks the second factor at login (used by the password checker)."""

    def __init__(
        self, store: IStore, clock: IReactorTime, audit: Auditor, sealer: Sealer
    ) -> None:
        self.store = store
        self.clock = clock
        self.audit = audit
        self.sealer = sealer

    @inlineCallbacks
    def verify_login(self, account: Account, code: object, address: str | None) -> Any:
        from pingchat.auth.checkers import LoginFailed, OTPNeeded

        state = yield self.store.otp_state(account.id)
        if not state.enabled or state.secret is None:
            return None
        if code is None or code == "":
            raise OTPNeeded("this account needs a one-time code (otp)")
        step = matching_step(self.sealer.unseal(state.secret), code, self.clock.seconds())
        if step is None or step <= state.last_step:
            self.audit("otp_failed", account=account.name, address=address, replay=step is not None)
            raise LoginFailed("wrong user name, password or code")
        ok = yield self.store.consume_otp_step(account.id, step)
        if not ok:
            raise LoginFailed("wrong user name, password or code")
        return None
