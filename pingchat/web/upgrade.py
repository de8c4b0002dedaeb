"""``/ws`` and ``/irc``: the WebSocket handshake, with the Origin check and subprotocols.

The handshake is wsproto's (``H11Handshake``, as in ``twisted.web.websocket``),
answered with the subprotocol the endpoint chose; the HTTP connection is
then handed to a :class:`~pingchat.web.connection.WebSocketConnection`
carrying a protocol built by the door's own factory, as a TCP connection
would get. Query strings are ignored: nothing is ever read from a URL, so
no token ends up in a proxy's or browser's history.
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import h11
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from wsproto import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.events import Request as HandshakeRequest
from wsproto.handshake import H11Handshake
from wsproto.utilities import ProtocolError

from pingchat.irc import wire as irc_wire
from pingchat.native import wire as native_wire
from pingchat.twisted_internals import websocket_upgrade
from pingchat.web.connection import (
    BINARY_FRAMES,
    PING_INTERVAL,
    PING_TIMEOUT,
    TEXT_FRAMES,
    FrameEncoder,
    IRCConnection,
    NativeConnection,
    WebSocketConnection,
)
from pingchat.web.policy import ClientView, OriginPolicy
from pingchat.web.site import WebRequest, not_allowed, not_found, text_response

log = Logger()

IRC_BINARY = "binary.ircv3.net"
IRC_TEXT = "text.ircv3.net"

# Origins refused so far, each logged once (forgotten all at once when full).
REFUSALS_REMEMBERED = 1000


class WebSocketEndpoint(Resource):
    """One WebSocket endpoint: checks, handshake, then a door protocol on the connection."""

    isLeaf = True
    connection_class: type[WebSocketConnection] = WebSocketConnection

    def __init__(
        self,
        factory: Factory,
        origins: OriginPolicy,
        clock: IReactorTime,
        *,
        max_message: int,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
    ) -> None:
        super().__init__()
        self.factory = factory
        self.origins = origins
        self.clock = clock
        self.max_message = max_message
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.refused: set[str] = set()

    def choose(self, offered: list[str]) -> tuple[str | None, FrameEncoder]:
        """The subprotocol to accept (None: none) and how to frame what is sent."""
        return None, TEXT_FRAMES

    def render(self, request: Request) -> Any:
        if request.postpath:
            return not_found(request)
        if request.method != b"GET":
            return not_allowed(request, b"GET")
        assert isinstance(request, WebRequest)
        view = request.client_view()
        origin = request.getHeader(b"origin")
        origin_text = origin.decode("latin-1") if origin is not None else None
        host = request.getHeader(b"host")
        host_text = host.decode("latin-1") if host is not None else None
        if not self.origins.allows(origin_text, view.scheme, host_text):
            return self._refuse_origin(request, origin_text or "", view)
        handshake = H11Handshake(ConnectionType.SERVER)
        headers = [
            (name, value)
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        try:
            handshake.initiate_upgrade_connection(headers, request.uri)
            event = next(e for e in handshake.events() if isinstance(e, HandshakeRequest))
        except (ProtocolError, h11.ProtocolError, ValueError, StopIteration) as e:
            hint = getattr(e, "event_hint", None)
            code = getattr(hint, "status_code", 400)
            return text_response(
                request,
                426 if code == 426 else 400,
                f"This is a WebSocket endpoint (RFC 6455, version 13): {e}",
                {b"Sec-WebSocket-Version": b"13"} if code == 426 else None,
            )
        subprotocol, encoder = self.choose(list(event.subprotocols))
        accept = handshake.send(AcceptConnection(subprotocol=subprotocol))
        connection = handshake.connection
        assert connection is not None
        peer = _peer_address(request, view)
        protocol: Any = self.factory.buildProtocol(peer)
        socket = self.connection_class(
            connection,
            protocol,
            request,
            peer,
            self.clock,
            max_message=self.max_message,
            encoder=encoder,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )
        protocol.door = socket.door
        channel: Any = request.channel
        channel.transport.write(accept)
        websocket_upgrade(channel, socket)
        return NOT_DONE_YET

    def _refuse_origin(self, request: Request, origin: str, view: ClientView) -> bytes:
        if origin not in self.refused:
            if len(self.refused) >= REFUSALS_REMEMBERED:
                self.refused.clear()
            self.refused.add(origin)
            log.warn(
                "refused a WebSocket to {path} from {address}: its page's origin {origin!r}"
                " is not this server's; add it with --web-origin if it is yours"
                " (each origin is logged once)",
                path=request.path.decode("latin-1"),
                address=view.host,
                origin=origin,
            )
        return text_response(
            request,
            403,
            f"Forbidden: a page from {origin or 'an unknown origin'} may not open a WebSocket"
            " here. This server accepts its own pages and the origins its administrator"
            " added with --web-origin.",
        )


class NativeEndpoint(WebSocketEndpoint):
    """``/ws``: the native protocol, one JSON object per text message; no subprotocol."""

    connection_class = NativeConnection

    def __init__(self, factory: Factory, origins: OriginPolicy, clock: IReactorTime, **kw: Any):
        kw.setdefault("max_message", native_wire.MAX_LINE)
        super().__init__(factory, origins, clock, **kw)


class IRCEndpoint(WebSocketEndpoint):
    """``/irc``: IRC as the IRCv3 WebSocket specification says."""

    connection_class = IRCConnection

    def __init__(self, factory: Factory, origins: OriginPolicy, clock: IReactorTime, **kw: Any):
        # A line and its tags, as on the TCP door (irc.wire.MAX_INPUT).
        kw.setdefault("max_message", irc_wire.MAX_INPUT)
        super().__init__(factory, origins, clock, **kw)

    def choose(self, offered: list[str]) -> tuple[str | None, FrameEncoder]:
        """The first of the client's subprotocols (in its order) that we speak; else text."""
        for name in offered:
            if name == IRC_BINARY:
                return name, BINARY_FRAMES
            if name == IRC_TEXT:
                return name, TEXT_FRAMES
        return None, TEXT_FRAMES


def _peer_address(request: Request, view: ClientView) -> IAddress:
    """The client's address for the door: the socket's, or the one a trusted proxy gave."""
    real = request.getClientAddress()
    if not view.proxied:
        return real  # type: ignore[no-any-return]
    try:
        address = ip_address(view.host)
    except ValueError:
        return real  # type: ignore[no-any-return]
    cls = IPv6Address if address.version == 6 else IPv4Address
    return cls("TCP", view.host, 0)
