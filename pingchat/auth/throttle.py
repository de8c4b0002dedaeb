"""Rate limits: token buckets for requests, exponential back-off for logins.

Pure logic: time is passed in (seconds, as ``IReactorTime.seconds()`` gives).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs


@attrs.define
class TokenBucket:
    """*rate* tokens per second, bursting to *burst*; ``take`` says how long to wait."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float, cost: float = 1.0) -> float:
        """Spend *cost* tokens if available (returns 0), else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


@attrs.define
class _Backoff:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Per-account and per-address exponential back-off on failed logins.

    After ``free`` failures, each further failure blocks the key for
    ``base * 2**(n - free)`` seconds, capped at ``cap``. Checked before any
    bcrypt work, so a brute-force attempt costs the server almost nothing.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        free: int = 5,
        base: float = 1.0,
        cap: float = 300.0,
        forget_after: float = 3600.0,
        address_free: int = 20,
    ) -> None:
        self.clock = clock
        self.free = free
        self.base = base
        self.cap = cap
        self.forget_after = forget_after
        self.address_free = address_free
        self._state: dict[str, _Backoff] = {}

    def _keys(self, account: str | None, address: str | None) -> list[tuple[str, int]]:
        keys = []
        if account:
            keys.append(("u:" + account.lower(), self.free))
        if address:
            keys.append(("a:" + address, self.address_free))
        return keys

    def check(self, account: str | None, address: str | None) -> float:
        """Seconds to wait before another attempt is allowed (0: go ahead)."""
        now = self.clock()
        wait = 0.0
        for key, _ in self._keys(account, address):
            state = self._state.get(key)
            if state is None:
                continue
            if now - state.last > self.forget_after:
                del self._state[key]
                continue
            wait = max(wait, state.blocked_until - now)
        return max(0.0, wait)

    def failed(self, account: str | None, address: str | None) -> None:
        now = self.clock()
        for key, free in self._keys(account, address):
            state = self._state.setdefault(key, _Backoff())
            state.failures += 1
            state.last = now
            if state.failures > free:
                delay = min(self.cap, self.base * 2 ** (state.failures - free - 1))
                state.blocked_until = now + delay
        if len(self._state) > 100_000:
            self._prune(now)

    def succeeded(self, account: str | None, address: str | None) -> None:
        if account:
            self._state.pop("u:" + account.lower(), None)

    def _prune(self, now: float) -> None:
        for key in [k for k, s in self._state.items() if now - s.last > self.forget_after]:
            del self._state[key]


class AddressLimiter:
    """A token bucket per address (registrations, for example)."""

    def __init__(self, clock: Callable[[], float], rate: float, burst: float) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, address: str | None) -> float:
        if address is None or self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst)
        return bucket.take(self.clock())
