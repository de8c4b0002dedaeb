"""What another node of a cluster did, applied to this node's live world.

The node that made a change stored it (when it is stored at all), changed
its own rooms and told its own sessions; it then published it on the bus
(pingchat.cluster), and every other node applies it here: the same change
to its copy of the room, and the same events to its own sessions. Nothing
here writes to the store or publishes anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pingchat.chat.moderation import Moderation
from pingchat.model import Member, Message, Presence, PresenceState, Room, RoomInfo, fold

if TYPE_CHECKING:
    from pingchat.chat.service import ChatService


class Replica:
    """Applies other nodes' changes to a :class:`ChatService`."""

    def __init__(self, service: ChatService) -> None:
        self.service = service

    # -- presence ---------------------------------------------------------------

    def came_online(self, name: str, away: str | None) -> None:
        """*name* has a session on another node and had none anywhere."""
        s = self.service
        state = s._presence.setdefault(fold(name), PresenceState())
        state.away = away
        state.presence = Presence.AWAY if away else Presence.ONLINE
        s._announce_presence(name, state)

    def went_offline(self, name: str, guest: bool) -> None:
        """*name*'s last session anywhere ended on another node (or that node died)."""
        if guest:
            self._drop_guest(name)
        self.service.went_offline(name, None, False)

    def _drop_guest(self, name: str) -> None:
        """A guest of another node is gone: out of this node's rooms (its own
        node, if alive, removed it and said so; if dead, it cannot)."""
        folded = fold(name)
        for room in list(self.service.all_rooms()):
            member = room.members.get(folded)
            if member is not None and member.guest:
                self.left(room, member.name, "quit", None, None)

    # -- rooms --------------------------------------------------------------------

    def room(self, info: RoomInfo) -> Room:
        """A room another node created (or the one already here of that name)."""
        s = self.service
        folded = fold(info.name)
        room = s._rooms.get(folded)
        if room is None:
            room = s._rooms[folded] = Room.from_info(info)
        return room

    def joined(self, room: Room, user: str, op: bool, guest: bool) -> None:
        s = self.service
        folded = fold(user)
        if folded not in room.members:
            room.members[folded] = Member(user, op=op, guest=guest)
            s._changed()
        room.invites.discard(folded)
        for mind in s._minds(room.members):
            mind.joined(room.name, user)

    def left(self, room: Room, user: str, how: str, by: str | None, reason: str | None) -> None:
        s = self.service
        folded = fold(user)
        audience = list(room.members)
        member = room.members.pop(folded, None)
        if member is None:
            return
        s._changed()
        for mind in s._minds(audience):
            if how == "kick":
                mind.kicked(room.name, member.name, by or s.server_name, reason)
            else:
                mind.parted(room.name, member.name, reason)

    def topic(self, room: Room, topic: str, by: str, at: int) -> None:
        room.topic, room.topic_by, room.topic_at = topic, by, at
        for mind in self.service._minds(room.members):
            mind.topic_changed(room.name, topic, by)

    def modes(
        self,
        room: Room,
        by: str,
        applied: list[tuple[str, str | None]],
        flags: str,
        key: str | None,
        limit: int | None,
        bans: list[str],
        privileges: Iterable[tuple[str, bool, bool]],
    ) -> None:
        room.flags, room.key, room.limit, room.bans = set(flags), key, limit, list(bans)
        for name, op, voice in privileges:
            member = room.member(name)
            if member is not None:
                member.op, member.voice = op, voice
        for mind in self.service._minds(room.members):
            mind.modes_changed(room.name, by, applied)

    def invited(self, room: Room, user: str, by: str) -> None:
        room.invites.add(fold(user))
        for mind in self.service._minds([fold(user)]):
            mind.invited(room.name, by)

    # -- the rest ---------------------------------------------------------------------

    def key_changed(
        self, user: str, device: str, action: str, fingerprint: str, audience: Iterable[str]
    ) -> None:
        names = {fold(user), *(fold(n) for n in audience)}
        for mind in self.service._minds(names):
            mind.key_changed(user, device, action, fingerprint)

    def message_deleted(self, tombstone: Message, by: str, reason: str | None) -> None:
        """Tell the sessions here that could see the message (its room's
        members, or the DM's two accounts)."""
        s = self.service
        if tombstone.room is not None:
            room = s.room_named(tombstone.room)
            names: Iterable[str] = room.members if room is not None else ()
        else:
            names = Moderation._parties(tombstone)
        for mind in s._minds(list(names)):
            mind.message_deleted(tombstone, by, reason)

    def wallops(self, text: str, sender: str) -> None:
        for session in list(self.service.all_sessions()):
            session.mind.wallops(text, sender)

    def contact_event(self, to: str, user: str, status: str) -> None:
        for session in self.service.sessions_of(to):
            session.mind.contact_event(user, status)
