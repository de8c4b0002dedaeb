"""Server operators, and what operators, authors and room operators may do
beyond chatting: delete messages, disconnect people, write to the operators.

A session is a **server operator** when an administrator's account vouches
for it (``Session.operator``): every session of an account with the admin
role is one from its login, on every door, and IRC's ``OPER`` makes any IRC
connection one with an admin account's name and password (docs/irc.md,
"Operators"). An operator may kick, change the modes of and set the topic of
any room (``ChatService.can_moderate``; each override is audited), disconnect
every session of anyone (:meth:`Moderation.kill`), write to the other
operators (:meth:`Moderation.wallops`) and delete any message.

**Deleting a message** (:meth:`Moderation.delete_message`) is for its author,
for the operators of the room it was said in, and for server operators. The
store keeps a tombstone (id, time, conversation, sender, who deleted it and
when), with the text gone from the database file; everyone who could see the
message is told (``IChatMind.message_deleted``), and history shows the
tombstone in its place (IRC's CHATHISTORY leaves it out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pingchat.chat.session import Session
from pingchat.errors import BadRequest, Forbidden, NoSuchMessage, NoSuchUser
from pingchat.interfaces import IStore
from pingchat.model import Account, Message, Room, check_int64, check_text, clean_text, fold

log = Logger()


class World(Protocol):
    """What moderation asks of the chat service (:class:`pingchat.chat.service.ChatService`)."""

    audit: Callable[..., object]
    # Where what moderation did is told to the other nodes of a cluster
    # (pingchat.chat.fanout; nothing happens there on one server).
    fanout: Any

    def now(self) -> int: ...
    def online_as(self, name: str) -> tuple[str, bool] | None: ...
    def remote_sessions_of(self, name: str) -> Sequence[Any]: ...
    def sessions_of(self, name: str) -> Sequence[Session]: ...
    def all_sessions(self) -> Iterator[Session]: ...
    def room_named(self, name: str) -> Room | None: ...

REASON_MAX = 300  # as KICKLEN and AWAYLEN


def _reason(reason: str | None) -> str | None:
    """A kill or deletion reason, one line and bounded, or None."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise BadRequest("reason must be a string")
    return clean_text(reason).strip()[:REASON_MAX] or None


