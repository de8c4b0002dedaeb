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
(:meth:`IRCProtocol.handle` calls ``irc_<COMMAND>``), and the IChatMind
methods. The commands are in mixins: :mod:`pingchat.irc.registration`,
:mod:`pingchat.irc.rooms`, :mod:`pingchat.irc.queries`,
:mod:`pingchat.irc.messaging` and :mod:`pingchat.irc.operators`.
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

from pingchat.chat.service import ChatService, Session
from pingchat.errors import ChatError
from pingchat.interfaces import IChatMind
from pingchat.irc import caps as capabilities
from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.base import NeedMoreParams as NeedMoreParams
from pingchat.irc.chathistory import ENCRYPTED
from pingchat.irc.isupport import MAX_MODES as MAX_MODE_CHANGES
from pingchat.irc.messaging import MessagingMixin
from pingchat.irc.nickserv import NICKSERV_MASK
from pingchat.irc.operators import OperatorsMixin
from pingchat.irc.queries import QueriesMixin
from pingchat.irc.registration import RegistrationMixin
from pingchat.irc.reply import Reply
from pingchat.irc.rooms import RoomsMixin
from pingchat.model import Message, clean_text, fold, hostmask, iso_ms
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
PAUSE_LINES = 100
PAUSE_BYTES = 32 * 1024

