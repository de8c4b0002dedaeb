"""Account operations shared by every door: registration, passwords, tokens,
recovery codes, the second factor; contacts and public keys (one per device)
are in :mod:`pingchat.chat.contacts`."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pingchat.auth import otp
from pingchat.auth.audit import Auditor
from pingchat.auth.passwords import PasswordHasher, check_password_policy
from pingchat.auth.sealing import Sealer
from pingchat.auth.throttle import AddressLimiter, LoginThrottle
from pingchat.auth.tokens import (
    DEFAULT_TTL_MS,
    device_hash,
    new_device_secret,
    new_token,
    token_hash,
)
from pingchat.chat.contacts import ContactsAndKeys
from pingchat.chat.erasure import AccountEraser
from pingchat.chat.service import ChatService
from pingchat.chat.session import Session
from pingchat.errors import (
    AuthFailed,
    BadRequest,
    InvalidName,
    InviteInvalid,
    OTPRequired,
    RateLimited,
    RegistrationClosed,
)
from pingchat.interfaces import IStore
from pingchat.model import (
    Account,
    check_account_name,
    iso_ms,
)
from pingchat.store.invite_codes import INVALID_MESSAGE

log = Logger()

RESERVED_NAMES = frozenset(
    {"nickserv", "chanserv", "server", "pingchat", "root", "operator", "services"}
)
# Anonymised messages of deleted accounts show as deleted-<n> (store/erasure.py).
RESERVED_PREFIXES = ("deleted-",)


def is_reserved_name(name: str) -> bool:
    """Service names, and the placeholder names of deleted accounts."""
    folded = name.lower()
    return folded in RESERVED_NAMES or folded.startswith(RESERVED_PREFIXES)
RECOVERY_CODES = 10
DEVICES_KEPT = 20  # per account, the most recently used
_CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i


def new_recovery_code() -> str:
    """A random one-time code, ``xxxx-xxxx-xxxx-xxxx`` (about 79 bits)."""
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def recovery_code_hash(code: str) -> bytes:
    normalised = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(normalised.encode("utf-8")).digest()


INVITE_DAYS = 7.0  # how long an invite code lasts unless told otherwise
INVITE_MAX_USES = 10_000
INVITE_MAX_DAYS = 3650.0
DAY_MS = 24 * 3600 * 1000


def check_invite_terms(uses: object, expires_days: object) -> tuple[int, float]:
    """An invite's number of uses (1 or more) and lifetime in days (0: no expiry)."""
    if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= INVITE_MAX_USES:
        raise BadRequest(f"uses is a whole number from 1 to {INVITE_MAX_USES}")
    if (
        isinstance(expires_days, bool)
        or not isinstance(expires_days, (int, float))
        or not 0 <= expires_days <= INVITE_MAX_DAYS
    ):
        raise BadRequest(f"expires_days is a number of days from 0 (never) to {INVITE_MAX_DAYS:g}")
    return uses, float(expires_days)


def invite_expiry(now: int, expires_days: float) -> int | None:
    return None if expires_days == 0 else now + int(expires_days * DAY_MS)


