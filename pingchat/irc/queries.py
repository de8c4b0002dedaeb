"""IRC simple commands and queries: PING, QUIT, MOTD, HELP, ISON, AWAY, WHO, WHOIS...

Part of :class:`~pingchat.irc.protocol.IRCProtocol`, which inherits it.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pingchat.errors import InvalidName, NoSuchUser
from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.base import IRCBase
from pingchat.irc.nickserv import NICKSERV
from pingchat.irc.reply import Reply
from pingchat.model import Room, clean_text, fold, hostmask, iso_ms

HELP_TOPICS = {
    "": [
        "pingchat IRC gateway. Commands: AWAY CAP CHATHISTORY HELP INVITE ISON JOIN",
        "KICK LIST LUSERS MODE MOTD NAMES NICKSERV NOTICE PART PING PRIVMSG QUIT",
        "INFO REDACT TIME TOPIC USERHOST VERSION WHO WHOIS.",
        "Operators (administrators, or after OPER): KILL WALLOPS.",
        "Accounts: /msg NickServ HELP.",
    ],
}


class QueriesMixin(IRCBase):
    """Simple commands, and who/whois."""

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

    def irc_INFO(self, msg: wire.Message, r: Reply) -> None:
        """About this server; a target is ignored (one server), as Ergo does."""
        for line in (f"pingchat {self.factory.version}, IRC gateway of {self.server}",
                     "A chat server built on Twisted: native, IRC and web doors onto one"
                     " chat world.",
                     f"Running since {self.factory.created}."):
            r.num(n.RPL_INFO, line)
        r.num(n.RPL_ENDOFINFO, "End of /INFO list")

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
            online = self.service.online_as(nick)  # on any node of a cluster
            if online is None:
                continue
            name, guest = online
            away = self.service.presence_of(name)
            flag = "-" if away is not None and away.away else "+"
            sessions = self.service.sessions_of(nick)
            mask = sessions[0].hostmask if sessions else hostmask(name, guest)
            user_host = mask.split("!", 1)[1]
            replies.append(f"{name}={flag}{user_host}")
        r.num(n.RPL_USERHOST, " ".join(replies))

    def irc_ISON(self, msg: wire.Message, r: Reply) -> None:
        self.need(msg, 1)
        names = " ".join(msg.params).split()
        online = []
        for nick in names:
            if fold(nick) == fold(NICKSERV):
                online.append(NICKSERV)
                continue
            found = self.service.online_as(nick)  # on any node of a cluster
            if found is not None:
                online.append(found[0])
        r.num(n.RPL_ISON, " ".join(online))

    def irc_AWAY(self, msg: wire.Message, r: Reply) -> None:
        assert self.session is not None
        text = clean_text(msg.param(0)).strip()
        self.service.set_away(self.session, text or None)
        if text:
            r.num(n.RPL_NOWAWAY, "You have been marked as being away")
        else:
            r.num(n.RPL_UNAWAY, "You are no longer marked as being away")

    # -- who and whois ---------------------------------------------------------------------

    def _flags(self, name: str, room: Room | None) -> str:
        state = self.service.presence_of(name)
        online = self.service.is_online(name)
        here = "H" if online and not (state is not None and state.away) else "G"
        if self.service.moderation.is_operator(name):
            here += "*"
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
            room = self.service.room_named(mask)
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
                room = self.service.room_named(room_name)
                if room is None:
                    continue
                if "s" in room.flags and self.my_session.folded not in room.members:
                    continue
                channels.append(self._flags(name, room).lstrip("HG*") + room.name)
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
            if self.service.moderation.is_operator(name):
                r.num(n.RPL_WHOISOPERATOR, name, "is an IRC operator")
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
        count = wire.number(msg.param(1)) or 0
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
