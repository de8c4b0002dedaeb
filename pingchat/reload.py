"""Reloading a running server: its TLS certificates and the config file's
reloadable options, on ``SIGHUP`` or from the manhole's ``reload()``.

Nothing is closed. Every TLS listener takes its certificate from a
:class:`~pingchat.tls.ServerCertificate`; a reload reads the files again
and, if they hold a usable certificate, new connections get it while the
existing ones keep theirs. A certificate that is unreadable, not the key's,
expired, not yet valid or without a subjectAltName is refused with a log
line, and the old one stays.

The options in :data:`RELOADABLE` take effect at once (the limits of every
connection, new and old); every other option (listeners, the data dir, the
certificate's paths, the server name, ...) is read only at start-up, and a
reload that finds one changed says that it needs a restart.
"""

from __future__ import annotations

import datetime
import signal
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage

from pingchat.auth.checkers import TokenChecker
from pingchat.auth.throttle import ADDRESS_FREE
from pingchat.config import Settings
from pingchat.server import Server
from pingchat.tls import CertificateRefused, Certificates

log = Logger()

RELOADABLE = (
    "rate",
    "rate_burst",
    "max_backlog",
    "guests",
    "registration",
    "min_password_length",
    "login_free_attempts",
    "login_backoff_max",
    "registrations_per_hour",
    "token_ttl_days",
)


class Reloader:
    """Reloads *server*'s certificates and, with *reread*, its reloadable options.

    *reread* reads the configuration again as at start-up (the config file,
    with the command line winning) and returns the new settings, or raises
    ``usage.UsageError`` (or ``ValueError``) with a one-line reason.
    """

    def __init__(
        self,
        server: Server,
        certificates: Certificates | None,
        reread: Callable[[], Settings] | None = None,
        config: str | None = None,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.server = server
        self.certificates = certificates
        self.reread = reread
        self.config = config
        self.now = now

    def reload(self) -> list[str]:
        """Reload what can be; the lines logged, one per certificate and about the options."""
        lines: list[str] = []
        for certificate in self.certificates.all() if self.certificates is not None else ():
            lines.append(self._certificate(certificate))
        lines.extend(self._options())
        return lines

    def _say(self, level: str, text: str, **fields: Any) -> str:
        getattr(log, level)(text, **fields)
        return text.format(**fields)

    def _certificate(self, certificate: Any) -> str:
        old = certificate.current
        try:
            new = certificate.reload(self.now())
        except CertificateRefused as e:
            return self._say(
                "error",
                "reload: TLS certificate {path} refused: {reason}; still serving {fingerprint}",
                path=str(certificate.cert_path),
                reason=str(e),
                fingerprint=old.fingerprint,
            )
        return self._say(
            "info",
            "reload: TLS certificate {path}{same}: SHA-256 fingerprint {fingerprint},"
            " valid until {not_after}",
            path=str(certificate.cert_path),
            same=" (unchanged)" if new.fingerprint == old.fingerprint else "",
            fingerprint=new.fingerprint,
            not_after=new.not_after.strftime("%Y-%m-%d %H:%M UTC"),
        )

    def _options(self) -> list[str]:
        if self.reread is None:
            return []
        try:
            new = self.reread()
        except (ValueError, usage.UsageError) as e:
            return [
                self._say(
                    "error",
                    "reload: {config} not read again ({error}); the options stay as they were",
                    config=self.config,
                    error=str(e),
                )
            ]
        old = self.server.settings
        changed = [
            f.name for f in attrs.fields(Settings) if getattr(old, f.name) != getattr(new, f.name)
        ]
        now = [name for name in changed if name in RELOADABLE]
        later = [name for name in changed if name not in RELOADABLE]
        lines = []
        if now:
            apply_options(self.server, new)
            lines.append(
                self._say(
                    "info",
                    "reload: options changed: {changes}",
                    changes=", ".join(
                        f"{name} {getattr(old, name)!r} -> {getattr(new, name)!r}" for name in now
                    ),
                )
            )
        else:
            lines.append(
                self._say(
                    "info", "reload: no reloadable option changed in {config}", config=self.config
                )
            )
        if later:
            lines.append(
                self._say(
                    "warn",
                    "reload: {config} changes {options}, which take effect only at a restart",
                    config=self.config,
                    options=", ".join(later),
                )
            )
        return lines


def apply_options(server: Server, new: Settings) -> None:
    """Put the reloadable options of *new* into effect in every part that uses them."""
    factories = [server.native, server.extras.get("irc")]
    for factory in factories:
        if factory is None:
            continue
        factory.rate, factory.burst = new.rate, new.rate_burst
        factory.max_backlog = new.max_backlog
        for connection in list(factory.connections):
            bucket = getattr(connection, "bucket", None)
            if bucket is not None:
                bucket.rate, bucket.burst = new.rate, new.rate_burst
                bucket.tokens = min(bucket.tokens, new.rate_burst)
    accounts = server.accounts
    old = server.settings
    irc = server.extras.get("irc")
    if irc is not None:
        from pingchat.irc.factory import default_motd

        if irc.motd == default_motd(irc.server_name, old.guests, old.registration):
            irc.motd = default_motd(irc.server_name, new.guests, new.registration)
        irc.guests = new.guests
    accounts.registration = new.registration
    accounts.min_password_length = new.min_password_length
    ttl_ms = int(new.token_ttl_days * 24 * 3600 * 1000)
    accounts.token_ttl_ms = ttl_ms
    for checker in server.portal.checkers.values():
        if isinstance(checker, TokenChecker):
            checker.ttl_ms = ttl_ms
    throttle = accounts.login_throttle
    if throttle is not None:
        throttle.free = new.login_free_attempts
        throttle.address_free = max(ADDRESS_FREE, new.login_free_attempts)
        throttle.cap = new.login_backoff_max
    limiter = accounts.register_limiter
    if limiter is not None:
        limiter.set_rate(new.registrations_per_hour / 3600.0, max(1.0, new.registrations_per_hour))
    server.settings = attrs.evolve(old, **{name: getattr(new, name) for name in RELOADABLE})


class ReloadOnSignal(service.Service):
    """Calls *reload* on the reactor thread when the process gets ``SIGHUP``.

    The handler only asks the reactor to run the reload (``callFromThread``,
    which Twisted's own SIGINT handler uses too: safe from a signal
    handler, and it wakes the reactor); the files are read in the reactor's
    next turn. twistd sets no SIGHUP handler of its own; whatever was there
    before is put back when the service stops.
    """

    name = "reload-on-sighup"

    def __init__(self, reactor: Any, reload: Callable[[], object]) -> None:
        self.reactor = reactor
        self.reload = reload
        self._previous: Any = None
        self._installed = False

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._received)
        self._installed = True

    def stopService(self) -> None:
        super().stopService()
        if self._installed:
            signal.signal(
                signal.SIGHUP,
                self._previous if self._previous is not None else signal.SIG_DFL,
            )
            self._installed = False

    def _received(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self._run)

    def _run(self) -> None:
        log.info("SIGHUP: reloading the TLS certificates and the reloadable options")
        try:
            self.reload()
        except Exception:
            log.failure("reload failed; the server goes on as it was")
