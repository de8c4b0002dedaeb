"""The SSH manhole: a Python prompt inside the running server, for administrators.

The shape is Twisted's own ``twisted.conch.manhole_tap``: a Conch
``SSHFactory`` whose portal hands an authenticated user a terminal session
running a colouring, line-editing :class:`~twisted.conch.manhole.Manhole`.
What pingchat adds:

* The host key is generated once into the data dir (``ssh_host_key``,
  ed25519, mode 0600) and reused; nothing secret ships with the source.
* Logins go through the same store and the same password checker (bcrypt in
  a thread, login throttling, audit) as every other door; only accounts with
  the admin role that are not disabled get a prompt. An account with TOTP
  enabled logs in with ``keyboard-interactive`` (password, then code), which
  Conch's server lacks and :class:`AdminUserAuth` adds. Public keys may be
  listed in ``manhole_authorized_keys`` in the data dir, one
  ``<account> <key type> <base64> [comment]`` per line.
* The prompt waits for Deferreds (database helpers) and prints their result,
  and the namespace is :mod:`pingchat.admin.namespace`.
* Logins, refusals and logouts are written to the audit log.
"""

from __future__ import annotations

import ipaddress
import re
import stat
import struct
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application import internet
from twisted.conch import error as conch_error
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.manhole import ColoredManhole, ManholeInterpreter
from twisted.conch.manhole_ssh import ConchFactory, TerminalSession, TerminalUser
from twisted.conch.ssh import connection, keys, transport, userauth
from twisted.conch.ssh.common import NS, getNS
from twisted.conch.ssh.userauth import MSG_USERAUTH_INFO_REQUEST
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ISSHPrivateKey, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import components
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat.admin.namespace import AdminTools, RateMeter, banner
from pingchat.auth.checkers import (
    IPasswordOTP,
    OTPNeeded,
    PasswordChecker,
    PasswordCredentials,
)
from pingchat.auth.portal import CountingPortal
from pingchat.errors import ChatError
from pingchat.model import Account, fold
from pingchat.server import Server
from pingchat.tls import write_secret

log = Logger()

HOST_KEY_FILE = "ssh_host_key"
AUTHORIZED_KEYS_FILE = "manhole_authorized_keys"
SAMPLE_INTERVAL = 5.0


# -- the host key ------------------------------------------------------------------


def ensure_host_key(data_dir: Path) -> keys.Key:
    """The manhole's SSH host key, generated into *data_dir* the first time.

    The file holds an OpenSSH-format ed25519 private key readable only by its
    owner; a key found with looser permissions is tightened, not replaced, so
    that clients keep trusting the server.
    """
    path = data_dir / HOST_KEY_FILE
    if not path.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        write_secret(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ),
        )
        log.info("generated the manhole host key {path}", path=str(path))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warn(
            "{path} was readable by others (mode {mode:o}); setting mode 0600",
            path=str(path),
            mode=mode,
        )
        path.chmod(0o600)
    return keys.Key.fromString(path.read_bytes())


def fingerprint(key: keys.Key) -> str:
    """The key's fingerprint as OpenSSH prints it (``SHA256:...``)."""
    return "SHA256:" + str(key.fingerprint(keys.FingerprintFormats.SHA256_BASE64))


# -- authentication ----------------------------------------------------------------------


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
        name = _text(credentials.username)
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
            _text(credentials.username),
            _text(credentials.password),
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


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


# -- the realm, the avatar, the session ---------------------------------------------------


class AdminSession(TerminalSession):
    """A terminal session that follows window changes and ends at EOF.

    Conch's ``TerminalSession`` raises ``NotImplementedError`` for both, and
    has no size when the client asked for no pty; this one defaults to 80x24.
    """

    width = 80
    height = 24
    chained: Any = None

    def getPty(self, term: bytes, windowSize: tuple[int, ...], attrs: Any) -> None:
        self.height = windowSize[0] or 24
        self.width = windowSize[1] or 80

    def openShell(self, proto: Any) -> None:
        self.chained = self.chainedProtocolFactory()
        self.transportFactory(
            proto, self.chained, IConchUser(self.original), self.width, self.height
        )

    def execCommand(self, proto: Any, cmd: bytes) -> None:
        raise conch_error.ConchError("the manhole runs no commands: open a shell (ssh -t)")

    def windowChanged(self, newWindowSize: tuple[int, ...]) -> None:
        self.height = newWindowSize[0] or 24
        self.width = newWindowSize[1] or 80
        terminal = getattr(self.chained, "terminalProtocol", None)
        if terminal is not None:
            terminal.terminalSize(self.width, self.height)

    def eofReceived(self) -> None:
        if self.chained is not None:
            self.chained.loseConnection()


