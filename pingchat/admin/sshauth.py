"""Who may log in to the manhole, and how: passwords (with TOTP), public keys.

The checkers prove who an SSH user is with pingchat's own password checker
(bcrypt in a thread, the shared login throttle, the audit of failures) or
the keys listed in ``manhole_authorized_keys``; :class:`AdminUserAuth` is
Conch's user authentication with the client's address passed on and
``keyboard-interactive`` added for a second factor. Whether that account may
have a prompt is the realm's decision (:mod:`pingchat.admin.manhole`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twisted.conch import error as conch_error
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh import keys, userauth
from twisted.conch.ssh.common import NS, getNS
from twisted.conch.ssh.userauth import MSG_USERAUTH_INFO_REQUEST
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ISSHPrivateKey, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat.auth.checkers import (
    IPasswordOTP,
    OTPNeeded,
    PasswordChecker,
    PasswordCredentials,
)
from pingchat.model import fold
from pingchat.server import Server

log = Logger()


class AuthorizedKeys:
    """Administrators' public keys, read from ``manhole_authorized_keys`` at each login.

    Each line is ``<account> <key type> <base64 key> [comment]``; blank lines
    and lines starting with ``#`` are ignored. Like sshd's ``StrictModes``, the
    file is ignored when other users may write to it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def keys_of(self, account: str) -> Iterator[keys.Key]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return
        if info.st_mode & 0o022:
            log.warn(
                "ignoring {path}: others may write to it (chmod go-w)", path=str(self.path)
            )
            return
        wanted = fold(account)
        for number, raw in enumerate(self.path.read_bytes().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith(b"#"):
                continue
            name, _, key_text = line.partition(b" ")
            if fold(name.decode("utf-8", "replace")) != wanted:
                continue
            try:
                yield keys.Key.fromString(key_text.strip())
            except (keys.BadKeyError, ValueError, IndexError):
                log.warn("{path}:{n}: not a public key", path=str(self.path), n=number)


@implementer(ICredentialsChecker)
class AdminKeyChecker:
    """SSH public keys listed for an account in ``manhole_authorized_keys``.

    Unlike Conch's ``SSHPublicKeyChecker``, a key is only accepted for
    signing (``ValidPublicKey``) once it is known to be listed.
    """

    credentialInterfaces = (ISSHPrivateKey,)

    def __init__(self, authorized: AuthorizedKeys) -> None:
        self.authorized = authorized

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        name = as_text(credentials.username)
        try:
            offered = keys.Key.fromString(credentials.blob)
        except (keys.BadKeyError, ValueError):
            return fail(UnauthorizedLogin("unsupported key"))
        if not any(k == offered for k in self.authorized.keys_of(name)):
            return fail(UnauthorizedLogin("key not authorized"))
        if not credentials.signature:
            return fail(conch_error.ValidPublicKey())
        try:
            ok = offered.verify(credentials.signature, credentials.sigData)
        except Exception:
            ok = False
        if not ok:
            return fail(UnauthorizedLogin("bad signature"))
        return succeed(name)


@implementer(ICredentialsChecker)
class AdminPasswordChecker:
    """SSH passwords, checked by pingchat's own password checker.

    Conch offers ``IUsernamePassword`` (bytes, no address); this adapts it to
    the ``PasswordCredentials`` the store's checker expects, so bcrypt, the
    shared login throttle and the audit of failures all apply. Its own
    ``login`` event is left out: a password that is right is not yet a
    manhole login (the realm still checks the role, and audits the outcome).
    """

    credentialInterfaces = (IUsernamePassword, IPasswordOTP)

    def __init__(self, passwords: PasswordChecker) -> None:
        self.passwords = passwords

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        creds = PasswordCredentials(
            as_text(credentials.username),
            as_text(credentials.password),
            getattr(credentials, "otp", None),
            getattr(credentials, "address", None),
        )
        d: Deferred[Any] = self.passwords.requestAvatarId(creds)
        return d

    @classmethod
    def for_server(cls, server: Server, clock: IReactorTime) -> AdminPasswordChecker:
        """Share the throttle and second-factor check of the server's own checker."""
        shared = server.portal.checkers.get(IPasswordOTP)
        throttle = getattr(shared, "throttle", None)
        otp = getattr(shared, "otp", None)
        audit = server.audit

        def audit_failures(event: str, **kw: Any) -> None:
            if event != "login":
                audit(event, door="manhole", **kw)

        return cls(
            PasswordChecker(server.store, server.hasher, clock, throttle, otp, audit_failures)
        )


def as_text(value: str | bytes) -> str:
    """What Conch hands over as bytes (a user name, a password), as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class _PeerPortal:
    """The factory's portal, passing the client's address to the realm as its mind."""

    def __init__(self, portal: Portal, address: str | None) -> None:
        self.portal = portal
        self.address = address

    def listCredentialsInterfaces(self) -> list[Any]:
        return self.portal.listCredentialsInterfaces()

    def login(self, credentials: Any, mind: Any, *interfaces: Any) -> Deferred[Any]:
        return self.portal.login(credentials, self.address if mind is None else mind, *interfaces)


class _Conversation:
    """A keyboard-interactive login in progress: its outcome and the password given."""

    def __init__(self) -> None:
        self.done: Deferred[Any] = Deferred()
        self.password: str | None = None

    def finish(self, result: Any) -> None:
        if not self.done.called:
            if isinstance(result, Failure):
                self.done.errback(result)
            else:
                self.done.callback(result)


class AdminUserAuth(userauth.SSHUserAuthServer):
    """Conch's user authentication, telling the checkers where the client is,
    and offering ``keyboard-interactive`` for accounts with a second factor.

    The address feeds the login throttle and the audit log; the delay after a
    wrong password uses the factory's (injectable) clock. Conch's server has
    no keyboard-interactive (RFC 4256); here it asks for the password and, if
    the account has TOTP enabled, for the current code: the same checks as
    the native door's ``login`` with ``otp``.
    """

    interfaceToMethod = {
        **userauth.SSHUserAuthServer.interfaceToMethod,
        IPasswordOTP: b"keyboard-interactive",
    }
    _conversation: _Conversation | None = None

    def serviceStarted(self) -> None:
        self.clock = self.transport.factory.clock  # type: ignore[union-attr]
        super().serviceStarted()
        self.address = _peer_host(self.transport)
        self.portal = _PeerPortal(self.portal, self.address)

    def serviceStopped(self) -> None:
        self._abandon()
        super().serviceStopped()

    def ssh_USERAUTH_REQUEST(self, packet: bytes) -> Deferred[Any] | None:
        # A new request ends a keyboard-interactive exchange (RFC 4256, 3.1).
        self._abandon()
        return super().ssh_USERAUTH_REQUEST(packet)

    def _abandon(self) -> None:
        conversation, self._conversation = self._conversation, None
        if conversation is not None:
            conversation.finish(Failure(conch_error.IgnoreAuthentication()))

    def auth_password(self, packet: bytes) -> Deferred[Any]:
        password = getNS(packet[1:])[0]
        credentials = PasswordCredentials(
            as_text(self.user or b""), as_text(password), None, self.address
        )
        d: Deferred[Any] = self.portal.login(credentials, None, IConchUser)
        return d.addErrback(self._after_password_delay)

    def _after_password_delay(self, failure: Failure) -> Deferred[Any]:
        """Fail after ``passwordDelay`` seconds, as Conch does, to slow guessing down."""
        d: Deferred[Any] = Deferred()
        self.clock.callLater(self.passwordDelay, d.callback, failure)
        return d

    def auth_keyboard_interactive(self, packet: bytes) -> Deferred[Any]:
        conversation = self._conversation = _Conversation()
        self._ask(b"Password: ", echo=False)
        return conversation.done

    def _ask(self, prompt: bytes, echo: bool) -> None:
        request = NS(b"") + NS(b"") + NS(b"") + struct.pack(">L", 1)
        request += NS(prompt) + (b"\x01" if echo else b"\x00")
        self.transport.sendPacket(MSG_USERAUTH_INFO_REQUEST, request)  # type: ignore[union-attr]

    def ssh_USERAUTH_INFO_RESPONSE(self, packet: bytes) -> None:
        conversation, self._conversation = self._conversation, None
        if conversation is None:
            return
        try:
            (count,) = struct.unpack(">L", packet[:4])
            answers = getNS(packet[4:], count)[:count] if count == 1 else []
        except (struct.error, ValueError, IndexError):
            answers = []
        if len(answers) != 1:
            conversation.finish(Failure(UnauthorizedLogin("expected one answer")))
            return
        answer = as_text(answers[0])
        code = None
        if conversation.password is None:
            conversation.password = answer
        else:
            code = answer
        credentials = PasswordCredentials(
            as_text(self.user or b""), conversation.password, code, self.address
        )

        def failed(reason: Failure) -> None:
            if reason.check(OTPNeeded) and code is None:
                self._conversation = conversation
                self._ask(b"One-time code: ", echo=True)
                return
            self.clock.callLater(self.passwordDelay, conversation.finish, reason)

        d: Deferred[Any] = self.portal.login(credentials, None, IConchUser)
        d.addCallbacks(conversation.finish, failed)


def _peer_host(ssh_transport: Any) -> str | None:
    try:
        peer = ssh_transport.transport.getPeer()
    except Exception:
        return None
    host = getattr(peer, "host", None)
    return str(host) if host is not None else None
