"""Every use pingchat makes of Twisted's (and pyOpenSSL's) internals, in one place.

pingchat's speed rests on a few shortcuts through names that Twisted,
pyOpenSSL and cryptography do not promise to keep (docs/performance.md has
what each one is worth), and its web door takes over an HTTP connection
the way Twisted's own WebSocket resource does, through a private method.
This package is the only place pingchat touches them: here are the
functions and classes ``runtime.py``, ``tls.py``, ``output.py``, the web
door and the manhole's ``stats()`` call, ``probes.py`` checks the
assumptions, and ``openssl.py`` calls OpenSSL through cffi; ``fence.py`` is
the machinery.
Each shortcut (a :class:`Shortcut`) rests on named assumptions (an
:class:`Assumption`), and each assumption has a probe that checks it against
the installed libraries: the attribute is there, the method takes those
arguments, and a tiny example in memory behaves as pingchat expects. A
shortcut is taken only if all its assumptions hold; otherwise the code that
asked gets Twisted's own path, and one warning line says which assumption
did not hold and on which versions. ``tests/test_twisted_internals.py`` runs
every probe (one test per assumption), and ``pyproject.toml`` bounds Twisted
to the releases those tests passed on.

What pingchat relies on (the names the probes check), by assumption:

``epoll-reactor-internals`` (bounded reactor turns, ``runtime.bound_reactor_turns``)
    ``EPollReactor._poller`` (``select.epoll``: ``poll(timeout, maxevents)``),
    ``EPollReactor._selectables`` (a dict, file descriptor -> selectable),
    ``EPollReactor._doReadOrWrite(selectable, fd, event)``: what
    ``EPollReactor.doPoll`` uses to handle one turn.
``reactor-loop-calls-doIteration`` (bounded reactor turns)
    ``ReactorBase.mainLoop`` and ``iterate`` call ``self.doIteration(delay)``,
    and ``EPollReactor.doIteration`` is its ``doPoll``: replacing both on the
    instance replaces the turn.
``tcp-port-accept-count`` (bounded accepts, :class:`ListeningPort`)
    ``tcp.Port.doRead`` accepts up to ``self.numberAccepts`` connections per
    readable event and sets it after each loop.
``tcp-port-transport-class`` (one send per turn, :class:`ListeningPort`)
    ``tcp.Port.doRead`` builds each connection with
    ``self.transport(skt, protocol, addr, port, sessionno, reactor)``.
``fd-write-buffer`` (one send per turn, ``runtime.TurnFlushServer``; counting unsent bytes)
    ``FileDescriptor.write`` refuses data unless ``connected`` and not
    ``_writeDisconnected``, and buffers it in ``_tempDataBuffer`` /
    ``_tempDataLen``; ``doWrite`` moves it to ``dataBuffer`` and counts what
    was sent in ``offset``.
``tcp-socket-send`` (one send per turn)
    ``tcp.Connection`` keeps its socket in ``socket``; ``writeSomeData`` is
    ``socket.send`` of at most ``SEND_LIMIT`` bytes.
``tls-write-batching`` (a turn's TLS writes together; counting unsent bytes)
    ``BufferingTLSTransport`` keeps its small-write aggregator (``write``,
    ``flush``, ``close``; pending data in ``_buffer``) in ``_aggregator`` and
    binds ``self.write`` to it; ``loseConnection`` flushes it.
``tls-connection-state`` (TLS fast reads and writes, BIO compaction, counting)
    ``TLSMemoryBIOProtocol._tlsConnection`` (the ``OpenSSL.SSL.Connection``),
    ``_handshakeDone``, ``_lostTLSConnection``, ``_aborted``,
    ``disconnecting``, and ``_appSendBuffer`` (writes held back until the
    handshake is done).
``tls-write-hook`` (TLS fast writes)
    ``TLSMemoryBIOProtocol.write`` and ``_unbufferPendingWrites`` encrypt
    through ``self._write(data)``.
``tls-receive-loop`` (TLS fast reads)
    ``TLSMemoryBIOProtocol._flushReceiveBIO()`` reads and handles whatever
    is in the incoming BIO (data, the peer's ``close_notify``, errors).
``pyopenssl-memory-bios`` (TLS fast reads and writes, BIO compaction)
    ``OpenSSL.SSL.Connection._ssl``, ``_into_ssl``, ``_from_ssl``: the
    ``SSL *`` and the memory BIOs that ``bio_write`` and ``bio_read`` use.
``openssl-cffi-functions`` (TLS fast reads and writes, BIO compaction)
    ``cryptography``'s ``Binding.lib`` exports ``SSL_read``, ``SSL_write``,
    ``SSL_get_error``, ``BIO_read``, ``BIO_write``, ``BIO_get_mem_data``,
    ``BIO_new``, ``BIO_s_mem``, ``BIO_free``, ``SSL_set_bio``.

``http-channel-upgrade`` (the web door's WebSocket hand-over, :func:`websocket_upgrade`)
    ``HTTPChannel._protocolUpgradeForWebsockets(protocol)`` hands the
    channel's connection to *protocol*: ``makeConnection`` with the
    channel's transport, later bytes to its ``dataReceived``, the end to its
    ``connectionLost``. Twisted's ``WebSocketResource`` uses it; it cannot
    serve ``/irc`` (subprotocols, a message size limit, producers), so the
    door does its own handshake (``web/upgrade.py``).
``http-timeout-off-during-request`` (no idle timeout on a WebSocket)
    A ``Site``'s idle timeout is off while a request is being handled
    (``HTTPChannel.allContentReceived`` calls ``setTimeout(None)``); the
    upgrade request is never finished, so it never cuts a WebSocket.
``http-request-producer`` (back-pressure for a WebSocket, :func:`register_websocket_producer`)
    The ``HTTPChannel`` is its transport's producer and pauses and resumes
    a producer registered with ``Request.registerProducer`` as the
    transport's buffer fills and drains, also after the upgrade. Documented
    behaviour, in a state (a request never finished) Twisted does not test.

Not fenced but gone: the SSH manhole called Conch's ``Manhole._needsNewline``
and ``SSHUserAuthServer._ebPassword``; it now does the same with public names.

To add one: write a probe that raises :class:`Broken` unless a tiny example
behaves as the code expects, declare the :class:`Assumption` and the
:class:`Shortcut` that rests on it (with what falling back costs), add them
to :data:`ASSUMPTIONS` and :data:`SHORTCUTS`, give the caller a function
here that does the private access, and let the caller ask :func:`enabled`
(once, when its factory is built, where it is on a hot path) and take
Twisted's public path when it says no. Add its tests to
``tests/test_twisted_internals.py``: one in ``AssumptionTests`` and one in
``ProbeTests``, named after the assumption.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet import abstract, tcp
from twisted.internet.interfaces import IConsumer, IProducer, IProtocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from . import openssl, probes
from .fence import Assumption, Broken, Fence, Shortcut, run_probe, versions
from .openssl import fast_read, fast_write

__all__ = [
    "ASSUMPTIONS", "FENCE", "SHORTCUTS", "Assumption", "Broken", "Fence", "HeldBytes",
    "ListeningPort", "Shortcut", "TLSFactory", "TLSTransport", "check_all", "enabled",
    "epoll_loop", "pending_output_bytes", "register_websocket_producer", "replace_turn",
    "run_probe", "send_now", "versions", "waiting_for_socket", "websocket_upgrade",
    "writes_refused",
]  # fmt: skip


EPOLL_REACTOR = Assumption("epoll-reactor-internals", probes.probe_epoll_reactor)
REACTOR_LOOP = Assumption("reactor-loop-calls-doIteration", probes.probe_reactor_loop)
PORT_ACCEPT_COUNT = Assumption("tcp-port-accept-count", probes.probe_port_accept_count)
PORT_TRANSPORT_CLASS = Assumption("tcp-port-transport-class", probes.probe_port_transport_class)
FD_WRITE_BUFFER = Assumption("fd-write-buffer", probes.probe_fd_write_buffer)
SOCKET_SEND = Assumption("tcp-socket-send", probes.probe_socket_send)
TLS_WRITE_BATCHING = Assumption("tls-write-batching", probes.probe_tls_write_batching)
TLS_CONNECTION_STATE = Assumption("tls-connection-state", probes.probe_tls_connection_state)
TLS_WRITE_HOOK = Assumption("tls-write-hook", probes.probe_tls_write_hook)
TLS_RECEIVE_LOOP = Assumption("tls-receive-loop", probes.probe_tls_receive_loop)
MEMORY_BIOS = Assumption("pyopenssl-memory-bios", probes.probe_memory_bios)
CFFI_FUNCTIONS = Assumption("openssl-cffi-functions", probes.probe_cffi_functions)
HTTP_UPGRADE = Assumption("http-channel-upgrade", probes.probe_http_channel_upgrade)
HTTP_TIMEOUT_OFF = Assumption(
    "http-timeout-off-during-request", probes.probe_http_timeout_off_during_request
)
HTTP_REQUEST_PRODUCER = Assumption("http-request-producer", probes.probe_http_request_producer)

ASSUMPTIONS = (
    EPOLL_REACTOR, REACTOR_LOOP, PORT_ACCEPT_COUNT, PORT_TRANSPORT_CLASS, FD_WRITE_BUFFER,
    SOCKET_SEND, TLS_WRITE_BATCHING, TLS_CONNECTION_STATE, TLS_WRITE_HOOK, TLS_RECEIVE_LOOP,
    MEMORY_BIOS, CFFI_FUNCTIONS, HTTP_UPGRADE, HTTP_TIMEOUT_OFF, HTTP_REQUEST_PRODUCER,
)  # fmt: skip

REACTOR_TURNS = Shortcut(
    "bounded reactor turns",
    (EPOLL_REACTOR, REACTOR_LOOP),
    "one turn handles every ready descriptor before timers run",
)
ACCEPT_BOUND = Shortcut(
    "bounded accepts", (PORT_ACCEPT_COUNT,), "100 or more accepts per readable event"
)
TURN_SENDS = Shortcut(
    "one send() per connection per turn",
    (PORT_TRANSPORT_CLASS, FD_WRITE_BUFFER, SOCKET_SEND),
    "every write waits for epoll to report the socket writable",
)
TLS_TURN_WRITES = Shortcut(
    "a turn's TLS writes in one record",
    (TLS_WRITE_BATCHING,),
    "Twisted's own small-write batching, one timed call per connection and turn",
)
TLS_FAST_WRITES = Shortcut(
    "SSL_write through cffi",
    (TLS_CONNECTION_STATE, TLS_WRITE_HOOK, MEMORY_BIOS, CFFI_FUNCTIONS),
    "pyOpenSSL's send() and bio_read() per write",
)
TLS_FAST_READS = Shortcut(
    "SSL_read through cffi",
    (TLS_CONNECTION_STATE, TLS_RECEIVE_LOOP, MEMORY_BIOS, CFFI_FUNCTIONS),
    "pyOpenSSL's recv() until WantReadError per read",
)
TLS_COMPACTION = Shortcut(
    "compacting idle TLS memory BIOs",
    (TLS_CONNECTION_STATE, MEMORY_BIOS, CFFI_FUNCTIONS),
    "a TLS connection keeps the memory of its largest burst",
)
TCP_PENDING = Shortcut(
    "counting a TCP connection's unsent bytes", (FD_WRITE_BUFFER,), "pending_output_bytes is None"
)
TLS_PENDING = Shortcut(
    "counting a TLS connection's unsent bytes",
    (FD_WRITE_BUFFER, TLS_WRITE_BATCHING, TLS_CONNECTION_STATE),
    "pending_output_bytes is None",
)

WEBSOCKET_HANDOVER = Shortcut(
    "HTTPChannel's own WebSocket hand-over",
    (HTTP_UPGRADE,),
    "the web door rebinds the channel's dataReceived and connectionLost itself, as that"
    " method does in Twisted 25.5 to 26.10",
)
WEBSOCKET_NO_TIMEOUT = Shortcut(
    "a request's pause of the idle timeout",
    (HTTP_TIMEOUT_OFF,),
    "the web door turns the channel's idle timeout off itself when it upgrades",
)
WEBSOCKET_BACKPRESSURE = Shortcut(
    "back-pressure through the upgrade request",
    (HTTP_REQUEST_PRODUCER,),
    "the door's producer takes the channel's place as the transport's producer",
)

SHORTCUTS = (
    REACTOR_TURNS, ACCEPT_BOUND, TURN_SENDS, TLS_TURN_WRITES, TLS_FAST_WRITES, TLS_FAST_READS,
    TLS_COMPACTION, TCP_PENDING, TLS_PENDING, WEBSOCKET_HANDOVER, WEBSOCKET_NO_TIMEOUT,
    WEBSOCKET_BACKPRESSURE,
)  # fmt: skip

FENCE = Fence(SHORTCUTS)


def enabled(shortcut: Shortcut) -> bool:
    """Whether *shortcut*'s assumptions hold in this process (probed once, failures logged)."""
    return FENCE.enabled(shortcut)


