"""IRC operators and message redaction: OPER, KILL, WALLOPS, REDACT.

Part of :class:`~pingchat.irc.protocol.IRCProtocol`, which inherits it, with
the IChatMind methods that show their effects (``message_deleted``,
``wallops``). The rules live in :mod:`pingchat.chat.moderation`; this module
speaks them in IRC (docs/irc.md, "Operators" and "Deleting messages").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pingchat.errors import ChatError, Forbidden, NoSuchMessage, NoSuchUser
from pingchat.interfaces import IOperatorAvatar
from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.base import IRCBase
from pingchat.irc.login import login_with_secret
from pingchat.irc.reply import Reply
from pingchat.model import ACCOUNT_NAME_RE, Account, Message, clean_text, fold, iso_ms

REDACTION = "draft/message-redaction"
NOT_OPERATOR = "Permission Denied - You're not an IRC operator"


class OperatorsMixin(IRCBase):
    """Operator commands, message redaction, and how their effects look here."""

    wallops_mode = False  # user mode +w: WALLOPS reach this connection

    # -- becoming an operator -----------------------------------------------------------

    def irc_OPER(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        """``OPER <account> <password>``: an administrator's account name and password
        (or a session token of it), checked through the portal, make this
        connection an operator, whatever its nick."""
        self.need(msg, 2)
        name, secret = msg.params[0], msg.params[1]
        session = self.my_session

        def granted(result: tuple[Any, Account, Callable[[], None]]) -> None:
            _iface, account, logout = result
            logout()
            if self.session is not session:  # the connection ended meanwhile
                return
            self.service.moderation.grant(session, account)
            self._oper_up(r.send)

        def refused(f: Failure) -> None:
            f.trap(UnauthorizedLogin, ChatError)
            self.service.audit(
                "oper_refused", account=name, actor=session.name, address=self.address
            )
            text = "Invalid oper credentials"
            if getattr(f.value, "code", None) == "rate_limited":
                text = self.auth_failure_text(f)
            r.num(n.ERR_NOOPERHOST, text)

        return self._vouch(name, secret).addCallbacks(granted, refused)

    def _vouch(self, name: str, secret: str) -> Deferred[Any]:
        """The portal's ``IOperatorAvatar`` for *name*: a token of its is tried first,
        then the secret as its password (as logins do, so that a token never
        counts as a wrong password)."""
        return login_with_secret(
            self.factory.portal, name, secret, None, self.address, None, IOperatorAvatar
        )

    def _oper_up(self, send: Callable[[str], None]) -> None:
        """``381`` and ``MODE nick +o``: this connection is an operator now."""
        send(self.numeric(n.RPL_YOUREOPER, "You are now an IRC operator"))
        send(wire.format_line("MODE", [self.me, "+o"], self.my_mask))

    def operator_changed(self, on: bool) -> None:
        """This connection became an operator, or stopped being one, because an
        account's admin role changed (not part of IChatMind: the service calls
        it when present)."""
        if on:
            self._oper_up(self.event)
        else:
            self.event(wire.format_line("MODE", [self.me, "-o"], self.server))

    # -- acting as one ---------------------------------------------------------------------

    def irc_KILL(self, msg: wire.Message, r: Reply) -> None:
        """``KILL <nick> [:reason]``: close every connection of an account or guest."""
        self.need(msg, 1)
        session = self.my_session
        if session.operator is None:
            r.num(n.ERR_NOPRIVILEGES, NOT_OPERATOR)
            return
        nick = msg.params[0]
        try:
            self.service.moderation.kill(session, nick, msg.param(1) or None)
        except NoSuchUser:
            r.num(n.ERR_NOSUCHNICK, nick, "No such nick/channel")

    def irc_WALLOPS(self, msg: wire.Message, r: Reply) -> None:
        """``WALLOPS :text`` to every operator, and every connection with ``+w``."""
        self.need(msg, 1)
        session = self.my_session
        if session.operator is None:
            r.num(n.ERR_NOPRIVILEGES, NOT_OPERATOR)
            return
        self.service.moderation.wallops(session, msg.params[0])

    def wallops(self, text: str, sender: str) -> None:
        if self.session is None or not (self.wallops_mode or self.session.operator is not None):
            return
        r = self._routed("WALLOPS")
        line = wire.format_line("WALLOPS", [clean_text(text)], self.mask_of(sender))
        (r.send if r is not None else self.event)(line)

    # -- redaction -----------------------------------------------------------------------------

    def irc_REDACT(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        """``REDACT <target> <msgid> [:reason]`` (IRCv3 ``draft/message-redaction``)."""
        self.need(msg, 2)
        target, msgid = msg.params[0], msg.params[1]
        reason = msg.param(2) or None
        session = self.my_session

        def fail_(code: str, *params: str) -> None:
            r.send(wire.format_line("FAIL", ["REDACT", code, *params], self.server))

        where: dict[str, str] = {}
        if target.startswith("#"):
            room = self.service.room_named(target)
            if room is None or (
                session.folded not in room.members and session.operator is None
            ):
                fail_("INVALID_TARGET", target, f"You cannot delete messages from {target}")
                return None
            where["room"] = room.name
        elif ACCOUNT_NAME_RE.fullmatch(target):
            where["with_"] = target
        else:
            fail_("INVALID_TARGET", target, f"You cannot delete messages from {target}")
            return None
        # Stored messages' ids are the store's (str(id)); "liveN" ones were never stored.
        if not (msgid.isascii() and msgid.isdigit() and len(msgid) <= 18):
            fail_("UNKNOWN_MSGID", target, msgid, "This message does not exist or is too old")
            return None
        d = self.service.moderation.delete_message(session, int(msgid), reason, **where)

        def refused(f: Failure) -> Failure | None:
            if f.check(NoSuchMessage):
                fail_("UNKNOWN_MSGID", target, msgid, "This message does not exist or is too old")
            elif f.check(Forbidden):
                fail_("REDACT_FORBIDDEN", target, msgid,
                      "You are not authorised to delete this message")
            else:
                return f
            return None

        return d.addErrback(refused)

    def message_deleted(self, message: Message, by: str, reason: str | None) -> None:
        """``REDACT`` to clients that negotiated ``draft/message-redaction`` (and
        to the connection that sent the REDACT); a NOTICE to the others."""
        session = self.session
        if session is None:
            return
        r = self._routed("REDACT")
        if message.room is not None:
            target = message.room
        elif fold(message.to or "") == session.folded:
            target = self.me  # a DM to this account, as its PRIVMSG showed it
        else:
            target = message.to or ""
        if r is not None or REDACTION in self.caps:
            params = [target, str(message.id), *([clean_text(reason)] if reason else [])]
            line = wire.format_line("REDACT", params, self.mask_of(by))
            tags = self.message_tags(ts=message.deleted_at, account=self.account_of(by))
            if r is not None:
                r.send(line, tags)
            else:
                self.event(line, tags)
            return
        when = iso_ms(message.ts)[:16].replace("T", " ")
        whose = "their own message" if fold(by) == fold(message.sender) else (
            f"a message from {message.sender}")
        text = f"{by} deleted {whose} (sent {when} UTC)" + (
            f": {clean_text(reason)}" if reason else "")
        self.event(wire.format_line("NOTICE", [target, text], self.server))
