"""The IRC door: IRC lines <-> the chat service.

One :class:`IRCProtocol` per connection. It is the *mind* passed to
``portal.login``: the service calls its :class:`~pingchat.interfaces.IChatMind`
methods, and it turns them into IRC lines. Like the native door it translates
and owns no chat state; rooms, members, presence and history live in the
service.

Commands from one connection are handled one at a time, in order: a command
whose work is asynchronous (a database write, bcrypt) holds the next one back,
so replies come out in the order the client asked. A token bucket limits how
fast lines are taken (fake lag): what comes faster waits in the connection's
inbox, and while much waits the connection stops reading, so the rest of a
paste, or a flood, waits in TCP's buffers and the sender's. Only a client
that sends more than a bound in one go is disconnected (``Excess Flood``).

This module holds the connection itself: timers, output, input and dispatch
(:meth:`IRCProtocol.handle` calls ``irc_<COMMAND>``). The commands are in
mixins: :mod:`pingchat.irc.registration`, :mod:`pingchat.irc.login`, :mod:`pingchat.irc.rooms`,
:mod:`pingchat.irc.queries`, :mod:`pingchat.irc.messaging` and
:mod:`pingchat.irc.operators`; the IChatMind methods (the chat world's
events as IRC lines) in :mod:`pingchat.irc.events`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat.auth.throttle import canonical_address
from pingchat.chat.service import ChatService
from pingchat.chat.session import Session
from pingchat.errors import ChatError
from pingchat.interfaces import IChatMind
from pingchat.irc import caps as capabilities
from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.base import NeedMoreParams as NeedMoreParams
from pingchat.irc.events import EventsMixin
from pingchat.irc.login import LoginMixin
from pingchat.irc.messaging import MessagingMixin
from pingchat.irc.operators import OperatorsMixin
from pingchat.irc.queries import QueriesMixin
from pingchat.irc.registration import RegistrationMixin
from pingchat.irc.reply import Reply
from pingchat.irc.rooms import RoomsMixin
from pingchat.output import BoundedOutput

log = Logger()

# Commands a connection may use before it has registered (NICK/USER)...
PRE_REGISTRATION = frozenset(
    {"CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "PING", "PONG", "QUIT"}
)
# ...and, without --guests, before it has logged in.
UNAUTHENTICATED = PRE_REGISTRATION | {
    "PRIVMSG", "NOTICE", "NICKSERV", "NS", "MOTD", "LUSERS", "HELP", "VERSION", "TIME",
}

# While more than this waits for the rate limit, the connection stops reading
# from its socket until everything waiting has been handled. (The bound that
# disconnects is the factory's max_queue and max_queue_bytes.)
UTF8_REFUSED = (
    "Message rejected: this server takes UTF-8 only; set your client's encoding to UTF-8"
)
# NUL is not IRC text (RFC 1459 2.3.1) and no store backend holds it alike
# (PostgreSQL's text cannot): the line is refused, not stripped (docs/irc.md).
NUL_REFUSED = "Message rejected: it holds NUL (U+0000), which IRC text cannot contain"
PAUSE_LINES = 100
PAUSE_BYTES = 32 * 1024

PIPELINED = frozenset({b"PRIVMSG", b"NOTICE"})


def _command_of(item: bytes | wire.LineTooLong) -> bytes:
    """The command of a raw line (skipping tags and source), upper-cased."""
    if not isinstance(item, bytes):
        return b""
    words = item.lstrip().split(b" ", 3)
    while words and words[0][:1] in (b"@", b":"):
        words.pop(0)
    return words[0].upper() if words else b""


def _pending(d: Deferred[Any]) -> bool:
    """Whether *d* has no result yet.

    ``called`` is not enough: a Deferred whose callback returned another,
    unfired Deferred is called and paused until that one fires (CHATHISTORY
    LATEST resolves its references at once, then waits for the reader).
    """
    return not d.called or bool(d.paused)


@implementer(IChatMind)
class IRCProtocol(
    RegistrationMixin, LoginMixin, RoomsMixin, QueriesMixin, MessagingMixin, OperatorsMixin,
    EventsMixin, BoundedOutput, Protocol,
):
    """One IRC client connection."""

    door = "irc"

    # Defaults on the class: an attribute reaches a connection's __dict__
    # only when something sets it (CAP, SASL, a login, a command...).
    # CPython shares one key table among instances of up to 29 attributes;
    # at 39 every connection's __dict__ was a table of its own, 1,584 bytes
    # instead of ~300.
    closed = False
    password: str | None = None
    _registering = False
    _logout: Callable[[], None] | None = None
    cap_version = 0
    _cap_negotiating = False
    _sasl: str | None = None
    _sasl_buffer = ""
    _busy = False
    _messages_in_flight = 0
    _draining = False
    _reading_paused = False
    _drain_call: IDelayedCall | None = None
    _inflight: tuple[str, Reply] | None = None
    _held: list[tuple[str, dict[str, str]]] | None = None
    _batch_seq = 0
    invisible = False

    def __init__(self, factory: Any) -> None:
        # The IRCFactory that builds it, from pingchat.irc.factory, which imports
        # this module: it is not named here (Protocol.factory is Any in Twisted).
        self.factory = factory
        self.framer = wire.LineFramer()
        self.address: str | None = None
        self.nick: str | None = None
        self.user: str | None = None
        self.realname = ""
        self.registered = False
        self.session: Session | None = None
        self.caps: set[str] = set()
        self.tags_wanted = capabilities.tags_wanted(self.caps)
        self._inbox: deque[bytes | wire.LineTooLong] = deque()
        self._timer: IDelayedCall | None = None
        self._last_input = 0.0
        self._ping_sent = False

    # The factory's, read through it rather than copied into every connection.
    @property
    def service(self) -> ChatService:
        return self.factory.service  # type: ignore[no-any-return]

    @property
    def server(self) -> str:
        return self.factory.server_name  # type: ignore[no-any-return]

    # -- connection ------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        self.address = canonical_address(getattr(peer, "host", None))
        self.bucket = self.factory.new_bucket()
        self.factory.connections.add(self)
        self.start_bounded_output()
        self._last_input = self.clock_seconds()
        self._schedule(self.factory.registration_timeout, self._registration_timed_out)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008
        self.closed = True
        self.factory.connections.discard(self)
        for call in (self._timer, self._drain_call):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._drain_call = None
        self._inbox.clear()
        self._remember()
        self._end_session("Connection closed")

    def _remember(self) -> None:
        """Leave a WHOWAS entry for the nick this connection used."""
        session = self.session
        if session is not None and self.registered:
            self.factory.remember_left(session, self.realname or session.name)

    def _end_session(self, reason: str = "Quit") -> None:
        """Leave the chat world; those who shared a room with a guest see it QUIT for *reason*."""
        session = self.session
        if session is not None:
            self.factory.logged_in -= 1
        logout, self._logout, self.session = self._logout, None, None
        if logout is None:
            return
        guest = session is not None and session.guest
        if guest:
            assert session is not None
            # Read by parted(), for the mask and reason of the QUIT others see.
            self.factory.quitting[session.folded] = (session.hostmask, reason)
        try:
            logout()
        finally:
            if guest:
                assert session is not None
                self.factory.quitting.pop(session.folded, None)

    def clock_seconds(self) -> float:
        return self.factory.clock.seconds()

    def _schedule(self, delay: float, fn: Callable[[], None]) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.factory.clock.callLater(delay, fn)

    def close(self, reason: str) -> None:
        """Send ``ERROR`` and close the connection."""
        if self.closed:
            return
        self.write(f"ERROR :Closing Link: {self.address or 'unknown'} ({reason})")
        self.closed = True
        self._remember()
        self._end_session(reason)
        self.lose_connection()

    def _registration_timed_out(self) -> None:
        self._timer = None
        if self.registered:
            self.close("Login timeout: log in or register an account to chat here")
        else:
            self.close("Registration timeout")

    def _keepalive(self) -> None:
        """PING a client that has been quiet; drop one that stays silent."""
        self._timer = None
        now = self.clock_seconds()
        if self._inbox:
            # Its lines still wait for the rate limit (reading may be paused,
            # a PONG among them): a client being slowed down is not idle.
            self._last_input, self._ping_sent = now, False
        idle = now - self._last_input
        interval, timeout = self.factory.ping_interval, self.factory.ping_timeout
        if self._ping_sent and idle >= interval + timeout:
            self.close(f"Ping timeout: {int(idle)} seconds")
            return
        if idle >= interval and not self._ping_sent:
            self._ping_sent = True
            self.write(f"PING :{self.server}")
            self._schedule(timeout, self._keepalive)
            return
        self._schedule(max(1.0, interval - idle) if not self._ping_sent else timeout,
                       self._keepalive)

    # -- output ------------------------------------------------------------------

    def write(self, line: str, tags: Mapping[str, str] | None = None) -> None:
        """Write one line now (tags must already suit the client's capabilities)."""
        if self.closed or self.transport is None:
            return
        self.write_data(wire.encode(line, tags))

    def _caps_changed(self) -> None:
        self.tags_wanted = capabilities.tags_wanted(self.caps)

    def write_data(self, data: bytes) -> None:
        """Write encoded lines, or drop a client that has stopped reading."""
        self.write_bounded(data)

    def max_backlog(self) -> int:
        return self.factory.max_backlog

    def who(self) -> str | None:
        return self.nick

    def event(self, line: str, tags: Mapping[str, str] | None = None) -> None:
        """An unsolicited line; held back until the welcome burst is out."""
        if self._held is not None:
            self._held.append((line, dict(tags or {})))
        else:
            self.write(line, tags)

    @property
    def me(self) -> str:
        if self.session is not None:
            return self.session.name
        return self.nick or "*"

    @property
    def my_mask(self) -> str:
        if self.session is not None:
            return self.session.hostmask
        return f"{self.nick or '*'}!{self.user or self.nick or '*'}@unregistered"

    def numeric(self, code: str, *params: str) -> str:
        return wire.format_line(code, [self.me, *params], self.server)

    def new_batch_id(self) -> str:
        self._batch_seq += 1
        return f"pc{self._batch_seq}"

    # -- input -------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        self._last_input = self.clock_seconds()
        self._ping_sent = False
        self._inbox.extend(self.framer.feed(data))
        self._drain()
        self._check_inbox()

    def _check_inbox(self) -> None:
        """Weigh what still waits for the rate limit after a read.

        Past PAUSE_LINES or PAUSE_BYTES the connection stops reading (the
        transport's ``pauseProducing``) until :meth:`_drain` has handled it
        all: a paste waits in TCP's buffers instead of this process's, and
        arrives whole at the allowed rate. Past the factory's bound, which
        only a client sending that much in one read can reach, it is
        ``Excess Flood``.
        """
        inbox = self._inbox
        if not inbox or self.closed:
            return
        lines = len(inbox)
        size = sum(len(item) for item in inbox if isinstance(item, bytes))
        if lines > self.factory.max_queue or size > self.factory.max_queue_bytes:
            log.info(
                "disconnecting {user} at {address}: excess flood"
                " ({lines} lines, {size} bytes waiting)",
                user=self.nick, address=self.address, lines=lines, size=size,
            )
            inbox.clear()
            self.close("Excess Flood")
            return
        if not self._reading_paused and (lines > PAUSE_LINES or size > PAUSE_BYTES):
            self._reading_paused = True
            self.transport.pauseProducing()  # type: ignore[union-attr]

    def _drain(self) -> None:
        """Run queued commands in order, one at a time, except messages.

        A command that waits on the store holds back the ones after it, so
        replies keep the client's order. Consecutive PRIVMSG/NOTICE lines are
        the exception: the store commits in order, so their echoes and
        errors stay in order too, and letting them overlap lets a busy
        sender's messages share commits and fan-out writes.
        """
        if self._draining:
            return
        self._draining = True
        try:
            while self._inbox and not self._busy and not self.closed:
                item = self._inbox[0]
                pipelined = _command_of(item) in PIPELINED
                if self._messages_in_flight and not pipelined:
                    return
                wait = self.bucket.take(self.clock_seconds())
                if wait > 0:
                    # Fake lag: take the next line when the bucket has refilled.
                    if self._drain_call is None or not self._drain_call.active():
                        self._drain_call = self.factory.clock.callLater(wait, self._drain)
                    return
                self._inbox.popleft()
                d = self._process(item)
                if d is not None and _pending(d):
                    if pipelined:
                        self._messages_in_flight += 1
                        d.addBoth(self._message_done)
                    else:
                        self._busy = True
                        d.addBoth(self._command_done)
        finally:
            self._draining = False
            if self._reading_paused and not self._inbox and not self.closed:
                self._reading_paused = False
                self.transport.resumeProducing()  # type: ignore[union-attr]

    def _command_done(self, _: object) -> None:
        self._busy = False
        self._inflight = None
        if not self.closed:
            self._drain()

    def _message_done(self, _: object) -> None:
        self._messages_in_flight -= 1
        if not self._messages_in_flight:
            self._inflight = None
            if not self.closed:
                self._drain()

    def _process(self, item: bytes | wire.LineTooLong) -> Deferred[Any] | None:
        if isinstance(item, wire.LineTooLong):
            self.write(self.numeric(n.ERR_INPUTTOOLONG, "Input line was too long"))
            return None
        body = item
        if item.startswith(b"@"):
            space = item.find(b" ")
            if space > 4094 + 1:
                self.write(self.numeric(n.ERR_INPUTTOOLONG, "Input line was too long"))
                return None
            body = item[space + 1 :] if space >= 0 else b""
        if len(body) > wire.MAX_LINE - 2:
            self.write(self.numeric(n.ERR_INPUTTOOLONG, "Input line was too long"))
            return None
        try:
            text = wire.decode(item)
        except UnicodeDecodeError:
            self._refuse_invalid_utf8(item)
            return None
        if b"\0" in body:
            self._refuse_line(item, "INVALID_MESSAGE", NUL_REFUSED)
            return None
        if not text.strip():
            return None
        try:
            msg = wire.parse(text)
        except wire.ParseError:
            return None
        return self.handle(msg)

    def _refuse_invalid_utf8(self, item: bytes) -> None:
        """``FAIL <command> INVALID_UTF8`` for a line that is not UTF-8; nothing of it is used.

        As the IRCv3 UTF8ONLY specification's examples and Ergo do.
        """
        self._refuse_line(item, "INVALID_UTF8", UTF8_REFUSED)

    def _refuse_line(self, item: bytes, code: str, why: str) -> None:
        """``FAIL <command> <code> :<why>`` for a line refused whole (nothing of it is used).

        The command is named when it is a plain word (``*`` otherwise), and a
        label is honoured like any command's.
        """
        try:
            msg = wire.parse(item.decode("utf-8", "replace"))
        except wire.ParseError:
            msg = wire.Message("*")
        command = msg.command if msg.command.isascii() and msg.command.isalnum() else "*"
        label = msg.tags.get("label") if "labeled-response" in self.caps else None
        r = Reply(self, label or None)
        r.send(wire.format_line("FAIL", [command, code, why], self.server))
        r.finish()

    def handle(self, msg: wire.Message) -> Deferred[Any] | None:
        """Run one command; returns a Deferred while its work is in progress."""
        label = msg.tags.get("label") if "labeled-response" in self.caps else None
        r = Reply(self, label or None)
        command = msg.command
        handler = getattr(self, "irc_" + command, None) if command.isalnum() else None
        if handler is None:
            if command.isdigit():
                r.finish()
                return None
            r.num(n.ERR_UNKNOWNCOMMAND, command, "Unknown command")
            r.finish()
            return None
        if not self.registered and command not in PRE_REGISTRATION:
            r.num(n.ERR_NOTREGISTERED, "You have not registered")
            r.finish()
            return None
        if self.registered and self.session is None and command not in UNAUTHENTICATED:
            r.num(n.ERR_NOTREGISTERED, self._login_hint())
            r.finish()
            return None
        self._inflight = (command, r)
        try:
            result = handler(msg, r)
        except NeedMoreParams:
            r.num(n.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
            result = None
        except ChatError as e:
            self._chat_error(r, command, e)
            result = None
        except Exception:
            log.failure("IRC command {command} failed", command=command)
            r.send(f":{self.server} FAIL {command} INTERNAL_ERROR :Internal server error")
            result = None
        if isinstance(result, Deferred) and _pending(result):
            result.addErrback(self._command_failed, r, command)
            result.addBoth(lambda _: r.finish())
            return result
        if isinstance(result, Deferred):
            result.addErrback(self._command_failed, r, command)
        self._inflight = None
        r.finish()
        return None

    def _command_failed(self, failure: Failure, r: Reply, command: str) -> None:
        if failure.check(ChatError):
            self._chat_error(r, command, failure.value)  # type: ignore[arg-type]
        elif failure.check(NeedMoreParams):
            r.num(n.ERR_NEEDMOREPARAMS, command, "Not enough parameters")
        else:
            log.failure("IRC command {command} failed", failure, command=command)
            r.send(f":{self.server} FAIL {command} INTERNAL_ERROR :Internal server error")

    def _chat_error(self, r: Reply, command: str, e: ChatError) -> None:
        """A refusal from the chat world that no more specific numeric fits."""
        r.send(
            wire.format_line(
                "FAIL", [command, e.code.upper(), e.message], self.server
            )
        )

    def _routed(self, command: str) -> Reply | None:
        """The reply of this connection's own command in flight, if it is *command*."""
        if self._inflight is not None and self._inflight[0] == command:
            return self._inflight[1]
        return None

    @staticmethod
    def need(msg: wire.Message, count: int) -> None:
        if len(msg.params) < count or any(p == "" for p in msg.params[:count]):
            raise NeedMoreParams()