def check_all() -> list[str]:
    """Probe everything at start-up, so that any warning comes then; the names that failed.

    The reactor's shortcut is left to :func:`epoll_loop`: it only applies to
    an epoll reactor.
    """
    return FENCE.check_all(skip=(REACTOR_TURNS,))


# -- the reactor ----------------------------------------------------------------------------


def epoll_loop(
    reactor: Any,
) -> tuple[Callable[..., Any], dict[int, Any], Callable[..., Any]] | None:
    """An epoll reactor's ``poll``, its selectables and its event handler, or None.

    None (after the warning) when the assumptions of bounded turns do not
    hold: the reactor keeps Twisted's own loop.
    """
    if not FENCE.enabled(REACTOR_TURNS):
        return None
    poll = getattr(getattr(reactor, "_poller", None), "poll", None)
    selectables = getattr(reactor, "_selectables", None)
    dispatch = getattr(reactor, "_doReadOrWrite", None)
    if not callable(poll) or not isinstance(selectables, dict) or not callable(dispatch):
        FENCE.fail(EPOLL_REACTOR, f"{type(reactor).__name__} has no _poller/_selectables")
        return None
    return poll, selectables, dispatch


def replace_turn(reactor: Any, turn: Callable[[float | None], None]) -> None:
    """Make *turn* the reactor's I/O turn (its ``doIteration``, and ``doPoll`` on epoll)."""
    reactor.doIteration = reactor.doPoll = turn


