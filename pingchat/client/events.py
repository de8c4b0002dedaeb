"""What the server says, shown in the windows it concerns.

:class:`ServerEvents` turns each server event (``message``, ``joined``,
``topic``, ``presence``, ``key`` ...) into lines of the right window, one
event at a time and in order, and fetches what was said in a room while this
client was away, in the same order as live messages.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger

from pingchat.client.connection import ClientProtocol, NotConnected, RequestFailed
from pingchat.client.keyring import OTHER_DEVICES, Opened
from pingchat.client.screen import Screen
from pingchat.client.session import Account
from pingchat.client.view import ChatWindow, Line, members_text, message_line
from pingchat.model import fold

log = Logger()

HISTORY_ON_JOIN = 20


class Keys(Protocol):
    """What events need of the end-to-end part."""

    async def open(self, m: dict[str, Any]) -> Opened: ...

    async def key_changed(self, event: dict[str, Any]) -> None: ...


class ServerEvents:
    """The ``ev_*`` handler of each server event, and the history of rooms."""

    def __init__(self, screen: Screen, account: Account, keys: Keys) -> None:
        self.screen = screen
        self.windows = screen.windows
        self.account = account
        self.keys = keys
        self._incoming = DeferredLock()

    def receive(self, event: dict[str, Any]) -> None:
        """Show *event* once every event before it is shown."""

        def handle() -> Deferred[Any]:
            name = str(event.get("event", "")).replace(".", "_")
            handler: Callable[[dict[str, Any]], Any] | None = getattr(self, "ev_" + name, None)
            if handler is None:
                return succeed(None)
            result = handler(event)
            if inspect.iscoroutine(result):
                return Deferred.fromCoroutine(result)
            return succeed(result)

        self._incoming.run(handle).addErrback(
            lambda f: log.failure("could not show an event", f)
        )

    # -- room history ---------------------------------------------------------------------

    async def catch_up(self, proto: ClientProtocol, window: ChatWindow,
                       limit: int = HISTORY_ON_JOIN) -> None:
        """Show what was said in a room while this client was away (or, the first
        time, its last few messages)."""
        since = window.last_msg_id
        try:
            members = await proto.request("members", room=window.title)
            window.members = {fold(str(m["user"])): dict(m)
                              for m in members.get("members", [])}
            reply = await proto.request("history", room=window.title,
                                        limit=50 if since else limit)
        except (RequestFailed, NotConnected, ConnectionLost):
            return
        messages = reply.get("messages", [])
        if not since and not window.lines:
            topic = f"; topic: {window.topic}" if window.topic else ""
            self.screen.add(window, Line(members_text(window) + topic, "event"))
        await self._incoming.run(
            lambda: Deferred.fromCoroutine(self._show_history(window, messages, since)))

    async def _show_history(self, window: ChatWindow, messages: list[dict[str, Any]],
                            since: int) -> None:
        if since:
            # Back after a drop: only what was said meanwhile.
            messages = [m for m in messages if int(m.get("msg_id", 0)) > since]
        fresh = [m for m in messages if int(m.get("msg_id", 0)) not in window.seen]
        for m in fresh:
            await self.show_message(m, window=window, history=True)

    async def fetch_topics(self, proto: ClientProtocol) -> None:
        """The topics of the room windows (after a login)."""
        try:
            reply = await proto.request("rooms")
        except (RequestFailed, NotConnected, ConnectionLost):
            return
        for r in reply.get("rooms", []):
            window = self.windows.find(str(r.get("name")))
            if window is not None:
                window.topic = r.get("topic")
        self.screen.refresh()

    async def show_message(self, m: dict[str, Any], window: ChatWindow | None = None,
                           history: bool = False) -> None:
        """A room message or DM (live, or from history), in its window, once."""
        sender = str(m.get("from", "?"))
        mine = self.account.is_me(sender)
        if window is None:
            if m.get("room"):
                window = self.windows.open("room", str(m["room"]))
            else:
                peer = str(m.get("to") if mine else sender)
                window = self.windows.open("dm", peer)
        msg_id = m.get("msg_id")
        if isinstance(msg_id, int) and not window.mark_seen(msg_id) and not history:
            return
        kind = "notice" if m.get("kind") == "notice" else ("own" if mine else "message")
        encrypted = False
        text = m.get("text")
        if m.get("ciphertext") is not None or m.get("envelopes") is not None:
            opened = await self.keys.open(m)
            if opened.text is not None:
                text, encrypted = opened.text, True
            else:
                text = opened.note
                if not mine and opened.note != OTHER_DEVICES:
                    kind = "warning"
        history = history or bool(m.get("offline"))
        line = message_line(str(text or ""), kind, sender=sender, ts=m.get("ts"),
                            encrypted=encrypted, history=history,
                            msg_id=msg_id if isinstance(msg_id, int) else None)
        if m.get("deleted"):  # a tombstone in history
            line.mark_deleted()
        elif kind == "warning":
            line.text = f"<{sender}> {text}"
        self.screen.add(window, line, notify=not mine)

    # -- events ---------------------------------------------------------------------------

    def ev_hello(self, event: dict[str, Any]) -> None:
        server = event.get("server")
        self.account.server_name = str(server) if server else None
        self.account.registration = str(event.get("registration") or "open")

    async def ev_message(self, event: dict[str, Any]) -> None:
        await self.show_message(event)

    def ev_deleted(self, event: dict[str, Any]) -> None:
        """A message was deleted: its line (if shown) says so, and a line tells who did it."""
        sender, by = str(event.get("from", "?")), str(event.get("by", "?"))
        if event.get("room"):
            window = self.windows.find(str(event["room"]))
        else:
            window = self.windows.find(str(event.get("to") if self.account.is_me(sender)
                                           else sender))
        if window is None:
            return
        for line in window.lines:
            if line.msg_id == event.get("msg_id") and not line.deleted:
                line.mark_deleted()
        whose = "their message" if fold(by) == fold(sender) else f"a message from {sender}"
        reason = f": {event['reason']}" if event.get("reason") else ""
        self.screen.add(window, Line(f"{by} deleted {whose}{reason}", "event"))

    def ev_joined(self, event: dict[str, Any]) -> None:
        room, user = str(event.get("room")), str(event.get("user"))
        window = self.windows.find(room)
        if self.account.is_me(user):
            # Our own join: /join tells; from another session, the window just appears.
            window = self.windows.open("room", room)
            window.joined = True
            return
        if window is None:
            return
        window.members.setdefault(fold(user), {"user": user, "presence": "online"})
        self.screen.add(window, Line(f"{user} joined {room}", "event"))

    def ev_parted(self, event: dict[str, Any]) -> None:
        room, user = str(event.get("room")), str(event.get("user"))
        window = self.windows.find(room)
        if window is None:
            return
        window.members.pop(fold(user), None)
        reason = f" ({event['reason']})" if event.get("reason") else ""
        if self.account.is_me(user):
            window.joined = False
        self.screen.add(window, Line(f"{user} left {room}{reason}", "event"))

    def ev_kicked(self, event: dict[str, Any]) -> None:
        room, user, by = str(event.get("room")), str(event.get("user")), event.get("by")
        reason = f" ({event['reason']})" if event.get("reason") else ""
        window = self.windows.find(room)
        me = self.account.is_me(user)
        if window is not None:
            window.members.pop(fold(user), None)
            if me:
                window.joined = False
            self.screen.add(window, Line(f"{user} was removed from {room} by {by}{reason}",
                                         "warning" if me else "event"), notify=me)
        if me and window is not self.windows.current:
            self.screen.warning(f"{by} removed you from {room}{reason}",
                                echo=window is not None)

    def ev_topic(self, event: dict[str, Any]) -> None:
        room = str(event.get("room"))
        window = self.windows.find(room)
        if window is None:
            return
        window.topic = event.get("topic")
        self.screen.add(window, Line(f"{event.get('by')} set the topic: {event.get('topic')}",
                                     "event"))

    def ev_presence(self, event: dict[str, Any]) -> None:
        user, presence, away = str(event.get("user")), event.get("presence"), event.get("away")
        for w in self.windows.items:
            if fold(user) in w.members:
                w.members[fold(user)]["presence"] = presence
        window = self.windows.find(user)
        if window is None or window.kind != "dm":
            self.screen.refresh()
            return
        if presence == "away":
            text = f"{user} is away: {away}" if away else f"{user} is away"
        else:
            text = f"{user} is {presence}"
        self.screen.add(window, Line(text, "event"))

    def ev_mode(self, event: dict[str, Any]) -> None:
        room = str(event.get("room"))
        window = self.windows.find(room)
        if window is None:
            return
        changes = " ".join(
            f"{c} {a}" if a else str(c) for c, a in event.get("changes") or []
        )
        self.screen.add(window, Line(f"{event.get('by')} set mode {changes} on {room}",
                                     "event"))

    def ev_invited(self, event: dict[str, Any]) -> None:
        room = event.get("room")
        self.screen.add(self.screen.here, Line(
            f"{event.get('by')} invites you to {room}: /join {room}", "warning"))

    def ev_contact(self, event: dict[str, Any]) -> None:
        user, status = event.get("user"), event.get("status")
        texts = {
            "request": f"{user} asks to be your contact: /add {user} accepts",
            "accepted": f"{user} and you are contacts now",
            "removed": f"{user} is no longer your contact",
        }
        self.screen.add(self.screen.here, Line(
            texts.get(str(status), f"{user}: contact {status}"),
            "warning" if status == "request" else "info"))

    async def ev_key(self, event: dict[str, Any]) -> None:
        await self.keys.key_changed(event)

    def ev_notice(self, event: dict[str, Any]) -> None:
        self.screen.add(self.screen.here, Line(str(event.get("text", "")), "notice",
                                               sender=str(event.get("from", "server"))))

    def ev_disconnect(self, event: dict[str, Any]) -> None:
        # Whatever the reason (a restart, an administrator), come back with
        # back-off: a session that may not continue fails to resume.
        self.screen.warning(f"the server ended this session: {event.get('reason')}")

    def ev_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        self.screen.error(f"server: {error.get('message', 'error')}")