class Moderation:
    """Operator status and the acts of moderation, for every door alike.

    Made by the :class:`~pingchat.chat.service.ChatService`, which it serves:
    it reads the live world through the service's questions
    (``sessions_of``, ``room_named``...) and writes through the store.
    """

    def __init__(self, service: World, store: IStore) -> None:
        self.service = service
        self._store = store
        self._operators: set[Session] = set()  # the live sessions that are operators

    # -- operators ---------------------------------------------------------------------

    def session_started(self, session: Session) -> None:
        """The service attached *session* (an admin's is an operator from the start)."""
        if session.operator is not None:
            self._operators.add(session)

    def session_ended(self, session: Session) -> None:
        self._operators.discard(session)

    def grant(self, session: Session, account: Account) -> None:
        """Make *session* an operator on the authority of *account*, an administrator's
        (IRC ``OPER``: the door has checked the account's password through the portal)."""
        if not account.is_admin:
            raise Forbidden(f"{account.name} is not an administrator")
        session.operator = account.name
        self._operators.add(session)
        self.service.audit(
            "oper", account=account.name, actor=session.name, address=session.address
        )

    def drop(self, session: Session) -> None:
        """*session* stops being an operator (IRC ``MODE nick -o``)."""
        session.operator = None
        self._operators.discard(session)

    def role_changed(self, account: Account) -> int:
        """*account*'s role changed (the manhole's ``promote``/``demote``): live sessions
        follow at once. Promoted, its own sessions become operators; demoted,
        every session it made an operator (its own, and those it OPERed) stops
        being one. Each is told with ``operator_changed(on)`` when its mind has
        it (IRC shows ``MODE nick +o`` or ``-o``). Returns how many changed.
        """
        if account.is_admin:
            changed = [s for s in self.service.sessions_of(account.name) if s.operator is None]
            for session in changed:
                session.operator = account.name
                self._operators.add(session)
        else:
            folded = fold(account.name)
            changed = [s for s in self._operators
                       if s.operator is not None and fold(s.operator) == folded]
            for session in changed:
                self.drop(session)
        for session in changed:
            tell = getattr(session.mind, "operator_changed", None)
            if tell is not None:
                tell(account.is_admin)
        return len(changed)

    def is_operator(self, name: str) -> bool:
        """Whether any live session of *name* is a server operator."""
        return any(s.operator is not None for s in self.service.sessions_of(name))

    def operator_count(self) -> int:
        """How many users (accounts or guests) have an operator session."""
        return len({s.folded for s in self._operators})

    def _require_operator(self, session: Session, what: str) -> None:
        if session.operator is None:
            raise Forbidden(f"only server operators may {what}")

    # -- kill and wallops --------------------------------------------------------------

    def kill(self, session: Session, user: str, reason: str | None = None) -> int:
        """Close every session of *user* (an account or a guest), through every door.

        Only operators; audited. They may connect again: to keep someone out,
        an administrator disables the account (``pingchat user disable``).
        Returns the number of sessions closed.
        """
        self._require_operator(session, "kill")
        reason = _reason(reason)
        sessions = self.service.sessions_of(user)
        online = self.service.online_as(user)  # on any node of a cluster
        if online is None:
            raise NoSuchUser(f"{user} is not connected")
        name = online[0]
        elsewhere = sum(e.sessions for e in self.service.remote_sessions_of(user))
        self.service.audit(
            "kill",
            account=name,
            actor=session.name,
            address=session.address,
            operator=session.operator,
            reason=reason,
            sessions=len(sessions) + elsewhere,
        )
        text = f"Killed by {session.name}: {reason}" if reason else f"Killed by {session.name}"
        for s in sessions:
            s.mind.disconnect(text)
        self.service.fanout.disconnect_user(name, text)
        return len(sessions) + elsewhere

    def wallops(self, session: Session, text: str) -> None:
        """Send *text* to every session; each door shows it to operators (and, on
        IRC, to connections with user mode ``+w``). Only operators; audited."""
        self._require_operator(session, "send wallops")
        text = check_text(text)
        self.service.audit("wallops", actor=session.name, address=session.address, text=text)
        for s in list(self.service.all_sessions()):
            s.mind.wallops(text, session.name)
        self.service.fanout.wallops(text, session.name)

    # -- deleting messages --------------------------------------------------------------

    def delete_message(
        self,
        session: Session,
        msg_id: int,
        reason: str | None = None,
        *,
        room: str | None = None,
        with_: str | None = None,
    ) -> Deferred[Message]:
        """Delete a stored message; fires with its tombstone once the text is gone.

        *room* or *with_* (IRC ``REDACT``'s target) says which conversation
        the caller means: a message elsewhere is ``NoSuchMessage``, as is one
        the caller cannot see (a room it is not in, a DM between others) or
        one deleted already, so that ids do not tell what exists. Allowed to
        its author, to an operator of its room (room messages) and to server
        operators; anyone else gets ``Forbidden``. Deleting someone else's
        message is audited (``message_deleted``).
        """
        check_int64(msg_id, "msg_id")
        reason = _reason(reason)

        def check(m: Message | None) -> Deferred[Message]:
            if (
                m is None
                or m.deleted_at is not None
                or not self._is_target(session, m, room, with_)
                or not self._sees(session, m)
            ):
                raise NoSuchMessage(f"no such message: {msg_id}")
            right = self._right_to_delete(session, m)
            if right is None:
                if m.room is None:
                    raise Forbidden("only its author may delete a direct message")
                raise Forbidden(
                    f"only its author or an operator of {m.room} may delete this message"
                )
            now = self.service.now()
            return self._store.delete_message(m.id, session.name, now).addCallback(
                deleted, m, right, now
            )

        def deleted(done: bool, m: Message, right: str, now: int) -> Message:
            if not done:  # another deletion came first
                raise NoSuchMessage(f"no such message: {msg_id}")
            tombstone = attrs.evolve(
                m, text=None, ciphertext=None, nonce=None, envelopes=None,
                sender_device=None, deleted_at=now, deleted_by=session.name,
            )
            log.info("message {msg_id} deleted by {by}", msg_id=m.id, by=session.name)
            if right != "author":
                self.service.audit(
                    "message_deleted",
                    account=m.sender,
                    actor=session.name,
                    address=session.address,
                    msg_id=m.id,
                    room=m.room,
                    to=m.to,
                    right=right,
                    reason=reason,
                )
            self._announce(tombstone, session, reason)
            return tombstone

        return self._store.message_by_id(msg_id).addCallback(check)

    @staticmethod
    def _parties(m: Message) -> set[str]:
        """The folded names of a DM's two accounts (one, to oneself)."""
        return {fold(m.sender_account or m.sender), fold(m.to or "")}

    def _is_target(
        self, session: Session, m: Message, room: str | None, with_: str | None
    ) -> bool:
        if room is not None:
            return m.room is not None and fold(m.room) == fold(room)
        if with_ is not None:
            return m.room is None and fold(with_) in self._parties(m)
        return True

    def _sees(self, session: Session, m: Message) -> bool:
        """Whether *session* can see *m*: a member of its room, a party to the DM,
        its author, or a server operator."""
        if session.operator is not None or self._right_to_delete(session, m) == "author":
            return True
        if m.room is not None:
            found = self.service.room_named(m.room)
            return found is not None and session.folded in found.members
        return session.account is not None and session.folded in self._parties(m)

    def _right_to_delete(self, session: Session, m: Message) -> str | None:
        """Why *session* may delete *m* (``author``, ``room_operator``, ``operator``), or None.

        A guest is the author of a guest's message under its name sent during
        its own session: guest names are reused, accounts' are not.
        """
        if m.sender_account is not None:
            if session.account is not None and fold(session.account.name) == fold(
                m.sender_account
            ):
                return "author"
        elif session.guest and fold(m.sender) == session.folded and m.ts >= session.connected_at:
            return "author"
        if m.room is not None:
            found = self.service.room_named(m.room)
            if found is not None and found.is_op(session.name):
                return "room_operator"
        if session.operator is not None:
            return "operator"
        return None

    def _announce(self, tombstone: Message, origin: Session, reason: str | None) -> None:
        """Tell every session that could see the message, and the deleter's."""
        if tombstone.room is not None:
            found = self.service.room_named(tombstone.room)
            names: set[str] = set(found.members) if found is not None else set()
        else:
            names = self._parties(tombstone)
        told: list[Session] = [s for name in names for s in self.service.sessions_of(name)]
        if origin not in told:
            told.append(origin)
        for s in told:
            s.mind.message_deleted(tombstone, origin.name, reason)
        self.service.fanout.message_deleted(tombstone, origin.name, reason)
