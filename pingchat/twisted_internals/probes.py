"""The probes: each checks one assumption against the installed libraries.

A probe raises (:class:`~.fence.Broken`, or whatever a changed library
raises) unless the names are there, take the arguments pingchat passes, and
a tiny example in memory behaves as pingchat expects. Probes run once per
process (:class:`~.fence.Fence`) and in ``tests/test_twisted_internals.py``.
"""

from __future__ import annotations

import datetime
import inspect
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import abstract, tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from . import openssl
from .fence import Broken
from .fence import require as _require


def _require_call(name: str, function: Any, *arguments: str) -> None:
    """*function* (*name*) takes these positional arguments, as pingchat passes them."""
    try:
        inspect.signature(function).bind(*arguments)
    except TypeError:
        parameters = list(inspect.signature(function).parameters)
        raise Broken(f"{name} takes {parameters}, not {list(arguments)}") from None


class _Selectable:
    """A readable descriptor for the reactor probes."""

    def __init__(self, fd: int, seen: list[str]) -> None:
        self.fd, self.seen = fd, seen

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:  # noqa: N802 - ILoggingContext
        return "pingchat-probe"

    def doRead(self) -> None:  # noqa: N802 - IReadDescriptor
        self.seen.append("read")


def probe_epoll_reactor() -> None:
    from twisted.internet.epollreactor import EPollReactor

    calls: list[tuple[Any, ...]] = []

    class Poller:
        def poll(self, timeout: float, maxevents: int) -> list[tuple[int, int]]:
            calls.append((timeout, maxevents))
            return [(7, EPollReactor._POLL_IN)]

    # A reactor object without descriptors of its own: only what a turn uses.
    reactor: Any = EPollReactor.__new__(EPollReactor)
    seen: list[str] = []
    selectable = _Selectable(7, seen)
    reactor._poller = Poller()
    reactor._selectables = {7: selectable}
    dispatched: list[tuple[Any, ...]] = []
    reactor._doReadOrWrite = lambda *args: dispatched.append(args)
    EPollReactor.doPoll(reactor, 0.5)
    _require(calls and calls[0][0] == 0.5, f"doPoll did not call _poller.poll(0.5, n): {calls}")
    _require(
        dispatched == [(selectable, 7, EPollReactor._POLL_IN)],
        f"doPoll did not hand the event from _selectables to _doReadOrWrite: {dispatched}",
    )
    _require_call(
        "_doReadOrWrite", EPollReactor._doReadOrWrite, "self", "selectable", "fd", "event"
    )
    del reactor._doReadOrWrite
    EPollReactor._doReadOrWrite(reactor, selectable, 7, EPollReactor._POLL_IN)
    _require(seen == ["read"], "_doReadOrWrite did not call doRead for a read event")


def probe_reactor_loop() -> None:
    from twisted.internet.base import ReactorBase
    from twisted.internet.epollreactor import EPollReactor

    for method in (ReactorBase.mainLoop, ReactorBase.iterate):
        _require(
            "doIteration" in method.__code__.co_names,
            f"ReactorBase.{method.__name__} does not call self.doIteration",
        )
    _require(
        EPollReactor.doIteration is EPollReactor.doPoll,
        "EPollReactor.doIteration is not its doPoll",
    )


def probe_port_accept_count() -> None:
    for method, name in ((tcp.Port.doRead, "doRead"), (tcp.Port.startListening, "startListening")):
        _require(
            "numberAccepts" in method.__code__.co_names,
            f"tcp.Port.{name} does not use self.numberAccepts",
        )


def probe_port_transport_class() -> None:
    _require(tcp.Port.transport is tcp.Server, "tcp.Port.transport is not tcp.Server")
    _require(
        "transport" in tcp.Port.doRead.__code__.co_names,
        "tcp.Port.doRead does not build connections with self.transport",
    )
    # pingchat's server transports pass these on as they come.
    _require_call(
        "tcp.Server",
        tcp.Server.__init__,
        "self",
        "sock",
        "protocol",
        "client",
        "server",
        "sessionno",
        "reactor",
    )


class _FDReactor:
    """Just enough of a reactor for a FileDescriptor: whether it waits to write."""

    writing = False

    def addWriter(self, fd: object) -> None:  # noqa: N802 - IReactorFDSet
        self.writing = True

    def removeWriter(self, fd: object) -> None:  # noqa: N802
        self.writing = False

    def addReader(self, fd: object) -> None:  # noqa: N802
        pass

    def removeReader(self, fd: object) -> None:  # noqa: N802
        pass


