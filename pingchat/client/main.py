"""``pingchat client HOST[:PORT]``: arguments, and running the client on the reactor."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pingchat.client.configdir import ConfigDir, ServerAddress, default_config_dir
from pingchat.client.trust import (
    INSECURE_WARNING,
    CertificateAuthority,
    Insecure,
    KnownHosts,
    TrustOnFirstUse,
    TrustPolicy,
)


class ClientError(Exception):
    """A one-line error before the client starts."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Chat on a pingchat server over TLS. The first time, the client shows the"
        " server's certificate fingerprint and asks whether to trust it; then it asks"
        " you to log in or register. Type /help once connected."
    )
    parser.add_argument(
        "--plain", action="store_true",
        help="line mode for scripts and screen readers: one event per line on stdout,"
             " commands (and answers to '? ' questions) from stdin",
    )
    parser.add_argument(
        "--config-dir", type=Path, metavar="DIR",
        help="the client's files: trusted certificates, saved session, encryption keys"
             " (default: $XDG_CONFIG_HOME/pingchat or ~/.config/pingchat)",
    )
    parser.add_argument("--user", metavar="NAME",
                        help="log in as NAME (skips the login/register question)")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument(
        "--ca", type=Path, metavar="FILE",
        help="the server has a certificate from a CA: verify it against the CA"
             " certificate(s) in this PEM file, with host name checking",
    )
    trust.add_argument(
        "--fingerprint", metavar="SHA256",
        help="trust the server's certificate if it has this SHA-256 fingerprint (from the"
             " administrator), without asking; for scripts and certificate changes",
    )
    trust.add_argument("--insecure", action="store_true",
                       help="do not check the server's certificate at all (for tests only)")


def _trust(args: argparse.Namespace, config: ConfigDir) -> TrustPolicy:
    if getattr(args, "insecure", False):
        return Insecure()
    ca = getattr(args, "ca", None)
    if ca is not None:
        try:
            return CertificateAuthority(Path(ca))
        except OSError as e:
            raise ClientError(f"cannot read {ca}: {e.strerror or e}") from None
        except ValueError as e:
            raise ClientError(str(e)) from None
    try:
        return TrustOnFirstUse(KnownHosts(config.known_hosts),
                               getattr(args, "fingerprint", None))
    except ValueError as e:
        raise ClientError(str(e)) from None


def _log_to(path: Path) -> None:
    """Twisted's log (connection errors, tracebacks) goes to a file, never to the screen."""
    from twisted.logger import globalLogBeginner, textFileLogObserver

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        out = os.fdopen(fd, "a", encoding="utf-8")
    except OSError:
        return
    globalLogBeginner.beginLoggingTo([textFileLogObserver(out)], redirectStandardIO=False)


def install_reactor() -> Any:
    """Twisted's asyncio reactor, so that prompt_toolkit shares its event loop."""
    from twisted.internet import asyncioreactor
    from twisted.internet.error import ReactorAlreadyInstalledError

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        asyncioreactor.install(loop)
    except ReactorAlreadyInstalledError:
        loop.close()
    from twisted.internet import reactor

    return reactor


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ClientError as e:
        print(f"pingchat: error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    try:
        server = ServerAddress.parse(args.server)
    except ValueError as e:
        raise ClientError(f"bad server address: {e}") from None
    config = ConfigDir(Path(args.config_dir) if getattr(args, "config_dir", None)
                       else default_config_dir())
    try:
        config.ensure()
    except OSError as e:
        raise ClientError(f"cannot create {config.path}: {e.strerror or e}") from None
    trust = _trust(args, config)
    plain = bool(getattr(args, "plain", False))
    if not plain and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ClientError("the full-screen client needs a terminal; use --plain with pipes"
                          " and scripts")
    if isinstance(trust, Insecure):
        print(INSECURE_WARNING, file=sys.stderr)

    _log_to(config.path / "client.log")
    reactor = install_reactor()
    from pingchat.client.app import ChatClient

    client = ChatClient(reactor, server, config, trust, user_hint=getattr(args, "user", None))
    if isinstance(trust, Insecure):
        client.screen.warning(INSECURE_WARNING)
    if plain:
        _run_plain(reactor, client)
    else:
        _run_fullscreen(reactor, client)
    if client.fatal:
        print(f"pingchat: {client.fatal}", file=sys.stderr)
    return client.exit_code


def _run_plain(reactor: Any, client: Any) -> None:
    from pingchat.client.plain import PlainFrontend

    frontend = PlainFrontend(client, reactor)

    def start() -> None:
        frontend.attach()
        client.start(frontend)

    frontend.done.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.callWhenRunning(start)
    reactor.run()


def _run_fullscreen(reactor: Any, client: Any) -> None:
    from pingchat.client.ui import FullScreenUI

    ui = FullScreenUI(client)
    crashed: list[BaseException] = []

    def start() -> None:
        task = asyncio.ensure_future(ui.app.run_async())

        def finished(task: asyncio.Future[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                crashed.append(task.exception())  # type: ignore[arg-type]
                client.exit_code = 1
            client.quit()
            # Let the connection close cleanly (briefly) before the loop stops.
            closed = client.connector.closed()
            timeout = reactor.callLater(2, closed.cancel)
            closed.addBoth(lambda _: timeout.active() and timeout.cancel())
            closed.addBoth(lambda _: reactor.stop())

        task.add_done_callback(finished)
        loop = asyncio.get_event_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, client.quit)
        client.start(ui)

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    if crashed:
        import traceback

        traceback.print_exception(crashed[0])
