"""The native door's room ops: ``join``, ``part``, ``rooms``, ``members``, ``topic``,
``kick``, ``invite``, ``mode``.

Part of :class:`~pingchat.native.protocol.NativeProtocol`, which inherits it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

from pingchat.errors import BadRequest
from pingchat.model import ROOM_FLAGS, Room, check_room_name
from pingchat.native.base import NativeBase, field


class RoomOps(NativeBase):
    """Joining and leaving rooms, what is in them, and what their operators do."""

    def op_join(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = check_room_name(field(req, "room"))
        key = field(req, "key", required=False)
        return self.factory.service.join(self.me, room, key).addCallback(self._room_info)

    def _room_info(self, room: Room) -> dict[str, Any]:
        return {
            "room": room.name,
            "topic": room.topic,
            "members": self.factory.service.members(room),
        }

    def op_part(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = field(req, "room")
        reason = field(req, "reason", required=False)
        return self.factory.service.part(self.me, room, reason).addCallback(
            lambda _: {"room": self.factory.service.get_room(room).name}
        )

    def op_rooms(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"rooms": self.factory.service.room_list(self.me.name)}

    def op_members(self, req: dict[str, Any]) -> dict[str, Any]:
        room = self.factory.service.get_room(field(req, "room"))
        return {"room": room.name, "members": self.factory.service.members(room)}

    def op_topic(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = field(req, "room")
        topic = field(req, "topic")
        return self.factory.service.set_topic(self.me, room, topic).addCallback(
            lambda r: {"room": r.name, "topic": r.topic}
        )

    def op_kick(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = field(req, "room")
        user = field(req, "user")
        reason = field(req, "reason", required=False)
        return self.factory.service.kick(self.me, room, user, reason).addCallback(lambda _: {})

    def op_invite(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        room = field(req, "room")
        user = field(req, "user")
        return self.factory.service.invite(self.me, room, user).addCallback(lambda _: {})

    def op_mode(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``mode {room, set?: "+i-t", give_op?, take_op?, give_voice?, take_voice?,
        ban?, unban?, key?, limit?}``: a JSON face on the room modes (each user
        field names one account). Without changes, returns the current modes."""
        room_name = field(req, "room")
        changes: list[tuple[str, str | None]] = []
        flags = field(req, "set", required=False) or ""
        sign = "+"
        for ch in flags:
            if ch in "+-":
                sign = ch
            elif ch in ROOM_FLAGS:
                changes.append((sign + ch, None))
            else:
                flags_list = ", ".join(sorted(ROOM_FLAGS))
                raise BadRequest(f"set takes the flags {flags_list}, not {ch}")
        for key, change in (
            ("give_op", "+o"),
            ("take_op", "-o"),
            ("give_voice", "+v"),
            ("take_voice", "-v"),
            ("ban", "+b"),
            ("unban", "-b"),
        ):
            value = field(req, key, required=False)
            if value is not None:
                changes.append((change, value))
        if "key" in req:
            key = req["key"]
            if key is not None and not isinstance(key, str):
                raise BadRequest("key must be a string or null")
            changes.append(("+k", key) if key else ("-k", None))
        if "limit" in req:
            limit = req["limit"]
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
                raise BadRequest("limit must be an integer or null")
            changes.append(("+l", str(limit)) if limit else ("-l", None))
        if "history_days" in req:  # +H: the room's retention, null for the server's
            days = req["history_days"]
            changes.append(("+H", days) if days is not None else ("-H", None))
        service = self.factory.service
        if not changes:
            room = service.get_room(room_name)
            letters, args = room.mode_string(show_key=room.is_op(self.me.name))
            return succeed({
                "room": room.name, "modes": letters, "args": args, "bans": list(room.bans),
                "history_days": room.history_days,
            })
        return service.change_modes(self.me, room_name, changes).addCallback(
            lambda applied: {
                "room": service.get_room(room_name).name,
                "applied": [[c, a] for c, a in applied],
            }
        )