def probe_fd_write_buffer() -> None:
    reactor = _FDReactor()
    fd: Any = abstract.FileDescriptor(reactor)  # type: ignore[arg-type]
    fd.connected = 1
    fd.write(b"abc")
    fd.write(b"de")
    _require(
        fd._tempDataBuffer == [b"abc", b"de"] and fd._tempDataLen == 5,
        "write() did not append to _tempDataBuffer and count in _tempDataLen",
    )
    _require(fd.dataBuffer == b"" and fd.offset == 0, "a fresh dataBuffer/offset is not empty")
    _require(reactor.writing, "write() did not wait for the descriptor to be writable")
    fd.writeSomeData = lambda data: 2
    fd.doWrite()
    _require(
        fd.dataBuffer == b"abcde" and fd.offset == 2 and not fd._tempDataBuffer,
        "doWrite() did not move _tempDataBuffer to dataBuffer and count offset",
    )
    _require(fd._tempDataLen == 0, "doWrite() did not reset _tempDataLen")
    _require(
        len(fd.dataBuffer) - fd.offset + fd._tempDataLen == 3,
        "dataBuffer - offset + _tempDataLen is not what is unsent",
    )
    fd._writeDisconnected = True
    fd.write(b"x")
    _require(not fd._tempDataLen, "write() took data after _writeDisconnected")
    fd._writeDisconnected = False
    fd.connected = 0
    fd.write(b"x")
    _require(not fd._tempDataLen, "write() took data while not connected")


def probe_socket_send() -> None:
    _require(isinstance(abstract.FileDescriptor.SEND_LIMIT, int), "no FileDescriptor.SEND_LIMIT")
    ours, theirs = socket.socketpair()
    try:
        connection: Any = tcp.Connection(ours, None, _FDReactor())  # type: ignore[arg-type]
        _require(connection.socket is ours, "tcp.Connection does not keep its socket in .socket")
        _require(connection.writeSomeData(b"probe") == 5, "writeSomeData did not send")
        _require(theirs.recv(16) == b"probe", "writeSomeData did not send what it was given")
    finally:
        ours.close()
        theirs.close()


class _Received(TwistedProtocol):
    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - IProtocol
        self.data += data


def _tls_options() -> tuple[Any, Any]:
    """Server and client options for an in-memory handshake (a throwaway key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from twisted.internet.ssl import CertificateOptions

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pingchat-probe")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    # The client checks nothing: this is a probe of the transport, not a connection.
    server: dict[str, Any] = {"privateKey": key, "certificate": cert}
    return CertificateOptions(**server), CertificateOptions()


def _tls_pair(
    server_class: type[TLSMemoryBIOProtocol] = TLSMemoryBIOProtocol,
) -> tuple[Any, Any]:
    """A TLS server and client over string transports, connected but not yet handshaken."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    server_options, client_options = _tls_options()
    ends = []
    for options, is_client, cls in (
        (server_options, False, server_class),
        (client_options, True, TLSMemoryBIOProtocol),
    ):
        factory = TLSMemoryBIOFactory(options, is_client, Factory.forProtocol(_Received), Clock())
        factory.protocol = cls
        end = factory.buildProtocol(None)
        assert end is not None
        end.makeConnection(StringTransport())
        ends.append(end)
    return ends[0], ends[1]


def _pump(a: Any, b: Any) -> None:
    """Move bytes between two ends until neither has anything to send."""
    for _ in range(20):
        moved = False
        for source, sink in ((a, b), (b, a)):
            data = source.transport.value()
            if data:
                source.transport.clear()
                sink.dataReceived(data)
                moved = True
        if not moved:
            return


