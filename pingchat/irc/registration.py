"""IRC registration: CAP, PASS, NICK, USER and the welcome burst.

Part of :class:`~pingchat.irc.protocol.IRCProtocol`, which inherits it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from pingchat.chat.session import Session
from pingchat.errors import ChatError, Forbidden, NoSuchUser
from pingchat.interfaces import IChatMind
from pingchat.irc import caps as capabilities
from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.base import IRCBase
from pingchat.irc.nickserv import NICKSERV
from pingchat.irc.reply import Reply
from pingchat.model import ACCOUNT_NAME_RE, fold

log = Logger()


class RegistrationMixin(IRCBase):
    """Registering a connection (CAP, NICK, USER, guests) and its welcome burst;
    logging it in to an account is :class:`~pingchat.irc.login.LoginMixin`'s."""

    def irc_CAP(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        sub = msg.params[0].upper()
        target = self.me
        if sub == "LS":
            if not self.registered:
                self._cap_negotiating = True
            version = msg.param(1)
            self.cap_version = max(self.cap_version, wire.number(version) or 301)
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
            # self is the IRCProtocol, which implements IChatMind.
            session = self.service.attach(None, cast(IChatMind, self), self.address, name=nick)
            session.user = self.user
            self.session = session
            self.factory.logged_in += 1
            self._logout = lambda: self.service.detach(session)
            self._welcome()

        return self.service.whois(nick).addCallbacks(reserved, free)

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
        self.write(self.numeric(n.RPL_MYINFO, self.server, f.version, "iorw", "biklmnostv",
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
        if session.operator is not None:  # an administrator: an operator from the start
            self._oper_up(self.write)
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
        users = self.service.online_count()
        self.factory.max_users = max(self.factory.max_users, users)
        unknown = len(self.factory.connections) - self.factory.logged_in
        top = self.factory.max_users
        send(self.numeric(n.RPL_LUSERCLIENT,
                          f"There are {users} users and 0 invisible on 1 servers"))
        operators = self.service.moderation.operator_count()
        send(self.numeric(n.RPL_LUSEROP, str(operators), "operator(s) online"))
        if unknown:
            send(self.numeric(n.RPL_LUSERUNKNOWN, str(unknown), "unknown connection(s)"))
        send(self.numeric(n.RPL_LUSERCHANNELS, str(self.service.room_count()), "channels formed"))
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