# -- TCP ------------------------------------------------------------------------------------


class HeldBytes(Protocol):
    """pingchat's own write buffering on top of Twisted's: how many bytes it holds."""

    def held_bytes(self) -> int: ...


def writes_refused(transport: abstract.FileDescriptor) -> bool:
    """Whether Twisted's ``write`` would drop data: not connected, or closed for writing."""
    return not transport.connected or transport._writeDisconnected


def waiting_for_socket(transport: abstract.FileDescriptor) -> bool:
    """Whether Twisted's buffer holds data that waits for the socket to be writable."""
    return bool(transport.dataBuffer or transport._tempDataBuffer)


def send_now(transport: tcp.Connection, data: bytes) -> int:
    """``writeSomeData`` without its layers: what the kernel took of *data* (0 on error).

    An error is left for ``doWrite`` to find, once what was not sent is in
    Twisted's buffer.
    """
    if len(data) > transport.SEND_LIMIT:
        return 0
    try:
        return transport.socket.send(data)
    except OSError:
        return 0


class ListeningPort(tcp.Port):
    """Twisted's TCP port, accepting at most :attr:`max_accepts` per readable event,
    whose connections are :attr:`connection_class` transports.

    Either is done only while the fence says its assumptions hold;
    otherwise the port is Twisted's.
    """

    max_accepts: int | None = None
    connection_class: type[tcp.Server] = tcp.Server
    _accept_bound: int | None = None
    _accepts = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.max_accepts is not None and enabled(ACCEPT_BOUND):
            self._accept_bound = self.max_accepts
        if enabled(TURN_SENDS):
            self.transport = self.connection_class

    @property  # type: ignore[override]
    def numberAccepts(self) -> int:  # noqa: N802 - Twisted's attribute
        return self._accepts

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:  # noqa: N802
        bound = self._accept_bound
        self._accepts = value if bound is None else max(1, min(value, bound))