PIPELINED = frozenset({b"PRIVMSG", b"NOTICE"})
# The command that shows a Message of each kind (anything else is PRIVMSG).
COMMAND_OF_KIND = {"notice": "NOTICE", "tagmsg": "TAGMSG"}


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
    RegistrationMixin, RoomsMixin, QueriesMixin, MessagingMixin, OperatorsMixin,
    BoundedOutput, Protocol,
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
        self.address = getattr(peer, "host", None)
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

    def mask_of(self, name: str, guest: bool = False) -> str:
        """``nick!user@host`` of a user, online or not: its session's mask when online.

        Offline, an account's (or, with *guest*, a guest's without the user
        name its door gave, which left with it).
        """
        sessions = self.service.sessions_of(name)
        if sessions:
            return sessions[0].hostmask
        return hostmask(name, guest)

    def sender_mask(self, m: Message) -> str:
        """The mask a message is shown from: its sender's, one mask everywhere."""
        return self.mask_of(m.sender, m.sender_account is None)

    def account_of(self, name: str) -> str | None:
        sessions = self.service.sessions_of(name)
        if sessions:
            account = sessions[0].account
            return account.name if account is not None else None
        return name  # an offline member is an account: guests vanish on quit

    def realname_of(self, name: str) -> str:
        """The real name an IRC user gave in ``USER``; other doors' users show their name."""
        for s in self.service.sessions_of(name):
            realname = getattr(s.mind, "realname", "")
            if realname:
                return str(realname)
        return name

    def message_tags(
        self,
        ts: int | None = None,
        msgid: int | None = None,
        account: str | None = None,
        client_tags: dict[str, str] | None = None,
    ) -> dict[str, str]:
        tags: dict[str, str] = {}
        if client_tags and "message-tags" in self.caps:
            tags.update(client_tags)
        if ts is not None and "server-time" in self.caps:
            tags["time"] = iso_ms(ts)
        if msgid and "message-tags" in self.caps:
            # A message delivered live and not stored has a negative id.
            tags["msgid"] = str(msgid) if msgid > 0 else f"live{-msgid}"
        if account and "account-tag" in self.caps:
            tags["account"] = account
        return tags

    def text_lines(self, source: str, command: str, target: str, text: str) -> list[str]:
        """``:source COMMAND target :text``, split so each line fits 512 bytes."""
        head = f":{source} {command} {target} :"
        room = wire.MAX_LINE - 2 - len(head.encode("utf-8"))
        return [head + piece for piece in wire.split_text(clean_text(text), room)]

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
        if not text.strip():
            return None
        try:
            msg = wire.parse(text)
        except wire.ParseError:
            return None
        return self.handle(msg)

    def _refuse_invalid_utf8(self, item: bytes) -> None:
        """``FAIL <command> INVALID_UTF8`` for a line that is not UTF-8; nothing of it is used.

        As the IRCv3 UTF8ONLY specification's examples and Ergo do; the
        command is named when it is a plain word (``*`` otherwise), and a
        label is honoured like any command's.
        """
        try:
            msg = wire.parse(item.decode("utf-8", "replace"))
        except wire.ParseError:
            msg = wire.Message("*")
        command = msg.command if msg.command.isascii() and msg.command.isalnum() else "*"
        label = msg.tags.get("label") if "labeled-response" in self.caps else None
        r = Reply(self, label or None)
        r.send(wire.format_line(
            "FAIL",
            [command, "INVALID_UTF8",
             "Message rejected: this server takes UTF-8 only; set your client's encoding to UTF-8"],
            self.server,
        ))
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

    # -- IChatMind -------------------------------------------------------------------------

    def message(self, message: Message, offline: bool = False) -> None:
        if self.session is None:
            return
        if message.room is not None and not offline and self._held is None:
            # The common case, a room message in a fan-out: every recipient
            # with the same tag capabilities gets the same bytes, encoded once.
            data = self.factory.room_message_data(message, self)
            if data:  # b"" for a TAGMSG this client does not take
                self.write_bounded(data)
            return
        for line, tags in self.message_lines(message, offline):
            self.event(line, tags)

    def message_lines(self, m: Message, offline: bool = False) -> list[tuple[str, dict[str, str]]]:
        """The PRIVMSG/NOTICE (or TAGMSG) lines, with their tags, that show *m* to this client."""
        assert self.session is not None
        if m.kind == "tagmsg" and "message-tags" not in self.caps:
            return []
        command = COMMAND_OF_KIND.get(m.kind, "PRIVMSG")
        text = ENCRYPTED if m.encrypted else m.text
        text = clean_text(text or "")
        if offline and "server-time" not in self.caps:
            text = f"[{iso_ms(m.ts)[:16].replace('T', ' ')} UTC] {text}"
        if m.room is not None:
            source, target = self.sender_mask(m), m.room
        elif fold(m.to or "") == self.session.folded:
            source, target = self.sender_mask(m), self.me
        else:
            # A DM this account sent from another of its sessions.
            source, target = self.session.hostmask, m.to or ""
        tags = self.message_tags(m.ts, m.id, m.sender_account, m.client_tags)
        if m.kind == "tagmsg":
            return [(f":{source} TAGMSG {target}", tags)]
        rest = {k: v for k, v in tags.items() if k != "msgid"}
        return [
            (line, tags if i == 0 else rest)
            for i, line in enumerate(self.text_lines(source, command, target, text))
        ]

    def joined(self, room: str, user: str) -> None:
        r = self._routed("JOIN")
        send = r.send if r is not None else self.event
        if self.session is not None and fold(user) == self.session.folded:
            found = self.service.room_named(room)
            if found is not None:
                self._join_burst(send, found)
            return
        mask = self.mask_of(user)
        if "extended-join" in self.caps:
            send(wire.format_line(
                "JOIN", [room, self.account_of(user) or "*", self.realname_of(user)], mask))
        else:
            send(wire.format_line("JOIN", [room], mask))
        state = self.service.presence_of(user)
        if "away-notify" in self.caps and state is not None and state.away:
            send(wire.format_line("AWAY", [state.away], mask))

    def parted(self, room: str, user: str, reason: str | None) -> None:
        r = self._routed("PART") or self._routed("JOIN")
        send = r.send if r is not None else self.event
        if (
            reason is None
            and not self.service.is_online(user)
            and (self.session is None or fold(user) != self.session.folded)
        ):
            # A guest quit: show one QUIT, once it has left the last shared room.
            mine = {fold(x.name) for x in self.service.rooms_of(self.me)}
            theirs = {fold(x.name) for x in self.service.rooms_of(user)}
            if not mine & theirs:
                mask, why = self.factory.quitting.get(fold(user), (hostmask(user, True), "Quit"))
                send(wire.format_line("QUIT", [clean_text(why)], mask))
            return
        params = [room, clean_text(reason)] if reason else [room]
        send(wire.format_line("PART", params, self.mask_of(user)))

    def renamed(self, old: str, new: str) -> None:
        """A guest changed nick (not part of IChatMind: the service calls it when present)."""
        r = self._routed("NICK") if self.session is not None and (
            self.session.folded == fold(new)) else None
        send = r.send if r is not None else self.event
        sessions = self.service.sessions_of(new)
        user = sessions[0].user if sessions else None
        send(wire.format_line("NICK", [new], hostmask(old, True, user)))

    def kicked(self, room: str, user: str, by: str, reason: str | None) -> None:
        r = self._routed("KICK")
        send = r.send if r is not None else self.event
        source = self.mask_of(by) if by != self.service.server_name else self.server
        send(wire.format_line("KICK", [room, user, clean_text(reason or by)], source))

    def topic_changed(self, room: str, topic: str, by: str) -> None:
        r = self._routed("TOPIC")
        send = r.send if r is not None else self.event
        source = self.mask_of(by) if by != self.service.server_name else self.server
        send(wire.format_line("TOPIC", [room, clean_text(topic)], source))

    def presence_changed(self, user: str, presence: str, away: str | None) -> None:
        if self.session is None:
            return
        if fold(user) == self.session.folded:
            if self._routed("AWAY") is None and presence != "offline":
                # Another session of this account changed its away state.
                if presence == "away":
                    self.event(self.numeric(n.RPL_NOWAWAY, "You have been marked as being away"))
                else:
                    self.event(self.numeric(n.RPL_UNAWAY,
                                            "You are no longer marked as being away"))
            return
        if "away-notify" not in self.caps:
            return
        if presence == "offline" and not self.service.rooms_of(user):
            return
        mask = self.mask_of(user)
        if presence == "online":
            self.event(wire.format_line("AWAY", [], mask))
        else:
            text = away or ("Offline" if presence == "offline" else "Away")
            self.event(wire.format_line("AWAY", [clean_text(text)], mask))

    def modes_changed(self, room: str, by: str, changes: list[tuple[str, str | None]]) -> None:
        r = self._routed("MODE")
        send = r.send if r is not None else self.event
        source = self.mask_of(by) if by != self.service.server_name else self.server
        for i in range(0, len(changes), MAX_MODE_CHANGES):
            letters, args, sign = "", [], ""
            for change, arg in changes[i : i + MAX_MODE_CHANGES]:
                if change[0] != sign:
                    sign = change[0]
                    letters += sign
                letters += change[1]
                if arg is not None and change != "-l":
                    args.append(arg)
            send(wire.format_line("MODE", [room, letters, *args], source))

    def invited(self, room: str, by: str) -> None:
        self.event(wire.format_line("INVITE", [self.me, room], self.mask_of(by)),
                   self.message_tags(account=self.account_of(by)))

    def contact_event(self, user: str, status: str) -> None:
        texts = {
            "request": f"{user} asked to add you as a contact (the pingchat client can accept).",
            "accepted": f"You and {user} are now contacts.",
            "removed": f"{user} removed you from their contacts.",
        }
        text = texts.get(status, f"Contact {user}: {status}")
        self.event(wire.format_line("NOTICE", [self.me, text], NICKSERV_MASK))

    def key_changed(self, user: str, device: str, action: str, fingerprint: str) -> None:
        """IRC cannot use end-to-end keys; only the account's own key changes
        are worth a notice (a device added that the user does not know of)."""
        if self.session is None or fold(user) != self.session.folded:
            return
        if action == "published":
            text = (f"An end-to-end encryption key was published for your device {device}"
                    f" (fingerprint {fingerprint}). If that was not you, change your password"
                    " and revoke the device in the pingchat client.")
        else:
            text = f"The end-to-end encryption key of your device {device} was revoked."
        self.event(wire.format_line("NOTICE", [self.me, text], NICKSERV_MASK))

    def notice(self, text: str, sender: str) -> None:
        source = self.server if sender == self.service.server_name else self.mask_of(sender)
        self.event(wire.format_line("NOTICE", [self.me, clean_text(text)], source))

    def disconnect(self, reason: str) -> None:
        self._end_session(clean_text(reason))
        self.close(clean_text(reason))

