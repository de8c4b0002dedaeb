"""Starting the server: the data dir's lock, and opening every listener or none."""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from pingchat.config import Settings
from pingchat.startup import (
    LOCK_FILE,
    DataDirLock,
    ListenerService,
    Opened,
    StartupFailed,
    exposure_line,
)
from pingchat.tap import build
from tests.helpers import temp_dir


def busy_port(case: SynchronousTestCase) -> int:
    """A loopback port that something else is listening on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    case.addCleanup(s.close)
    return int(s.getsockname()[1])


@implementer(IListeningPort)
class FakePort:
    def __init__(self, host: Any) -> None:
        self.host = host
        self.stopped = False

    def startListening(self) -> None:
        pass

    def stopListening(self) -> Deferred[None]:
        self.stopped = True
        return succeed(None)

    def getHost(self) -> Any:
        return self.host


@implementer(IStreamServerEndpoint)
class FakeEndpoint:
    """Listens at once, fails at once, or answers when told (``later``)."""

    def __init__(self, port: Any = None, error: Exception | None = None, later: bool = False):
        self.port = port or FakePort(IPv4Address("TCP", "127.0.0.1", 1))
        self.error = error
        self.later: Deferred[Any] | None = Deferred() if later else None

    def listen(self, factory: Any) -> Deferred[Any]:
        if self.later is not None:
            return self.later
        if self.error is not None:
            raise self.error
        return succeed(self.port)


def in_use(port: int) -> CannotListenError:
    return CannotListenError("", port, OSError(errno.EADDRINUSE, "Address already in use"))


class DataDirLockTests(SynchronousTestCase):
    def test_a_second_server_is_refused_with_the_holders_pid(self) -> None:
        data_dir = temp_dir(self)
        first = DataDirLock(data_dir)
        first.acquire()
        self.addCleanup(first.release)
        with self.assertRaises(StartupFailed) as caught:
            DataDirLock(data_dir).acquire()
        message = caught.exception.message
        self.assertIn(f"data dir {data_dir} is in use by another pingchat server", message)
        self.assertIn(f"(pid {os.getpid()})", message)
        self.assertEqual(len(message.splitlines()), 1)
        self.assertEqual(caught.exception.code, f"pingchat: {message}")

    def test_the_lock_file_is_private_and_released_with_the_server(self) -> None:
        data_dir = temp_dir(self)
        lock = DataDirLock(data_dir)
        lock.acquire()
        self.assertEqual(stat.S_IMODE((data_dir / LOCK_FILE).stat().st_mode), 0o600)
        self.assertEqual((data_dir / LOCK_FILE).read_text(), f"{os.getpid()}\n")
        lock.release()
        again = DataDirLock(data_dir)
        again.acquire()
        self.assertTrue(again.held)
        again.release()


class ListenerServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactor()
        self.released: list[bool] = []
        self.ready: list[list[Opened]] = []
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.service = ListenerService(
            self.reactor, lambda: self.released.append(True), self.ready.append
        )

    def add(self, option: str, endpoint: FakeEndpoint, description: str = "") -> None:
        self.service.add(
            option, description or f"tcp:{option}", lambda: endpoint, Factory.forProtocol(Protocol)
        )

    def test_ready_once_every_listener_is_open_and_the_rest_has_started(self) -> None:
        ports = [FakeEndpoint(), FakeEndpoint()]
        self.add("chat", ports[0])
        self.add("irc", ports[1])
        self.service.privilegedStartService()
        self.assertEqual(self.ready, [])
        self.service.startService()
        [opened] = self.ready
        self.assertEqual([o.listener.option for o in opened], ["chat", "irc"])
        self.successResultOf(self.service.stopService())
        self.assertTrue(all(e.port.stopped for e in ports))
        self.assertEqual(self.released, [])

    def test_a_listener_that_cannot_open_ends_the_start_and_releases_everything(self) -> None:
        first = FakeEndpoint()
        self.add("irc", first)
        self.add("chat", FakeEndpoint(error=in_use(7465)), "ssl:7465")
        never = FakeEndpoint()
        self.add("manhole", never)
        with self.assertRaises(StartupFailed) as caught:
            self.service.privilegedStartService()
        line = (
            "--chat ssl:7465: cannot listen on port 7465: address already in use;"
            " choose another port (--chat ssl:PORT) or disable this door (--chat none)"
        )
        self.assertEqual(caught.exception.message, line)
        self.assertEqual(caught.exception.code, 1)  # logged already: Python prints nothing
        self.assertIn(line, [e.get("line") for e in self.logged])
        self.assertTrue(first.port.stopped)
        self.assertEqual(self.released, [True])
        self.assertEqual(self.ready, [])

    def test_every_option_is_named_with_what_to_do(self) -> None:
        for option in ("chat", "irc", "ircs", "manhole", "web", "metrics"):
            service = ListenerService(self.reactor, lambda: None, self.ready.append)
            service.add(
                option,
                "tcp:80",
                lambda: FakeEndpoint(error=in_use(80)),
                Factory.forProtocol(Protocol),
            )
            with self.assertRaises(StartupFailed) as caught:
                service.startService()
            self.assertTrue(caught.exception.message.startswith(f"--{option} tcp:80: "))
            self.assertIn(f"(--{option} tcp:PORT)", caught.exception.message)
            self.assertIn(f"(--{option} none)", caught.exception.message)

    def test_a_proxy_listener_keeps_its_prefix_in_what_to_do(self) -> None:
        self.add("chat", FakeEndpoint(error=in_use(7464)), "haproxy:ssl:7464")
        with self.assertRaises(StartupFailed) as caught:
            self.service.privilegedStartService()
        self.assertIn("(--chat haproxy:ssl:PORT)", caught.exception.message)

    def test_an_endpoint_string_that_does_not_parse_ends_the_start_the_same_way(self) -> None:
        def bad() -> Any:
            raise ValueError("invalid literal for int() with base 10: 'x'")

        self.service.add("ircs", "ssl:x", bad, Factory.forProtocol(Protocol))
        with self.assertRaises(StartupFailed) as caught:
            self.service.privilegedStartService()
        self.assertIn("--ircs ssl:x: cannot listen: invalid literal", caught.exception.message)
        self.assertEqual(self.released, [True])

    def test_a_listener_that_fails_later_stops_the_server(self) -> None:
        self.reactor.running = True  # type: ignore[attr-defined]
        first, slow = FakeEndpoint(), FakeEndpoint(later=True)
        self.add("irc", first)
        self.add("chat", slow)
        self.service.privilegedStartService()
        self.service.startService()
        assert slow.later is not None
        slow.later.errback(in_use(1234))
        self.assertIn("cannot listen on port 1234", self.service.failed or "")
        self.assertTrue(first.port.stopped)
        self.assertEqual(self.released, [True])
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.ready, [])


class ExposureTests(SynchronousTestCase):
    """Addresses as a listening port reports them; nothing is bound here."""

    everywhere = "0.0.0.0"  # noqa: S104
    def opened(self, host: Any, registers: bool = True, description: str = "ssl:7464") -> Opened:
        service = ListenerService(MemoryReactor(), lambda: None, lambda _: None)
        service.add("chat", description, FakeEndpoint, Factory(), registers=registers)
        return Opened(service.listeners[0], FakePort(host))

    def test_open_registration_on_all_interfaces_is_said_in_one_line(self) -> None:
        opened = [
            self.opened(IPv4Address("TCP", self.everywhere, 7464)),
            self.opened(IPv6Address("TCP", "::", 6697)),
            self.opened(IPv4Address("TCP", "127.0.0.1", 6667)),
            self.opened(IPv4Address("TCP", self.everywhere, 2222), registers=False),
        ]
        self.assertEqual(
            exposure_line(opened, "open"),
            "listening on all interfaces; anyone who can reach port 6697 or 7464 can register:"
            " --registration closed (or invite) to stop that",
        )

    def test_a_proxy_listener_on_all_interfaces_is_not_exposed(self) -> None:
        """Only a --trusted-proxy balancer can use a haproxy: listener."""
        behind = [
            self.opened(IPv4Address("TCP", self.everywhere, 7464), description="haproxy:ssl:7464"),
            self.opened(IPv6Address("TCP", "::", 6667), description="HAProxy:tcp:6667"),
        ]
        self.assertIsNone(exposure_line(behind, "open"))
        direct = self.opened(IPv4Address("TCP", self.everywhere, 6697), description="ssl:6697")
        self.assertEqual(
            exposure_line([*behind, direct], "open"),
            "listening on all interfaces; anyone who can reach port 6697 can register:"
            " --registration closed (or invite) to stop that",
        )

    def test_nothing_to_say_when_closed_or_on_loopback(self) -> None:
        everywhere = [self.opened(IPv4Address("TCP", self.everywhere, 7464))]
        self.assertIsNone(exposure_line(everywhere, "closed"))
        self.assertIsNone(exposure_line(everywhere, "invite"))
        loopback = [self.opened(IPv6Address("TCP", "::1", 7464))]
        self.assertIsNone(exposure_line(loopback, "open"))


class RealListenerTests(TestCase):
    """A whole server on the real reactor, with one listener's port taken."""

    def settings(self, data_dir: Path, **listeners: tuple[str, ...]) -> Settings:
        chosen: dict[str, tuple[str, ...]] = {
            "chat": ("ssl:0:interface=127.0.0.1",),
            "irc": ("tcp:0:interface=127.0.0.1",),
            "ircs": ("ssl:0:interface=127.0.0.1",),
            "manhole": ("tcp:0:interface=127.0.0.1",),
            "web": (),
            "metrics": ("tcp:0:interface=127.0.0.1",),
        }
        chosen.update(listeners)
        return Settings(
            data_dir=data_dir, server_name="localhost", sqlite_synchronous="NORMAL", **chosen
        )

    @inlineCallbacks
    def test_each_listener_option_that_cannot_open_leaves_nothing_open(self) -> Any:
        started: list[int] = []

        def watch(event: dict[str, Any]) -> None:
            match = re.search(r" starting on (\d+)$", formatEvent(event))
            if match:
                started.append(int(match.group(1)))

        globalLogPublisher.addObserver(watch)
        self.addCleanup(globalLogPublisher.removeObserver, watch)
        options = ["chat", "irc", "ircs", "manhole", "metrics"]
        for option in options:
            data_dir = temp_dir(self)
            port = busy_port(self)
            scheme = "ssl" if option in ("chat", "ircs") else "tcp"
            description = f"{scheme}:{port}:interface=127.0.0.1"
            lock = DataDirLock(data_dir)
            lock.acquire()
            server = build(
                self.settings(data_dir, **{option: (description,)}), reactor, lock=lock
            )
            del started[:]
            with self.assertRaises(StartupFailed) as caught:
                server.top.privilegedStartService()
            self.assertEqual(
                caught.exception.message,
                f"--{option} {description}: cannot listen on port {port}: address already in"
                f" use; choose another port (--{option} {scheme}:PORT) or disable this door"
                f" (--{option} none)",
            )
            # The doors opened before it are closed again, the database is
            # closed (its writer never started) and the lock is free.
            self.assertEqual(len(started), options.index(option))
            yield self.closed(started)
            self.assertTrue(server.db._stopped and server.db._stopped.called)
            self.assertIsNone(server.db._thread)
            self.assertFalse(lock.held)
            again = DataDirLock(data_dir)
            again.acquire()
            again.release()

    def closed(self, ports: list[int]) -> Deferred[None]:
        """Fire once nothing listens on *ports* (closing a port takes a reactor turn)."""
        tries = [200]

        def check() -> Any:
            still = [p for p in ports if self.accepts(p)]
            if not still:
                return None
            tries[0] -= 1
            if tries[0] <= 0:
                raise AssertionError(f"still listening on {still}")
            return task.deferLater(reactor, 0.01, check)

        return check()  # type: ignore[no-any-return]

    @staticmethod
    def accepts(port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
