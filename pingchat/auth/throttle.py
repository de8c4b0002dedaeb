"""Rate limits: token buckets for requests, exponential back-off for logins.

Pure logic: time is passed in (seconds, as ``IReactorTime.seconds()`` gives).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

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


ADDRESS_FREE = 20
"""Failed logins from one address (across accounts) before its back-off starts."""

ACCOUNT_WIDE_SPREAD = 10
"""An account is throttled as a whole only once more addresses than this failed on it."""

MAX_ENTRIES = 100_000
"""Keys kept at most (all kinds together); beyond it the least recently
failed are forgotten first."""


def canonical_address(host: str | None) -> str | None:
    """An IP address in the form the server records it: IPv6 compressed
    (``2001:db8::7``), an IPv4-mapped one as IPv4 (as the web door does);
    anything else as it is.

    A PROXY protocol version 2 header comes out of Twisted's parser in full
    (``2001:db8:0:0:0:0:0:7``): without this the audit log would name one
    client two ways.
    """
    if not host:
        return host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def network_of(address: str | None) -> str:
    """The unit an address is throttled by: an IPv4 address, or an IPv6 /64.

    One host usually holds a whole IPv6 /64 (Ergo's ``cidr-len-ipv6: 64``
    default for its per-IP limits says the same), so counting single IPv6
    addresses would give one attacker 2**64 fresh addresses.
    """
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


_Key = tuple[str, str, str]
"""(kind, account, network): ``a`` an address, ``p`` a pair, ``t`` bad tokens."""


@attrs.define
class _Backoff:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


@attrs.define
class _AccountWide:
    """Failures on one account, from however many addresses."""

    addresses: set[str] = attrs.field(factory=set)
    engaged: bool = False
    doublings: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Exponential back-off on failed logins, keyed so that nobody can lock an
    account's owner out.

    * the (account, address) pair: after ``free`` failures the next attempt
      waits ``base`` seconds, doubling with each further failure up to ``cap``;
    * the address alone (many accounts tried from one place): the same after
      ``address_free`` failures;
    * the account as a whole only when its failures came from more than
      ``spread`` addresses (wide, distributed guessing): then every failure
      blocks it for ``base * 2**n`` seconds (capped). When that ceiling
      engages it is audited (``login_throttled_account_wide``, through the
      *audit* callable) and :meth:`failed` returns true; a caller that
      recognises the client (a known device) may skip :meth:`account_wait`;
    * bad session tokens, per address, on keys of their own: a password
      guesser never delays a resume.

    Every key is forgotten ``forget_after`` seconds after its last failure, a
    success clears its pair, and at most ``max_entries`` keys are kept. Pure
    logic: checked before any bcrypt work, so a refused attempt costs the
    server almost nothing.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        free: int = 5,
        base: float = 1.0,
        cap: float = 300.0,
        forget_after: float = 3600.0,
        address_free: int | None = None,
        spread: int = ACCOUNT_WIDE_SPREAD,
        max_entries: int = MAX_ENTRIES,
        audit: Callable[..., None] | None = None,
    ) -> None:
        self.clock = clock
        self.audit = audit
        self.free = free
        self.base = base
        self.cap = cap
        self.forget_after = forget_after
        # An operator who raises the per-account figure expects as many
        # attempts from their one address.
        self.address_free = max(ADDRESS_FREE, free) if address_free is None else address_free
        self.spread = spread
        self.max_entries = max_entries
        # Both tables are kept in order of last failure (a key that fails
        # again moves to the end), so the stale ones are always at the front.
        self._state: OrderedDict[_Key, _Backoff] = OrderedDict()
        self._accounts: OrderedDict[str, _AccountWide] = OrderedDict()

    # -- passwords (and recovery codes) -------------------------------------------

    def _keys(self, account: str | None, address: str | None) -> list[tuple[_Key, int]]:
        net = network_of(address)
        keys = [(("a", "", net), self.address_free)]
        if account:
            keys.append((("p", account.lower(), net), self.free))
        return keys

    def check(self, account: str | None, address: str | None) -> float:
        """Seconds before *address* may try *account* again (0: go ahead).

        The pair and the address only; the account-wide ceiling is
        :meth:`account_wait`.
        """
        return self._wait([key for key, _ in self._keys(account, address)])

    def account_wait(self, account: str) -> float:
        """Seconds the account-wide ceiling holds *account* (0 unless engaged)."""
        name = account.lower()
        state = self._accounts.get(name)
        if state is None:
            return 0.0
        now = self.clock()
        if now - state.last > self.forget_after:
            del self._accounts[name]
            return 0.0
        return max(0.0, state.blocked_until - now) if state.engaged else 0.0

    def failed(self, account: str | None, address: str | None) -> bool:
        """Count a failure; true when it engaged *account*'s account-wide ceiling."""
        now = self.clock()
        for key, free in self._keys(account, address):
            self._count(key, free, now)
        engaged = False
        if account:
            engaged = self._account_failed(account.lower(), network_of(address), now)
        self._bound(now)
        if engaged and self.audit is not None:
            self.audit(
                "login_throttled_account_wide",
                account=account,
                address=address,
                failing_addresses=self.spread + 1,
                window=self.forget_after,
            )
        return engaged

    def succeeded(self, account: str | None, address: str | None) -> None:
        """The right secret: the pair starts over (the address and account do not)."""
        if account:
            self._state.pop(("p", account.lower(), network_of(address)), None)

    # -- session tokens ---------------------------------------------------------------

    def token_check(self, address: str | None) -> float:
        """Seconds before *address* may present another session token."""
        return self._wait([("t", "", network_of(address))])

    def token_failed(self, address: str | None) -> None:
        now = self.clock()
        self._count(("t", "", network_of(address)), self.address_free, now)
        self._bound(now)

    # -- the mechanism ----------------------------------------------------------------

    def _delay(self, doublings: int) -> float:
        return float(min(self.cap, self.base * 2 ** min(doublings, 64)))

    def _wait(self, keys: list[_Key]) -> float:
        now = self.clock()
        wait = 0.0
        for key in keys:
            state = self._state.get(key)
            if state is None:
                continue
            if now - state.last > self.forget_after:
                del self._state[key]
                continue
            wait = max(wait, state.blocked_until - now)
        return max(0.0, wait)

    def _count(self, key: _Key, free: int, now: float) -> None:
        state = self._state.get(key)
        if state is None or now - state.last > self.forget_after:
            state = self._state[key] = _Backoff()
        self._state.move_to_end(key)
        state.failures += 1
        state.last = now
        if state.failures >= free:
            state.blocked_until = now + self._delay(state.failures - free)

    def _account_failed(self, name: str, net: str, now: float) -> bool:
        state = self._accounts.get(name)
        if state is None or now - state.last > self.forget_after:
            state = self._accounts[name] = _AccountWide()
        self._accounts.move_to_end(name)
        state.last = now
        if state.engaged:
            state.blocked_until = now + self._delay(state.doublings)
            state.doublings += 1
            return False
        state.addresses.add(net)
        if len(state.addresses) <= self.spread:
            return False
        state.engaged, state.addresses = True, set()
        state.blocked_until = now + self._delay(0)
        state.doublings = 1
        return True

    def _bound(self, now: float) -> None:
        """Forget expired keys, then (under a flood) the least recently failed.

        Amortised O(1): each key is dropped from the front at most once.
        """
        quarter = self.max_entries // 4
        self._trim(self._accounts, quarter, now)
        self._trim(self._state, self.max_entries - quarter, now)

    def _trim(self, table: OrderedDict[Any, Any], limit: int, now: float) -> None:
        while table:
            key = next(iter(table))
            if len(table) <= limit and now - table[key].last <= self.forget_after:
                return
            del table[key]

    def size(self) -> int:
        """How many keys are held (for tests and metrics)."""
        return len(self._state) + len(self._accounts)


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

    def set_rate(self, rate: float, burst: float) -> None:
        """New limits, for every address (those seen already too): a reloaded option."""
        self.rate, self.burst = rate, burst
        for bucket in self._buckets.values():
            bucket.rate, bucket.burst = rate, burst
            bucket.tokens = min(bucket.tokens, burst)
