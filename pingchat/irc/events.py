"""What the chat world tells an IRC connection, as IRC lines: the IChatMind methods.

Part of :class:`~pingchat.irc.protocol.IRCProtocol`, which inherits it, with
how others appear to this connection (masks, account and message tags,
text split into lines), which the commands use too. A room message's
fan-out is encoded once per tag set by the factory
(``IRCFactory.room_message_data``); everything else is written here. The
IChatMind methods of operators (``message_deleted``, ``wallops``) are in
:mod:`pingchat.irc.operators`.
"""

from __future__ import annotations

from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.base import IRCBase
from pingchat.irc.chathistory import ENCRYPTED
from pingchat.irc.isupport import MAX_MODES as MAX_MODE_CHANGES
from pingchat.irc.nickserv import NICKSERV_MASK
from pingchat.model import Message, clean_text, fold, hostmask, iso_ms

# The command that shows a Message of each kind (anything else is PRIVMSG).
COMMAND_OF_KIND = {"notice": "NOTICE", "tagmsg": "TAGMSG"}


class EventsMixin(IRCBase):
    """The chat world's events as IRC lines, and how others appear in them."""

    # -- how others appear -------------------------------------------------------

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

    # -- IChatMind ---------------------------------------------------------------

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
