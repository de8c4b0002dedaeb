"""IRC rooms and modes: JOIN, NAMES, PART, TOPIC, LIST, KICK, INVITE, MODE.

Part of :class:`~pingchat.irc.protocol.IRCProtocol`, which inherits it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure

from pingchat.chat.session import Session
from pingchat.errors import BadRequest, ChatError, Forbidden, InvalidName, NoSuchUser
from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.base import IRCBase, NeedMoreParams
from pingchat.irc.isupport import MAX_MODES as MAX_MODE_CHANGES
from pingchat.irc.reply import Reply
from pingchat.model import Room, check_room_name, fold


class RoomsMixin(IRCBase):
    """Room and mode commands."""

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
        room = self.service.room_named(name)
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
            room = self.service.room_named(name)
            if room is None:
                r.num(n.RPL_ENDOFNAMES, name, "End of /NAMES list")
            else:
                self._names(r.send, room)

    def irc_PART(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        reason = msg.param(1) or None
        ds = []
        for name in msg.params[0].split(","):
            room = self.service.room_named(name)
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
        room = self.service.room_named(name)
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
        operator = self.my_session.operator is not None  # may override the room's rules
        if not member and not operator:
            r.num(n.ERR_NOTONCHANNEL, room.name, "You're not on that channel")
            return None
        if "t" in room.flags and not self.service.can_moderate(self.my_session, room):
            r.num(n.ERR_CHANOPRIVSNEEDED, room.name, "You're not channel operator")
            return None
        return self.service.set_topic(self.my_session, room.name, msg.params[1])

    def irc_LIST(self, msg: wire.Message, r: Reply) -> None:
        masks = [m for m in msg.param(0).split(",") if m] if msg.params else []
        r.num(n.RPL_LISTSTART, "Channel", "Users  Name")
        me = self.my_session.folded
        # Secret (+s) rooms are listed to their members only.
        for room in sorted(self.service.all_rooms(), key=lambda room: fold(room.name)):
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
            room = self.service.room_named(name)
            if room is None:
                r.num(n.ERR_NOSUCHCHANNEL, name, "No such channel")
            elif self.service.can_moderate(self.my_session, room):
                if fold(user) not in room.members:
                    r.num(n.ERR_USERNOTINCHANNEL, user, room.name, "They aren't on that channel")
                else:
                    ds.append(self.service.kick(self.my_session, room.name, user, reason))
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
        room = self.service.room_named(name)
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
        room = self.service.room_named(target)
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
                    limit = wire.number(value)
                    if limit is None or limit < 1:
                        r.num(n.ERR_INVALIDMODEPARAM, room.name, "l", value or "*",
                              "The limit must be a positive number")
                        continue
                    changes.append(("+l", str(limit)))
                else:
                    changes.append(("-l", None))
            elif ch == "H":  # the room's retention in days (docs/irc.md)
                if sign == "-":
                    changes.append(("-H", None))
                elif args:
                    changes.append(("+H", args.pop(0)))
                else:
                    r.num(n.ERR_INVALIDMODEPARAM, room.name, "H", "*",
                          "You must specify the number of days to keep history")
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
        if not self.service.can_moderate(self.my_session, room):
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
        session = self.my_session
        if len(msg.params) < 2:
            modes = {"i": self.invisible, "o": session.operator is not None,
                     "r": not session.guest, "w": self.wallops_mode}
            r.num(n.RPL_UMODEIS, "+" + "".join(m for m, on in modes.items() if on))
            return
        sign, changed, last = "+", "", ""
        for c in msg.params[1]:
            if c in "+-":
                sign = c
                continue
            if c in "iw":
                attr = "invisible" if c == "i" else "wallops_mode"
                if getattr(self, attr) == (sign == "+"):
                    continue
                setattr(self, attr, sign == "+")
            elif c == "o":
                # Only OPER (or an administrator's login) gives +o; -o gives it up.
                if sign == "+" or session.operator is None:
                    continue
                self.service.moderation.drop(session)
            else:
                if c != "r":
                    r.num(n.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
                continue
            changed += (sign if sign != last else "") + c
            last = sign
        if changed:
            r.send(wire.format_line("MODE", [self.me, changed], self.my_mask))
