"""pingchat's assumptions about Twisted's internals hold; where one does not, Twisted's path runs.

``AssumptionTests`` has one test per assumption: when one fails after a
Twisted (or pyOpenSSL, cryptography) upgrade, its message names the
assumption and the versions, and ``pyproject.toml``'s bound on Twisted has
to wait until the fence or the shortcut is fixed. ``ProbeTests`` shows that
each probe notices when what it checks changes; ``FallbackTests`` that the
server then runs on Twisted's own paths, with one warning line.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet import abstract, tcp
from twisted.internet.base import ReactorBase
from twisted.internet.defer import Deferred
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python import log as legacy_log
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel

from pingchat import runtime, twisted_internals
from pingchat.runtime import ServerPort, TurnFlusher, TurnFlushServer
from pingchat.tls import (
    CompactTLSFactory,
    CompactTLSTransport,
    ensure_certificate,
    server_endpoint,
    server_options,
)
from pingchat.twisted_internals import (
    ASSUMPTIONS,
    SHORTCUTS,
    Assumption,
    Fence,
    ListeningPort,
    TLSFactory,
    TLSTransport,
    fence,
    openssl,
    pending_output_bytes,
    run_probe,
    versions,
)

I = twisted_internals  # noqa: E741 - short for the many assumption names


class AssumptionTests(SynchronousTestCase):
    """One test per assumption; a failure names it and the versions it failed on."""

    def assertHolds(self, assumption: Assumption) -> None:  # noqa: N802 - unittest style
        problem = run_probe(assumption)
        if problem is not None:
            self.fail(
                f"pingchat's assumption {assumption.name!r} about Twisted's internals does"
                f" not hold on {versions()}: {problem}. Its shortcut falls back to"
                " Twisted's path (pingchat/twisted_internals); fix the fence before raising"
                " the bound on Twisted in pyproject.toml."
            )

    def test_epoll_reactor_internals(self) -> None:
        self.assertHolds(I.EPOLL_REACTOR)

    def test_reactor_loop_calls_doIteration(self) -> None:  # noqa: N802
        self.assertHolds(I.REACTOR_LOOP)

    def test_tcp_port_accept_count(self) -> None:
        self.assertHolds(I.PORT_ACCEPT_COUNT)

    def test_tcp_port_transport_class(self) -> None:
        self.assertHolds(I.PORT_TRANSPORT_CLASS)

    def test_fd_write_buffer(self) -> None:
        self.assertHolds(I.FD_WRITE_BUFFER)

    def test_tcp_socket_send(self) -> None:
        self.assertHolds(I.SOCKET_SEND)

    def test_tls_write_batching(self) -> None:
        self.assertHolds(I.TLS_WRITE_BATCHING)

    def test_tls_connection_state(self) -> None:
        self.assertHolds(I.TLS_CONNECTION_STATE)

    def test_tls_write_hook(self) -> None:
        self.assertHolds(I.TLS_WRITE_HOOK)

    def test_tls_receive_loop(self) -> None:
        self.assertHolds(I.TLS_RECEIVE_LOOP)

    def test_pyopenssl_memory_bios(self) -> None:
        self.assertHolds(I.MEMORY_BIOS)

    def test_openssl_cffi_functions(self) -> None:
        self.assertHolds(I.CFFI_FUNCTIONS)

    def test_http_channel_upgrade(self) -> None:
        self.assertHolds(I.HTTP_UPGRADE)

    def test_http_timeout_off_during_request(self) -> None:
        self.assertHolds(I.HTTP_TIMEOUT_OFF)

    def test_http_request_producer(self) -> None:
        self.assertHolds(I.HTTP_REQUEST_PRODUCER)

    def test_every_assumption_has_its_test_and_a_shortcut(self) -> None:
        tested = {name[len("test_") :] for name in dir(self) if name.startswith("test_")}
        for assumption in ASSUMPTIONS:
            self.assertIn(assumption.name.replace("-", "_"), tested)
            self.assertTrue(any(assumption in s.assumptions for s in SHORTCUTS), assumption)
        used = {a for s in SHORTCUTS for a in s.assumptions}
        self.assertEqual(used, set(ASSUMPTIONS))

    def test_pingchat_subclasses_add_no_name_twisted_uses(self) -> None:
        """Names pingchat's subclasses add must not be names Twisted's bases define or use;
        the methods they override must exist in them."""
        overrides: dict[type, tuple[type, set[str]]] = {
            TurnFlushServer: (
                tcp.Server,
                {"__init__", "write", "writeSequence", "loseConnection", "loseWriteConnection"},
            ),
            ListeningPort: (tcp.Port, {"__init__", "numberAccepts", "transport"}),
            ServerPort: (tcp.Port, set()),
            TLSTransport: (BufferingTLSTransport, {"dataReceived", "_write", "factory"}),
            CompactTLSTransport: (BufferingTLSTransport, {"__init__", "connectionLost"}),
            TLSFactory: (TLSMemoryBIOFactory, {"__init__", "protocol"}),
            CompactTLSFactory: (TLSMemoryBIOFactory, {"protocol"}),
        }
        for cls, (base, meant) in overrides.items():
            used: set[str] = set()
            for twisted_class in base.__mro__:
                for name, value in vars(twisted_class).items():
                    used.add(name)
                    code = getattr(getattr(value, "__func__", value), "__code__", None)
                    if code is not None:
                        used.update(code.co_names)
            ours = {
                name
                for name in vars(cls)
                if not (name.startswith("__") and name.endswith("__")) or name == "__init__"
            }
            ours -= {"__annotations__", "__dict__", "__weakref__"}
            for name in meant:
                self.assertIn(name, used, f"{cls.__name__}.{name} overrides nothing")
            clashes = sorted((ours - meant) & used)
            self.assertEqual(
                clashes, [], f"{cls.__name__} clashes with {base.__name__} ({versions()})"
            )


class ProbeTests(SynchronousTestCase):
    """Each probe notices when what it checks is not there any more."""

    def assertBroken(self, assumption: Assumption, *patches: tuple[Any, str, Any]) -> str:  # noqa: N802
        for obj, name, value in patches:
            self.patch(obj, name, value)
        problem = run_probe(assumption)
        self.assertIsNotNone(problem, assumption.name)
        assert problem is not None
        return problem

    def test_epoll_reactor_internals(self) -> None:
        problem = self.assertBroken(
            I.EPOLL_REACTOR, (EPollReactor, "_doReadOrWrite", lambda self, selectable, fd: None)
        )
        self.assertIn("_doReadOrWrite takes", problem)
        self.assertIn("['self', 'selectable', 'fd']", problem)

    def test_reactor_loop_calls_doIteration(self) -> None:  # noqa: N802
        self.assertBroken(I.REACTOR_LOOP, (EPollReactor, "doIteration", ReactorBase.doIteration))

    def test_tcp_port_accept_count(self) -> None:
        self.assertBroken(I.PORT_ACCEPT_COUNT, (tcp.Port, "doRead", lambda self: None))

    def test_tcp_port_transport_class(self) -> None:
        self.assertBroken(I.PORT_TRANSPORT_CLASS, (tcp.Port, "transport", tcp.Connection))

    def test_fd_write_buffer(self) -> None:
        def write(self: Any, data: bytes) -> None:  # a buffer by another name
            self.__dict__.setdefault("_pending", []).append(data)

        self.assertBroken(I.FD_WRITE_BUFFER, (abstract.FileDescriptor, "write", write))

    def test_tcp_socket_send(self) -> None:
        original = tcp.Connection.__init__

        def init(self: Any, skt: Any, protocol: Any, reactor: Any = None) -> None:
            original(self, skt, protocol, reactor)
            self._socket = self.__dict__.pop("socket")

        self.assertBroken(I.SOCKET_SEND, (tcp.Connection, "__init__", init))

    def test_tls_write_batching(self) -> None:
        self.assertBroken(
            I.TLS_WRITE_BATCHING,
            (BufferingTLSTransport, "__init__", TLSMemoryBIOProtocol.__init__),
        )

    def test_tls_connection_state(self) -> None:
        held: list[bytes] = []
        self.assertBroken(
            I.TLS_CONNECTION_STATE,
            (TLSMemoryBIOProtocol, "_bufferedWrite", lambda self, data: held.append(data)),
        )

    def test_tls_write_hook(self) -> None:
        encrypt = TLSMemoryBIOProtocol._write
        self.assertBroken(
            I.TLS_WRITE_HOOK,
            (TLSMemoryBIOProtocol, "write", lambda self, data: encrypt(self, data)),
        )

    def test_tls_receive_loop(self) -> None:
        self.assertBroken(
            I.TLS_RECEIVE_LOOP, (TLSMemoryBIOProtocol, "_flushReceiveBIO", lambda self: None)
        )

    def test_pyopenssl_memory_bios(self) -> None:
        original = SSL.Connection.__init__

        def init(self: Any, context: Any, socket: Any = None) -> None:
            original(self, context, socket)
            self._incoming = self.__dict__.pop("_into_ssl")

        problem = self.assertBroken(I.MEMORY_BIOS, (SSL.Connection, "__init__", init))
        self.assertIn("_into_ssl", problem)

    def test_openssl_cffi_functions(self) -> None:
        problem = self.assertBroken(I.CFFI_FUNCTIONS, (openssl, "lib", LibWithout("SSL_read")))
        self.assertIn("SSL_read", problem)

    def test_http_channel_upgrade(self) -> None:
        problem = self.assertBroken(
            I.HTTP_UPGRADE, (HTTPChannel, "_protocolUpgradeForWebsockets", None)
        )
        self.assertIn("_protocolUpgradeForWebsockets is gone", problem)
        # There, but no longer handing the connection over.
        self.assertBroken(
            I.HTTP_UPGRADE,
            (HTTPChannel, "_protocolUpgradeForWebsockets", lambda self, protocol: None),
        )

    def test_http_timeout_off_during_request(self) -> None:
        self.assertBroken(
            I.HTTP_TIMEOUT_OFF, (HTTPChannel, "allContentReceived", timed_all_content_received)
        )

    def test_http_request_producer(self) -> None:
        self.assertBroken(
            I.HTTP_REQUEST_PRODUCER, (HTTPChannel, "pauseProducing", lambda self: None)
        )


def timed_all_content_received(self: Any) -> None:
    """``HTTPChannel.allContentReceived`` as a Twisted that left the idle timeout running
    while a request is handled would have it: its own ``setTimeout(None)`` is left out."""
    left_out: list[float | None] = []

    def set_timeout(period: float | None) -> float | None:
        if not left_out:
            left_out.append(period)
            return self.timeOut  # type: ignore[no-any-return]
        return HTTPChannel.setTimeout(self, period)  # type: ignore[no-any-return]

    self.setTimeout = set_timeout
    try:
        original_all_content_received(self)
    finally:
        del self.setTimeout


original_all_content_received = HTTPChannel.allContentReceived


class LibWithout:
    """cryptography's OpenSSL binding, as a release that dropped some functions would be."""

    def __init__(self, *missing: str) -> None:
        self.missing = set(missing)
        self.lib = openssl.lib

    def __getattr__(self, name: str) -> Any:
        if name in self.missing:
            raise AttributeError(name)
        return getattr(self.lib, name)


