"""Output that gives up on a client that stops reading, shared by the doors.

A door protocol registers itself with its transport as a streaming producer:
the transport calls ``pauseProducing`` when its send buffer is full and
``resumeProducing`` once it has handed everything to the kernel. While
paused, every write first asks how much output the connection still holds
(:func:`unsent_bytes`: the transports' own buffers, TLS included); past
``max_backlog`` bytes the client is taken to have stopped reading and is
disconnected, with a logged reason. What the server holds for one client
never passes the bound by more than one write, and one stuck client never
slows the others.

The pause is only the signal to start measuring. It is not a measure:
Twisted's TCP transport calls ``pauseProducing`` again on *every* write
while its buffer is full, so a count that restarted at each pause never
grew (a plaintext IRC client that stopped reading was never dropped).
Where a transport cannot be measured (a test's ``StringTransport``, a
transport pingchat does not know), the bytes written since the pause are
counted instead; that count falls only when the transport says it has
drained (``resumeProducing``), never at another pause.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

log = Logger()

# Layers between a door and its socket: TLS, at most a wrapper or two.
MAX_LAYERS = 4


def unsent_bytes(transport: Any) -> int | None:
    """Bytes *transport* and the transports below it hold, not yet taken by the kernel.

    None when a layer is of a kind this function does not know how to
    measure. Layers are told apart by class: a ``ProtocolWrapper`` (TLS
    among them) forwards attributes it lacks to the transport below, so
    duck typing would count the socket's buffer once per layer.
    """
    total = 0
    for _ in range(MAX_LAYERS):
        if isinstance(transport, TLSMemoryBIOProtocol):
            total += _tls_unsent(transport)
        elif isinstance(transport, FileDescriptor):
            return total + _file_descriptor_unsent(transport)
        elif not isinstance(transport, ProtocolWrapper):
            # The web door's WebSocket connection names the socket it frames onto.
            wire = getattr(transport, "wire_transport", None)
            if wire is None:
                return None
            transport = wire
            continue
        transport = transport.transport
    return None


def _file_descriptor_unsent(transport: FileDescriptor) -> int:
    """A socket transport's write buffers, and pingchat's end-of-turn buffer.

    Private Twisted internals: to be fenced. ``FileDescriptor`` keeps what
    the kernel has not taken in ``dataBuffer`` (from ``offset``) and
    ``_tempDataBuffer`` (``_tempDataLen`` bytes); Twisted offers no public
    way to ask. ``_turn`` is :class:`pingchat.runtime.TurnFlushServer`'s
    (written this reactor turn, sent at its end): a few chunks at most,
    since it is only used while Twisted's buffers are empty.
    """
    held = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    turn = getattr(transport, "_turn", None)
    if turn:
        held += sum(len(chunk) for chunk in turn)
    return held


def _tls_unsent(tls: TLSMemoryBIOProtocol) -> int:
    """Plaintext a TLS layer holds back: this turn's writes, and writes waiting for TLS.

    Private Twisted internals: to be fenced. ``_appSendBuffer`` holds writes
    made before the handshake (or while TLS wants to read); the aggregator
    is pingchat's :class:`pingchat.tls.TurnWrites` (its ``pending`` count)
    or Twisted's ``_AggregateSmallWrites`` (its ``_buffer``). Records leave
    the outgoing memory BIO for the socket as soon as they are made, so
    nothing waits there between writes.
    """
    state = vars(tls)  # not getattr: a ProtocolWrapper forwards what it lacks
    held = sum(len(chunk) for chunk in state.get("_appSendBuffer") or ())
    aggregator = state.get("_aggregator")
    pending = getattr(aggregator, "pending", None)
    if isinstance(pending, int):
        held += pending
    else:
        held += sum(len(chunk) for chunk in getattr(aggregator, "_buffer", None) or ())
    return held


@implementer(IPushProducer)
class BoundedOutput:
    """Mixin for a ``Protocol``: ``write_bounded`` instead of ``transport.write``."""

    transport: Any
    closed: bool
    address: str | None
    paused = False
    # Output the connection held at the last measure (bytes). While paused,
    # for a transport that cannot be measured: the bytes written since the pause.
    backlog = 0
    _counted = False  # backlog is a count, not a measure

    def max_backlog(self) -> int:
        raise NotImplementedError

    def who(self) -> str | None:
        """The name to log for this client (account, nick, or None)."""
        return None

    def start_bounded_output(self) -> None:
        """Call from ``connectionMade``."""
        self.transport.registerProducer(self, True)

    def write_bounded(self, data: bytes) -> None:
        """Write *data*, or drop the client if too much is already waiting."""
        if self.closed or self.transport is None:
            return
        if self.paused:
            if not self._counted:
                measured = unsent_bytes(self.transport)
                if measured is None:
                    self._counted = True
                else:
                    self.backlog = measured
            bound = self.max_backlog()
            if self.backlog > bound:
                log.warn(
                    "disconnecting {user} at {address}: more than {bound} bytes"
                    " of output pending (the client is not reading)",
                    user=self.who(),
                    address=self.address,
                    bound=bound,
                )
                self.closed = True
                self.transport.abortConnection()
                return
            if self._counted:
                self.backlog += len(data)
        self.transport.write(data)

    def pauseProducing(self) -> None:  # noqa: N802 - IPushProducer
        # Called again on every write while the buffer stays full: not a reset.
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - IPushProducer
        # The transport has handed what it held to the kernel.
        self.paused = False
        self.backlog = 0
        self._counted = False

    def stopProducing(self) -> None:  # noqa: N802 - IPushProducer
        pass
