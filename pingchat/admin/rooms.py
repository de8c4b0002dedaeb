"""The manhole's helpers that talk and act on rooms: broadcast, topic, ban, unban."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from pingchat.admin.tools import Done, Toolbox
from pingchat.errors import BadRequest
from pingchat.model import (
    TOPIC_MAX,
    Room,
    check_account_name,
    check_room_name,
    check_text,
    clean_text,
)


class RoomTools(Toolbox):
    """A server notice to everyone, and a room's topic and bans."""

    helpers = ("broadcast", "topic", "ban", "unban")

    def broadcast(self, text: str) -> Done:
        """Send a server notice to every session, native and IRC."""
        text = check_text(text)
        n = self.chat.broadcast(text)
        self._audit("admin_broadcast", text=text, sessions=n)
        return Done(f"notice sent to {n} session(s)")

    def _room(self, room: str) -> Room:
        check_room_name(room)
        return self.chat.get_room(room)  # type: ignore[no-any-return]

    def topic(self, room: str, text: str) -> Deferred[Done]:
        """Set the topic of *room* (an empty text clears it)."""
        found = self._room(room)
        if not isinstance(text, str):
            raise BadRequest("the topic must be a string")
        text = clean_text(text)[:TOPIC_MAX]

        def changed(r: Room) -> Done:
            self._audit("admin_topic", room=r.name, topic=text)
            return Done(f"topic of {r.name} set")

        d: Deferred[Room] = self.chat.change_topic(found, text, self.actor)
        return d.addCallback(changed)

    def ban(self, room: str, user: str) -> Deferred[Done]:
        """Ban *user* from *room* and remove them from it if they are there."""
        found = self._room(room)
        check_account_name(user)

        def kick(_: Any) -> Any:
            if found.member(user) is None:
                return None
            return self.chat.kick(None, found.name, user, f"banned by {self.actor}")

        def done(_: Any) -> Done:
            self._audit("admin_ban", user, room=found.name)
            return Done(f"{user} banned from {found.name}")

        d: Deferred[Any] = self.chat.change_modes(None, found.name, [("+b", user)])
        return d.addCallback(kick).addCallback(done)

    def unban(self, room: str, user: str) -> Deferred[Done]:
        """Lift a ban of *user* from *room*."""
        found = self._room(room)
        check_account_name(user)

        def done(applied: list[Any]) -> Done:
            if not applied:
                raise BadRequest(f"{user} is not banned from {found.name}")
            self._audit("admin_unban", user, room=found.name)
            return Done(f"{user} may join {found.name} again")

        d: Deferred[Any] = self.chat.change_modes(None, found.name, [("-b", user)])
        return d.addCallback(done)