class FenceTestCase(TestCase):
    """A fresh fence (nothing probed yet) whose warnings are kept in ``self.warnings``."""

    def setUp(self) -> None:
        self.fence = Fence(SHORTCUTS)
        self.patch(twisted_internals, "FENCE", self.fence)
        self.events: list[dict[str, Any]] = []
        self.patch(fence, "log", Logger(observer=self.events.append))

    def warnings(self, assumption: Assumption) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("assumption") == assumption.name]


class FakePoller:
    def __init__(self, events: list[tuple[int, int]]) -> None:
        self.events = events

    def poll(self, timeout: float, maxevents: int) -> list[tuple[int, int]]:
        out, self.events = self.events[:maxevents], self.events[maxevents:]
        return out


class Readable:
    def __init__(self, fd: int, seen: list[int]) -> None:
        self.fd, self.seen = fd, seen

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:  # noqa: N802
        return "readable"

    def doRead(self) -> None:  # noqa: N802
        self.seen.append(self.fd)


def renamed_poller_do_poll(self: Any, timeout: float | None) -> None:
    """EPollReactor.doPoll as a Twisted that renamed ``_poller`` to ``_epoll`` would have it."""
    events = self._epoll.poll(-1 if timeout is None else timeout, len(self._selectables))
    for fd, event in events:
        selectable = self._selectables.get(fd)
        if selectable is not None:
            legacy_log.callWithLogger(selectable, self._doReadOrWrite, selectable, fd, event)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.transport.write(data)  # type: ignore[union-attr]


