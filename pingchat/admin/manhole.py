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
  Conch's server lacks and :mod:`pingchat.admin.sshauth` adds. Public keys
  may be listed in ``manhole_authorized_keys`` in the data dir, one
  ``<account> <key type> <base64> [comment]`` per line.
* The prompt waits for Deferreds (database helpers) and prints their result
  (:mod:`pingchat.admin.prompt`), and the namespace is
  :mod:`pingchat.admin.namespace`.
* Logins, refusals and logouts are written to the audit log.
"""

from __future__ import annotations

import ipaddress
import re
import stat
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application import internet
from twisted.conch import error as conch_error
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.manhole_ssh import ConchFactory, TerminalSession, TerminalUser
from twisted.conch.ssh import connection, keys, transport
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import components
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat.admin.namespace import AdminTools, RateMeter, banner
from pingchat.admin.prompt import AdminManhole
from pingchat.admin.sshauth import (
    AdminKeyChecker,
    AdminPasswordChecker,
    AdminUserAuth,
    AuthorizedKeys,
    as_text,
)
from pingchat.auth.portal import CountingPortal
from pingchat.model import Account
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
        name = as_text(avatarId)
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


# -- the SSH server -------------------------------------------------------------------------


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
    "AdminSession",
    "AdminUserAuth",
    "AuthorizedKeys",
    "ManholeFactory",
    "attach_manhole",
    "build_factory",
    "ensure_host_key",
    "fingerprint",
]