class AccountManager(ContactsAndKeys):
    """Registration, passwords, tokens, recovery and OTP; contacts, the DM policy and
    device keys from :class:`~pingchat.chat.contacts.ContactsAndKeys`."""

    def __init__(
        self,
        store: IStore,
        hasher: PasswordHasher,
        clock: IReactorTime,
        audit: Auditor,
        service: ChatService | None = None,
        min_password_length: int = 8,
        token_ttl_ms: int = DEFAULT_TTL_MS,
        login_throttle: LoginThrottle | None = None,
        register_limiter: AddressLimiter | None = None,
        sealer: Sealer | None = None,
        registration: str = "open",
    ) -> None:
        self.sealer = sealer or Sealer.generate()
        self.store = store
        self.hasher = hasher
        self.clock = clock
        self.audit = audit
        self.service = service
        self.min_password_length = min_password_length
        self.token_ttl_ms = token_ttl_ms
        self.login_throttle = login_throttle
        self.register_limiter = register_limiter
        # Who may create accounts through the doors: open, closed or invite.
        self.registration = registration
        # Deletes accounts (chat/erasure.py); set by the wiring.
        self.eraser: AccountEraser | None = None

    def now(self) -> int:
        return int(self.clock.seconds() * 1000)

    def check_new_name(self, name: object) -> str:
        name = check_account_name(name)
        if is_reserved_name(name):
            raise InvalidName(f"the name {name} is reserved")
        return name

    # -- registration and recovery ------------------------------------------------

    @inlineCallbacks
    def register(
        self,
        name: object,
        password: object,
        address: str | None = None,
        role: str = "user",
        invite: object = None,
    ) -> Any:
        """Create an account as the registration policy allows.

        Fires with ``{"account", "recovery_codes"}``. With ``--registration
        closed`` every request is refused; with ``invite`` it needs a usable
        *invite* code, spent in the same transaction that creates the
        account. Every attempt that gets as far as the code takes a token
        from the address's registration limiter first, so codes cannot be
        guessed faster than registrations are allowed.
        """
        if self.registration == "closed":
            raise RegistrationClosed(
                "this server does not take registrations: ask an administrator for an account"
            )
        name = self.check_new_name(name)
        password = check_password_policy(password, self.min_password_length)
        code_hash = None
        if self.registration == "invite":
            if invite is None or invite == "":
                raise InviteInvalid(
                    "registering here needs an invite code: ask an administrator for one"
                )
            if not isinstance(invite, str) or len(invite) > 100:
                raise BadRequest("invite must be a string (an invite code)")
            code_hash = recovery_code_hash(invite)
        if self.register_limiter is not None:
            wait = self.register_limiter.take(address)
            if wait > 0:
                raise RateLimited(f"too many registrations; retry after {wait:.0f}s", wait)
        if self.eraser is not None:
            until = yield self.eraser.name_reserved(name)
            if until is not None:
                raise InvalidName(
                    f"the name {name} belonged to a deleted account; it is free again"
                    f" from {iso_ms(until)}"
                )
        if code_hash is not None:
            usable = yield self.store.invite_code_usable(code_hash, self.now())
            if not usable:
                self.audit("invite_invalid", account=name, address=address)
                raise InviteInvalid(INVALID_MESSAGE)
        hashed = yield self.hasher.hash(password)
        if code_hash is None:
            account: Account = yield self.store.create_account(name, hashed, self.now(), role)
            detail = {}
        else:
            try:
                account, invite_id = yield self.store.create_invited_account(
                    name, hashed, self.now(), role, code_hash
                )
            except InviteInvalid:  # spent by someone else meanwhile
                self.audit("invite_invalid", account=name, address=address)
                raise
            detail = {"invite": invite_id}
        codes = yield self._new_recovery_codes(account)
        self.audit("register", account=account.name, address=address, **detail)
        return {"account": account, "recovery_codes": codes}

    @inlineCallbacks
    def create_account_admin(self, name: object, password: str, actor: str, role: str) -> Any:
        """An administrator creates an account, whatever the registration policy."""
        name = self.check_new_name(name)
        password = check_password_policy(password, self.min_password_length)
        hashed = yield self.hasher.hash(password)
        account: Account = yield self.store.create_account(name, hashed, self.now(), role)
        codes = yield self._new_recovery_codes(account)
        self.audit("register", account=account.name, actor=actor, role=role)
        return {"account": account, "recovery_codes": codes}

    def create_invite(
        self, actor: str, uses: object = 1, expires_days: object = INVITE_DAYS
    ) -> Deferred[dict[str, Any]]:
        """Issue an invite code (shown only in the result); audited, never logged.

        Fires with ``id``, ``code``, ``uses`` and ``expires_at`` (ms, or None).
        Bad terms raise :class:`BadRequest` at once.
        """
        count, days = check_invite_terms(uses, expires_days)
        code = new_recovery_code()
        now = self.now()
        expires = invite_expiry(now, days)

        def issued(invite_id: int) -> dict[str, Any]:
            self.audit(
                "invite_create", actor=actor, invite=invite_id, uses=count, expires_at=expires
            )
            return {"id": invite_id, "code": code, "uses": count, "expires_at": expires}

        d = self.store.add_invite_code(recovery_code_hash(code), now, actor, expires, count)
        return d.addCallback(issued)

    def _new_recovery_codes(self, account: Account) -> Deferred[list[str]]:
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        d = self.store.set_recovery_codes(account.id, [recovery_code_hash(c) for c in codes])
        return d.addCallback(lambda _: codes)

    @inlineCallbacks
    def regenerate_recovery_codes(self, session: Session, password: object) -> Any:
        yield self._check_password(session, password, "recovery_regenerate_failed")
        assert session.account is not None
        codes = yield self._new_recovery_codes(session.account)
        self.audit("recovery_regenerated", account=session.name, address=session.address)
        return codes

    @inlineCallbacks
    def recover(self, name: object, code: object, new_password: object, address: str | None) -> Any:
        """Reset a password with a one-time code; every token is revoked."""
        name = check_account_name(name)
        if not isinstance(code, str):
            raise BadRequest("code must be a string")
        new_password = check_password_policy(new_password, self.min_password_length)
        # The (account, address) pair and the address, as for a login; with
        # ~79-bit codes the account-wide ceiling would only lock the owner out.
        if self.login_throttle is not None:
            wait = self.login_throttle.check(name, address)
            if wait > 0:
                raise RateLimited(f"too many attempts; retry after {wait:.1f}s", wait)
        hashed = yield self.hasher.hash(new_password)
        recovered = yield self.store.recover(name, recovery_code_hash(code), hashed, self.now())
        if recovered is None:
            if self.login_throttle is not None:
                self.login_throttle.failed(name, address)
            self.audit("recover_failed", account=name, address=address)
            raise AuthFailed("wrong user name or recovery code")
        self.audit("recover", account=recovered, address=address)
        left = yield self.store.recovery_codes_left(recovered)
        return {"user": recovered, "recovery_codes_left": left}

    # -- tokens -----------------------------------------------------------------------

    def issue_token(self, session: Session) -> Deferred[dict[str, Any]]:
        """Create a session token for *session*; fires with ``token``/``expires_at``."""
        assert session.account is not None
        token = new_token()
        digest = token_hash(token)
        session.token_hash = digest

        def issued(expires: int) -> dict[str, Any]:
            return {"token": token, "expires_at": iso_ms(expires)}

        return self.store.add_token(
            session.account.id, digest, self.now(), self.token_ttl_ms
        ).addCallback(issued)

    def remember_device(self, session: Session, presented: str | None) -> Deferred[str]:
        """The device secret for a password login: *presented* if this account
        knows it, else a fresh one (only its hash is stored). A known device is
        let past the account-wide login ceiling."""
        assert session.account is not None
        fresh = new_device_secret()
        known = device_hash(presented) if presented else None
        d = self.store.remember_device(
            session.account.id, known, device_hash(fresh), self.now(), DEVICES_KEPT
        )
        return d.addCallback(lambda kept: presented if kept and presented else fresh)

    def resumed(self, session: Session, token: str) -> dict[str, Any]:
        """A session that came back with *token*: remember it for ``logout``."""
        session.token_hash = token_hash(token)
        return {"token": token, "expires_at": iso_ms(self.now() + self.token_ttl_ms)}

    def logout(self, session: Session) -> Deferred[bool]:
        """Revoke the session's token."""
        self.audit("logout", account=session.name, address=session.address)
        if session.token_hash is None:
            return succeed(False)
        return self.store.revoke_token(session.token_hash)

    # -- passwords ---------------------------------------------------------------------

    @inlineCallbacks
    def _check_password(self, session: Session, password: object, failure_event: str) -> Any:
        if self.login_throttle is not None:
            wait = self.login_throttle.check(session.name, session.address)
            if wait > 0:
                raise RateLimited(f"too many attempts; retry after {wait:.1f}s", wait)
        if not isinstance(password, str):
            raise BadRequest("password must be a string")
        found = yield self.store.get_credentials(session.name)
        ok = yield self.hasher.check(password, found[1] if found else None)
        if not ok:
            if self.login_throttle is not None:
                self.login_throttle.failed(session.name, session.address)
            self.audit(failure_event, account=session.name, address=session.address)
            raise AuthFailed("wrong password")
        return None

    @inlineCallbacks
    def change_password(self, session: Session, old: object, new: object) -> Any:
        """Check *old*, set *new*, revoke every token but the session's own."""
        new = check_password_policy(new, self.min_password_length)
        yield self._check_password(session, old, "passwd_failed")
        hashed = yield self.hasher.hash(new)
        account: Account = yield self.store.set_password(
            session.name, hashed, keep_token=session.token_hash
        )
        self.audit("passwd", account=account.name, address=session.address)
        return account

    @inlineCallbacks
    def set_password_admin(self, name: str, new: str, actor: str) -> Any:
        new = check_password_policy(new, self.min_password_length)
        hashed = yield self.hasher.hash(new)
        account = yield self.store.set_password(name, hashed)
        self.audit("passwd_reset", account=account.name, actor=actor)
        return account

    @inlineCallbacks
    def delete_account(self, session: Session, password: object, code: object) -> Any:
        """Delete the session's own account, once its password (and second
        factor, if enabled) are given again. Every other session ends at
        once; *session* is left for its door to end after the reply."""
        assert session.account is not None and self.eraser is not None
        yield self._check_password(session, password, "account_delete_failed")
        state = yield self.store.otp_state(session.account.id)
        if state.enabled and state.secret is not None:
            if code is None or code == "":
                raise OTPRequired("this account has a second factor: repeat with otp")
            step = otp.matching_step(self.sealer.unseal(state.secret), code, self.clock.seconds())
            ok = step is not None and (yield self.store.consume_otp_step(session.account.id, step))
            if not ok:
                self.audit("account_delete_failed", account=session.name, address=session.address)
                raise AuthFailed("wrong code")
        result = yield self.eraser.erase(session.name, None, session.address, keep=session)
        return result

    # -- second factor ------------------------------------------------------------------

    @inlineCallbacks
    def otp_setup(self, session: Session) -> Any:
        assert session.account is not None
        state = yield self.store.otp_state(session.account.id)
        if state.enabled:
            raise BadRequest("a second factor is already enabled; disable it first")
        secret = otp.new_secret()
        yield self.store.set_otp_pending(session.account.id, self.sealer.seal(secret))
        self.audit("otp_setup", account=session.name, address=session.address)
        return {"secret": secret, "uri": otp.provisioning_uri(secret, session.name)}

    @inlineCallbacks
    def otp_enable(self, session: Session, code: object) -> Any:
        assert session.account is not None
        state = yield self.store.otp_state(session.account.id)
        if state.enabled:
            raise BadRequest("a second factor is already enabled")
        if state.pending is None:
            raise BadRequest("call otp.setup first")
        step = otp.matching_step(self.sealer.unseal(state.pending), code, self.clock.seconds())
        if step is None:
            self.audit("otp_enable_failed", account=session.name, address=session.address)
            raise AuthFailed("wrong code")
        ok = yield self.store.enable_otp(session.account.id, state.pending, step)
        if not ok:
            raise BadRequest("the pending secret changed; call otp.setup again")
        self.audit("otp_enabled", account=session.name, address=session.address)
        return {"enabled": True}

    @inlineCallbacks
    def otp_disable(self, session: Session, password: object, code: object) -> Any:
        assert session.account is not None
        yield self._check_password(session, password, "otp_disable_failed")
        state = yield self.store.otp_state(session.account.id)
        if not state.enabled or state.secret is None:
            raise BadRequest("no second factor is enabled")
        step = otp.matching_step(self.sealer.unseal(state.secret), code, self.clock.seconds())
        if step is None or step <= state.last_step:
            self.audit("otp_disable_failed", account=session.name, address=session.address)
            raise AuthFailed("wrong code")
        yield self.store.consume_otp_step(session.account.id, step)
        yield self.store.disable_otp(session.account.id)
        self.audit("otp_disabled", account=session.name, address=session.address)
        return {"enabled": False}
