"""The PingChat protocol door: JSON lines <-> the chat service.

The protocol instance is the *mind* passed to ``portal.login``: the service
calls its :class:`~pingchat.interfaces.IChatMind` methods to deliver events.
It translates; it owns no chat state. Its ops are in one module per area
(:mod:`pingchat.native.base` lists them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat import PROTOCOL_VERSION, __version__
from pingchat.auth.throttle import canonical_address
from pingchat.chat.session import Session
from pingchat.errors import ChatError, NotAuthenticated, RateLimited
from pingchat.interfaces import IChatMind
from pingchat.model import Message
from pingchat.native import wire
from pingchat.native.account import AccountOps
from pingchat.native.login import LoginOps
from pingchat.native.messaging import MessagingOps
from pingchat.native.people import PeopleOps
from pingchat.native.rooms import RoomOps
from pingchat.output import BoundedOutput

log = Logger()

PUBLIC_OPS = frozenset({"register", "login", "resume", "recover", "ping"})


@implementer(IChatMind)
class NativeProtocol(
    LoginOps, RoomOps, MessagingOps, PeopleOps, AccountOps, BoundedOutput, Protocol
):
    """One connection of the native door: JSON lines in, replies and events out.

    Framing, the request loop and the events (:class:`IChatMind`) are here;
    the ops, by area, in the mixins (:mod:`pingchat.native.base`).
    """

    door = "native"

    def __init__(self, factory: Any) -> None:
        # The NativeFactory that builds it, from pingchat.native.factory, which imports
        # this module: it is not named here (Protocol.factory is Any in Twisted).
        self.factory = factory
        self.framer = wire.LineFramer(factory.max_line)
        self.session: Session | None = None
        self._logout: Callable[[], None] | None = None
        self._authenticating = False
        self.address: str | None = None
        self.closed = False

    # -- connection ------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.address = canonical_address(getattr(peer, "host", None))
        self.bucket = self.factory.new_bucket()
        self.factory.connections.add(self)
        self.start_bounded_output()
        self.send(
            wire.event(
                "hello",
                server=self.factory.service.server_name,
                version=__version__,
                protocol=PROTOCOL_VERSION,
                registration=self.factory.accounts.registration,
            )
        )

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.closed = True
        self.factory.connections.discard(self)
        self._end_session()

    def _end_session(self) -> None:
        logout, self._logout, self.session = self._logout, None, None
        if logout is not None:
            logout()

    def send(self, obj: dict[str, Any]) -> None:
        """Write one reply or event; what JSON cannot hold is never written.

        A reply that cannot be encoded (a server bug: the parser lets in no
        NaN, Infinity or lone surrogate) still answers its request, with an
        ``internal_error``; such an event is logged and dropped.
        """
        if self.closed or self.transport is None:
            return
        try:
            line = wire.encode(obj)
        except ValueError:
            log.failure(
                "not sent: a {kind} that is not JSON", kind="reply" if "ok" in obj else "event"
            )
            if "ok" not in obj:
                return
            line = wire.encode(wire.error(obj.get("id"), "internal_error", "internal server error"))
        self.send_line(line)

    def send_line(self, data: bytes) -> None:
        """Write one encoded line, or drop a client that has stopped reading."""
        self.write_bounded(data)

    def max_backlog(self) -> int:
        return self.factory.max_backlog

    def who(self) -> str | None:
        return self.session.name if self.session else None

    def dataReceived(self, data: bytes) -> None:
        for line in self.framer.feed(data):
            if self.closed:
                return
            if isinstance(line, wire.LineTooLong):
                self.send(
                    wire.error(
                        None,
                        "line_too_long",
                        f"a line may be at most {self.framer.max_line} bytes;"
                        f" a line of {line.length} bytes was discarded",
                    )
                )
                continue
            if line.strip():
                self.line_received(line)

    # -- requests --------------------------------------------------------------

    def line_received(self, line: bytes) -> None:
        """Answer one request line, exactly once, echoing its id when it had a valid one.

        Every door that carries native requests (TLS lines, WebSocket text
        frames) comes through here: ``wire.parse_request`` refuses what is not
        JSON or not Unicode text before any op sees it. Every line counts
        toward the request rate, the refused ones too.
        """
        refused: wire.RefusedLine | None = None
        try:
            req = wire.parse_request(line)
        except wire.RefusedLine as e:
            refused, req = e, {}
        request_id = refused.request_id if refused else req.get("id")
        try:
            wait = self.bucket.take(self.factory.clock.seconds())
            if wait > 0:
                raise RateLimited(f"too many requests; retry after {wait:.2f}s", wait)
            if refused is not None:
                raise refused
            op = req["op"]
            handler = getattr(self, "op_" + op.replace(".", "_"), None)
            if handler is None or not op.replace(".", "_").isidentifier():
                self.send(wire.error(request_id, "unknown_op", f"unknown op: {op}"))
                return
            if self.session is None and op not in PUBLIC_OPS:
                raise NotAuthenticated(f"log in before using {op}")
            d = maybeDeferred(handler, req)
        except ChatError as e:
            self._reply_error(request_id, e)
            return
        except Exception:
            self._reply_failure(request_id, Failure())
            return
        d.addCallbacks(
            lambda result: self.send(wire.ok(request_id, result)),
            lambda f: self._reply_failure(request_id, f),
        )
        d.addErrback(lambda f: log.failure("reply failed", f))

    def _reply_error(self, request_id: Any, e: ChatError) -> None:
        self.send(wire.error(request_id, e.code, e.message, **e.extra))

    def _reply_failure(self, request_id: Any, failure: Failure) -> None:
        e = failure.value
        if isinstance(e, ChatError):
            self._reply_error(request_id, e)
        elif isinstance(e, UnauthorizedLogin):
            code = getattr(e, "code", "auth_failed")
            extra = {}
            if code == "rate_limited":
                extra["retry_after"] = round(getattr(e, "retry_after", 1.0), 3)
            self.send(wire.error(request_id, code, str(e) or "authentication failed", **extra))
        else:
            log.failure("internal error in a request", failure)
            self.send(wire.error(request_id, "internal_error", "internal server error"))

    # -- for the ops -------------------------------------------------------------

    @property
    def me(self) -> Session:
        """This connection's session, for an op that needs one (line_received checked)."""
        assert self.session is not None
        return self.session

    # -- IChatMind ----------------------------------------------------------------

    def contact_event(self, user: str, status: str) -> None:
        self.send(wire.event("contact", user=user, status=status))

    def message(self, message: Message, offline: bool = False) -> None:
        if message.kind == "tagmsg":  # IRC client tags without text: nothing to show here
            return
        if offline:
            self.send({"event": "message", **message.to_event(offline)})
        else:
            self.write_bounded(self.factory.message_line(message))

    def joined(self, room: str, user: str) -> None:
        self.send_line(self.factory.event_line("joined", room=room, user=user))

    def parted(self, room: str, user: str, reason: str | None) -> None:
        self.send_line(self.factory.event_line("parted", room=room, user=user, reason=reason))

    def kicked(self, room: str, user: str, by: str, reason: str | None) -> None:
        self.send_line(
            self.factory.event_line("kicked", room=room, user=user, by=by, reason=reason)
        )

    def topic_changed(self, room: str, topic: str, by: str) -> None:
        self.send_line(self.factory.event_line("topic", room=room, topic=topic, by=by))

    def presence_changed(self, user: str, presence: str, away: str | None) -> None:
        self.send_line(
            self.factory.event_line("presence", user=user, presence=presence, away=away)
        )

    def modes_changed(self, room: str, by: str, changes: list[tuple[str, str | None]]) -> None:
        self.send(wire.event("mode", room=room, by=by, changes=[[c, a] for c, a in changes]))

    def invited(self, room: str, by: str) -> None:
        self.send(wire.event("invited", room=room, by=by))

    def key_changed(self, user: str, device: str, action: str, fingerprint: str) -> None:
        self.send(
            wire.event("key", user=user, device=device, action=action, fingerprint=fingerprint)
        )

    def notice(self, text: str, sender: str) -> None:
        self.send(wire.event("notice", text=text, **{"from": sender}))

    def message_deleted(self, message: Message, by: str, reason: str | None) -> None:
        fields = message.to_event()
        del fields["deleted"]
        self.send(wire.event("deleted", **fields, by=by, reason=reason))

    def wallops(self, text: str, sender: str) -> None:
        if self.session is not None and self.session.operator is not None:
            self.send(wire.event("notice", text=text, wallops=True, **{"from": sender}))

    def disconnect(self, reason: str) -> None:
        self.send(wire.event("disconnect", reason=reason))
        self._end_session()
        self.lose_connection()

