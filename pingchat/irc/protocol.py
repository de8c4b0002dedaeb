"""The IRC door: IRC lines <-> the chat service.

One :class:`IRCProtocol` per connection. It is the *mind* passed to
``portal.login``: the service calls its :class:`~pingchat.interfaces.IChatMind`
methods, and it turns them into IRC lines. Like the native door it translates
and owns no chat state; rooms, members, presence and history live in the
service.

Commands from one connection are handled one at a time, in order: a command
whose work is asynchronous (a database write, bcrypt) holds the next one back,
so replies come out in the order the client asked. A token bucket limits how
fast lines are taken; a client that keeps sending faster than that is
disconnected with ``ERROR`` once its queue passes a bound.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat.auth.checkers import PasswordCredentials, TokenCredentials
from pingchat.chat.model import (
    ACCOUNT_NAME_RE,
    Message,
    check_room_name,
    clean_text,
    fold,
    iso_ms,
)
from pingchat.chat.service import Room, Session, hostmask
from pingchat.errors import (
    BadRequest,
    ChatError,
    Forbidden,
    InvalidName,
    NoSuchRoom,
    NoSuchUser,
    NotInRoom,
)
from pingchat.interfaces import IChatAvatar, IChatMind
from pingchat.irc import caps as capabilities
from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.chathistory import ENCRYPTED, ChatHistory
from pingchat.irc.factory import MAX_MODES as MAX_MODE_CHANGES
from pingchat.irc.factory import MAX_TARGETS, WasUser
from pingchat.irc.nickserv import NICKSERV, NICKSERV_MASK, NickServ
from pingchat.output import BoundedOutput

if TYPE_CHECKING:
    from pingchat.irc.factory import IRCFactory

log = Logger()

# A session token from the native door (secrets.token_urlsafe(32)).
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{40,64}")
SASL_CHUNK = 400
SASL_MAX = 4096

# Commands a connection may use before it has registered (NICK/USER)...
PRE_REGISTRATION = frozenset(
    {"CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "PING", "PONG", "QUIT"}
)
# ...and, without --guests, before it has logged in.
UNAUTHENTICATED = PRE_REGISTRATION | {
    "PRIVMSG", "NOTICE", "NICKSERV", "NS", "MOTD", "LUSERS", "HELP", "VERSION", "TIME",
}

HELP_TOPICS = {
    "": [
        "pingchat IRC gateway. Commands: AWAY CAP CHATHISTORY HELP INVITE ISON JOIN",
        "KICK LIST LUSERS MODE MOTD NAMES NICKSERV NOTICE PART PING PRIVMSG QUIT",
        "TIME TOPIC USERHOST VERSION WHO WHOIS.",
        "Accounts: /msg NickServ HELP.",
    ],
}



class Reply:
    """The lines answering one command.

    Without a label they are written at once. With a ``label`` tag (and the
    ``labeled-response`` capability) they are held until the command is done
    and then sent as one labelled unit: an ``ACK``, one tagged line, or a
    ``labeled-response`` batch.
    """

    def __init__(self, proto: IRCProtocol, label: str | None) -> None:
        self.proto = proto
        self.label = label
        self.lines: list[tuple[dict[str, str], str]] = []
        self.finished = False

    def send(self, line: str, tags: Mapping[str, str] | None = None) -> None:
        if self.label is None or self.finished:
            self.proto.write(line, tags)
        else:
            self.lines.append((dict(tags or {}), line))

    def num(self, code: str, *params: str) -> None:
        self.send(self.proto.numeric(code, *params))

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.label is None:
            return
        proto, label, lines = self.proto, self.label, self.lines
        if not lines:
            proto.write(f":{proto.server} ACK", {"label": label})
            return
        if len(lines) == 1 or "batch" not in proto.caps:
            first_tags, first = lines[0]
            proto.write(first, {"label": label, **first_tags})
            for tags, line in lines[1:]:
                proto.write(line, tags)
            return
        first_tags, first = lines[0]
        head, tail = _verb(first), _verb(lines[-1][1])
        if (
            len(head) > 1
            and head[0] == "BATCH"
            and head[1].startswith("+")
            and tail[:2] == ["BATCH", "-" + head[1][1:]]
            and "batch" not in first_tags
        ):
            # The answer is already exactly one batch: label it directly.
            proto.write(first, {"label": label, **first_tags})
            for tags, line in lines[1:]:
                proto.write(line, tags)
            return
        ref = proto.new_batch_id()
        proto.write(f":{proto.server} BATCH +{ref} labeled-response", {"label": label})
        for tags, line in lines:
            proto.write(line, {"batch": ref, **tags} if "batch" not in tags else tags)
        proto.write(f":{proto.server} BATCH -{ref}")


def _verb(line: str) -> list[str]:
    """The command and first parameter of a formatted line, without its source."""
    words = line.split(" ", 3)
    return words[1:3] if words and words[0].startswith(":") else words[:2]


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


class NeedMoreParams(Exception):
    """A command came with fewer parameters than it needs (461)."""


@implementer(IChatMind)
class IRCProtocol(BoundedOutput, Protocol):
    """One IRC client connection."""

    door = "irc"

    def __init__(self, factory: IRCFactory) -> None:
        self.factory = factory
        self.service = factory.service
        self.server = factory.server_name
        self.framer = wire.LineFramer()
        self.address: str | None = None
        self.closed = False
        self.nick: str | None = None
        self.user: str | None = None
        self.realname = ""
        self.password: str | None = None
        self.registered = False
        self._registering = False
        self.session: Session | None = None
        self._logout: Callable[[], None] | None = None
        self.caps: set[str] = set()
        self.tags_wanted = capabilities.tags_wanted(self.caps)
        self.cap_version = 0
        self._cap_negotiating = False
        self._sasl: str | None = None
        self._sasl_buffer = ""
        self._inbox: deque[bytes | wire.LineTooLong] = deque()
        self._busy = False
        self._messages_in_flight = 0
        self._draining = False
        self._drain_call: IDelayedCall | None = None
        self._inflight: tuple[str, Reply] | None = None
        self._held: list[tuple[str, dict[str, str]]] | None = None
        self._batch_seq = 0
        self._timer: IDelayedCall | None = None
        self._last_input = 0.0
        self._ping_sent = False
        self.invisible = False
        self.nickserv = NickServ(self)
        self.chathistory = ChatHistory(self)

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
        self._end_session()

    def _remember(self) -> None:
        """Leave a WHOWAS entry for the nick this connection used."""
        session = self.session
        if session is None or not self.registered:
            return
        user, host = session.hostmask.split("!", 1)[1].split("@", 1)
        self.factory.whowas.appendleft(
            WasUser(session.name, user, host, self.realname or session.name,
                    self.service.now())
        )

    def _end_session(self) -> None:
        if self.session is not None:
            self.factory.logged_in -= 1
        logout, self._logout, self.session = self._logout, None, None
        if logout is not None:
            logout()

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
        session = self.session
        if session is not None and session.guest:
            self.factory.quitting[session.folded] = (session.hostmask, reason)
        try:
            self._end_session()
        finally:
            if session is not None:
                self.factory.quitting.pop(session.folded, None)
        if self.transport is not None:
            self.transport.loseConnection()

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

    def mask_of(self, name: str) -> str:
        """``nick!user@host`` of a user, online or not."""
        sessions = self.service.sessions_of(name)
        if sessions:
            return sessions[0].hostmask
        return hostmask(name, False)

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
        self, ts: int | None = None, msgid: int | None = None, account: str | None = None
    ) -> dict[str, str]:
        tags: dict[str, str] = {}
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
        self._last_input = self.clock_seconds()
        self._ping_sent = False
        for item in self.framer.feed(data):
            self._inbox.append(item)
        if len(self._inbox) > self.factory.max_queue:
            log.info("disconnecting {address}: excess flood", address=self.address)
            self._inbox.clear()
            self.close("Excess Flood")
            return
        self._drain()

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
        text = wire.decode(item)
        if not text.strip():
            return None
        try:
            msg = wire.parse(text)
        except wire.ParseError:
            return None
        return self.handle(msg)

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

    # -- registration ------------------------------------------------------------

    def irc_CAP(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        sub = msg.params[0].upper()
        target = self.me
        if sub == "LS":
            if not self.registered:
                self._cap_negotiating = True
            version = msg.param(1)
            self.cap_version = max(
                self.cap_version, int(version) if version.isdigit() else 301
            )
            if self.cap_version >= 302:
                self.caps.add("cap-notify")
            chunks = capabilities.chunk(capabilities.ls_tokens(self.cap_version))
            for i, text in enumerate(chunks):
                more = self.cap_version >= 302 and i < len(chunks) - 1
                params = [target, "LS", *(["*"] if more else []), text]
                r.send(wire.format_line("CAP", params, self.server))
        elif sub == "LIST":
            r.send(wire.format_line("CAP", [target, "LIST", " ".join(sorted(self.caps))],
                                    self.server))
        elif sub == "REQ":
            if not self.registered:
                self._cap_negotiating = True
            text = msg.param(1)
            changes = capabilities.parse_request(text)
            sticky = capabilities.STICKY_302 if self.cap_version >= 302 else frozenset()
            if changes is None or any(not on and c in sticky for c, on in changes) or (
                not text.strip()
            ):
                r.send(wire.format_line("CAP", [target, "NAK", text], self.server))
                return None
            for name, on in changes:
                (self.caps.add if on else self.caps.discard)(name)
            self._caps_changed()
            r.send(wire.format_line("CAP", [target, "ACK", text], self.server))
        elif sub == "END":
            if not self.registered:
                self._cap_negotiating = False
                if self._sasl is not None:
                    # Registration ends an unfinished SASL exchange (sasl-3.1).
                    self._sasl, self._sasl_buffer = None, ""
                    r.num(n.ERR_SASLABORTED, "SASL authentication aborted")
                return self._maybe_register()
        else:
            r.num("410", sub, "Invalid CAP command")
        return None

    def irc_PASS(self, msg: wire.Message, r: Reply) -> None:
        self.need(msg, 1)
        if self.registered:
            r.num(n.ERR_ALREADYREGISTERED, "You may not reregister")
            return
        # PASS has one parameter, but many clients send a password with spaces
        # without the ':' that would make it one: take the rest of the line.
        self.password = " ".join(msg.params)

    def irc_NICK(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        if not msg.params or not msg.params[0]:
            r.num(n.ERR_NONICKNAMEGIVEN, "No nickname given")
            return None
        nick = msg.params[0]
        if not ACCOUNT_NAME_RE.fullmatch(nick) or fold(nick) == fold(NICKSERV):
            r.num(n.ERR_ERRONEUSNICKNAME, nick, "Erroneous nickname")
            return None
        if self.session is not None and not self.registered:
            # Logged in with SASL before NICK: the nick will be the account's.
            self.nick = nick
            return self._maybe_register()
        if self.session is not None and self.session.guest:
            return self._rename_guest(r, self.session, nick)
        if self.session is not None:
            if fold(nick) != self.session.folded:
                r.num(n.ERR_NICKNAMEINUSE, nick,
                      f"Your nick is your account name ({self.session.name}) and cannot change")
            return None
        if self.registered:
            # Logged out (no --guests): the nick only says which account to log in as.
            old = self.my_mask
            self.nick = nick
            r.send(wire.format_line("NICK", [nick], old))
            return None
        self.nick = nick
        return self._maybe_register()

    def _rename_guest(self, r: Reply, session: Session, nick: str) -> Deferred[Any] | None:
        """A guest's NICK: any nick that is neither online nor a registered account."""
        if nick == session.name:
            return None
        if fold(nick) != session.folded and self.service.is_online(nick):
            r.num(n.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
            return None

        def rename(_: object = None) -> None:
            if self.session is not session or self.closed:
                return
            self._remember()
            try:
                self.service.rename(session, nick)
            except Forbidden:
                r.num(n.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
                return
            self.nick = session.name

        def reserved(_: Any) -> None:
            r.num(n.ERR_NICKNAMEINUSE, nick,
                  "This nick is a registered account: log in (NickServ IDENTIFY)"
                  " or choose another nick")

        def free(f: Failure) -> None:
            f.trap(NoSuchUser)
            rename()

        if fold(nick) == session.folded:  # a change of case only
            rename()
            return None
        return self.service.whois(nick).addCallbacks(reserved, free)

    def irc_USER(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        if self.registered:
            r.num(n.ERR_ALREADYREGISTERED, "You may not reregister")
            return None
        self.need(msg, 4)
        user = msg.params[0].lstrip("~")
        self.user = user[:32] if ACCOUNT_NAME_RE.fullmatch(user[:32]) else "user"
        self.realname = msg.params[3][:100]
        return self._maybe_register()

    def _maybe_register(self) -> Deferred[Any] | None:
        if (
            self.registered
            or self._registering
            or self._cap_negotiating
            or self._sasl is not None
            or self.nick is None
            or self.user is None
        ):
            return None
        if self.session is not None:
            self._welcome()
            return None
        if self.password is not None:
            account, sep, password = self.password.partition(":")
            if not sep:
                account, password = self.nick, self.password
            self.password = None
            self._registering = True
            d = self.authenticate(account, password)

            def ok(_: Session) -> None:
                self._registering = False
                self._welcome()

            def bad(f: Failure) -> None:
                self._registering = False
                f.trap(UnauthorizedLogin, ChatError)
                self.write(self.numeric(n.ERR_PASSWDMISMATCH, self.auth_failure_text(f)))
                self.close("Bad password")

            return d.addCallbacks(ok, bad)
        if self.factory.guests:
            return self._register_guest()
        self._welcome()
        return None

    def _register_guest(self) -> Deferred[Any]:
        nick = self.nick
        assert nick is not None
        self._registering = True
        if self.service.is_online(nick):
            self._registering = False
            self.write(self.numeric(n.ERR_NICKNAMEINUSE, nick, "Nickname is already in use"))
            return succeed(None)

        def reserved(_: Any) -> None:
            self._registering = False
            self.write(
                self.numeric(
                    n.ERR_NICKNAMEINUSE,
                    nick,
                    "This nick is a registered account: log in (SASL or"
                    " PASS account:password) or choose another nick",
                )
            )

        def free(f: Failure) -> None:
            f.trap(NoSuchUser)
            self._registering = False
            if self.closed or self.nick != nick:
                return
            if self.service.is_online(nick):
                self.write(self.numeric(n.ERR_NICKNAMEINUSE, nick, "Nickname is already in use"))
                return
            session = self.service.attach(None, self, self.address, name=nick)
            session.user = self.user
            self.session = session
            self.factory.logged_in += 1
            self._logout = lambda: self.service.detach(session)
            self._welcome()

        return self.service.whois(nick).addCallbacks(reserved, free)

    def authenticate(
        self, account: str, secret: str, otp: str | None = None, announce: bool = True
    ) -> Deferred[Session]:
        """Log in through the portal; a session token is accepted as the password."""
        creds = PasswordCredentials(account, secret, otp, self.address)
        d: Deferred[Any] = self.factory.portal.login(creds, self, IChatAvatar)
        if TOKEN_RE.fullmatch(secret):

            def try_token(f: Failure) -> Deferred[Any]:
                f.trap(UnauthorizedLogin)
                if getattr(f.value, "code", "auth_failed") != "auth_failed":
                    return fail(f)
                token_creds = TokenCredentials(secret, self.address)
                d2: Deferred[Any] = self.factory.portal.login(token_creds, self, IChatAvatar)

                def check(result: tuple[Any, Session, Callable[[], None]]) -> Any:
                    if fold(result[1].name) != fold(account):
                        result[2]()
                        return fail(f)
                    return result

                return d2.addCallback(check)

            d.addErrback(try_token)
        return d.addCallback(self._logged_in, announce)

    def _logged_in(
        self, result: tuple[Any, Session, Callable[[], None]], announce: bool = True
    ) -> Session:
        _iface, session, logout = result
        if self.closed:
            logout()
            raise UnauthorizedLogin("connection closed")
        guest = self.session
        if guest is not None:
            # A guest who logs in leaves its guest life (and rooms) behind.
            rooms = self.service.rooms_of(guest.name)
            mask = guest.hostmask
            self._end_session()
            for room in rooms:
                self.event(f":{mask} PART {room.name} :Logged in")
        self.session, self._logout = session, logout
        self.factory.logged_in += 1
        if not self.registered and self._held is None:
            self._held = []  # the account's traffic waits for the welcome burst
        self.write(
            self.numeric(
                n.RPL_LOGGEDIN, session.hostmask, session.name,
                f"You are now logged in as {session.name}",
            )
        )
        if announce:
            self._after_login(session)
        return session

    def _after_login(self, session: Session) -> None:
        """A registered client that logged in: its nick becomes the account's, then the burst."""
        if not self.registered:
            return
        if self.nick != session.name:
            self.write(wire.format_line("NICK", [session.name], self._mask_for(self.nick)))
        self.nick = session.name
        self._timer_after_welcome()
        self._account_burst()

    def _mask_for(self, nick: str | None) -> str:
        return f"{nick or '*'}!{self.user or nick or '*'}@unregistered"

    def auth_failure_text(self, failure: Failure) -> str:
        e = failure.value
        code = getattr(e, "code", "auth_failed")
        if code == "otp_required":
            return (
                "This account has a second factor: use a session token from the"
                " pingchat client as the password, or /msg NickServ IDENTIFY"
                " <account> <password> <code>"
            )
        if code == "rate_limited":
            return f"Too many attempts; retry after {getattr(e, 'retry_after', 1.0):.0f}s"
        if code == "account_disabled":
            return "This account is disabled"
        if isinstance(e, ChatError):
            return e.message
        return "Wrong account name or password"

    def _login_hint(self) -> str:
        return (
            "You need an account here. Log in with SASL PLAIN, or"
            " /msg NickServ IDENTIFY <account> <password>; to create one,"
            " /msg NickServ REGISTER <password>"
        )

    def _welcome(self) -> None:
        self.registered = True
        if self._held is None:
            self._held = []
        if self.session is not None:
            self.nick = self.session.name
        nick = self.me
        f = self.factory
        self.write(self.numeric(
            n.RPL_WELCOME, f"Welcome to the {self.server} IRC network, {self.my_mask}"))
        self.write(self.numeric(
            n.RPL_YOURHOST, f"Your host is {self.server}, running version {f.version}"))
        self.write(self.numeric(n.RPL_CREATED, f"This server was created {f.created}"))
        self.write(self.numeric(n.RPL_MYINFO, self.server, f.version, "ir", "biklmnostv",
                                "bklov"))
        self._isupport(self.write)
        self._lusers(self.write)
        self._motd(self.write)
        if self.session is not None and not self.session.guest:
            self.write(wire.format_line("MODE", [nick, "+r"], nick))
        self._timer_after_welcome()
        if self.session is None:
            self.write(wire.format_line("NOTICE", [nick, self._login_hint()], self.server))
        else:
            self._account_burst()
        held, self._held = self._held, None
        for line, tags in held:
            self.write(line, tags)

    def _timer_after_welcome(self) -> None:
        if self.session is None:
            self._schedule(self.factory.login_timeout, self._registration_timed_out)
        else:
            self._schedule(self.factory.ping_interval, self._keepalive)

    def _account_burst(self) -> None:
        """A bouncer's welcome: the account's rooms, then what it missed."""
        session = self.session
        if session is None or session.guest:
            return
        for room in sorted(self.service.rooms_of(session.name), key=lambda r: fold(r.name)):
            self._join_burst(self.write, room)
        self.factory.clock.callLater(0, self._deliver_offline, session)

    def _deliver_offline(self, session: Session) -> None:
        if self.session is not session or self.closed:
            return
        self.service.deliver_offline(session).addErrback(
            lambda f: log.failure("could not deliver offline messages", f)
        )

    def _isupport(self, send: Callable[[str], None]) -> None:
        tokens = self.factory.isupport()
        for i in range(0, len(tokens), 12):
            send(self.numeric(n.RPL_ISUPPORT, *tokens[i : i + 12],
                              "are supported by this server"))

    def _lusers(self, send: Callable[[str], None]) -> None:
        users = len(self.service.sessions)
        self.factory.max_users = max(self.factory.max_users, users)
        unknown = len(self.factory.connections) - self.factory.logged_in
        top = self.factory.max_users
        send(self.numeric(n.RPL_LUSERCLIENT,
                          f"There are {users} users and 0 invisible on 1 servers"))
        send(self.numeric(n.RPL_LUSEROP, "0", "operator(s) online"))
        if unknown:
            send(self.numeric(n.RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)"))
        send(self.numeric(n.RPL_LUSERCHANNELS, str(len(self.service.rooms)), "channels formed"))
        send(self.numeric(n.RPL_LUSERME, f"I have {users} clients and 0 servers"))
        send(self.numeric(n.RPL_LOCALUSERS, str(users), str(top),
                          f"Current local users {users}, max {top}"))
        send(self.numeric(n.RPL_GLOBALUSERS, str(users), str(top),
                          f"Current global users {users}, max {top}"))

    def _motd(self, send: Callable[[str], None]) -> None:
        lines = self.factory.motd
        if not lines:
            send(self.numeric(n.ERR_NOMOTD, "MOTD File is missing"))
            return
        send(self.numeric(n.RPL_MOTDSTART, f"- {self.server} Message of the day - "))
        for line in lines:
            send(self.numeric(n.RPL_MOTD, f"- {line}"))
        send(self.numeric(n.RPL_ENDOFMOTD, "End of /MOTD command."))

    # -- SASL ----------------------------------------------------------------------

    def irc_AUTHENTICATE(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        arg = msg.params[0]
        if self.session is not None and not self.session.guest:
            r.num(n.ERR_SASLALREADY, "You have already authenticated using SASL")
            return None
        if "sasl" not in self.caps:
            r.num(n.ERR_SASLFAIL, "SASL authentication failed: request the sasl capability first")
            return None
        if arg == "*":
            if self._sasl is not None:
                self._sasl, self._sasl_buffer = None, ""
                r.num(n.ERR_SASLABORTED, "SASL authentication aborted")
            else:
                r.num(n.ERR_SASLFAIL, "SASL authentication failed")
            return None
        if self._sasl is None:
            if arg.upper() != "PLAIN":
                r.num(n.RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
                r.num(n.ERR_SASLFAIL, "SASL authentication failed")
                return None
            self._sasl, self._sasl_buffer = "PLAIN", ""
            r.send("AUTHENTICATE +")
            return None
        if len(arg) > SASL_CHUNK:
            self._sasl, self._sasl_buffer = None, ""
            r.num(n.ERR_SASLTOOLONG, "SASL message too long")
            return None
        if arg != "+":
            self._sasl_buffer += arg
        if len(self._sasl_buffer) > SASL_MAX:
            self._sasl, self._sasl_buffer = None, ""
            r.num(n.ERR_SASLTOOLONG, "SASL message too long")
            return None
        if len(arg) == SASL_CHUNK:
            return None  # more to come
        data, self._sasl, self._sasl_buffer = self._sasl_buffer, None, ""
        try:
            raw = base64.b64decode(data, validate=True)
            authzid, authcid, password = wire.decode(raw).split("\x00")
        except (binascii.Error, ValueError):
            r.num(n.ERR_SASLFAIL, "SASL authentication failed: malformed PLAIN message")
            return self._maybe_register()
        if authzid and fold(authzid) != fold(authcid):
            r.num(n.ERR_SASLFAIL, "SASL authentication failed: authzid must be the account")
            return self._maybe_register()
        d = self.authenticate(authcid, password, announce=False)

        def ok(session: Session) -> Deferred[Any] | None:
            r.num(n.RPL_SASLSUCCESS, "SASL authentication successful")
            self._after_login(session)
            return self._maybe_register()

        def bad(f: Failure) -> Deferred[Any] | None:
            f.trap(UnauthorizedLogin, ChatError)
            r.num(n.ERR_SASLFAIL, f"SASL authentication failed: {self.auth_failure_text(f)}")
            return self._maybe_register()

        return d.addCallbacks(ok, bad)

    # -- NickServ ------------------------------------------------------------------

    def irc_NICKSERV(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        return self.nickserv.handle(r, " ".join(msg.params))

    irc_NS = irc_NICKSERV

    # -- simple commands --------------------------------------------------------------

    def irc_PING(self, msg: wire.Message, r: Reply) -> None:
        self.need(msg, 1)
        r.send(wire.format_line("PONG", [self.server, msg.params[0]], self.server))

    def irc_PONG(self, msg: wire.Message, r: Reply) -> None:
        pass

    def irc_QUIT(self, msg: wire.Message, r: Reply) -> None:
        reason = msg.param(0)
        r.finish()
        self.close(f"Quit: {clean_text(reason)[:200]}" if reason else "Quit")

    def irc_MOTD(self, msg: wire.Message, r: Reply) -> None:
        self._motd(r.send)

    def irc_LUSERS(self, msg: wire.Message, r: Reply) -> None:
        self._lusers(r.send)

    def irc_VERSION(self, msg: wire.Message, r: Reply) -> None:
        r.num(n.RPL_VERSION, self.factory.version, self.server, "pingchat IRC gateway")
        self._isupport(r.send)

    def irc_TIME(self, msg: wire.Message, r: Reply) -> None:
        r.num(n.RPL_TIME, self.server, iso_ms(self.service.now()))

    def irc_HELP(self, msg: wire.Message, r: Reply) -> None:
        lines = HELP_TOPICS[""]
        subject = msg.param(0) or "*"
        r.num(n.RPL_HELPSTART, subject, lines[0])
        for line in lines[1:]:
            r.num(n.RPL_HELPTXT, subject, line)
        r.num(n.RPL_ENDOFHELP, subject, "End of /HELP")

    def irc_USERHOST(self, msg: wire.Message, r: Reply) -> None:
        self.need(msg, 1)
        replies = []
        for nick in msg.params[:5]:
            sessions = self.service.sessions_of(nick)
            if not sessions:
                continue
            s = sessions[0]
            away = self.service.presence.get(s.folded)
            flag = "-" if away is not None and away.away else "+"
            user_host = s.hostmask.split("!", 1)[1]
            replies.append(f"{s.name}={flag}{user_host}")
        r.num(n.RPL_USERHOST, " ".join(replies))

    def irc_ISON(self, msg: wire.Message, r: Reply) -> None:
        self.need(msg, 1)
        names = " ".join(msg.params).split()
        online = []
        for nick in names:
            if fold(nick) == fold(NICKSERV):
                online.append(NICKSERV)
                continue
            sessions = self.service.sessions_of(nick)
            if sessions:
                online.append(sessions[0].name)
        r.num(n.RPL_ISON, " ".join(online))

    def irc_AWAY(self, msg: wire.Message, r: Reply) -> None:
        assert self.session is not None
        text = clean_text(msg.param(0)).strip()
        self.service.set_away(self.session, text or None)
        if text:
            r.num(n.RPL_NOWAWAY, "You have been marked as being away")
        else:
            r.num(n.RPL_UNAWAY, "You are no longer marked as being away")

    # -- rooms -------------------------------------------------------------------------

    @property
    def my_session(self) -> Session:
        assert self.session is not None
        return self.session

    def irc_JOIN(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        if msg.params[0] == "0":
            ds = [
                self.service.part(self.my_session, room.name, "Left all channels")
                for room in self.service.rooms_of(self.me)
            ]
            return DeferredList(ds, consumeErrors=True) if ds else None
        names = msg.params[0].split(",")
        keys = msg.param(1).split(",") if len(msg.params) > 1 else []
        ds = []
        for i, name in enumerate(names):
            if not name:
                continue
            d = self._join_one(r, name, keys[i] if i < len(keys) else None)
            if d is not None:
                ds.append(d)
        return DeferredList(ds, consumeErrors=True) if ds else None

    def _join_one(self, r: Reply, name: str, key: str | None) -> Deferred[Any] | None:
        session = self.my_session
        if not name.startswith("#"):
            r.num(n.ERR_NOSUCHCHANNEL, name, "No such channel")
            return None
        try:
            check_room_name(name)
        except InvalidName as e:
            r.num(n.ERR_BADCHANMASK, name, f"Bad channel name: {e.message}")
            return None
        room = self.service.rooms.get(fold(name))
        if room is not None:
            if session.folded in room.members:
                return None
            if room.is_banned(session.name, session.hostmask):
                r.num(n.ERR_BANNEDFROMCHAN, room.name, "Cannot join channel (+b)")
                return None
            if "i" in room.flags and session.folded not in room.invites:
                r.num(n.ERR_INVITEONLYCHAN, room.name, "Cannot join channel (+i)")
                return None
            if room.key is not None and key != room.key:
                r.num(n.ERR_BADCHANNELKEY, room.name, "Cannot join channel (+k)")
                return None
            if room.limit is not None and len(room.members) >= room.limit:
                r.num(n.ERR_CHANNELISFULL, room.name, "Cannot join channel (+l)")
                return None
        try:
            d = self.service.join(session, name, key)
        except ChatError as e:
            self._join_error(r, name, e)
            return None

        def failed(f: Failure) -> None:
            f.trap(ChatError)
            self._join_error(r, name, f.value)  # type: ignore[arg-type]

        return d.addErrback(failed)

    def _join_error(self, r: Reply, name: str, e: ChatError) -> None:
        if isinstance(e, Forbidden):
            r.num(n.ERR_INVITEONLYCHAN if "invite" in e.message else n.ERR_BANNEDFROMCHAN,
                  name, f"Cannot join channel: {e.message}")
        else:
            r.num(n.ERR_NOSUCHCHANNEL, name, e.message)

    def _join_burst(self, send: Callable[[str], None], room: Room) -> None:
        """JOIN, topic and names for a room this client is now in."""
        me = self.my_session
        if "extended-join" in self.caps:
            account = me.account.name if me.account else "*"
            send(wire.format_line("JOIN", [room.name, account, self.realname or me.name],
                                  me.hostmask))
        else:
            send(wire.format_line("JOIN", [room.name], me.hostmask))
        if room.topic:
            send(self.numeric(n.RPL_TOPIC, room.name, room.topic))
            if room.topic_by:
                send(self.numeric(n.RPL_TOPICWHOTIME, room.name, room.topic_by,
                                  str((room.topic_at or 0) // 1000)))
        self._names(send, room)

    def _names(self, send: Callable[[str], None], room: Room) -> None:
        entries = []
        for m in room.members.values():
            prefix = ("@" if m.op else "") + ("+" if m.voice else "")
            if "multi-prefix" not in self.caps:
                prefix = prefix[:1]
            who = self.mask_of(m.name) if "userhost-in-names" in self.caps else m.name
            entries.append(prefix + who)
        symbol = "@" if "s" in room.flags else "="
        head = f":{self.server} {n.RPL_NAMREPLY} {self.me} {symbol} {room.name} :"
        room_left = wire.MAX_LINE - 2 - len(head.encode("utf-8"))
        line: list[str] = []
        size = 0
        for entry in entries:
            if line and size + 1 + len(entry.encode("utf-8")) > room_left:
                send(head + " ".join(line))
                line, size = [], 0
            size += len(entry.encode("utf-8")) + (1 if line else 0)
            line.append(entry)
        if line:
            send(head + " ".join(line))
        send(self.numeric(n.RPL_ENDOFNAMES, room.name, "End of /NAMES list"))

    def irc_NAMES(self, msg: wire.Message, r: Reply) -> None:
        if not msg.params:
            r.num(n.RPL_ENDOFNAMES, "*", "End of /NAMES list")
            return
        for name in msg.params[0].split(","):
            room = self.service.rooms.get(fold(name))
            if room is None:
                r.num(n.RPL_ENDOFNAMES, name, "End of /NAMES list")
            else:
                self._names(r.send, room)

    def irc_PART(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        reason = msg.param(1) or None
        ds = []
        for name in msg.params[0].split(","):
            room = self.service.rooms.get(fold(name))
            if room is None:
                r.num(n.ERR_NOSUCHCHANNEL, name, "No such channel")
                continue
            if self.my_session.folded not in room.members:
                r.num(n.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
                continue
            ds.append(self.service.part(self.my_session, room.name, reason))
        return DeferredList(ds, consumeErrors=True) if ds else None

    def irc_TOPIC(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        name = msg.params[0]
        room = self.service.rooms.get(fold(name))
        if room is None:
            r.num(n.ERR_NOSUCHCHANNEL, name, "No such channel")
            return None
        member = self.my_session.folded in room.members
        if len(msg.params) < 2:
            if "s" in room.flags and not member:
                r.num(n.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
            elif room.topic:
                r.num(n.RPL_TOPIC, room.name, room.topic)
                if room.topic_by:
                    r.num(n.RPL_TOPICWHOTIME, room.name, room.topic_by,
                          str((room.topic_at or 0) // 1000))
            else:
                r.num(n.RPL_NOTOPIC, room.name, "No topic is set")
            return None
        if not member:
            r.num(n.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
            return None
        if "t" in room.flags and not room.is_op(self.me):
            r.num(n.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
            return None
        return self.service.set_topic(self.my_session, room.name, msg.params[1])

    def irc_LIST(self, msg: wire.Message, r: Reply) -> None:
        masks = [m for m in msg.param(0).split(",") if m] if msg.params else []
        r.num(n.RPL_LISTSTART, "Channel", "Users  Name")
        me = self.my_session.folded
        # Secret (+s) rooms are listed to their members only.
        for room in sorted(self.service.rooms.values(), key=lambda room: fold(room.name)):
            if "s" in room.flags and me not in room.members:
                continue
            if masks and not any(fnmatch.fnmatchcase(fold(room.name), fold(m)) for m in masks):
                continue
            r.num(n.RPL_LIST, room.name, str(len(room.members)), room.topic or "")
        r.num(n.RPL_LISTEND, "End of /LIST")

    def irc_KICK(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        """``KICK #a u1,u2`` kicks both from #a; ``KICK #a,#b u1,u2`` pairs them (RFC 2812)."""
        self.need(msg, 2)
        names = [c for c in msg.params[0].split(",") if c]
        users = [u for u in msg.params[1].split(",") if u]
        reason = msg.param(2) or None
        if len(names) == 1:
            pairs = [(names[0], user) for user in users]
        elif len(names) == len(users):
            pairs = list(zip(names, users, strict=True))
        else:
            raise NeedMoreParams()
        ds = []
        for name, user in pairs:
            room = self.service.rooms.get(fold(name))
            if room is None:
                r.num(n.ERR_NOSUCHCHANNEL, name, "No such channel")
            elif self.my_session.folded not in room.members:
                r.num(n.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
            elif not room.is_op(self.me):
                r.num(n.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
            elif fold(user) not in room.members:
                r.num(n.ERR_USERNOTINCHANNEL, user, room.name, "They aren't on that channel")
            else:
                ds.append(self.service.kick(self.my_session, room.name, user, reason))
        return DeferredList(ds, consumeErrors=True) if ds else None

    def irc_INVITE(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        if not msg.params:
            r.num(n.RPL_ENDOFINVITELIST, "End of /INVITE list")
            return None
        self.need(msg, 2)
        user, name = msg.params[0], msg.params[1]
        room = self.service.rooms.get(fold(name))
        if room is None:
            r.num(n.ERR_NOSUCHCHANNEL, name, "No such channel")
            return None
        if self.my_session.folded not in room.members:
            r.num(n.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
            return None
        if "i" in room.flags and not room.is_op(self.me):
            r.num(n.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
            return None
        if fold(user) in room.members:
            r.num(n.ERR_USERONCHANNEL, user, room.name, "is already on channel")
            return None
        try:
            d = self.service.invite(self.my_session, room.name, user)
        except InvalidName:
            r.num(n.ERR_NOSUCHNICK, user, "No such nick/channel")
            return None

        def ok(_: Any) -> None:
            target = self.service.sessions_of(user)
            r.num(n.RPL_INVITING, target[0].name if target else user, room.name)

        def bad(f: Failure) -> None:
            f.trap(NoSuchUser)
            r.num(n.ERR_NOSUCHNICK, user, "No such nick/channel")

        return d.addCallbacks(ok, bad)

    # -- modes ---------------------------------------------------------------------------

    def irc_MODE(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        target = msg.params[0]
        if not target.startswith("#"):
            self._user_mode(msg, r)
            return None
        room = self.service.rooms.get(fold(target))
        if room is None:
            r.num(n.ERR_NOSUCHCHANNEL, target, "No such channel")
            return None
        member = self.my_session.folded in room.members
        if len(msg.params) < 2:
            letters, args = room.mode_string(show_key=member)
            r.num(n.RPL_CHANNELMODEIS, room.name, letters, *args)
            r.num(n.RPL_CREATIONTIME, room.name, str(room.created_at // 1000))
            return None
        args = list(msg.params[2:])
        sign = "+"
        changes: list[tuple[str, str | None]] = []
        list_bans = False
        for ch in msg.params[1]:
            if ch in "+-":
                sign = ch
            elif ch in "ov":
                if not args:
                    continue
                changes.append((sign + ch, args.pop(0)))
            elif ch == "b":
                if args:
                    changes.append((sign + ch, args.pop(0)))
                else:
                    list_bans = True
            elif ch == "k":
                if sign == "+":
                    if not args:
                        r.num(n.ERR_INVALIDMODEPARAM, room.name, "k", "*",
                              "You must specify a parameter for the key mode")
                        continue
                    key = args.pop(0)
                    if not key or " " in key or "," in key:
                        r.num(n.ERR_INVALIDMODEPARAM, room.name, "k", "*",
                              "The key must be a word without spaces or commas")
                        continue
                    changes.append(("+k", key))
                else:
                    if args:
                        args.pop(0)
                    changes.append(("-k", None))
            elif ch == "l":
                if sign == "+":
                    if not args:
                        r.num(n.ERR_INVALIDMODEPARAM, room.name, "l", "*",
                              "You must specify a parameter for the limit mode")
                        continue
                    value = args.pop(0)
                    if not value.isdigit() or int(value) < 1:
                        r.num(n.ERR_INVALIDMODEPARAM, room.name, "l", value or "*",
                              "The limit must be a positive number")
                        continue
                    changes.append(("+l", value))
                else:
                    changes.append(("-l", None))
            elif ch in "imnst":
                changes.append((sign + ch, None))
            else:
                r.num(n.ERR_UNKNOWNMODE, ch, "is unknown mode char to me")
        if list_bans:
            for mask in room.bans:
                r.num(n.RPL_BANLIST, room.name, mask)
            r.num(n.RPL_ENDOFBANLIST, room.name, "End of channel ban list")
        if not changes:
            return None
        changes = changes[:MAX_MODE_CHANGES]
        if not room.is_op(self.me):
            r.num(n.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
            return None
        for change, arg in changes:
            if change[1] in "ov" and arg is not None and room.member(arg) is None:
                if self.service.is_online(arg):
                    r.num(n.ERR_USERNOTINCHANNEL, arg, room.name, "They aren't on that channel")
                else:
                    r.num(n.ERR_NOSUCHNICK, arg, "No such nick/channel")
                return None
        try:
            d = self.service.change_modes(self.my_session, room.name, changes)
        except BadRequest as e:
            r.num(n.ERR_INVALIDMODEPARAM, room.name, "*", "*", e.message)
            return None

        def bad(f: Failure) -> None:
            f.trap(BadRequest)
            r.num(n.ERR_INVALIDMODEPARAM, room.name, "*", "*", f.value.message)  # type: ignore[union-attr]

        return d.addErrback(bad)

    def _user_mode(self, msg: wire.Message, r: Reply) -> None:
        target = msg.params[0]
        if fold(target) != fold(self.me):
            if self.service.is_online(target):
                r.num(n.ERR_USERSDONTMATCH, "Cant change mode for other users")
            else:
                r.num(n.ERR_NOSUCHNICK, target, "No such nick/channel")
            return
        account = self.session is not None and not self.session.guest
        if len(msg.params) < 2:
            r.num(n.RPL_UMODEIS, "+" + ("i" if self.invisible else "") + ("r" if account else ""))
            return
        sign, changed = "+", ""
        for c in msg.params[1]:
            if c in "+-":
                sign = c
            elif c == "i":
                if self.invisible != (sign == "+"):
                    self.invisible = sign == "+"
                    changed += sign + "i"
            elif c != "r":
                r.num(n.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
        if changed:
            r.send(wire.format_line("MODE", [self.me, changed], self.my_mask))

    # -- who and whois ---------------------------------------------------------------------

    def _flags(self, name: str, room: Room | None) -> str:
        state = self.service.presence.get(fold(name))
        online = self.service.is_online(name)
        here = "H" if online and not (state is not None and state.away) else "G"
        if room is not None:
            m = room.member(name)
            if m is not None:
                prefix = ("@" if m.op else "") + ("+" if m.voice else "")
                here += prefix if "multi-prefix" in self.caps else prefix[:1]
        return here

    def irc_WHO(self, msg: wire.Message, r: Reply) -> None:
        mask = msg.param(0) or "*"
        whox = msg.param(1) if msg.param(1).startswith("%") else None
        entries: list[tuple[str, Room | None]] = []
        if mask.startswith("#"):
            room = self.service.rooms.get(fold(mask))
            if room is not None:
                entries = [(m.name, room) for m in room.members.values()]
        else:
            pattern = fold(mask)
            wildcard = any(c in mask for c in "*?")
            for info in self.service.who():
                name = info["user"]
                if not (mask in ("*", "0") or fnmatch.fnmatchcase(fold(name), pattern)):
                    continue
                if wildcard and self._hidden(name):
                    continue
                entries.append((name, None))
        for name, room in entries:
            channel = room.name if room is not None else "*"
            user_host = self.mask_of(name).split("!", 1)[1]
            user, host = user_host.split("@", 1)
            flags = self._flags(name, room)
            if whox is not None:
                r.num(n.RPL_WHOSPCRPL, *self._whox_fields(whox, name, channel, user, host, flags))
            else:
                r.num(n.RPL_WHOREPLY, channel, user, host, self.server, name, flags,
                      f"0 {self.realname_of(name)}")
        r.num(n.RPL_ENDOFWHO, mask, "End of WHO list")

    def _hidden(self, name: str) -> bool:
        """Whether *name* is invisible (+i) to this client: it shares no room with them."""
        if not any(getattr(s.mind, "invisible", False) for s in self.service.sessions_of(name)):
            return False
        if fold(name) == fold(self.me):
            return False
        mine = {fold(room.name) for room in self.service.rooms_of(self.me)}
        return not any(fold(room.name) in mine for room in self.service.rooms_of(name))

    def _whox_fields(
        self, spec: str, name: str, channel: str, user: str, host: str, flags: str
    ) -> list[str]:
        fields, _, token = spec[1:].partition(",")
        account = self.account_of(name) or "0"
        values = {
            "t": token or "0", "c": channel, "u": user, "i": "255.255.255.255", "h": host,
            "s": self.server, "n": name, "f": flags, "d": "0", "l": "0", "a": account,
            "o": "n/a", "r": self.realname_of(name),
        }
        return [values[c] for c in "tcuihsnfdlaor" if c in fields]

    def irc_WHOIS(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        nick = msg.params[-1].split(",")[0]
        if fold(nick) == fold(NICKSERV):
            r.num(n.RPL_WHOISUSER, NICKSERV, NICKSERV, "services", "*", "Account services")
            r.num(n.RPL_WHOISSERVER, NICKSERV, self.server, "pingchat")
            r.num(n.RPL_ENDOFWHOIS, NICKSERV, "End of /WHOIS list")
            return None
        try:
            d = self.service.whois(nick)
        except InvalidName:
            r.num(n.ERR_NOSUCHNICK, nick, "No such nick/channel")
            r.num(n.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
            return None

        def show(info: dict[str, Any]) -> None:
            name = info["user"]
            user, host = self.mask_of(name).split("!", 1)[1].split("@", 1)
            r.num(n.RPL_WHOISUSER, name, user, host, "*", self.realname_of(name))
            channels = []
            for room_name in info["rooms"]:
                room = self.service.rooms.get(fold(room_name))
                if room is None:
                    continue
                if "s" in room.flags and self.my_session.folded not in room.members:
                    continue
                channels.append(self._flags(name, room)[1:] + room.name)
            if channels:
                r.num(n.RPL_WHOISCHANNELS, name, " ".join(channels))
            r.num(n.RPL_WHOISSERVER, name, self.server, "pingchat")
            if info["presence"] == "offline":
                seen = info.get("last_seen")
                when = f" since {iso_ms(seen)}" if seen else ""
                r.num(n.RPL_AWAY, name,
                      f"Offline{when}; messages will be delivered when they connect")
            elif info.get("away"):
                r.num(n.RPL_AWAY, name, info["away"])
            if not info["guest"]:
                r.num(n.RPL_WHOISACCOUNT, name, name, "is logged in as")
            r.num(n.RPL_ENDOFWHOIS, name, "End of /WHOIS list")

        def missing(f: Failure) -> None:
            f.trap(NoSuchUser)
            r.num(n.ERR_NOSUCHNICK, nick, "No such nick/channel")
            r.num(n.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")

        return d.addCallbacks(show, missing)

    def irc_WHOWAS(self, msg: wire.Message, r: Reply) -> None:
        """Nicks that left this gateway (newest first), from a bounded memory."""
        if not msg.params or not msg.params[0]:
            r.num(n.ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        count = int(msg.params[1]) if msg.param(1).lstrip("-").isdigit() else 0
        for nick in msg.params[0].split(","):
            if not nick:
                continue
            pattern = fold(nick)
            found = [w for w in self.factory.whowas if fnmatch.fnmatchcase(fold(w.nick), pattern)]
            if count > 0:
                found = found[:count]
            if not found:
                r.num(n.ERR_WASNOSUCHNICK, nick, "There was no such nickname")
            for was in found:
                r.num(n.RPL_WHOWASUSER, was.nick, was.user, was.host, "*", was.realname)
                r.num(n.RPL_WHOISSERVER, was.nick, self.server, iso_ms(was.left_at))
            r.num(n.RPL_ENDOFWHOWAS, nick, "End of WHOWAS")

    # -- messages ------------------------------------------------------------------------------

    def irc_PRIVMSG(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        return self._message(msg, r, "privmsg")

    def irc_NOTICE(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        return self._message(msg, r, "notice")

    def irc_TAGMSG(self, msg: wire.Message, r: Reply) -> None:
        """Client-only tags (typing...) have nowhere to go in pingchat: accepted, dropped."""

    def _message(self, msg: wire.Message, r: Reply, kind: str) -> Deferred[Any] | None:
        command = msg.command
        quiet = kind == "notice"  # no automatic replies to NOTICE
        if not msg.params or not msg.params[0]:
            if not quiet:
                r.num(n.ERR_NORECIPIENT, f"No recipient given ({command})")
            return None
        text = clean_text(msg.param(1))
        if not text:
            if not quiet:
                r.num(n.ERR_NOTEXTTOSEND, "No text to send")
            return None
        ds = []
        for target in msg.params[0].split(",")[: MAX_TARGETS]:
            if not target:
                continue
            if fold(target) == fold(NICKSERV):
                if not quiet:
                    d = self.nickserv.handle(r, text)
                    if d is not None:
                        ds.append(d)
                continue
            if self.session is None:
                if not quiet:
                    r.num(n.ERR_NOTREGISTERED, self._login_hint())
                continue
            if target.startswith("#"):
                d = self._say(r, target, text, kind, quiet)
            else:
                d = self._dm(r, target, text, kind, quiet)
            if d is not None:
                ds.append(d)
        if len(ds) == 1:
            return ds[0]  # the usual single target: no DeferredList on the hot path
        return DeferredList(ds, consumeErrors=True) if ds else None

    def _say(self, r: Reply, target: str, text: str, kind: str, quiet: bool
             ) -> Deferred[Any] | None:
        room = self.service.rooms.get(fold(target))
        if room is None:
            if not quiet:
                r.num(n.ERR_NOSUCHCHANNEL, target, "No such channel")
            return None
        command = "NOTICE" if kind == "notice" else "PRIVMSG"

        def cannot(e: ChatError) -> None:
            if not quiet:
                r.num(n.ERR_CANNOTSENDTOCHAN, room.name, f"Cannot send to channel: {e.message}")

        try:
            d = self.service.say(self.my_session, room.name, text, kind)
        except (NotInRoom, Forbidden, NoSuchRoom, BadRequest) as e:
            cannot(e)
            return None

        def sent(m: Message) -> None:
            if "echo-message" in self.caps:
                self._echo(r, command, room.name, m)

        def failed(f: Failure) -> None:
            f.trap(NotInRoom, Forbidden, NoSuchRoom, BadRequest)
            cannot(f.value)  # type: ignore[arg-type]

        return d.addCallbacks(sent, failed)

    def _echo(self, r: Reply, command: str, target: str, m: Message) -> None:
        me = self.my_session
        tags = self.message_tags(m.ts, m.id, me.account.name if me.account else None)
        for i, line in enumerate(self.text_lines(me.hostmask, command, target, m.text or "")):
            r.send(line, tags if i == 0 else {k: v for k, v in tags.items() if k != "msgid"})

    def _guest_dm_refused(self, r: Reply, target: str, online: bool) -> Deferred[Any] | None:
        """A guest may not DM an account (486); a nick nobody has is 401."""

        def refuse(_: object = None) -> None:
            r.num("486", target, "Guests cannot send private messages to accounts; log in first")

        def missing(f: Failure) -> None:
            f.trap(NoSuchUser, InvalidName)
            r.num(n.ERR_NOSUCHNICK, target, "No such nick/channel")

        if online:
            refuse()
            return None
        return self.service.whois(target).addCallbacks(refuse, missing)

    def _dm(self, r: Reply, target: str, text: str, kind: str, quiet: bool
            ) -> Deferred[Any] | None:
        me = self.my_session
        command = "NOTICE" if kind == "notice" else "PRIVMSG"
        if not ACCOUNT_NAME_RE.fullmatch(target):
            if not quiet:
                r.num(n.ERR_NOSUCHNICK, target, "No such nick/channel")
            return None
        sessions = self.service.sessions_of(target)
        ctcp = text.startswith("\x01") and not text.startswith("\x01ACTION")
        if sessions and (sessions[0].guest or (ctcp and not me.guest)):
            # Guests have no stored DMs, and CTCP queries are not chat: both
            # are delivered live to the target's connections and not kept.
            m = Message(
                id=self.factory.new_live_id(), ts=self.service.now(), sender=me.name,
                text=text, to=sessions[0].name, kind=kind,
                sender_account=me.account.name if me.account else None,
            )
            for s in sessions:
                s.mind.message(m)
            if "echo-message" in self.caps:
                self._echo(r, command, sessions[0].name, m)
            state = self.service.presence.get(sessions[0].folded)
            if not quiet and state is not None and state.away:
                r.num(n.RPL_AWAY, sessions[0].name, state.away)
            return None
        if me.guest:
            return None if quiet else self._guest_dm_refused(r, target, bool(sessions))

        def sent(result: tuple[Message, bool]) -> None:
            m, delivered = result
            if "echo-message" in self.caps:
                self._echo(r, command, m.to or target, m)
            if quiet:
                return
            state = self.service.presence.get(fold(target))
            if not delivered:
                r.num(n.RPL_AWAY, m.to or target,
                      "Offline; your message will be delivered when they connect")
            elif state is not None and state.away:
                r.num(n.RPL_AWAY, m.to or target, state.away)

        def failed(f: Failure) -> None:
            f.trap(NoSuchUser, InvalidName, Forbidden, BadRequest)
            if quiet:
                return
            if f.check(Forbidden):
                r.num("486", target, f.value.message)  # type: ignore[union-attr]
            elif f.check(BadRequest):
                r.num(n.ERR_NOTEXTTOSEND, f.value.message)  # type: ignore[union-attr]
            else:
                r.num(n.ERR_NOSUCHNICK, target, "No such nick/channel")

        try:
            d = self.service.dm(me, target, text=text, kind=kind)
        except ChatError as e:
            failed(Failure(e))
            return None
        return d.addCallbacks(sent, failed)

    # -- chathistory -------------------------------------------------------------------------

    def irc_CHATHISTORY(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        return self.chathistory.handle(msg, r)

    # -- IChatMind -------------------------------------------------------------------------

    def message(self, message: Message, offline: bool = False) -> None:
        if self.session is None:
            return
        if message.room is not None and not offline and self._held is None:
            # The common case, a room message in a fan-out: every recipient
            # with the same tag capabilities gets the same bytes, encoded once.
            self.write_bounded(self.factory.room_message_data(message, self))
            return
        for line, tags in self.message_lines(message, offline):
            self.event(line, tags)

    def message_lines(self, m: Message, offline: bool = False) -> list[tuple[str, dict[str, str]]]:
        """The PRIVMSG/NOTICE lines (with their tags) that show *m* to this client."""
        assert self.session is not None
        command = "NOTICE" if m.kind == "notice" else "PRIVMSG"
        text = m.text if m.ciphertext is None else ENCRYPTED
        text = clean_text(text or "")
        if offline and "server-time" not in self.caps:
            text = f"[{iso_ms(m.ts)[:16].replace('T', ' ')} UTC] {text}"
        if m.room is not None:
            source, target = self.mask_of(m.sender), m.room
            if m.sender_account is None:
                source = hostmask(m.sender, True)
        elif fold(m.to or "") == self.session.folded:
            source, target = self.mask_of(m.sender), self.me
            if m.sender_account is None:
                source = hostmask(m.sender, True)
        else:
            # A DM this account sent from another of its sessions.
            source, target = self.session.hostmask, m.to or ""
        tags = self.message_tags(m.ts, m.id, m.sender_account)
        rest = {k: v for k, v in tags.items() if k != "msgid"}
        return [
            (line, tags if i == 0 else rest)
            for i, line in enumerate(self.text_lines(source, command, target, text))
        ]

    def joined(self, room: str, user: str) -> None:
        r = self._routed("JOIN")
        send = r.send if r is not None else self.event
        if self.session is not None and fold(user) == self.session.folded:
            found = self.service.rooms.get(fold(room))
            if found is not None:
                self._join_burst(send, found)
            return
        mask = self.mask_of(user)
        if "extended-join" in self.caps:
            send(wire.format_line(
                "JOIN", [room, self.account_of(user) or "*", self.realname_of(user)], mask))
        else:
            send(wire.format_line("JOIN", [room], mask))
        state = self.service.presence.get(fold(user))
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

    def notice(self, text: str, sender: str) -> None:
        source = self.server if sender == self.service.server_name else self.mask_of(sender)
        self.event(wire.format_line("NOTICE", [self.me, clean_text(text)], source))

    def disconnect(self, reason: str) -> None:
        self._end_session()
        self.close(clean_text(reason))