def probe_tls_connection_state() -> None:
    from OpenSSL import SSL

    server, client = _tls_pair()
    _require(isinstance(server._tlsConnection, SSL.Connection), "no _tlsConnection")
    for flag in ("_handshakeDone", "_lostTLSConnection", "_aborted"):
        _require(getattr(server, flag) is False, f"{flag} is not False on a new connection")
    server.write(b"early")
    _require(
        server._appSendBuffer == [b"early"], "a write before the handshake is not in _appSendBuffer"
    )
    _pump(server, client)
    _require(server._handshakeDone is True, "_handshakeDone is not True after the handshake")
    _require(server._appSendBuffer == [], "_appSendBuffer was not emptied by the handshake")
    _require(client.wrappedProtocol.data == b"early", "the held-back write was not delivered")
    server.abortConnection()
    _require(
        server._aborted is True and server.disconnecting, "abortConnection() did not set _aborted"
    )


def probe_tls_write_hook() -> None:
    encrypted: list[bytes] = []

    class Recording(TLSMemoryBIOProtocol):
        def _write(self, data: bytes) -> None:
            encrypted.append(data)
            super()._write(data)  # type: ignore[misc]

    server, client = _tls_pair(Recording)
    server.write(b"early")
    _pump(server, client)
    server.write(b"later")
    _pump(server, client)
    _require(
        encrypted == [b"early", b"early", b"later"],
        f"write() and _unbufferPendingWrites() did not go through _write: {encrypted}",
    )
    _require(client.wrappedProtocol.data == b"earlylater", "what _write took did not arrive")
    _require_call("TLSMemoryBIOProtocol._write", TLSMemoryBIOProtocol._write, "self", "data")


def probe_tls_receive_loop() -> None:
    server, client = _tls_pair()
    _pump(server, client)
    client.write(b"ping")
    records = client.transport.value()
    client.transport.clear()
    server._tlsConnection.bio_write(records)
    server._flushReceiveBIO()
    _require(server.wrappedProtocol.data == b"ping", "_flushReceiveBIO() did not deliver")
    client.loseConnection()  # close_notify
    server._tlsConnection.bio_write(client.transport.value())
    server._flushReceiveBIO()
    _require(server._lostTLSConnection, "_flushReceiveBIO() did not handle close_notify")


def probe_tls_write_batching() -> None:
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    server_options, _ = _tls_options()
    factory = TLSMemoryBIOFactory(server_options, False, Factory.forProtocol(_Received), Clock())
    end: Any = factory.buildProtocol(None)
    _require(
        isinstance(end, BufferingTLSTransport),
        "TLSMemoryBIOFactory builds no BufferingTLSTransport",
    )
    _require_call(
        "BufferingTLSTransport",
        BufferingTLSTransport.__init__,
        "self",
        "factory",
        "wrappedProtocol",
        "_connectWrapped",
    )
    end.makeConnection(StringTransport())
    aggregator = end._aggregator
    _require(end.write == aggregator.write, "write is not the _aggregator's")
    end.write(b"a")
    end.write(b"b")
    _require(
        list(aggregator._buffer) == [b"a", b"b"] and end._appSendBuffer == [],
        "small writes are not held in _aggregator._buffer",
    )
    end.loseConnection()
    _require(
        not aggregator._buffer and end._appSendBuffer == [b"ab"],
        "loseConnection() did not flush the _aggregator into TLS",
    )
    # What the transport asks of an aggregator put in the place of its own
    # (Twisted 26.10 also closes it when the connection is lost; 26.4 does not).
    calls: list[str] = []

    class Recorder:
        def __getattr__(self, name: str) -> Any:
            return lambda *args: calls.append(name)

    end = factory.buildProtocol(None)
    end.makeConnection(StringTransport())
    end._aggregator = Recorder()
    end.write = end._aggregator.write
    end.write(b"c")
    end.writeSequence([b"d"])
    end.loseConnection()
    end.connectionLost(Failure(ConnectionDone()))
    _require(
        calls[:3] == ["write", "write", "flush"] and set(calls) <= {"write", "flush", "close"},
        f"BufferingTLSTransport asks {calls} of its _aggregator, not write, flush (and close)",
    )


_CFFI_FUNCTIONS = (
    "SSL_read", "SSL_write", "SSL_get_error", "BIO_read", "BIO_write",
    "BIO_get_mem_data", "BIO_new", "BIO_s_mem", "BIO_free", "SSL_set_bio",
)  # fmt: skip


def probe_cffi_functions() -> None:
    _require(openssl.lib is not None, "cryptography.hazmat.bindings.openssl.binding is gone")
    missing = [name for name in _CFFI_FUNCTIONS if not hasattr(openssl.lib, name)]
    _require(not missing, f"Binding.lib lacks {', '.join(missing)}")
    _require(isinstance(openssl.lib.SSL_ERROR_WANT_READ, int), "no SSL_ERROR_WANT_READ")


