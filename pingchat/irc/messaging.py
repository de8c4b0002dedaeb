"""IRC messages: PRIVMSG, NOTICE, TAGMSG and CHATHISTORY.

Part of :class:`~pingchat.irc.protocol.IRCProtocol`, which inherits it. The
IChatMind side (messages arriving for this client) stays in protocol.py.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure

from pingchat.errors import (
    BadRequest,
    ChatError,
    Forbidden,
    InvalidName,
    NoSuchRoom,
    NoSuchUser,
    NotInRoom,
)
from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.base import IRCBase
from pingchat.irc.chathistory import ChatHistory
from pingchat.irc.isupport import MAX_TARGETS
from pingchat.irc.nickserv import NICKSERV, NickServ
from pingchat.irc.reply import Reply
from pingchat.model import ACCOUNT_NAME_RE, Message, clean_text, fold

GUESTS_CANNOT_DM = "Guests cannot send private messages to accounts; log in first"


class MessagingMixin(IRCBase):
    """Sending messages, and reading history."""

    # -- messages ------------------------------------------------------------------------------

    def irc_PRIVMSG(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        return self._message(msg, r, "privmsg")

    def irc_NOTICE(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        return self._message(msg, r, "notice")

    def irc_TAGMSG(self, msg: wire.Message, r: Reply) -> None:
        """Client-only tags without text (``+typing``, ``+draft/react``...).

        Relayed live, as a room message or DM would be, to the clients that
        negotiated ``message-tags``; never stored. A TAGMSG without client
        tags has nothing to relay. Accounts that take DMs only from contacts
        get none (the contact list is in the store; typing notices do not
        wait for it).
        """
        if not msg.params or not msg.params[0]:
            r.num(n.ERR_NORECIPIENT, "No recipient given (TAGMSG)")
            return
        tags = self._client_tags(msg)
        if self.session is None or not tags:
            return
        for target in msg.params[0].split(",")[: MAX_TARGETS]:
            if target.startswith("#"):
                m = self._tag_room(r, target, tags)
            else:
                m = self._tag_user(r, target, tags)
            if m is not None and "echo-message" in self.caps:
                self._echo(r, "TAGMSG", m.room or m.to or target, m)

    def _tag_room(self, r: Reply, target: str, tags: dict[str, str]) -> Message | None:
        room = self.service.room_named(target)
        if room is None:
            r.num(n.ERR_NOSUCHCHANNEL, target, "No such channel")
            return None
        m = self._live_message(text=None, kind="tagmsg", client_tags=tags, room=room.name)
        try:
            self.service.say_live(self.my_session, room.name, m)
        except (NotInRoom, Forbidden, NoSuchRoom) as e:
            r.num(n.ERR_CANNOTSENDTOCHAN, room.name, f"Cannot send to channel: {e.message}")
            return None
        return m

    def _tag_user(self, r: Reply, target: str, tags: dict[str, str]) -> Message | None:
        me = self.my_session
        found = ACCOUNT_NAME_RE.fullmatch(target)
        sessions = self.service.sessions_of(target) if found else []
        if not sessions:
            r.num(n.ERR_NOSUCHNICK, target, "No such nick/channel")
            return None
        to, account = sessions[0], sessions[0].account
        if to.folded != me.folded:
            if account is not None and me.guest:
                r.num("486", target, GUESTS_CANNOT_DM)
                return None
            if account is not None and account.dm_policy == "contacts":
                return None
            # and my other connections, as a DM's copy goes to them
            sessions += [s for s in self.service.sessions_of(me.name) if s is not me]
        m = self._live_message(text=None, kind="tagmsg", client_tags=tags, to=to.name)
        for s in sessions:  # to oneself: this connection too, as a DM to oneself
            s.mind.message(m)
        return m

    def _client_tags(self, msg: wire.Message) -> dict[str, str] | None:
        """The client-only (``+``) tags of a line from a client that negotiated message-tags."""
        if not msg.tags or "message-tags" not in self.caps:
            return None
        return {k: v for k, v in msg.tags.items() if k.startswith("+")} or None

    def _live_message(self, **fields: Any) -> Message:
        """A message from this client that is delivered now and never stored."""
        me = self.my_session
        return Message(
            id=self.factory.new_live_id(), ts=self.service.now(), sender=me.name,
            sender_account=me.account.name if me.account else None, **fields,
        )

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
        client_tags = self._client_tags(msg)
        ds = []
        for target in msg.params[0].split(",")[: MAX_TARGETS]:
            if not target:
                continue
            if fold(target) == fold(NICKSERV):
                if not quiet:
                    d = NickServ(self).handle(r, text)
                    if d is not None:
                        ds.append(d)
                continue
            if self.session is None:
                if not quiet:
                    r.num(n.ERR_NOTREGISTERED, self._login_hint())
                continue
            if target.startswith("#"):
                d = self._say(r, target, text, kind, quiet, client_tags)
            else:
                d = self._dm(r, target, text, kind, quiet, client_tags)
            if d is not None:
                ds.append(d)
        if len(ds) == 1:
            return ds[0]  # the usual single target: no DeferredList on the hot path
        return DeferredList(ds, consumeErrors=True) if ds else None

    def _say(self, r: Reply, target: str, text: str, kind: str, quiet: bool,
             client_tags: dict[str, str] | None = None) -> Deferred[Any] | None:
        room = self.service.room_named(target)
        if room is None:
            if not quiet:
                r.num(n.ERR_NOSUCHCHANNEL, target, "No such channel")
            return None
        command = "NOTICE" if kind == "notice" else "PRIVMSG"

        def cannot(e: ChatError) -> None:
            if not quiet:
                r.num(n.ERR_CANNOTSENDTOCHAN, room.name, f"Cannot send to channel: {e.message}")

        try:
            d = self.service.say(self.my_session, room.name, text, kind, client_tags)
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
        tags = self.message_tags(
            m.ts, m.id, me.account.name if me.account else None, m.client_tags
        )
        if command == "TAGMSG":
            r.send(f":{me.hostmask} TAGMSG {target}", tags)
            return
        for i, line in enumerate(self.text_lines(me.hostmask, command, target, m.text or "")):
            r.send(line, tags if i == 0 else {k: v for k, v in tags.items() if k != "msgid"})

    def _guest_dm_refused(self, r: Reply, target: str, online: bool) -> Deferred[Any] | None:
        """A guest may not DM an account (486); a nick nobody has is 401."""

        def refuse(_: object = None) -> None:
            r.num("486", target, GUESTS_CANNOT_DM)

        def missing(f: Failure) -> None:
            f.trap(NoSuchUser, InvalidName)
            r.num(n.ERR_NOSUCHNICK, target, "No such nick/channel")

        if online:
            refuse()
            return None
        return self.service.whois(target).addCallbacks(refuse, missing)

    def _dm(self, r: Reply, target: str, text: str, kind: str, quiet: bool,
            client_tags: dict[str, str] | None = None) -> Deferred[Any] | None:
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
            m = self._live_message(
                text=text, to=sessions[0].name, kind=kind, client_tags=client_tags
            )
            for s in sessions:
                s.mind.message(m)
            if "echo-message" in self.caps:
                self._echo(r, command, sessions[0].name, m)
            state = self.service.presence_of(sessions[0].name)
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
            state = self.service.presence_of(target)
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
            d = self.service.dm(me, target, text=text, kind=kind, client_tags=client_tags)
        except ChatError as e:
            failed(Failure(e))
            return None
        return d.addCallbacks(sent, failed)

    # -- chathistory -------------------------------------------------------------------------

    def irc_CHATHISTORY(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        return ChatHistory(self).handle(msg, r)
