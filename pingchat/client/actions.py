"""What the user does in rooms and with people: the handlers of those commands.

:class:`Actions` has a ``cmd_NAME`` method for each command of
:mod:`pingchat.client.commands` about windows, rooms, messages and people
(``/join``, ``/msg``, ``/who`` ...). Account commands are the session's,
key commands the direct messages', ``/quit`` and ``/reconnect`` the client's.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredLock

from pingchat.client import commands
from pingchat.client.commands import Command, CommandError
from pingchat.client.connection import ClientProtocol
from pingchat.client.screen import Screen
from pingchat.client.session import Account
from pingchat.client.view import ChatWindow, Line, local_time, members_text, message_line, who
from pingchat.model import fold


class Rooms(Protocol):
    """What commands need of the server events: room history."""

    async def catch_up(self, proto: ClientProtocol, window: ChatWindow) -> None: ...

    async def show_message(self, m: dict[str, Any], window: ChatWindow | None = None,
                           history: bool = False) -> None: ...


class DMs(Protocol):
    """What commands need of the direct messages."""

    async def send(self, to: str, text: str) -> None: ...

    async def describe_keys(self, user: str) -> None: ...


class Actions:
    """The room, message and people commands (``cmd_*``)."""

    def __init__(self, screen: Screen, account: Account, rooms: Rooms, dms: DMs) -> None:
        self.screen = screen
        self.windows = screen.windows
        self.account = account
        self.rooms = rooms
        self.dms = dms
        self._outgoing = DeferredLock()  # messages leave in the order they were typed

    def _request(self, op: str, **args: Any) -> Deferred[dict[str, Any]]:
        return self.account.need_proto().request(op, **args)

    def _room_arg(self, cmd: Command) -> str:
        room = cmd.get("room")
        if room:
            return room
        if self.screen.here.kind == "room":
            return self.screen.here.title
        spec = commands.spec(cmd.name)
        raise CommandError("which room? This is not a room window"
                           + (f"; usage: {spec.usage}" if spec else ""))

    # -- windows --------------------------------------------------------------------------

    async def cmd_help(self, cmd: Command) -> None:
        try:
            lines = commands.help_lines(cmd.get("topic"))
        except CommandError as e:
            self.screen.error(str(e))
            return
        for line in lines:
            self.screen.info(line)

    async def cmd_clear(self, cmd: Command) -> None:
        self.screen.here.lines.clear()
        self.screen.refresh()

    async def cmd_query(self, cmd: Command) -> None:
        target = cmd.args["target"]
        if target.isdigit():
            window = self.windows.by_number(int(target))
            if window is None:
                self.screen.error(f"there is no window {target}")
                return
        elif target.startswith("#"):
            found = self.windows.find(target)
            if found is None:
                self.screen.error(f"you are not in {target}: /join {target}")
                return
            window = found
        else:
            window = self.windows.open("dm", target)
        self.windows.switch(window)
        self.screen.refresh()

    async def cmd_close(self, cmd: Command) -> None:
        window = self.screen.here
        if window.kind == "status":
            self.screen.error("the server window stays open (/quit leaves the client)")
            return
        proto = self.account.proto
        if window.kind == "room" and window.joined and proto is not None:
            await proto.request("part", room=window.title)
        self.windows.close(window)
        self.screen.refresh()

    # -- messages -------------------------------------------------------------------------

    async def cmd_me(self, cmd: Command) -> None:
        await self.cmd_say(Command("say", {"text": f"\x01ACTION {cmd.args['text']}\x01"}))

    async def cmd_say(self, cmd: Command) -> None:
        window = self.screen.here
        text = cmd.args["text"]
        if window.kind == "room":
            await self._say(window.title, text)
        elif window.kind == "dm":
            await self._dm(window.title, text)
        else:
            self.screen.error("This is the server window: /join #room to talk in a room, or"
                              " /msg user text for a direct message.")

    async def cmd_msg(self, cmd: Command) -> None:
        to, text = cmd.args["to"], cmd.args["text"]
        if to.startswith("#"):
            await self._say(to, text)
        else:
            await self._dm(to, text)

    async def _say(self, room: str, text: str) -> None:
        proto = self.account.need_proto()
        reply = await self._outgoing.run(proto.request, "say", room=room, text=text)
        window = self.windows.find(room) or self.windows.open("room", room)
        msg_id = reply.get("msg_id")
        line = message_line(text, "own", sender=self.account.user, ts=reply.get("ts"),
                            msg_id=msg_id if isinstance(msg_id, int) else None)
        if isinstance(msg_id, int):
            window.mark_seen(msg_id)
        self.screen.add(window, line)
        here = self.screen.here
        if window is not here:
            self.screen.add(here, Line(f"[{room}] {who(line)} {line.text}", "elsewhere",
                                       echo=True))

    async def _dm(self, to: str, text: str) -> None:
        await self._outgoing.run(lambda: Deferred.fromCoroutine(self.dms.send(to, text)))

    # -- rooms ----------------------------------------------------------------------------

    async def cmd_join(self, cmd: Command) -> None:
        proto = self.account.need_proto()
        args = {"room": cmd.args["room"]}
        if cmd.get("key"):
            args["key"] = cmd.args["key"]
        reply = await proto.request("join", **args)
        room = str(reply["room"])
        window = self.windows.open("room", room)
        window.joined = True
        window.topic = reply.get("topic")
        window.members = {fold(str(m["user"])): dict(m) for m in reply.get("members", [])}
        self.windows.switch(window)
        self.screen.add(window, Line(f"you joined {room}", "event"))
        if window.topic:
            self.screen.add(window, Line(f"topic: {window.topic}", "event"))
        self.screen.add(window, Line(members_text(window), "event"))
        await self.rooms.catch_up(proto, window)

    async def cmd_part(self, cmd: Command) -> None:
        proto = self.account.need_proto()
        room = self._room_arg(cmd)
        args = {"room": room}
        if cmd.get("reason"):
            args["reason"] = cmd.args["reason"]
        await proto.request("part", **args)
        window = self.windows.find(room)
        if window is not None:
            self.windows.close(window)
        self.screen.info(f"you left {room}")

    async def cmd_rooms(self, cmd: Command) -> None:
        reply = await self._request("rooms")
        rooms = reply.get("rooms", [])
        if not rooms:
            self.screen.info("no rooms yet: /join #name creates one")
            return
        self.screen.info(f"{len(rooms)} room(s):")
        for r in rooms:
            topic = f"  {r.get('topic')}" if r.get("topic") else ""
            self.screen.info(f"  {r.get('name')} ({r.get('members')} people){topic}")

    async def cmd_members(self, cmd: Command) -> None:
        room = self._room_arg(cmd)
        reply = await self._request("members", room=room)
        window = self.windows.find(room)
        members = {fold(str(m["user"])): dict(m) for m in reply.get("members", [])}
        if window is not None:
            window.members = members
        shown = window or ChatWindow("room", str(reply.get("room", room)), members=members)
        self.screen.info(members_text(shown))

    async def cmd_topic(self, cmd: Command) -> None:
        proto = self.account.need_proto()
        room = self._room_arg(cmd)
        topic = cmd.get("topic")
        if topic is None:
            reply = await proto.request("rooms")
            for r in reply.get("rooms", []):
                if fold(str(r.get("name"))) == fold(room):
                    self.screen.info(f"topic of {r['name']}: {r.get('topic') or '(none)'}")
                    return
            self.screen.error(f"no such room: {room}")
            return
        await proto.request("topic", room=room, topic=topic)
        if self.windows.find(room) is None:  # else the topic event shows it
            self.screen.info(f"topic of {room} set")

    async def cmd_history(self, cmd: Command) -> None:
        proto = self.account.need_proto()
        target = cmd.get("target")
        window = self.windows.find(target) if target else self.screen.here
        if window is None and target:
            window = self.windows.open("room" if target.startswith("#") else "dm", target)
        assert window is not None
        if window.kind == "status":
            self.screen.error("history of what? /history #room or /history user")
            return
        limit = int(cmd.get("limit") or 20)
        args: dict[str, Any] = {"limit": limit}
        args["room" if window.kind == "room" else "with"] = window.title
        reply = await proto.request("history", **args)
        messages = reply.get("messages", [])
        self.windows.switch(window)
        self.screen.add(window, Line(f"--- the last {len(messages)} message(s) ---", "event"))
        for m in messages:
            await self.rooms.show_message(m, window=window, history=True)
        self.screen.add(window, Line("--- end of history ---", "event"))

    async def cmd_kick(self, cmd: Command) -> None:
        room = self._room_arg(cmd)
        args = {"room": room, "user": cmd.args["user"]}
        if cmd.get("reason"):
            args["reason"] = cmd.args["reason"]
        await self._request("kick", **args)

    async def cmd_delete(self, cmd: Command) -> None:
        """``/delete [user|ID] [reason]``: a message of this window, for everyone."""
        window = self.screen.here
        if window.kind not in ("room", "dm"):
            raise CommandError("/delete works in a room or conversation window")
        if cmd.get("id"):
            msg_id = int(cmd.args["id"])
        else:
            author = cmd.get("user") or self.account.user or ""
            shown = [line.msg_id for line in window.lines
                     if line.msg_id is not None and not line.deleted
                     and fold(line.sender or "") == fold(author)]
            if not shown:
                whose = "you have" if author == self.account.user else f"{author} has"
                raise CommandError(f"no message {whose} sent is shown in this window")
            msg_id = shown[-1]
        args: dict[str, Any] = {"msg_id": msg_id}
        if cmd.get("reason"):
            args["reason"] = cmd.args["reason"]
        await self._request("message.delete", **args)

    async def cmd_invite(self, cmd: Command) -> None:
        room = self._room_arg(cmd)
        await self._request("invite", room=room, user=cmd.args["user"])
        self.screen.info(f"invited {cmd.args['user']} to {room}")

    # -- people ---------------------------------------------------------------------------

    async def cmd_who(self, cmd: Command) -> None:
        reply = await self._request("who")
        users = reply.get("users", [])
        names = []
        for u in users:
            extra = ""
            if u.get("presence") == "away":
                extra = f" (away: {u['away']})" if u.get("away") else " (away)"
            names.append(f"{u.get('user')}{extra}")
        self.screen.info(f"online ({len(names)}): " + ", ".join(names))

    async def cmd_whois(self, cmd: Command) -> None:
        info = await self._request("whois", user=cmd.args["user"])
        user = info.get("user")
        presence = info.get("presence")
        if presence == "away" and info.get("away"):
            presence = f"away: {info['away']}"
        self.screen.info(f"{user}: {presence}")
        if info.get("rooms"):
            self.screen.info(f"  rooms: {', '.join(info['rooms'])}")
        if info.get("last_seen"):
            self.screen.info(f"  last seen: {local_time(info['last_seen'], full=True)}")
        if info.get("doors"):
            self.screen.info(f"  connected through: {', '.join(info['doors'])}")
        await self.dms.describe_keys(cmd.args["user"])

    async def cmd_away(self, cmd: Command) -> None:
        text = cmd.get("text")
        args = {"text": text} if text else {}
        await self._request("away", **args)
        self.screen.info(f"you are away: {text}" if text else "you are back")

    async def cmd_contacts(self, cmd: Command) -> None:
        reply = await self._request("contacts")
        contacts = reply.get("contacts") or []
        incoming = reply.get("incoming") or []
        outgoing = reply.get("outgoing") or []
        self.screen.info("contacts: "
                         + (", ".join(map(str, contacts)) or "(none yet: /add user)"))
        if incoming:
            self.screen.info("asking you (/add NAME accepts): " + ", ".join(map(str, incoming)))
        if outgoing:
            self.screen.info("waiting for their answer: " + ", ".join(map(str, outgoing)))

    async def cmd_add(self, cmd: Command) -> None:
        reply = await self._request("contact.add", user=cmd.args["user"])
        user = reply.get("user", cmd.args["user"])
        if reply.get("status") == "contact":
            self.screen.info(f"{user} and you are contacts now")
        else:
            self.screen.info(f"asked {user} to be your contact; they will see the request")

    async def cmd_remove(self, cmd: Command) -> None:
        reply = await self._request("contact.remove", user=cmd.args["user"])
        self.screen.info(f"{reply.get('user', cmd.args['user'])} is not your contact any more")

    async def cmd_dmpolicy(self, cmd: Command) -> None:
        policy = cmd.get("policy")
        args = {"dm_policy": policy} if policy else {}
        reply = await self._request("settings", **args)
        policy = str(reply.get("dm_policy"))
        senders = {"anyone": "anyone", "contacts": "your contacts only"}.get(policy, policy)
        self.screen.info(f"direct messages are accepted from {senders}")
