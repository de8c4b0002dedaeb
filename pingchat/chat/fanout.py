"""The fan-out: where the chat service hands what it stored or changed.

One server is one world: :class:`LocalFanOut` (the default) delivers a
stored message to this process's sessions at once, and tells nobody else
of a change. A node of a cluster (``--bus``) has a
:class:`pingchat.cluster.fanout.ClusterFanOut` instead, which publishes each
of them to the other nodes, delivers messages in their conversation's order,
and knows the sessions of the other nodes. The service calls the same
methods either way; none of them is on a path that a single server pays for
beyond one method call per message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from pingchat.chat.session import Session
from pingchat.model import Message, Room, RoomInfo


class Delivers(Protocol):
    """What the fan-out asks of the chat service."""

    def deliver_room(self, message: Message, room: Room, origin: Session | None) -> Any: ...

    def deliver_dm(self, message: Message, origin: Session | None) -> None: ...


class RemoteUser:
    """What a node knows of an account's (or guest's) sessions on another node."""

    __slots__ = ("away", "doors", "guest", "name", "node", "sessions")

    def __init__(
        self,
        node: str,
        name: str,
        sessions: int,
        doors: tuple[str, ...],
        guest: bool,
        away: str | None,
    ) -> None:
        self.node = node
        self.name = name
        self.sessions = sessions
        self.doors = doors
        self.guest = guest
        self.away = away

    def __repr__(self) -> str:
        return f"<RemoteUser {self.name} on {self.node}: {self.sessions}>"


class LocalFanOut:
    """One process: deliver here, now; there is nobody else to tell."""

    node: str | None = None

    def __init__(self, service: Delivers) -> None:
        self.service = service

    # -- stored messages: deliver them -----------------------------------------

    def room_message(self, message: Message, room: Room, origin: Session | None) -> None:
        """A room message was stored: deliver it to the room's sessions."""
        self.service.deliver_room(message, room, origin)

    def dm(self, message: Message, origin: Session) -> None:
        """A DM was stored: deliver it to both accounts' sessions."""
        self.service.deliver_dm(message, origin)

    def live_room_message(self, message: Message, room: Room, origin: Session) -> None:
        """A message that is never stored (IRC ``TAGMSG``)."""
        self.service.deliver_room(message, room, origin)

    # -- changes: nobody else to tell ----------------------------------------------

    def sessions_changed(self, session: Session) -> None:
        """*session*'s account gained or lost a session here."""

    def away_changed(self, name: str, away: str | None) -> None:
        """An account set or cleared its away message."""

    def room_created(self, info: RoomInfo) -> None:
        """A room was created (and stored)."""

    def room_event(self, room: Room, kind: str, **detail: Any) -> None:
        """A room's members, topic, modes or invites changed (and are stored)."""

    def key_changed(
        self, user: str, device: str, action: str, fingerprint: str, audience: Iterable[str]
    ) -> None:
        """A device key was published or revoked."""

    def contact_event(self, to: str, user: str, status: str) -> None:
        """A contact event for *to*, delivered here already if it has sessions here."""

    def wallops(self, text: str, sender: str) -> None:
        """An operator's WALLOPS, told to every session here already."""

    def message_deleted(self, tombstone: Message, by: str, reason: str | None) -> None:
        """A message was deleted; those who could see it here were told."""

    def broadcast(self, text: str, sender: str) -> None:
        """A server notice to every session (the manhole's ``broadcast``)."""

    def disconnect_user(self, name: str, reason: str) -> None:
        """Every session of an account closed (the manhole's ``disconnect``)."""

    # -- the sessions elsewhere ---------------------------------------------------------

    def remote(self, folded: str) -> list[RemoteUser]:
        """The other nodes' sessions of an account (folded name): none here."""
        return []

    def remote_users(self) -> dict[str, list[RemoteUser]]:
        """Every account with sessions on another node, by folded name."""
        return {}

    def nodes(self) -> dict[str, int]:
        """The nodes of the cluster (this one too) and their sessions: none here."""
        return {}

    def status(self) -> dict[str, Any]:
        """The bus's state and counts (metrics, the manhole): none here."""
        return {}