@implementer(IRealm)
class AdminRealm:
    """Gives a terminal with the admin namespace to accounts with the admin role.

    The checkers proved who the user is; the realm decides whether that
    account may have a prompt (it exists, is an admin, is not disabled), and
    audits the login or the refusal.
    """

    def __init__(self, server: Server, clock: IReactorTime, meter: RateMeter | None = None) -> None:
        self.server = server
        self.clock = clock
        self.meter = meter
        self.sessions = 0  # admins at a prompt now

    def requestAvatar(
        self, avatarId: Any, mind: Any, *interfaces: Any
    ) -> Deferred[tuple[Any, Any, Callable[[], None]]]:
        if IConchUser not in interfaces:
            raise NotImplementedError("the manhole realm only provides IConchUser")
        name = _text(avatarId)
        address = mind if isinstance(mind, str) else None
        audit = self.server.audit

        def decide(account: Account | None) -> tuple[Any, Any, Callable[[], None]]:
            reason = None
            if account is None:
                reason = "no such account"
            elif account.disabled:
                reason = "account disabled"
            elif not account.is_admin:
                reason = "not an admin"
            if reason is not None or account is None:
                audit("manhole_refused", account=name, address=address, reason=reason)
                raise UnauthorizedLogin(f"{name} may not use the manhole: {reason}")
            audit("manhole_login", account=account.name, actor=account.name, address=address)
            log.info("manhole login: {user} from {address}", user=account.name, address=address)
            user = self._avatar(account.name, address)
            self.sessions += 1

            def logout() -> None:
                self.sessions -= 1
                audit("manhole_logout", account=account.name, actor=account.name, address=address)

            return IConchUser, user, logout

        d: Deferred[Account | None] = self.server.store.get_account(name)
        return d.addCallback(decide)

    def _avatar(self, name: str, address: str | None) -> Any:
        tools = AdminTools(self.server, name, self.clock, self.meter, address)
        namespace = tools.namespace()
        greeting = banner(name, self.server.chat.server_name)

        def terminal() -> insults.ServerProtocol:
            return insults.ServerProtocol(AdminManhole, namespace, greeting)

        comp = components.Componentized()
        user = TerminalUser(comp, name)
        session = AdminSession(comp)
        session.chainedProtocolFactory = terminal  # type: ignore[assignment]
        comp.setComponent(IConchUser, user)
        comp.setComponent(ISession, session)
        return user


# -- the prompt -----------------------------------------------------------------------------


class AdminInterpreter(ManholeInterpreter):
    """Hands Deferreds to the manhole to wait on, and shows expected errors briefly."""

    def displayhook(self, obj: Any) -> None:
        if isinstance(obj, Deferred):
            self.handler.wait_for(obj)
            return
        self.locals["_"] = obj
        if obj is not None:
            self.write(repr(obj))

    def excepthook(self, excType: Any, excValue: Any, excTraceback: Any) -> None:
        if isinstance(excValue, (ChatError, UnauthorizedLogin)):
            self.write(f"{excType.__name__}: {excValue}\n")
            return
        super().excepthook(excType, excValue, excTraceback)


class AdminManhole(ColoredManhole):
    """Twisted's colouring manhole, with a banner, that waits for Deferreds.

    When a line evaluates to a Deferred that has not fired yet, the prompt
    comes back only once it fires (with its result or error printed); lines
    typed meanwhile run after it. Ctrl-C stops waiting; the result is then
    printed whenever it arrives.
    """

    def __init__(self, namespace: dict[str, Any], greeting: str = "") -> None:
        super().__init__(namespace)
        self.greeting = greeting
        self.waiting: Deferred[Any] | None = None
        self.typed_ahead: list[bytes] = []

    def connectionMade(self) -> None:
        super().connectionMade()
        self.interpreter = AdminInterpreter(self, self.namespace)

    def initializeScreen(self) -> None:
        self.terminal.reset()
        if self.greeting:
            self.terminal.write(self.greeting.encode("utf-8"))
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def terminalSize(self, width: int, height: int) -> None:
        # RecvLine clears the screen here, which would wipe the banner at login.
        self.width = width
        self.height = height

    def lineReceived(self, line: bytes) -> None:
        if self.waiting is not None:
            self.typed_ahead.append(line)
            return
        more = self.interpreter.push(line)
        self.pn = bool(more)
        if self.waiting is None:
            self._prompt()

    def _prompt(self) -> None:
        # As Conch's Manhole does, from the terminal's public lastWrite.
        last = self.terminal.lastWrite
        if not last.endswith(b"\n") and not last.endswith(b"\x1bE"):
            self.terminal.nextLine()
        self.terminal.write(self.ps[self.pn])

    def wait_for(self, d: Deferred[Any]) -> None:
        """Show what *d* fires with; until then, hold the prompt back."""
        pending = True
        fired_now = False

        def show(text: str) -> None:
            nonlocal fired_now
            if pending:
                fired_now = True
                if text:
                    self.terminal.write(text)
            elif self.waiting is d:
                self.waiting = None
                if text:
                    self.terminal.write(text)
                self._prompt()
                self._run_typed_ahead()
            elif text:
                self.addOutput(text, True)

        d.addCallbacks(self._describe, self._describe_failure).addCallback(show)
        pending = False
        if not fired_now:
            self.waiting = d

    def _describe(self, result: Any) -> str:
        self.interpreter.locals["_"] = result
        return "" if result is None else repr(result)

    def _describe_failure(self, failure: Failure) -> str:
        if failure.check(ChatError, UnauthorizedLogin):
            kind = failure.type.__name__ if failure.type else "Error"
            return f"{kind}: {failure.getErrorMessage()}"
        return failure.getTraceback()

    def _run_typed_ahead(self) -> None:
        while self.typed_ahead and self.waiting is None:
            self.lineReceived(self.typed_ahead.pop(0))

    def handle_INT(self) -> None:
        if self.waiting is not None:
            self.waiting = None
            self.typed_ahead = []
            self.terminal.nextLine()
            self.terminal.write(b"(no longer waiting; the result will be shown when it comes)")
            self.terminal.nextLine()
            self.terminal.write(self.ps[self.pn])
            return
        super().handle_INT()