class FallbackTests(FenceTestCase):
    """With an assumption broken, the server runs on Twisted's own path and says so once."""

    def test_reactor_turns_fall_back_to_twisteds_loop(self) -> None:
        # A Twisted whose epoll reactor keeps its epoll object under another name.
        self.patch(EPollReactor, "doPoll", renamed_poller_do_poll)
        self.patch(EPollReactor, "doIteration", renamed_poller_do_poll)
        reactor: Any = EPollReactor.__new__(EPollReactor)
        seen: list[int] = []
        reactor._selectables = {fd: Readable(fd, seen) for fd in range(10, 110)}
        reactor._epoll = FakePoller([(fd, EPollReactor._POLL_IN) for fd in range(10, 110)])

        self.assertFalse(runtime.bound_reactor_turns(reactor, max_events=64))
        self.assertFalse(runtime.bound_reactor_turns(reactor, max_events=64))
        [warning] = self.warnings(I.EPOLL_REACTOR)
        self.assertIn("_epoll", warning["reason"])
        self.assertIn("bounded reactor turns", warning["shortcuts"])
        self.assertEqual(self.events, [warning])  # nothing else fell back
        reactor.doIteration(0)  # Twisted's own turn: every ready descriptor
        self.assertEqual(seen, list(range(10, 110)))

    def test_reactor_turns_on_a_reactor_without_the_attributes(self) -> None:
        reactor: Any = EPollReactor.__new__(EPollReactor)  # no _poller, no _selectables
        self.assertFalse(runtime.bound_reactor_turns(reactor))
        self.assertFalse(runtime.bound_reactor_turns(reactor))
        self.assertEqual(len(self.warnings(I.EPOLL_REACTOR)), 1)
        self.assertFalse(hasattr(reactor, "pingchat_turn_io"))

    def listen_tls(self) -> tuple[int, Path, Any]:
        from twisted.internet import reactor

        directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, directory, True)
        key, cert = ensure_certificate(directory, "localhost")
        endpoint = server_endpoint(reactor, "ssl:0:interface=127.0.0.1", server_options(key, cert))
        factory = Factory.forProtocol(Echo)
        port = self.successResultOf(endpoint.listen(factory))
        self.addCleanup(port.stopListening)
        return port.getHost().port, cert, port

    def talk_tls(self, port: int, cert: Path) -> Deferred[list[bytes]]:
        def talk() -> list[bytes]:
            context = ssl.create_default_context(cafile=str(cert))
            answers = []
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as s,
            ):
                for line in (b"one\n", b"two\n", b"x" * 40_000 + b"\n"):
                    s.sendall(line)
                    got = b""
                    while len(got) < len(line):
                        got += s.recv(65536)
                    answers.append(got)
            return answers

        return deferToThread(talk)

    def test_tls_reads_and_writes_fall_back_when_the_cffi_functions_are_gone(
        self,
    ) -> Deferred[None]:
        self.patch(openssl, "lib", LibWithout("SSL_read", "SSL_write"))
        port, cert, listening = self.listen_tls()
        tls_factory = listening.factory
        self.assertIsInstance(tls_factory, CompactTLSFactory)
        self.assertFalse(tls_factory.fast_reads or tls_factory.fast_writes)
        self.assertFalse(tls_factory.compaction)
        self.assertTrue(tls_factory.turn_writes)  # rests on other assumptions
        [warning] = self.warnings(I.CFFI_FUNCTIONS)
        self.assertIn("SSL_read", warning["reason"])
        self.assertIn("SSL_read through cffi", warning["shortcuts"])

        def check(answers: list[bytes]) -> None:
            self.assertEqual(answers, [b"one\n", b"two\n", b"x" * 40_000 + b"\n"])
            self.listen_tls()  # another listener: no second warning
            self.assertEqual(len(self.warnings(I.CFFI_FUNCTIONS)), 1)

        return self.talk_tls(port, cert).addCallback(check)

    def test_tls_write_batching_falls_back_to_twisteds(self) -> Deferred[None]:
        # A Twisted whose BufferingTLSTransport no longer batches small writes.
        for name in ("__init__", "loseConnection", "connectionLost", "writeSequence"):
            self.patch(BufferingTLSTransport, name, getattr(TLSMemoryBIOProtocol, name))
        port, cert, listening = self.listen_tls()
        self.assertFalse(listening.factory.turn_writes)
        self.assertEqual(len(self.warnings(I.TLS_WRITE_BATCHING)), 1)
        done = self.talk_tls(port, cert)
        return done.addCallback(self.assertEqual, [b"one\n", b"two\n", b"x" * 40_000 + b"\n"])

    def test_tcp_connections_fall_back_to_twisteds_transport(self) -> Deferred[None]:
        from twisted.internet import reactor

        self.fence.fail(I.FD_WRITE_BUFFER, "simulated")
        self.fence.fail(I.PORT_ACCEPT_COUNT, "simulated")
        made: list[Any] = []

        class Made(Echo):
            def connectionMade(self) -> None:  # noqa: N802
                made.append(self.transport)

        port = runtime.server_reactor(reactor).listenTCP(
            0, Factory.forProtocol(Made), 50, "127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        self.assertIs(port.transport, tcp.Server)
        port.numberAccepts = 100  # as Twisted's own port would keep it
        self.assertEqual(port.numberAccepts, 100)
        self.assertEqual(len(self.warnings(I.FD_WRITE_BUFFER)), 1)
        self.assertIsNone(
            pending_output_bytes(abstract.FileDescriptor(reactor))  # type: ignore[arg-type]
        )

        def talk() -> bytes:
            with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
                s.sendall(b"ping")
                return s.recv(4)

        def check(answer: bytes) -> None:
            self.assertEqual(answer, b"ping")
            self.assertEqual(type(made[0]), tcp.Server)

        return deferToThread(talk).addCallback(check)

    def test_check_all_probes_everything_once_and_names_what_failed(self) -> None:
        self.assertEqual(twisted_internals.check_all(), [])
        self.assertEqual(self.events, [])
        self.assertEqual(set(self.fence.problems), {a.name for a in ASSUMPTIONS} - {
            I.EPOLL_REACTOR.name, I.REACTOR_LOOP.name,
        })  # fmt: skip

        fresh = Fence(SHORTCUTS)
        self.patch(twisted_internals, "FENCE", fresh)
        self.patch(openssl, "lib", LibWithout("BIO_get_mem_data"))
        self.assertEqual(twisted_internals.check_all(), ["openssl-cffi-functions"])
        self.assertEqual(twisted_internals.check_all(), ["openssl-cffi-functions"])
        [warning] = self.events
        self.assertEqual(warning["log_level"].name, "warn")
        self.assertIn("Twisted ", warning["versions"])


class MemoryFD(abstract.FileDescriptor):
    """A connected descriptor whose kernel takes nothing until told to (``taking``)."""

    taking = False

    def __init__(self) -> None:
        super().__init__(Clock())  # type: ignore[arg-type]  # startWriting is a no-op here
        self.connected = 1
        self.sent = b""

    def startWriting(self) -> None:  # noqa: N802
        pass

    def stopWriting(self) -> None:  # noqa: N802
        pass

    def writeSomeData(self, data: bytes) -> int:  # noqa: N802
        if not self.taking:
            return 0
        self.sent += bytes(data)
        return len(data)


class PendingOutputTests(FenceTestCase):
    """``pending_output_bytes``: what a transport holds that the kernel has not taken."""

    def test_twisteds_buffer(self) -> None:
        fd = MemoryFD()
        self.assertEqual(pending_output_bytes(fd), 0)
        fd.write(b"a" * 100)
        fd.write(b"b" * 50)
        self.assertEqual(pending_output_bytes(fd), 150)
        fd.taking = True
        fd.writeSomeData = lambda data: 60  # type: ignore[method-assign]
        fd.doWrite()
        self.assertEqual(pending_output_bytes(fd), 90)  # dataBuffer less offset
        fd.write(b"c" * 10)
        self.assertEqual(pending_output_bytes(fd), 100)

    def test_through_wrappers_and_a_websockets_wire(self) -> None:
        from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

        fd = MemoryFD()
        fd.write(b"a" * 10)
        wrapper = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
        wrapper.makeConnection(fd)
        self.assertEqual(pending_output_bytes(wrapper), 10)

        class WebSocket:  # the web door's connection names the transport it frames onto
            wire_transport = wrapper

        self.assertEqual(pending_output_bytes(WebSocket()), 10)

        # The web door's deepest: a WebSocket, over TLS, over a PROXY listener's
        # wrapper (TLS stands here as one more wrapper), over TCP.
        tls = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
        tls.makeConnection(wrapper)

        class Deepest:
            wire_transport = tls

        self.assertEqual(pending_output_bytes(Deepest()), 10)

    def test_transports_of_other_kinds_are_unknown(self) -> None:
        self.assertIsNone(pending_output_bytes(StringTransport()))
        self.assertIsNone(pending_output_bytes(None))

    def test_tls_before_and_after_the_handshake_down_to_the_socket(self) -> None:
        directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, directory, True)
        key, cert = ensure_certificate(directory, "localhost")
        clock = Clock()
        factory = CompactTLSFactory(
            server_options(key, cert), False, Factory.forProtocol(Echo), clock=TurnFlusher(clock)
        )
        server: Any = factory.buildProtocol(None)
        lower = MemoryFD()
        server.makeConnection(lower)
        server.write(b"x" * 100)  # held for the end of the turn
        self.assertEqual(pending_output_bytes(server), 100)
        clock.advance(0)  # given to TLS, which holds it until the handshake is done
        self.assertEqual(server._appSendBuffer, [b"x" * 100])
        self.assertEqual(pending_output_bytes(server), 100)

        client_options = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client = SSL.Connection(client_options, None)
        client.set_connect_state()
        lower.taking = True
        for _ in range(10):  # the handshake, with the kernel taking everything
            with contextlib.suppress(SSL.WantReadError):
                client.do_handshake()
            with contextlib.suppress(SSL.WantReadError):
                server.dataReceived(client.bio_read(65536))
            lower.doWrite()
            if lower.sent:
                client.bio_write(lower.sent)
                lower.sent = b""
        self.assertTrue(server._handshakeDone)
        self.assertEqual(pending_output_bytes(server), 0)  # the held data went out
        self.assertEqual(client.recv(1000), b"x" * 100)

        lower.taking = False  # the client stops reading
        server.write(b"y" * 1000)
        clock.advance(0)
        pending = pending_output_bytes(server)
        assert pending is not None
        self.assertGreater(pending, 1000)  # the record: the text and TLS's overhead
        self.assertLess(pending, 1100)

    def test_a_turns_writes_on_a_real_connection(self) -> Deferred[None]:
        from twisted.internet import reactor

        seen: list[int | None] = []

        class Writer(Protocol):
            def connectionMade(self) -> None:  # noqa: N802
                assert self.transport is not None
                self.transport.write(b"z" * 5000)
                seen.append(pending_output_bytes(self.transport))
                reactor.callLater(0.2, lambda: seen.append(pending_output_bytes(self.transport)))  # type: ignore[attr-defined]
                reactor.callLater(0.3, self.transport.loseConnection)  # type: ignore[attr-defined]

        port = runtime.server_reactor(reactor).listenTCP(
            0, Factory.forProtocol(Writer), 50, "127.0.0.1"
        )
        self.addCleanup(port.stopListening)

        def talk() -> bytes:
            with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
                got = b""
                while chunk := s.recv(65536):
                    got += chunk
                return got

        def check(got: bytes) -> None:
            self.assertEqual(len(got), 5000)
            self.assertEqual(seen, [5000, 0])  # held for the turn's send, then sent

        return deferToThread(talk).addCallback(check)
