"""Login throttling and the registration limit, counted across the nodes.

The throttles' logic stays pure (pingchat.auth.throttle) and answers at
once, before any bcrypt work, from state in this node's memory; what
changes is where that state's events come from: every failure (and every
success that clears a pair, and every registration) on any node is
published on the bus, and every other node counts it as its own. A guesser
spread over the nodes by a load balancer is counted once per attempt, on
each node, about a millisecond after it failed.
"""

from __future__ import annotations

from collections.abc import Callable

from pingchat.auth.throttle import AddressLimiter, LoginThrottle

Share = Callable[[str, str | None, str | None], None]


class SharedLoginThrottle(LoginThrottle):
    """A :class:`LoginThrottle` whose failures count on every node."""

    share: Share | None = None

    def failed(self, account: str | None, address: str | None) -> bool:
        engaged = super().failed(account, address)
        if self.share is not None:
            self.share("login", account, address)
        return engaged

    def succeeded(self, account: str | None, address: str | None) -> None:
        super().succeeded(account, address)
        if self.share is not None:
            self.share("login_ok", account, address)

    def token_failed(self, address: str | None) -> None:
        super().token_failed(address)
        if self.share is not None:
            self.share("token", None, address)

    def remote_event(self, kind: str, account: str | None, address: str | None) -> None:
        """What another node's throttle counted: counted here too (audited there)."""
        if kind == "login":
            audit, self.audit = self.audit, None
            try:
                LoginThrottle.failed(self, account, address)
            finally:
                self.audit = audit
        elif kind == "login_ok":
            LoginThrottle.succeeded(self, account, address)
        elif kind == "token":
            LoginThrottle.token_failed(self, address)


class SharedAddressLimiter(AddressLimiter):
    """An :class:`AddressLimiter` (registrations) whose takes count on every node."""

    share: Share | None = None

    def take(self, address: str | None) -> float:
        wait = super().take(address)
        if wait == 0 and address is not None and self.rate > 0 and self.share is not None:
            self.share("register", None, address)
        return wait

    def remote_event(self, kind: str, account: str | None, address: str | None) -> None:
        if kind == "register" and address is not None:
            AddressLimiter.take(self, address)