def probe_memory_bios() -> None:
    from OpenSSL import SSL

    connection: Any = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    for name, kind in (("_ssl", "SSL *"), ("_into_ssl", "BIO *"), ("_from_ssl", "BIO *")):
        value = getattr(connection, name, None)
        _require(value is not None, f"OpenSSL.SSL.Connection has no {name}")
        _require(openssl.ffi.typeof(value).cname == kind, f"{name} is not an {kind}")
    connection.bio_write(b"in")
    buffer = openssl.ffi.new("char[]", 16)
    n = openssl.lib.BIO_read(connection._into_ssl, buffer, 16)
    _require(
        openssl.ffi.buffer(buffer, max(n, 0))[:] == b"in", "bio_write() does not write _into_ssl"
    )
    openssl.lib.BIO_write(connection._from_ssl, b"out", 3)
    _require(connection.bio_read(16) == b"out", "bio_read() does not read _from_ssl")


# -- the web door's WebSocket upgrade --------------------------------------------------------


class _TakenOver:
    """A protocol that records what an upgraded HTTP connection gives it."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.data: list[bytes] = []
        self.lost: list[Failure] = []

    def makeConnection(self, transport: Any) -> None:  # noqa: N802 - IProtocol
        self.transport = transport

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - IProtocol
        self.data.append(data)

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - IProtocol
        self.lost.append(reason)


@implementer(IPushProducer)
class _Producer:
    state = "producing"

    def pauseProducing(self) -> None:  # noqa: N802 - IPushProducer
        self.state = "paused"

    def resumeProducing(self) -> None:  # noqa: N802 - IPushProducer
        self.state = "producing"

    def stopProducing(self) -> None:  # noqa: N802 - IPushProducer
        self.state = "stopped"


def _http_request(render: Callable[[Any], object]) -> tuple[Any, Any, Any]:
    """A ``Site``'s channel over a string transport whose one GET *render* keeps open.

    Returns the channel, its transport and the site's clock (an idle
    timeout of 60 s), as the web door's upgrade finds them.
    """
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site

    class Upgrading(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:  # noqa: N802 - Resource
            render(request)
            return NOT_DONE_YET

    clock = Clock()
    site = Site(Upgrading(), timeout=60, reactor=clock)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 4000))
    channel: Any = site.buildProtocol(transport.getPeer())
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /ws HTTP/1.1\r\nHost: pingchat-probe\r\n\r\n")
    return channel, transport, clock


def probe_http_channel_upgrade() -> None:
    from twisted.web.http import HTTPChannel

    method = getattr(HTTPChannel, "_protocolUpgradeForWebsockets", None)
    _require(callable(method), "HTTPChannel._protocolUpgradeForWebsockets is gone")
    _require_call("HTTPChannel._protocolUpgradeForWebsockets", method, "self", "protocol")
    taken = _TakenOver()
    channel, transport, _ = _http_request(
        lambda request: request.channel._protocolUpgradeForWebsockets(taken)
    )
    _require(
        taken.transport is transport,
        "_protocolUpgradeForWebsockets did not make the connection with the channel's transport",
    )
    channel.dataReceived(b"\x81\x00frames")
    _require(taken.data == [b"\x81\x00frames"], "later bytes did not go to the protocol")
    channel.connectionLost(Failure(ConnectionDone()))
    _require(len(taken.lost) == 1, "the connection's end did not go to the protocol")


def probe_http_timeout_off_during_request() -> None:
    _, transport, clock = _http_request(lambda request: None)
    clock.advance(3600)
    _require(
        not transport.disconnecting,
        "the Site's idle timeout cut a connection whose request was still being handled",
    )


def probe_http_request_producer() -> None:
    requests: list[Any] = []
    _, transport, _ = _http_request(requests.append)
    channel = requests[0].channel
    producer = _Producer()
    requests[0].registerProducer(producer, True)
    _require(transport.producer is channel, "the HTTPChannel is not its transport's producer")
    channel.pauseProducing()
    _require(producer.state == "paused", "the channel did not pause the request's producer")
    channel.resumeProducing()
    _require(producer.state == "producing", "the channel did not resume the request's producer")
