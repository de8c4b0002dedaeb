"""The messages of the chat service: room messages and DMs, stored then
delivered, and the history of a conversation.

Part of :class:`~pingchat.chat.service.ChatService`, which inherits it, as
every door speaks through the service (``service.say(...)``). The state
stays the service's: the sessions delivered to, the receivers of each room
(``_receivers``), the message counts the metrics read, and the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred

from pingchat.chat.session import Session
from pingchat.errors import BadRequest, Forbidden, NotInRoom
from pingchat.model import (
    HISTORY_MAX,
    Message,
    Room,
    check_account_name,
    check_int64,
    check_text,
    fold,
)

if TYPE_CHECKING:
    from pingchat.chat.fanout import LocalFanOut
    from pingchat.interfaces import IStore


class Messages:
    """Saying, delivering and reading back messages: the messages of the chat service."""

    if TYPE_CHECKING:
        # ChatService's (service.py).
        _store: IStore
        _sessions: dict[str, list[Session]]
        _receivers: dict[Room, dict[Session, Callable[[Message], object]]]
        fanout: LocalFanOut
        messages_delivered: int
        room_messages_stored: int
        dm_messages_stored: int

        def now(self) -> int: ...
        def is_online(self, name: str) -> bool: ...

        # Rooms' (rooms.py).
        def get_room(self, name: str) -> Room: ...
        def _member_room(self, session: Session, name: str) -> Room: ...
        def rooms_of(self, name: str) -> list[Room]: ...

    def say(
        self,
        session: Session,
        name: str,
        text: str,
        kind: str = "privmsg",
        client_tags: dict[str, str] | None = None,
    ) -> Deferred[Message]:
        """Store a room message, then deliver it to every member's sessions.

        *client_tags* (IRCv3 client-only tags) travel with the delivered
        message and are not stored.
        """
        text = check_text(text)
        room = self._room_to_speak_in(session, name)
        sender_id = session.account.id if session.account else None
        d = self._store.add_room_message(
            room.id, room.name, session.name, sender_id, text, self.now(), kind
        )
        if client_tags:
            d.addCallback(attrs.evolve, client_tags=client_tags)
        return d.addCallback(self._deliver_room, room, session)

    def say_live(self, session: Session, name: str, message: Message) -> None:
        """Deliver a message that is never stored (an IRC ``TAGMSG``) to a room.

        Checked as :meth:`say` is; the members' doors decide whether they
        can show it (see ``IChatMind.message``).
        """
        room = self._room_to_speak_in(session, name)
        self.fanout.live_room_message(message, room, session)

    def _room_to_speak_in(self, session: Session, name: str) -> Room:
        room = self.get_room(name)
        member = room.members.get(session.folded)
        if member is None and "n" in room.flags:
            raise NotInRoom(f"you are not in {room.name}")
        if member is not None and room.is_banned(session.name, session.hostmask):
            raise Forbidden(f"you are banned from {room.name}")
        if "m" in room.flags and not (member and (member.op or member.voice)):
            raise Forbidden(f"{room.name} is moderated")
        return room

    def _deliver_room(self, message: Message, room: Room, origin: Session | None) -> Message:
        self.room_messages_stored += 1
        self.fanout.room_message(message, room, origin)
        return message

    def deliver_room(self, message: Message, room: Room, origin: Session | None) -> Message:
        """Deliver a room message to the room's sessions here, but *origin*.

        The fan-out calls this: at once on one server, in the room's order
        on a node of a cluster.
        """
        receivers = self._receivers.get(room)
        if receivers is None:
            sessions = self._sessions
            receivers = self._receivers[room] = {
                s: s.mind.message for folded in room.members for s in sessions.get(folded, ())
            }
        for session, deliver in receivers.items():
            if session is not origin:
                deliver(message)
        self.messages_delivered += len(receivers) - (origin in receivers)
        return message

    def _changed(self) -> None:
        """A room's members or an account's sessions changed: forget who receives what."""
        if self._receivers:
            self._receivers.clear()

    def deliver_dm(self, message: Message, origin: Session | None) -> None:
        """Deliver a DM to the recipient's sessions here and the sender's, but *origin*.

        The fan-out calls this: at once on one server, in the conversation's
        order on a node of a cluster.
        """
        recipients = self._sessions.get(fold(message.to or ""), [])
        for s in recipients:
            s.mind.message(message)
        sender = fold(message.sender)
        if fold(message.to or "") != sender:
            for s in self._sessions.get(sender, ()):
                if s is not origin:
                    s.mind.message(message)
        self.messages_delivered += len(recipients)

    def dm(
        self,
        session: Session,
        to: str,
        *,
        text: str | None = None,
        ciphertext: str | None = None,
        nonce: str | None = None,
        sender_device: str | None = None,
        envelopes: list[dict[str, str]] | None = None,
        kind: str = "privmsg",
        client_tags: dict[str, str] | None = None,
    ) -> Deferred[tuple[Message, bool]]:
        """Store a DM; deliver it to the recipient's and the sender's other sessions.

        Fires with ``(message, delivered)``; ``delivered`` is false when the
        recipient had no session and the message was queued for its next login.
        The body is *text*, *ciphertext* (one key) or *envelopes* (one sealed
        copy per device, checked by the door with ``check_envelopes``): every
        session gets the same message, and each device opens its own envelope.
        *client_tags* go with the live delivery only, as for :meth:`say`.
        """
        check_account_name(to)
        if session.account is None:
            raise Forbidden("guests cannot send direct messages to accounts; log in first")
        if text is not None:
            text = check_text(text)
        online = self.is_online(to)
        d = self._store.add_dm(
            session.account.id,
            session.name,
            to,
            self.now(),
            text=text,
            ciphertext=ciphertext,
            nonce=nonce,
            sender_device=sender_device,
            envelopes=envelopes,
            kind=kind,
            queue=not online,
        )
        if client_tags:
            d.addCallback(attrs.evolve, client_tags=client_tags)
        return d.addCallback(self._deliver_dm, session, online)

    def _deliver_dm(
        self, message: Message, origin: Session, online: bool
    ) -> Deferred[tuple[Message, bool]] | tuple[Message, bool]:
        self.dm_messages_stored += 1
        self.fanout.dm(message, origin)
        if online and not self.is_online(message.to or ""):
            # The recipient left while the message was being stored: queue it
            # now so it still arrives at the next login.
            return self._store.queue_offline(message.id).addCallback(lambda _: (message, False))
        return message, online

    def history(
        self,
        session: Session,
        *,
        room: str | None = None,
        with_: str | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> Deferred[list[Message]]:
        """Stored messages of a room the session is in, or of a DM conversation."""
        limit = max(1, min(int(limit), HISTORY_MAX))
        if (room is None) == (with_ is None):
            raise BadRequest("history needs exactly one of room or with")
        if before is not None:
            check_int64(before, "before")
        if after is not None:
            check_int64(after, "after")
        if room is not None:
            r = self._member_room(session, room)
            return self._store.room_history(
                r.id, before=before, after=after, limit=limit, newest_first=newest_first
            )
        assert with_ is not None
        check_account_name(with_)
        if session.account is None:
            raise Forbidden("guests have no direct message history")
        return self._store.dm_history(
            session.account.id,
            with_,
            before=before,
            after=after,
            limit=limit,
            newest_first=newest_first,
        )

    def history_id_at(
        self, session: Session, ts: int, *, room: str | None = None, with_: str | None = None
    ) -> Deferred[int | None]:
        """Id of the first message at or after *ts* (IRC ``CHATHISTORY`` timestamps)."""
        if (room is None) == (with_ is None):
            raise BadRequest("history needs exactly one of room or with")
        if room is not None:
            r = self._member_room(session, room)
            return self._store.first_id_at(ts, room_id=r.id)
        assert with_ is not None
        check_account_name(with_)
        if session.account is None:
            raise Forbidden("guests have no direct message history")
        return self._store.first_id_at(ts, me_id=session.account.id, other=with_)

    def history_targets(
        self, session: Session, after_ts: int, before_ts: int, limit: int = 50
    ) -> Deferred[list[tuple[str, int]]]:
        """Rooms and DM peers of *session* with messages between two times."""
        limit = max(1, min(int(limit), HISTORY_MAX))
        room_ids = [r.id for r in self.rooms_of(session.name)]
        me_id = session.account.id if session.account else None
        return self._store.conversation_targets(me_id, room_ids, after_ts, before_ts, limit)
