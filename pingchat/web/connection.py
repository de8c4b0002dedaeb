"""One WebSocket connection carrying a door's protocol: messages in, lines out.

A :class:`WebSocketConnection` sits between the HTTP connection it took over
(below: it is that connection's ``IProtocol``) and an unchanged door
protocol, :class:`~pingchat.native.protocol.NativeProtocol` or
:class:`~pingchat.irc.protocol.IRCProtocol` (above: it is that protocol's
transport), like Twisted's ``ProtocolWrapper``. wsproto parses and frames;
this class adds what a server needs around it:

* **A message size limit, checked before buffering.** wsproto hands a
  message over in pieces as they arrive; past the limit the connection is
  closed with code 1009 and nothing more is kept, so a client cannot make
  the server hold more than one limit's worth (plus one socket read).
* **Lines out, one message each.** A door writes ``\\n``-terminated lines;
  each becomes one text (or, for ``binary.ircv3.net``, binary) message
  without its line ending. Frames are built by a shared
  :class:`FrameEncoder` that remembers its last inputs: a fan-out hands the
  same encoded line to every recipient, and the frame (unmasked, the same
  for everyone) is built once.
* **Back-pressure, both ways.** The door's ``registerProducer`` goes to the
  HTTP request, whose channel pauses and resumes it as the socket's buffer
  fills and drains (``twisted_internals.register_websocket_producer``), so
  ``--max-backlog`` drops a browser that stops reading; the door's
  ``pauseProducing`` (IRC holding a paste back) stops reading the socket,
  as on TCP.
* **Idle pings.** After ``ping_interval`` seconds without a byte from the
  client, a WebSocket ping; without an answer (or any data) within
  ``ping_timeout`` more, the connection is closed (1011).

The door protocol sees the real client address (or the one a trusted proxy
vouched for) through ``getPeer``. ``transport`` (also ``wire_transport``)
is the TCP or TLS transport underneath.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IProducer,
    IProtocol,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol
from wsproto.utilities import LocalProtocolError
from zope.interface import implementer

from pingchat.native import wire as native_wire
from pingchat.twisted_internals import register_websocket_producer

if TYPE_CHECKING:
    from twisted.web.server import Request

log = Logger()

PING_INTERVAL = 30.0  # seconds of silence before a ping (under nginx's 60 s proxy_read_timeout)
PING_TIMEOUT = 30.0  # seconds more to answer it

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_TIMEOUT = 1011

OPEN = ConnectionState.OPEN


class FrameEncoder:
    """Encoded lines to WebSocket messages, one message per line.

    A server's frames are not masked and carry no extension here, so a line
    frames to the same bytes for every connection: the last few inputs are
    remembered (by identity, as the doors' encoded-line caches hand out the
    same ``bytes`` object to every recipient of a fan-out). In text mode a
    line that is not valid UTF-8 has its bad bytes replaced by U+FFFD: a
    browser closes a connection that sends it invalid text.
    """

    KEEP = 4

    def __init__(self, binary: bool) -> None:
        self.binary = binary
        # wsproto's frame serializer; stateless for whole (fin) messages.
        self._framer = FrameProtocol(client=False, extensions=[])
        self._recent: list[tuple[bytes, bytes]] = []

    def frames(self, data: bytes) -> bytes:
        for seen, framed in self._recent:
            if seen is data:
                return framed
        framed = b"".join(self._frame(line) for line in _lines(data))
        self._recent.insert(0, (data, framed))
        del self._recent[self.KEEP :]
        return framed

    def _frame(self, line: bytes) -> bytes:
        payload: bytes | str = line if self.binary else line.decode("utf-8", "replace")
        return bytes(self._framer.send_data(payload, fin=True))


def _lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


TEXT_FRAMES = FrameEncoder(binary=False)
BINARY_FRAMES = FrameEncoder(binary=True)


@implementer(IProtocol, ITransport, IConsumer, IPushProducer)
class WebSocketConnection:
    """The protocol of an upgraded HTTP connection and the transport of a door protocol."""

    door = "web"
    disconnecting = False

    def __init__(
        self,
        connection: Connection,
        protocol: Protocol,
        request: Request,
        peer: IAddress,
        clock: IReactorTime,
        *,
        max_message: int,
        encoder: FrameEncoder = TEXT_FRAMES,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        self.connection = connection
        self.protocol = protocol
        self.request = request
        self.peer = peer
        self.clock = clock
        self.max_message = max_message
        self.encoder = encoder
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.transport: Any = None
        self._parts: list[bytes] = []
        self._size = 0
        self._last_input = 0.0
        self._pinged = False
        self._timer: IDelayedCall | None = None
        self._lost = False
        self._reading_paused = False
        self._producer_consumer: IConsumer | None = None

    @property
    def wire_transport(self) -> Any:
        """The TCP or TLS transport the WebSocket runs on."""
        return self.transport

    # -- below: the upgraded HTTP connection -------------------------------------

    def makeConnection(self, transport: Any) -> None:  # noqa: N802 - IProtocol
        self.transport = transport
        self.connectionMade()

    def connectionMade(self) -> None:  # noqa: N802 - IProtocol
        self._last_input = self.clock.seconds()
        self._timer = self.clock.callLater(self.ping_interval, self._keepalive)
        self.protocol.makeConnection(self)  # type: ignore[arg-type]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - IProtocol
        if self.disconnecting:
            return
        self._last_input = self.clock.seconds()
        self._pinged = False
        self.connection.receive_data(data)
        for event in self.connection.events():
            self._event(event)
            if self.disconnecting:
                return

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - IProtocol
        if self._lost:
            return
        self._lost = True
        self.disconnecting = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._parts = []
        self.protocol.connectionLost(reason)

    def _event(self, event: Event) -> None:
        if isinstance(event, Message):
            self._message_part(event)
        elif isinstance(event, Ping):
            self._send(event.response())
        elif isinstance(event, CloseConnection):
            # The client's close, or wsproto's verdict on a broken frame
            # (1002 protocol error, 1007 invalid UTF-8): answer and hang up.
            self._send(event.response())
            self._hang_up()
        # A Pong needs nothing more: any input counts as a sign of life.

    def _message_part(self, event: Message[Any]) -> None:
        data = event.data
        chunk = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._size += len(chunk)
        if self._size > self.max_message:
            log.info(
                "closing the WebSocket of {user} at {address}: a message of more than"
                " {limit} bytes (code 1009)",
                user=self.who(),
                address=getattr(self.peer, "host", None),
                limit=self.max_message,
            )
            self.close(CLOSE_TOO_BIG, f"a message may be at most {self.max_message} bytes")
            return
        self._parts.append(chunk)
        if event.message_finished:
            parts, self._parts, self._size = self._parts, [], 0
            message = parts[0] if len(parts) == 1 else b"".join(parts)
            self.message_received(message, isinstance(event, BytesMessage))

    def message_received(self, data: bytes, binary: bool) -> None:
        """One whole message from the client; each endpoint says what it means."""
        raise NotImplementedError

    def who(self) -> str | None:
        who: Callable[[], str | None] | None = getattr(self.protocol, "who", None)
        return who() if who is not None else None

    def _keepalive(self) -> None:
        self._timer = None
        if self.disconnecting:
            return
        if self._reading_paused:
            # The door holds input back (IRC: a paste waiting for the rate
            # limit): the client's answers wait in the socket, unread.
            self._last_input = self.clock.seconds()
            self._pinged = False
        idle = self.clock.seconds() - self._last_input
        if self._pinged and idle >= self.ping_interval + self.ping_timeout:
            log.info(
                "closing the WebSocket of {user} at {address}: no answer to a ping"
                " in {timeout:.0f} s",
                user=self.who(),
                address=getattr(self.peer, "host", None),
                timeout=self.ping_timeout,
            )
            self.close(CLOSE_TIMEOUT, "ping timeout")
            return
        if not self._pinged and idle >= self.ping_interval:
            self._pinged = True
            self._send(Ping(b"pingchat"))
            delay = self.ping_timeout
        elif self._pinged:
            delay = self.ping_interval + self.ping_timeout - idle
        else:
            delay = self.ping_interval - idle
        self._timer = self.clock.callLater(max(1.0, delay), self._keepalive)

    def _send(self, event: Event) -> None:
        """Send a control event if the connection's state still allows it."""
        try:
            data = self.connection.send(event)
        except LocalProtocolError:
            return
        if self.transport is not None and not self._lost:
            self.transport.write(data)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the closing handshake with *code* and hang up."""
        if self.disconnecting:
            return
        if self.connection.state is OPEN:
            self._send(CloseConnection(code, reason))
        self._hang_up()

    def _hang_up(self) -> None:
        self.disconnecting = True
        self._parts = []
        if self.transport is not None and not self._lost:
            self.transport.loseConnection()

    # -- above: the door protocol's transport -------------------------------------

    def write(self, data: bytes) -> None:
        if self.disconnecting or self._lost or self.connection.state is not OPEN:
            return
        self.transport.write(self.encoder.frames(data))

    def writeSequence(self, data: Iterable[bytes]) -> None:  # noqa: N802 - ITransport
        self.write(b"".join(data))

    def loseConnection(self, code: int = CLOSE_NORMAL) -> None:  # noqa: N802 - ITransport
        self.close(code)

    def abortConnection(self) -> None:  # noqa: N802 - ITCPTransport
        self.disconnecting = True
        if self.transport is not None and not self._lost:
            self.transport.abortConnection()

    def getPeer(self) -> IAddress:  # noqa: N802 - ITransport
        return self.peer

    def getHost(self) -> IAddress:  # noqa: N802 - ITransport
        return self.transport.getHost()  # type: ignore[no-any-return]

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:  # noqa: N802
        """The door's output producer, paused and resumed with the socket's buffer."""
        self._producer_consumer = register_websocket_producer(self.request, producer, streaming)

    def unregisterProducer(self) -> None:  # noqa: N802 - IConsumer
        if self._producer_consumer is not None:
            self._producer_consumer.unregisterProducer()
            self._producer_consumer = None

    # The door's control over reading (IPushProducer, as a TCP transport offers).
    def pauseProducing(self) -> None:  # noqa: N802 - IPushProducer
        self._reading_paused = True
        if self.transport is not None and not self._lost:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802 - IPushProducer
        self._reading_paused = False
        self._last_input = self.clock.seconds()
        if self.transport is not None and not self._lost and not self.disconnecting:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:  # noqa: N802 - IPushProducer
        if self.transport is not None and not self._lost:
            self.transport.stopProducing()

    # twisted.web.websocket's WebSocketTransport, for code written against it.
    def sendTextMessage(self, text: str) -> None:  # noqa: N802
        self.write_message(TextMessage(text))

    def sendBytesMessage(self, data: bytes) -> None:  # noqa: N802
        self.write_message(BytesMessage(data))

    def write_message(self, message: Message[Any]) -> None:
        if not self.disconnecting and self.connection.state is OPEN:
            self._send(message)

    def ping(self, payload: bytes = b"") -> None:
        self._send(Ping(payload))

    attachProducer = registerProducer  # noqa: N815
    detachProducer = unregisterProducer  # noqa: N815


class NativeConnection(WebSocketConnection):
    """``/ws``: each text message is one request of the native protocol."""

    door = "web"

    def message_received(self, data: bytes, binary: bool) -> None:
        proto: Any = self.protocol
        if proto.closed:
            return
        if binary:
            proto.send(
                native_wire.error(
                    None,
                    "bad_request",
                    "send each request as a text message (one JSON object);"
                    " a binary message was discarded",
                )
            )
            return
        # The whole message is the request: a newline inside it is JSON whitespace.
        if data.strip():
            proto.line_received(data)


class IRCConnection(WebSocketConnection):
    """``/irc``: each message is one IRC line, without its CR LF (IRCv3 WebSocket)."""

    door = "web-irc"

    def message_received(self, data: bytes, binary: bool) -> None:
        proto: Any = self.protocol
        if proto.closed:
            return
        # Tolerated: one trailing line ending, as clients written for TCP send.
        if data.endswith(b"\n"):
            data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
        if b"\r" in data or b"\n" in data or b"\0" in data:
            # Splitting would let one message smuggle in more commands.
            proto.write(
                f":{proto.server} FAIL * INVALID_MESSAGE :A WebSocket message is one IRC"
                " line, without CR, LF or NUL; this one was discarded"
            )
            return
        proto.dataReceived(data + b"\r\n")
