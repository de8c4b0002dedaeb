"""The rooms of the chat service: finding, creating, joining and leaving them,
topics, kicks, invites and modes.

Part of :class:`~pingchat.chat.service.ChatService`, which inherits it, as
every door reaches rooms through the service (``service.join(...)``). The
state stays the service's: the rooms themselves (``_rooms``), the sessions
and presence that decide who is told of a change, and the store.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from pingchat.chat.session import Session
from pingchat.errors import BadRequest, Forbidden, NoSuchRoom, NoSuchUser, NotInRoom
from pingchat.model import (
    ROOM_FLAGS,
    ROOM_LIMIT_MAX,
    TOPIC_MAX,
    Account,
    Member,
    PresenceState,
    Room,
    RoomInfo,
    check_account_name,
    check_history_days,
    check_room_name,
    clean_text,
    fold,
)

if TYPE_CHECKING:
    from pingchat.chat.fanout import LocalFanOut
    from pingchat.interfaces import IChatMind, IStore

log = Logger()


class Rooms:
    """Rooms, their members, topics and modes: the room operations of the chat service."""

    if TYPE_CHECKING:
        # ChatService's (service.py).
        _store: IStore
        _rooms: dict[str, Room]
        _creating: dict[str, list[Deferred[Room]]]
        _sessions: dict[str, list[Session]]
        _presence: dict[str, PresenceState]
        fanout: LocalFanOut
        server_name: str
        audit: Callable[..., object]

        def now(self) -> int: ...
        def is_online(self, name: str) -> bool: ...
        def _minds(
            self, names: Iterable[str], exclude: Session | None = None
        ) -> Iterator[IChatMind]: ...

        # Messages' (messages.py).
        def _changed(self) -> None: ...

    def room_named(self, name: str) -> Room | None:
        """The room called *name* (in any case), or None.

        The live room, handed out to be read (members, modes, topic): it
        changes only through the service's methods (``join``, ``set_topic``,
        ``change_modes``...).
        """
        return self._rooms.get(fold(name))

    def get_room(self, name: str) -> Room:
        """The room called *name*; ``NoSuchRoom`` if there is none."""
        room = self._rooms.get(fold(name))
        if room is None:
            raise NoSuchRoom(f"no such room: {name}")
        return room

    def all_rooms(self) -> Collection[Room]:
        """Every room, secret (+s) ones too: a door shows each only to whom it
        may (as ``room_list`` does). A live view, not a copy."""
        return self._rooms.values()

    def room_count(self) -> int:
        """How many rooms there are, secret ones too."""
        return len(self._rooms)

    def _member_room(self, session: Session, name: str) -> Room:
        room = self.get_room(name)
        if session.folded not in room.members:
            raise NotInRoom(f"you are not in {room.name}")
        return room

    def room_list(self, viewer: str | None = None) -> list[dict[str, Any]]:
        """Every room, but secret (+s) ones only for their members."""
        folded = fold(viewer) if viewer else None
        return sorted(
            (
                {"name": r.name, "topic": r.topic, "members": len(r.members)}
                for r in self._rooms.values()
                if "s" not in r.flags or folded in r.members
            ),
            key=lambda r: fold(r["name"]),
        )

    def rooms_of(self, name: str) -> list[Room]:
        """The rooms *name* is a member of."""
        folded = fold(name)
        return [r for r in self._rooms.values() if folded in r.members]

    def members(self, room: Room) -> list[dict[str, Any]]:
        """*room*'s members with their privileges and presence."""
        out = []
        for folded, m in room.members.items():
            state = self._presence.get(folded, PresenceState())
            online = folded in self._sessions or self.fanout.remote(folded)
            out.append(
                {
                    "user": m.name,
                    "op": m.op,
                    "voice": m.voice,
                    "presence": state.presence.value if online else "offline",
                }
            )
        return out

    def _create_room(self, name: str) -> Deferred[Room]:
        folded = fold(name)
        waiting = self._creating.get(folded)
        if waiting is not None:
            # Someone is creating this room right now: wait for that instead of
            # racing it into a unique-constraint failure. Each waiter has a
            # Deferred of its own: chained onto the creator's, the first
            # waiter's callback took the room from the ones after it.
            waiter: Deferred[Room] = Deferred()
            waiting.append(waiter)
            return waiter

        def created(info: RoomInfo) -> Room:
            room = self._rooms.get(folded)  # made meanwhile by another node's news?
            if room is None:
                room = self._rooms[folded] = Room.from_info(info)
            self.fanout.room_created(info)
            log.info("room {room} created", room=room.name)
            return room

        def done(result: Any) -> Any:
            for waiter in self._creating.pop(folded, []):
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)
            return result

        self._creating[folded] = []
        return self._store.create_room(name, self.now()).addCallback(created).addBoth(done)

    def join(self, session: Session, name: str, key: str | None = None) -> Deferred[Room]:
        """Join (creating it if need be) a room; the first member becomes operator."""
        check_room_name(name)
        room = self._rooms.get(fold(name))
        if room is None:
            return self._create_room(name).addCallback(
                lambda r: self._join_existing(session, r, key)
            )
        return self._join_existing(session, room, key)

    def _join_existing(self, session: Session, room: Room, key: str | None) -> Deferred[Room]:
        if session.folded in room.members:
            return succeed(room)
        if room.is_banned(session.name, session.hostmask):
            raise Forbidden(f"you are banned from {room.name}")
        if "i" in room.flags and session.folded not in room.invites:
            raise Forbidden(f"{room.name} is invite-only")
        if room.key is not None and key != room.key:
            raise Forbidden(f"{room.name} needs the right key")
        if room.limit is not None and len(room.members) >= room.limit:
            raise Forbidden(f"{room.name} is full")
        op = not room.members
        member = Member(session.name, op=op, guest=session.guest)
        room.members[session.folded] = member
        room.invites.discard(session.folded)
        self._changed()

        def stored(_: None) -> Room:
            for mind in self._minds(room.members):
                mind.joined(room.name, session.name)
            self.fanout.room_event(room, "join", user=session.name, op=op, guest=session.guest)
            return room

        def failed(f: Any) -> Any:
            room.members.pop(session.folded, None)
            self._changed()
            return f

        if session.guest:
            return succeed(None).addCallback(stored)
        return self._store.add_member(room.id, session.name, op, self.now()).addCallbacks(
            stored, failed
        )

    def part(self, session: Session, name: str, reason: str | None = None) -> Deferred[None]:
        room = self._member_room(session, name)
        return self._remove_member(room, session.name, reason, "part")

    def _remove_member(
        self, room: Room, user: str, reason: str | None, how: str, by: str | None = None
    ) -> Deferred[None]:
        folded = fold(user)
        audience = list(room.members)
        member = room.members.pop(folded, None)
        if member is None:
            return succeed(None)
        self._changed()
        if reason is not None:
            reason = clean_text(reason)[:300]
        for mind in self._minds(audience):
            if how == "kick":
                mind.kicked(room.name, member.name, by or self.server_name, reason)
            elif how == "part" or folded not in self._sessions:
                mind.parted(room.name, member.name, reason)
        self.fanout.room_event(
            room, "leave", user=member.name, how=how, by=by or self.server_name, reason=reason
        )
        if member.guest:
            return succeed(None)
        return self._store.remove_member(room.id, member.name)

    def set_topic(self, session: Session, name: str, topic: str) -> Deferred[Room]:
        """Set a room's topic: members (operators only while ``+t``), or a server operator."""
        room = self.get_room(name)
        member = session.folded in room.members
        if not member and session.operator is None:
            raise NotInRoom(f"you are not in {room.name}")
        if not isinstance(topic, str):
            raise BadRequest("topic must be a string")
        if "t" in room.flags and not self.can_moderate(session, room):
            raise Forbidden(f"only operators may change the topic of {room.name}")
        topic = clean_text(topic)[:TOPIC_MAX]
        if "t" in room.flags or not member:
            self._override(session, room, "topic", topic=topic)
        return self.change_topic(room, topic, session.name)

    def can_moderate(self, session: Session, room: Room) -> bool:
        """Whether *session* may act as an operator of *room*: it is one, or it is
        a server operator, who may kick, change modes and set the topic of any
        room (an override, audited)."""
        return room.is_op(session.name) or session.operator is not None

    def _override(self, session: Session, room: Room, action: str, **detail: Any) -> None:
        """*session* does as an operator of *room* what :meth:`can_moderate` allowed:
        when it is not the room's operator, a server operator overrides the
        room, and the audit log says so (``oper_override``)."""
        if room.is_op(session.name) or session.operator is None:
            return
        self.audit(
            "oper_override",
            account=session.operator,
            actor=session.name,
            address=session.address,
            room=room.name,
            action=action,
            **detail,
        )

    def change_topic(self, room: Room, topic: str, by: str) -> Deferred[Room]:
        now = self.now()

        def stored(_: None) -> Room:
            room.topic, room.topic_by, room.topic_at = topic, by, now
            for mind in self._minds(room.members):
                mind.topic_changed(room.name, topic, by)
            self.fanout.room_event(room, "topic", topic=topic, by=by, at=now)
            return room

        return self._store.set_topic(room.id, topic, by, now).addCallback(stored)

    def kick(
        self, session: Session | None, name: str, user: str, reason: str | None = None
    ) -> Deferred[None]:
        """Remove *user* from a room; *session* must be able to moderate it (None: admin)."""
        room = self.get_room(name)
        if session is not None and not self.can_moderate(session, room):
            if session.folded not in room.members:
                raise NotInRoom(f"you are not in {room.name}")
            raise Forbidden(f"only operators may kick from {room.name}")
        if fold(user) not in room.members:
            raise NotInRoom(f"{user} is not in {room.name}")
        if session is not None:
            self._override(session, room, "kick", user=user)
        by = session.name if session else self.server_name
        return self._remove_member(room, user, reason or by, "kick", by)

    def invite(self, session: Session, name: str, user: str) -> Deferred[None]:
        room = self._member_room(session, name)
        if "i" in room.flags and not room.is_op(session.name):
            raise Forbidden(f"only operators may invite to {room.name}")
        check_account_name(user)
        if fold(user) in room.members:
            raise BadRequest(f"{user} is already in {room.name}")

        def found(account: Account | None) -> None:
            if account is None and not self.is_online(user):
                raise NoSuchUser(f"no such user: {user}")
            room.invites.add(fold(user))
            for mind in self._minds([fold(user)]):
                mind.invited(room.name, session.name)
            self.fanout.room_event(room, "invite", user=user, by=session.name)

        d = self._store.get_account(user).addCallback(found)
        return d.addCallback(lambda _: self._store.add_invite(room.id, user))

    def change_modes(
        self, session: Session | None, name: str, changes: list[tuple[str, str | None]]
    ) -> Deferred[list[tuple[str, str | None]]]:
        """Apply mode changes such as ``[('+i', None), ('+o', 'bob'), ('+b', 'x!*@*')]``.

        Only operators (or an administrator, ``session=None``) may change modes.
        Every change is validated before any takes effect; fires with the
        changes that took effect, after they are stored.
        """
        room = self.get_room(name)
        by = session.name if session else self.server_name
        if session is not None and not self.can_moderate(session, room):
            raise Forbidden(f"only operators may change the modes of {room.name}")
        flags, key, limit, bans = set(room.flags), room.key, room.limit, list(room.bans)
        history_days = room.history_days
        privileges: dict[str, tuple[Member, bool, bool]] = {}
        ban_changes: list[tuple[str, bool]] = []
        applied: list[tuple[str, str | None]] = []
        for change, arg in changes:
            if len(change) != 2 or change[0] not in "+-":
                raise BadRequest(f"bad mode change: {change}")
            on, letter = change[0] == "+", change[1]
            if letter in ROOM_FLAGS:
                if (letter in flags) != on:
                    (flags.add if on else flags.discard)(letter)
                    applied.append((change, None))
            elif letter == "k":
                if on:
                    if not arg or " " in arg or "," in arg:
                        raise BadRequest("the key must be a word")
                    key = arg[:32]
                    applied.append((change, key))
                elif key is not None:
                    key = None
                    applied.append((change, "*"))
            elif letter == "l":
                if on:
                    try:
                        limit = int(arg or "")
                    except ValueError:
                        raise BadRequest("the limit must be a number") from None
                    if not 1 <= limit <= ROOM_LIMIT_MAX:
                        raise BadRequest(f"the limit must be a number from 1 to {ROOM_LIMIT_MAX}")
                    applied.append((change, str(limit)))
                elif limit is not None:
                    limit = None
                    applied.append((change, None))
            elif letter == "H":
                if on:
                    history_days = check_history_days(arg)
                    applied.append((change, str(history_days)))
                elif history_days is not None:
                    history_days = None
                    applied.append((change, None))
            elif letter in "ov":
                if not arg:
                    raise BadRequest(f"mode {letter} needs a user")
                member = room.member(arg)
                if member is None:
                    raise NotInRoom(f"{arg} is not in {room.name}")
                _, op, voice = privileges.get(fold(arg), (member, member.op, member.voice))
                if letter == "o" and op != on:
                    op = on
                elif letter == "v" and voice != on:
                    voice = on
                else:
                    continue
                privileges[fold(arg)] = (member, op, voice)
                applied.append((change, member.name))
            elif letter == "b":
                if not arg:
                    raise BadRequest("mode b needs a mask")
                mask = arg if ("!" in arg or "@" in arg) else f"{arg}!*@*"
                if on != (mask in bans):
                    (bans.append if on else bans.remove)(mask)
                    ban_changes.append((mask, on))
                    applied.append((change, mask))
            else:
                raise BadRequest(f"unknown mode: {letter}")
        if not applied:
            return succeed([])
        if session is not None:
            # A key is the room's secret: the audit log says it changed, not what to.
            shown = [[c, "*" if c == "+k" else a] for c, a in applied]
            self._override(session, room, "mode", changes=shown)

        def stored(_: None) -> list[tuple[str, str | None]]:
            room.flags, room.key, room.limit, room.bans = flags, key, limit, bans
            room.history_days = history_days
            for member, op, voice in privileges.values():
                member.op, member.voice = op, voice
            for mind in self._minds(room.members):
                mind.modes_changed(room.name, by, applied)
            self.fanout.room_event(
                room,
                "modes",
                by=by,
                applied=applied,
                flags="".join(sorted(flags)),
                key=key,
                limit=limit,
                bans=bans,
                privileges=[(m.name, op, voice) for m, op, voice in privileges.values()],
            )
            return applied

        return self._store.save_room_modes(
            room.id,
            "".join(sorted(flags)),
            key,
            limit,
            [(m.name, op, voice) for m, op, voice in privileges.values() if not m.guest],
            ban_changes,
            by,
            self.now(),
            history_days,
        ).addCallback(stored)