def pending_output_bytes(transport: object) -> int | None:
    """Bytes written to *transport* that the kernel has not taken yet, or None if unknown.

    Through a TLS layer (``TLSMemoryBIOProtocol``: its small-write batch,
    and what it holds back until the handshake is done), other protocol
    wrappers (a PROXY listener's, :mod:`pingchat.proxy`), and a WebSocket
    connection that names the transport it frames onto (``wire_transport``,
    the web door's), down to the TCP connection
    (Twisted's buffer, and a turn's writes that pingchat holds, see
    :class:`HeldBytes`). Plain text above TLS and records below it are
    added up as they are: a record is the text and ~22 bytes. None for
    transports of another kind, or when the assumptions it reads do not
    hold. :class:`pingchat.output.BoundedOutput` measures a slow reader's
    backlog with it.
    """
    total = 0
    for _ in range(6):  # a WebSocket's wire, TLS, a PROXY listener's wrapper, TCP
        if isinstance(transport, TLSMemoryBIOProtocol):
            if not FENCE.enabled(TLS_PENDING):
                return None
            total += _tls_unsent(transport)
            transport = transport.transport
        elif isinstance(transport, abstract.FileDescriptor):
            if not FENCE.enabled(TCP_PENDING):
                return None
            return total + _fd_unsent(transport)
        elif isinstance(transport, ProtocolWrapper):
            transport = transport.transport
        else:
            transport = getattr(transport, "wire_transport", None)
            if transport is None:
                return None
    return None


