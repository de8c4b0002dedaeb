"""Starting the server: the data dir and the lock on it, and the listeners.

A server either starts whole or not at all. :class:`DataDirLock` keeps a
second server off a data dir that one is using; :class:`ListenerService`
opens every door's listeners in one place, and if one cannot open it closes
what it opened, releases the database and the lock, and ends the start with
one line that says what to do (:class:`StartupFailed`).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from pingchat.proxy import behind_proxy

LOCK_FILE = "server.lock"

log = Logger()


class StartupFailed(SystemExit, Exception):  # noqa: N818 - it is an exit, not an error
    """The server cannot start; the message is the one line the user sees.

    An ``Exception``, so that twistd removes its pid file and a daemon's
    parent reports the message; a ``SystemExit``, so that the process ends
    with status 1 and no traceback. Unless *logged*, Python prints the
    message to standard error on the way out (for failures before twistd's
    logging starts); a logged one has been written to the log already.
    """

    def __init__(self, message: str, *, logged: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = 1 if logged else f"pingchat: {message}"


def create_data_dir(data_dir: Path) -> bool:
    """Create the data dir (mode 0700) if there is none; whether it was created."""
    if data_dir.is_dir():
        return False
    try:
        data_dir.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return False
    except OSError as e:
        raise StartupFailed(
            f"cannot create the data dir {data_dir.absolute()}: {e.strerror}; choose another"
            " with --data-dir (or PINGCHAT_DATA_DIR)"
        ) from e
    return True


class DataDirLock:
    """An exclusive ``flock`` on ``DATA_DIR/server.lock`` for the server's life.

    The kernel releases it when the process ends, however it ends, so a crash
    leaves nothing to clean up. The file holds the pid of the server that
    holds the lock, for the message a second server gives. The ``pingchat``
    command does not take it: it works beside a running server (WAL).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`StartupFailed` naming the holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StartupFailed(
                f"cannot open {self.path.absolute()}: {e.strerror}; is --data-dir"
                " (or PINGCHAT_DATA_DIR) the right directory, writable by this user?"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StartupFailed(f"cannot lock {self.path.absolute()}: {e.strerror}") from e
            by = f" (pid {holder})" if holder else ""
            raise StartupFailed(
                f"data dir {self.data_dir.absolute()} is in use by another pingchat server{by}:"
                " stop that one, or give this one its own --data-dir"
            ) from None
        self._fd = fd
        self.note_pid()

    def note_pid(self) -> None:
        """Write this process's pid (again: twistd forks when it daemonizes)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


# -- the listeners -----------------------------------------------------------------------


@attrs.frozen
class Listener:
    """One listener of one door: ``--chat ssl:7464`` and what serves it.

    *endpoint* makes the endpoint (parsing the string, loading any TLS files)
    when the listener opens, so a bad string ends the start like a busy port.
    *registers* says whether people can create accounts through this door.
    """

    option: str
    description: str
    endpoint: Callable[[], IStreamServerEndpoint]
    factory: IProtocolFactory
    registers: bool = False


@attrs.frozen
class Opened:
    listener: Listener
    port: IListeningPort


class _CannotOpen(Exception):
    def __init__(self, listener: Listener, reason: Failure) -> None:
        super().__init__(listener.description)
        self.listener = listener
        self.reason = reason


def cannot_listen_line(listener: Listener, reason: Failure) -> str:
    """The one line that says which listener could not open, why, and what to do."""
    option = f"--{listener.option}"
    error = reason.value
    proxied, under = behind_proxy(listener.description)
    scheme = under.split(":", 1)[0]
    if isinstance(error, CannotListenError):
        cause = error.socketError
        why = getattr(cause, "strerror", None) or str(cause)
        where = f"port {error.port}" if error.port else "its address"
        what = f"cannot listen on {where}: {why[:1].lower()}{why[1:]}"
    else:
        what = f"cannot listen: {error}"
    if scheme in ("tcp", "tcp6", "ssl"):
        prefix = "haproxy:" if proxied else ""
        another = f"choose another port ({option} {prefix}{scheme}:PORT)"
    else:
        another = f"choose another endpoint for {option}"
    return (
        f"{option} {listener.description}: {what}; {another}"
        f" or disable this door ({option} none)"
    )


class ListenerService(service.Service):
    """Opens every listener of the server, all of them or none.

    Listeners open in ``privilegedStartService`` (before twistd sheds root,
    so ports below 1024 work), one after the other. If one fails, those
    already open are closed, *release* frees what the server holds (the
    database, the data dir's lock) and :class:`StartupFailed` ends the start
    with one line. Once all are open and the server's other services have
    started, *ready* is called with them.

    Endpoints that answer later (none of Twisted's own do) are waited for;
    if one of those fails, the same line is logged, the server stops and
    :attr:`failed` says why (``makeService`` turns that into exit status 1).
    """

    name = "listeners"

    def __init__(
        self,
        reactor: Any,
        release: Callable[[], object],
        ready: Callable[[list[Opened]], None],
    ) -> None:
        self.reactor = reactor
        self.release = release
        self.ready = ready
        self.listeners: list[Listener] = []
        self.opened: list[Opened] = []
        self.failed: str | None = None
        self._listening: Deferred[None] | None = None

    def add(
        self,
        option: str,
        description: str,
        endpoint: Callable[[], IStreamServerEndpoint],
        factory: IProtocolFactory,
        *,
        registers: bool = False,
    ) -> None:
        """Listen on *description* (given as ``--option``) with *factory* at start."""
        self.listeners.append(Listener(option, description, endpoint, factory, registers))

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self._listening is None:
            self._listen()
        assert self._listening is not None
        self._listening.addCallback(lambda _: self.ready(list(self.opened)))

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        return self._close()

    def _listen(self) -> None:
        failures: list[Failure] = []
        settled = late = False
        listening: Deferred[None] = Deferred()
        self._listening = listening

        def done(_: object) -> None:
            nonlocal settled
            settled = True
            if not failures:
                listening.callback(None)
            elif late:
                self.failed = self._give_up(failures[0])
                if self.reactor.running:
                    self.reactor.stop()

        self._open_all().addErrback(failures.append).addCallback(done)
        if not settled:
            late = True  # an endpoint answers later: done() handles the outcome
        elif failures:
            raise StartupFailed(self._give_up(failures[0]), logged=True)

    def _open_all(self) -> Deferred[None]:
        d: Deferred[None] = succeed(None)
        for listener in self.listeners:
            d.addCallback(self._open, listener)
        return d

    def _open(self, _: object, listener: Listener) -> Deferred[None]:
        def opened(port: IListeningPort) -> None:
            self.opened.append(Opened(listener, port))

        def failed(reason: Failure) -> None:
            raise _CannotOpen(listener, reason)

        d: Deferred[IListeningPort] = maybeDeferred(
            lambda: listener.endpoint().listen(listener.factory)
        )
        return d.addCallbacks(opened, failed)

    def _give_up(self, failure: Failure) -> str:
        """Close what opened, release the rest; the line that says why."""
        if isinstance(failure.value, _CannotOpen):
            line = cannot_listen_line(failure.value.listener, failure.value.reason)
        else:
            line = f"cannot start the listeners: {failure.getErrorMessage()}"
        log.critical("{line}", line=line)
        self._close()
        try:
            self.release()
        except Exception:
            log.failure("while releasing the data dir after a failed start")
        return line

    def _close(self) -> Deferred[Any]:
        opened, self.opened = self.opened, []
        return gatherResults([maybeDeferred(o.port.stopListening) for o in opened])


def on_all_interfaces(port: IListeningPort) -> bool:
    """Whether *port* listens on every interface (0.0.0.0 or ::)."""
    host = getattr(port.getHost(), "host", None)
    if not isinstance(host, str):
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified
    except ValueError:
        return host == ""


def exposure_line(opened: list[Opened], registration: str) -> str | None:
    """The warning for a server anyone can reach and register on, or None.

    Said at every start where a door that takes registrations listens on
    all interfaces while registration is open: that is the default, and a
    fine one for a public server, but nobody should run it by surprise. A
    PROXY listener (``haproxy:``) does not count: only the ``--trusted-proxy``
    balancer can use it, and what the balancer exposes is its own setting.
    """
    if registration != "open":
        return None
    ports = sorted(
        {
            str(getattr(o.port.getHost(), "port", "?"))
            for o in opened
            if o.listener.registers
            and not behind_proxy(o.listener.description)[0]
            and on_all_interfaces(o.port)
        }
    )
    if not ports:
        return None
    return (
        f"listening on all interfaces; anyone who can reach port {' or '.join(ports)} can"
        " register: --registration closed (or invite) to stop that"
    )
