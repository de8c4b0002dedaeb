"""``twisted.cred`` checkers backed by the store.

Every door authenticates through one :class:`~twisted.cred.portal.Portal`
holding these checkers. Each returns the account name (UTF-8 bytes, as cred
expects) as the avatar id, or
fails with a subclass of :class:`UnauthorizedLogin` that tells the door which
error to show.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, implementer

from pingchat.auth.passwords import PasswordHasher
from pingchat.auth.tokens import DEFAULT_TTL_MS, device_hash, token_hash
from pingchat.interfaces import IStore
from pingchat.model import Account


class LoginFailed(UnauthorizedLogin):
    """Unknown user or wrong secret: one answer for both."""

    code = "auth_failed"


class LoginDisabled(UnauthorizedLogin):
    code = "account_disabled"


class OTPNeeded(UnauthorizedLogin):
    code = "otp_required"


class LoginThrottled(UnauthorizedLogin):
    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many attempts; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class ITokenCredentials(ICredentials):
    """A session token issued at an earlier login."""

    token = Attribute("The token, as given to the client.")
    address = Attribute("The client's address, for throttling and audit.")


class IPasswordOTP(IUsernamePassword):
    """Name, password and (for accounts with a second factor) a TOTP code."""

    otp = Attribute("The current TOTP code, or None.")
    address = Attribute("The client's address, for throttling and audit.")
    device = Attribute("The device secret of an earlier login, or None.")


@implementer(IPasswordOTP)
class PasswordCredentials:
    """Username and password (plus optional TOTP code) as the doors collect them."""

    def __init__(
        self,
        username: str,
        password: str,
        otp: str | None = None,
        address: str | None = None,
        device: str | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.otp = otp
        self.address = address
        self.device = device

    def checkPassword(self, password: bytes) -> bool:
        raise NotImplementedError("checked by PasswordChecker against the store")

    def __repr__(self) -> str:  # never show the secret
        return f"<PasswordCredentials {self.username!r}>"


@implementer(ITokenCredentials)
class TokenCredentials:
    def __init__(self, token: str, address: str | None = None) -> None:
        self.token = token
        self.address = address

    def __repr__(self) -> str:
        return "<TokenCredentials>"


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def now_ms(clock: IReactorTime) -> int:
    return int(clock.seconds() * 1000)


@implementer(ICredentialsChecker)
class PasswordChecker:
    """bcrypt passwords from the store, with throttling and optional TOTP."""

    credentialInterfaces = (IPasswordOTP,)

    def __init__(
        self,
        store: IStore,
        hasher: PasswordHasher,
        clock: IReactorTime,
        throttle: Any = None,
        otp: Any = None,
        audit: Any = None,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.clock = clock
        self.throttle = throttle
        self.otp = otp
        self.audit = audit or (lambda *a, **k: None)

    def requestAvatarId(self, credentials: IPasswordOTP) -> Deferred[bytes | tuple[()]]:
        return self._check(credentials)

    @inlineCallbacks
    def _throttled(self, name: str, address: str | None, device: object) -> Any:
        """Refuse, before any bcrypt work, an attempt the throttle holds back.

        The (account, address) pair and the address always apply; the
        account-wide ceiling (wide, distributed guessing) does not hold back
        a device that logged in to this account before.
        """
        wait = self.throttle.check(name, address)
        if wait > 0:
            self.audit("login_throttled", account=name, address=address, scope="address")
            raise LoginThrottled(wait)
        wait = self.throttle.account_wait(name)
        if wait > 0:
            known = False
            if isinstance(device, str) and 0 < len(device) <= 256:
                known = yield self.store.known_device(name, device_hash(device))
            if not known:
                self.audit("login_throttled", account=name, address=address, scope="account")
                raise LoginThrottled(wait)
        return None

    @inlineCallbacks
    def _check(self, credentials: IPasswordOTP) -> Any:
        name = _text(credentials.username)
        password = _text(credentials.password)
        address = getattr(credentials, "address", None)
        if self.throttle is not None:
            yield self._throttled(name, address, getattr(credentials, "device", None))
        found = yield self.store.get_credentials(name)
        account: Account | None = found[0] if found else None
        ok = yield self.hasher.check(password, found[1] if found else None)
        if not ok or account is None:
            if self.throttle is not None:
                self.throttle.failed(name, address)
            self.audit("login_failed", account=name, address=address)
            raise LoginFailed("wrong user name or password")
        if account.disabled:
            self.audit("login_disabled", account=account.name, address=address)
            raise LoginDisabled("this account is disabled")
        if self.otp is not None:
            try:
                yield self.otp.verify_login(account, getattr(credentials, "otp", None), address)
            except LoginFailed:
                if self.throttle is not None:
                    self.throttle.failed(name, address)
                raise
        if self.throttle is not None:
            self.throttle.succeeded(name, address)
        self.audit("login", account=account.name, address=address)
        return account.name.encode("utf-8")


@implementer(ICredentialsChecker)
class TokenChecker:
    """Session tokens: looked up by SHA-256, expiring after an idle period."""

    credentialInterfaces = (ITokenCredentials,)

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        ttl_ms: int = DEFAULT_TTL_MS,
        throttle: Any = None,
        audit: Any = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.ttl_ms = ttl_ms
        self.throttle = throttle
        self.audit = audit or (lambda *a, **k: None)

    def requestAvatarId(self, credentials: ITokenCredentials) -> Deferred[bytes | tuple[()]]:
        return self._check(credentials)

    @inlineCallbacks
    def _check(self, credentials: ITokenCredentials) -> Any:
        address = getattr(credentials, "address", None)
        if self.throttle is not None:
            # Bad tokens from this address only: password guessing on the
            # account (or from this address) never holds a resume back.
            wait = self.throttle.token_check(address)
            if wait > 0:
                raise LoginThrottled(wait)
        token = credentials.token
        if not isinstance(token, str) or not token or len(token) > 256:
            raise LoginFailed("invalid or expired token")
        found = yield self.store.use_token(token_hash(token), now_ms(self.clock), self.ttl_ms)
        if found is None:
            if self.throttle is not None:
                self.throttle.token_failed(address)
            self.audit("resume_failed", address=address)
            raise LoginFailed("invalid or expired token")
        account, _expires = found
        if account.disabled:
            raise LoginDisabled("this account is disabled")
        return account.name.encode("utf-8")