def _fd_unsent(fd: Any) -> int:
    held = fd.held_bytes() if hasattr(fd, "held_bytes") else 0
    return int(len(fd.dataBuffer) - fd.offset + fd._tempDataLen + held)


def _tls_unsent(layer: Any) -> int:
    # vars(), not getattr(): a ProtocolWrapper hands on what it lacks to the
    # protocol it wraps.
    state = vars(layer)
    total = sum(map(len, state.get("_appSendBuffer") or ()))
    aggregator: Any = state.get("_aggregator")
    if hasattr(aggregator, "held_bytes"):
        total += aggregator.held_bytes()
    elif type(aggregator).__name__ == "_AggregateSmallWrites":  # Twisted's
        total += sum(len(data) for data in aggregator._buffer)
    return total


class TLSTransport(BufferingTLSTransport):
    """Twisted's TLS transport with pingchat's shortcuts, where the fence allows them.

    Reads after the handshake are decrypted by :func:`.openssl.fast_read` and
    writes encrypted by :func:`.openssl.fast_write` (OpenSSL through cffi); the
    small-write batching can be replaced (:meth:`batch_writes`) and the
    memory BIOs compacted (:meth:`compact_memory`). Subclasses hear of
    reads and writes after the handshake through :meth:`received` and
    :meth:`encrypted`.
    """

    factory: TLSFactory

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - IProtocol
        if not (self.factory.fast_reads and fast_read(self, data)):
            super().dataReceived(data)
        if self._handshakeDone:
            self.received(data)

    def _write(self, data: bytes) -> None:
        if not (self.factory.fast_writes and fast_write(self, data)):
            super()._write(data)  # type: ignore[misc]
        if self._handshakeDone:
            self.encrypted(data)

    def received(self, data: bytes) -> None:
        """*data* arrived (encrypted) after the handshake."""

    def encrypted(self, data: bytes) -> None:
        """*data* was given to TLS after the handshake."""

    def batch_writes(self, make: Callable[[Callable[[bytes], object]], Any]) -> bool:
        """Replace Twisted's small-write batching with ``make(tls_write)``; whether it was.

        What *make* returns needs ``write``, ``flush`` and ``close``;
        ``tls_write`` gives data to TLS past any batching.
        """
        if not self.factory.turn_writes:
            return False
        batch = make(super(BufferingTLSTransport, self).write)
        self._aggregator = batch
        self.write = batch.write  # type: ignore[method-assign]
        return True

    def compact_memory(self) -> bool:
        """Swap the memory BIOs for new, empty ones; whether they were (see
        :func:`.openssl.compact_bios`)."""
        if not self.factory.compaction:
            return False
        if self._lostTLSConnection or self._aborted or self.disconnecting:
            return False
        return openssl.compact_bios(self._tlsConnection)