# -- the SSH server -------------------------------------------------------------------------


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
            _text(self.user or b""), _text(password), None, self.address
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
        answer = _text(answers[0])
        code = None
        if conversation.password is None:
            conversation.password = answer
        else:
            code = answer
        credentials = PasswordCredentials(
            _text(self.user or b""), conversation.password, code, self.address
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


class ManholeTransport(transport.SSHServerTransport):
    """One SSH connection to the manhole, in its factory's ``connections`` while open."""

    door = "manhole"
    factory: ManholeFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.connections.add(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.factory.connections.discard(self)
        super().connectionLost(reason)


class ManholeFactory(ConchFactory):
    """The SSH server of the manhole, with its own host key and services."""

    protocol = ManholeTransport
    door = "manhole"

    def __init__(self, portal: CountingPortal, host_key: keys.Key, clock: IReactorTime) -> None:
        super().__init__(portal)
        self.portal: CountingPortal = portal
        self.clock = clock
        self.connections: set[ManholeTransport] = set()
        self.host_key = host_key
        # ConchFactory keeps these as class attributes shared by every instance
        # (and types them wrongly: the values are Key objects).
        self.publicKeys = {host_key.sshType(): host_key.public()}  # type: ignore[dict-item]
        self.privateKeys = {host_key.sshType(): host_key}  # type: ignore[dict-item]
        self.services = {
            b"ssh-userauth": AdminUserAuth,
            b"ssh-connection": connection.SSHConnection,
        }


def build_factory(server: Server, clock: IReactorTime) -> ManholeFactory:
    """The manhole's SSH factory for *server*, without listening anywhere."""
    data_dir = server.settings.data_dir
    host_key = ensure_host_key(data_dir)
    meter = RateMeter(clock, lambda: (server.chat.messages_stored, server.chat.messages_delivered))
    server.extras["manhole_meter"] = meter
    portal = CountingPortal(
        AdminRealm(server, clock, meter),
        [
            AdminPasswordChecker.for_server(server, clock),
            AdminKeyChecker(AuthorizedKeys(data_dir / AUTHORIZED_KEYS_FILE)),
        ],
        door="manhole",
    )
    return ManholeFactory(portal, host_key, clock)


def _is_loopback(description: str) -> bool:
    """Whether an endpoint string listens on loopback only (or a UNIX socket)."""
    parts = [p.replace("\\", "") for p in re.split(r"(?<!\\):", description)]
    if parts[0] not in ("tcp", "tcp6"):
        return parts[0] == "unix"
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep and key == "interface":
            try:
                return ipaddress.ip_address(value).is_loopback
            except ValueError:
                return value == "localhost"
    return False


def attach_manhole(server: Server, reactor: Any) -> None:
    """Attach the ``--manhole`` listeners to ``server.top`` (none: no manhole)."""
    if not server.settings.manhole:
        return
    factory = build_factory(server, reactor)
    server.extras["manhole"] = factory
    meter = server.extras["manhole_meter"]
    sampler = internet.TimerService(SAMPLE_INTERVAL, meter.sample)
    sampler.clock = reactor
    sampler.setServiceParent(server.top)
    log.info("manhole host key: {fingerprint}", fingerprint=fingerprint(factory.host_key))
    for description in server.settings.manhole:
        if not _is_loopback(description):
            log.warn(
                "the manhole listens beyond loopback ({description}): "
                "anyone who can reach it may try admin passwords",
                description=description,
            )
        endpoint = partial(endpoints.serverFromString, reactor, description)
        server.listeners.add("manhole", description, endpoint, factory)


__all__ = [
    "AUTHORIZED_KEYS_FILE",
    "HOST_KEY_FILE",
    "AdminKeyChecker",
    "AdminManhole",
    "AdminPasswordChecker",
    "AdminRealm",
    "ManholeFactory",
    "attach_manhole",
    "build_factory",
    "ensure_host_key",
    "fingerprint",
]