class TLSFactory(TLSMemoryBIOFactory):
    """``TLSMemoryBIOFactory`` for :class:`TLSTransport`: which shortcuts its connections take.

    The flags are decided once, when the factory is made (for a listener:
    at start-up), so that a connection only reads an attribute.
    """

    protocol = TLSTransport

    def __init__(
        self, contextFactory: Any, isClient: bool, wrappedFactory: Any, clock: Any = None
    ) -> None:
        super().__init__(contextFactory, isClient, wrappedFactory, clock=clock)
        if clock is None:  # as Twisted's own default
            from twisted.internet import reactor as clock
        self.clock = clock
        self.turn_writes = enabled(TLS_TURN_WRITES)
        self.fast_writes = enabled(TLS_FAST_WRITES)
        self.fast_reads = enabled(TLS_FAST_READS)
        self.compaction = enabled(TLS_COMPACTION)


# -- the web door's WebSocket upgrade -------------------------------------------------------


def websocket_upgrade(channel: Any, protocol: IProtocol) -> None:
    """Hand *channel*'s connection (an ``HTTPChannel`` handling the upgrade request) to
    *protocol*, with no idle timeout left on it.

    Through Twisted's ``_protocolUpgradeForWebsockets`` while
    ``http-channel-upgrade`` holds, else the same by hand; the timeout is
    turned off here (``TimeoutMixin.setTimeout``) only if Twisted's request
    handling no longer does it.
    """
    if not FENCE.enabled(WEBSOCKET_NO_TIMEOUT):
        channel.setTimeout(None)
    if FENCE.enabled(WEBSOCKET_HANDOVER):
        channel._protocolUpgradeForWebsockets(protocol)
        return
    channel.dataReceived = protocol.dataReceived
    channel.connectionLost = protocol.connectionLost
    protocol.makeConnection(channel.transport)


def register_websocket_producer(request: Any, producer: IProducer, streaming: bool) -> IConsumer:
    """Have *producer* paused and resumed as the upgraded connection's buffer fills and
    drains; the consumer to unregister it from.

    Registered with the upgrade *request*, whose channel forwards the
    transport's pauses, while ``http-request-producer`` holds; else with
    the transport itself, in the channel's place (which, its request never
    finished, does nothing more than forward them).
    """
    if FENCE.enabled(WEBSOCKET_BACKPRESSURE):
        request.registerProducer(producer, streaming)
        return request
    transport = request.channel.transport
    transport.unregisterProducer()
    transport.registerProducer(producer, streaming)
    return transport
