"""A node of a cluster: the chat service's fan-out, over the bus.

What this node stores it publishes once, after the commit; what any node
stored, this node delivers to its own sessions in each conversation's
order (pingchat.cluster.order). Changes to rooms, presence and the
sessions of each account travel the same way, and are applied to this
node's copy of the world (pingchat.chat.replica). See docs/architecture.md,
"The bus between nodes".

While the bus is down the node goes on: it stores and delivers to its own
sessions as one server would, and when the bus is back it reads the rooms
again from the store, reads every room with sessions here from the last
message it delivered (and each local account's DM conversations since the
bus was lost), and exchanges the session tables again.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from pingchat.chat.fanout import LocalFanOut, RemoteUser
from pingchat.chat.replica import Replica
from pingchat.cluster import wire
from pingchat.cluster.bus import Bus
from pingchat.cluster.order import PAGE, Sequencer
from pingchat.cluster.roster import Roster, entry_from_wire, entry_to_wire
from pingchat.interfaces import IStore
from pingchat.model import Message, Room, RoomInfo, fold

if TYPE_CHECKING:
    from pingchat.chat.service import ChatService
    from pingchat.chat.session import Session

log = Logger()

HEARTBEAT = 2.0  # seconds between a node's heartbeats
HEARTBEAT_TTL = 10.0  # seconds after its last heartbeat a node is taken for dead
CATCH_UP_SLACK = 5_000  # ms before the bus was lost that DM catch-up reads from
VERSION_FIELD = "~v"


def default_node_name() -> str:
    """The host name and a few random characters: unique per start."""
    return f"{socket.gethostname()}-{secrets.token_hex(3)}"


class ClusterFanOut(LocalFanOut, Service):
    """The fan-out of a node of a cluster, and the service that keeps it joined."""

    name = "cluster"
    service: ChatService

    def __init__(
        self,
        service: ChatService,
        store: IStore,
        bus: Bus,
        clock: Any,
        node: str,
        db: int = 0,
    ) -> None:
        LocalFanOut.__init__(self, service)
        self.store = store
        self.bus = bus
        self.clock = clock
        self.name_here = node
        self.node = node
        self.prefix = f"pingchat:{db}"
        self.incarnation = int(clock.seconds() * 1000)
        self.replica = Replica(service)
        self.roster = Roster()
        self.sequencer = Sequencer(clock, self._deliver, self._fetch)
        self._version = 0
        self._dirty: set[str] = set()
        self._flush_call: IDelayedCall | None = None
        self._heartbeat: LoopingCall | None = None
        self._incarnations: dict[str, int] = {}
        # Every event ends with its node's name (_publish sets it last): this
        # node's own come back from Redis and are dropped before any parsing.
        self._own = wire.encode({"n": node})[1:]
        self.lost_at: int | None = None  # when the bus was lost (ms), while it is
        self.caught_up = 0  # times this node caught up after the bus came back
        self.throttles: list[Any] = []  # told of other nodes' failed logins
        self.events_applied = 0

    # -- the service ----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.bus.start(self)
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = self.clock
        self._heartbeat.start(HEARTBEAT, now=False)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self.sequencer.stop()
        if not self.bus.up:
            return self.bus.stop()
        self._publish({"t": "q"})
        d = DeferredList(
            [
                self.bus.command("DEL", self._key("node", self.name_here)),
                self.bus.command("DEL", self._key("sessions", self.name_here)),
                self.bus.command("SREM", self._key("nodes"), self.name_here),
            ],
            consumeErrors=True,
        )
        return d.addBoth(lambda _: self.bus.stop())

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- stored messages ------------------------------------------------------------

    def room_message(self, message: Message, room: Room, origin: Session | None) -> None:
        self._publish({"t": "m", "m": wire.message_to_wire(message)})
        self.sequencer.offer(message, origin)

    def dm(self, message: Message, origin: Session) -> None:
        self._publish({"t": "m", "m": wire.message_to_wire(message)})
        self.sequencer.offer(message, origin)

    def live_room_message(self, message: Message, room: Room, origin: Session) -> None:
        self._publish({"t": "l", "room": room.name, "m": wire.message_to_wire(message)})
        self.service.deliver_room(message, room, origin)

    def _deliver(self, message: Message, origin: Any) -> None:
        """A message's turn has come: to this node's sessions."""
        if message.room is None:
            self.service.deliver_dm(message, origin)
            return
        room = self.service.room_named(message.room)
        if room is not None:
            self.service.deliver_room(message, room, origin)

    def _fetch(self, conversation: str, after: int, limit: int) -> Deferred[list[Message]]:
        return self.store.conversation_after(conversation, after, limit)

    # -- changes -------------------------------------------------------------------

    def sessions_changed(self, session: Session) -> None:
        self._dirty.add(session.folded)
        self._flush_soon()

    def away_changed(self, name: str, away: str | None) -> None:
        self._publish({"t": "a", "user": name, "away": away})
        self._dirty.add(fold(name))
        self._flush_soon()

    def room_created(self, info: RoomInfo) -> None:
        self.sequencer.baseline(f"r:{info.id}", 0, 0)
        self._publish({"t": "c", "room": wire.room_info_to_wire(info)})

    def room_event(self, room: Room, kind: str, **detail: Any) -> None:
        self._publish({"t": "r", "room": room.name, "id": room.id, "k": kind, **detail})

    def key_changed(
        self, user: str, device: str, action: str, fingerprint: str, audience: Iterable[str]
    ) -> None:
        self._publish(
            {
                "t": "k",
                "user": user,
                "device": device,
                "action": action,
                "fingerprint": fingerprint,
                "audience": list(audience),
            }
        )

    def contact_event(self, to: str, user: str, status: str) -> None:
        self._publish({"t": "o", "to": to, "user": user, "status": status})

    def broadcast(self, text: str, sender: str) -> None:
        self._publish({"t": "b", "text": text, "sender": sender})

    def wallops(self, text: str, sender: str) -> None:
        self._publish({"t": "w", "text": text, "sender": sender})

    def message_deleted(self, tombstone: Message, by: str, reason: str | None) -> None:
        self._publish(
            {"t": "d", "m": wire.message_to_wire(tombstone), "by": by, "reason": reason}
        )

    def disconnect_user(self, name: str, reason: str) -> None:
        self._publish({"t": "x", "user": name, "reason": reason})

    def throttle_event(self, kind: str, account: str | None, address: str | None) -> None:
        """A failed login (or a registration) here, for the other nodes' throttles."""
        self._publish({"t": "f", "k": kind, "account": account, "address": address})

    def _publish(self, event: dict[str, Any]) -> None:
        event.pop("n", None)
        event["n"] = self.node  # last: see _own
        self.bus.publish(wire.encode(event))

    # -- the sessions elsewhere ------------------------------------------------------

    def remote(self, folded: str) -> list[RemoteUser]:
        by = self.roster.users.get(folded)
        return list(by.values()) if by else []

    def remote_users(self) -> dict[str, list[RemoteUser]]:
        return {f: list(by.values()) for f, by in self.roster.users.items()}

    def nodes(self) -> dict[str, int]:
        """Every node this one knows of (itself too), with its sessions."""
        here = sum(1 for _ in self.service.all_sessions())
        return {self.name_here: here, **dict(self.roster.nodes)}

    def status(self) -> dict[str, Any]:
        bus = self.bus
        return {
            "node": self.name_here,
            "bus_up": bool(bus.up),
            "published": getattr(bus, "published", 0),
            "received": getattr(bus, "received", 0),
            "not_published": getattr(bus, "dropped", 0),
            "events_applied": self.events_applied,
            "reordered": self.sequencer.reordered,
            "duplicates": self.sequencer.duplicates,
            "read_from_store": self.sequencer.fetched,
            "waiting": self.sequencer.waiting(),
            "caught_up": self.caught_up,
        }

    def _entry(self, folded: str) -> RemoteUser | None:
        sessions = self.service.sessions_of(folded)
        if not sessions:
            return None
        state = self.service.presence_of(folded)
        return RemoteUser(
            self.name_here,
            sessions[0].name,
            len(sessions),
            tuple(sorted({getattr(s.mind, "door", "?") for s in sessions})),
            sessions[0].guest,
            state.away if state else None,
        )

    def _flush_soon(self) -> None:
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """This turn's changes of local sessions: one event, one write to Redis."""
        self._flush_call = None
        dirty, self._dirty = self._dirty, set()
        if not dirty:
            return
        self._version += 1
        entries = {f: entry_to_wire(self._entry(f), self._version) for f in sorted(dirty)}
        self._publish({"t": "s", "e": entries})
        self._store_entries(entries)

    def _store_entries(self, entries: dict[str, dict[str, Any]]) -> None:
        if not self.bus.up:
            return
        table = self._key("sessions", self.name_here)
        present = [x for f, e in entries.items() if "name" in e for x in (f, wire.encode(e))]
        gone = [f for f, e in entries.items() if "name" not in e]
        commands = [("HSET", table, VERSION_FIELD, str(self._version), *present)]
        if gone:
            commands.append(("HDEL", table, *gone))
        for command in commands:
            self.bus.command(*command).addErrback(self._command_failed)

    def _command_failed(self, failure: Any) -> None:
        log.debug("bus: a command failed: {why}", why=failure.getErrorMessage())

    # -- the bus --------------------------------------------------------------------

    def bus_up(self) -> None:
        """(Re)joined: announce this node, read the others, catch up."""
        lost_at, self.lost_at = self.lost_at, None
        self._version += 1
        table = self._key("sessions", self.name_here)
        mine: dict[str, dict[str, Any]] = {}
        for session in self.service.all_sessions():
            if session.folded not in mine:
                mine[session.folded] = entry_to_wire(self._entry(session.folded), self._version)
        self.bus.command("DEL", table).addErrback(self._command_failed)
        self._store_entries(mine)
        self._beat()
        self._publish({"t": "h", "i": self.incarnation})
        if mine:
            self._publish({"t": "s", "e": mine})
        self._sync_nodes()
        if lost_at is not None:
            self._catch_up(lost_at)

    def bus_down(self) -> None:
        if self.lost_at is None:
            self.lost_at = int(self.clock.seconds() * 1000)

    def _beat(self) -> None:
        if not self.bus.up:
            return
        ttl = str(int(HEARTBEAT_TTL * 1000))
        self.bus.command(
            "SET", self._key("node", self.name_here), str(self.incarnation), "PX", ttl
        ).addErrback(self._command_failed)
        nodes = self._key("nodes")
        self.bus.command("SADD", nodes, self.name_here).addErrback(self._command_failed)
        self._sync_nodes()

    def _sync_nodes(self) -> Deferred[None]:
        """Read which nodes are alive; drop the dead, read the new ones' tables."""
        if not self.bus.up:
            return succeed(None)

        def listed(names: Any) -> Deferred[Any]:
            others = sorted(str(n) for n in names or () if str(n) != self.node)
            known = set(self.roster.nodes)
            checks = [
                self.bus.command("GET", self._key("node", n)).addCallback(
                    self._heard_of, n, n in known
                )
                for n in others
            ]
            for gone in known - set(others):
                self._node_gone(gone, "left")
            return gatherResults(checks, consumeErrors=True)

        d = self.bus.command("SMEMBERS", self._key("nodes")).addCallback(listed)
        return d.addErrback(self._command_failed)

    def _heard_of(self, incarnation: Any, node: str, known: bool) -> Deferred[None] | None:
        if incarnation is None:
            if known:
                self._node_gone(node, "stopped sending heartbeats")
            self.bus.command("SREM", self._key("nodes"), node).addErrback(self._command_failed)
            self.bus.command("DEL", self._key("sessions", node)).addErrback(self._command_failed)
            return None
        if known and self._incarnations.get(node) == int(incarnation):
            return None
        self._incarnations[node] = int(incarnation)
        return self._read_table(node)

    def _read_table(self, node: str) -> Deferred[None]:
        def read(flat: Any) -> None:
            items = _pairs(flat)
            items.pop(VERSION_FIELD, None)
            snapshot = {}
            for folded, data in items.items():
                e = wire.decode_entry(data)
                snapshot[folded] = (entry_from_wire(node, e), int(e.get("v", 0)))
            self._changes(node, snapshot)

        d = self.bus.command("HGETALL", self._key("sessions", node)).addCallback(read)
        return d.addErrback(self._command_failed)

    def _changes(self, node: str, snapshot: dict[str, tuple[RemoteUser | None, int]]) -> None:
        before = {f: self._online(f) for f in snapshot}
        for folded in self.roster.users:
            if node in self.roster.users[folded]:
                before.setdefault(folded, True)
        changed = self.roster.replace(node, snapshot)
        self._presence_after(before, changed)

    def _node_gone(self, node: str, why: str) -> None:
        before = {f: True for f, by in self.roster.users.items() if node in by}
        guests = {f: by[node] for f, by in self.roster.users.items() if node in by}
        changed = self.roster.drop(node)
        self._incarnations.pop(node, None)
        log.info(
            "cluster: node {node} {why}; its {count} accounts' sessions there are gone",
            node=node,
            why=why,
            count=len(changed),
        )
        self._presence_after(before, changed, guests)

    def _online(self, folded: str) -> bool:
        return bool(self.service.sessions_of(folded)) or folded in self.roster.users

    def _presence_after(
        self,
        before: dict[str, bool],
        changed: Iterable[str],
        gone: dict[str, RemoteUser] | None = None,
    ) -> None:
        for folded in changed:
            now = self._online(folded)
            if now == before.get(folded, False):
                continue
            if now:
                entry = self.remote(folded)[0]
                self.replica.came_online(entry.name, entry.away)
            else:
                old = (gone or {}).get(folded)
                name = old.name if old else folded
                self.replica.went_offline(name, bool(old and old.guest))

    # -- catching up ------------------------------------------------------------------

    def _catch_up(self, lost_at: int) -> Deferred[None]:
        """The bus is back after an outage: read what was missed from the store."""
        self.caught_up += 1
        log.info("cluster: the bus is back; catching up from the store")

        since = lost_at - CATCH_UP_SLACK

        def rooms_read(snapshots: Any) -> Deferred[Any]:
            self.service.load(snapshots)
            here = {s.folded for s in self.service.all_sessions()}
            for room in self.service.all_rooms():
                if here & room.members.keys():
                    self.sequencer.catch_up(f"r:{room.id}")
            accounts = {s.account.id for s in self.service.all_sessions() if s.account is not None}
            reads = [
                self.store.dm_threads_since(account, since).addCallback(self._dm_threads, since)
                for account in sorted(accounts)
            ]
            return DeferredList(reads, consumeErrors=True)

        d = self.store.load_rooms().addCallback(rooms_read)
        d.addErrback(lambda f: log.failure("cluster: catching up after the bus came back", f))
        return d.addCallback(lambda _: None)

    def _dm_threads(self, conversations: list[str], since: int) -> None:
        for key in conversations:
            if key in self.sequencer.conversations:
                self.sequencer.catch_up(key)
            else:
                # Nothing of it delivered here since this node started: what
                # was stored from a little before the outage on.
                self.store.conversation_since(key, since, PAGE).addCallback(
                    self._offer_all
                ).addErrback(lambda f: log.failure("cluster: catching up a DM thread", f))

    def _offer_all(self, messages: list[Message]) -> None:
        for message in messages:
            self.sequencer.offer(message, None)

    # -- what other nodes say -----------------------------------------------------------

    def bus_message(self, data: str) -> None:
        if data.endswith(self._own):
            return
        try:
            event = wire.decode(data)
        except ValueError:
            log.warn("bus: an event that is not pingchat's was ignored")
            return
        node = event["n"]
        if node == self.node:
            return
        handler = self._handlers.get(event["t"])
        if handler is None:
            return  # a newer node's kind of event: nothing to do here
        self.events_applied += 1
        try:
            handler(self, node, event)
        except Exception:
            log.failure("bus: applying {kind} from {node}", kind=event["t"], node=node)

    def _on_message(self, node: str, event: dict[str, Any]) -> None:
        self.sequencer.offer(wire.message_from_wire(event["m"]), None)

    def _on_live(self, node: str, event: dict[str, Any]) -> None:
        room = self.service.room_named(event["room"])
        if room is not None:
            self.service.deliver_room(wire.message_from_wire(event["m"]), room, None)

    def _on_sessions(self, node: str, event: dict[str, Any]) -> None:
        if node not in self.roster.nodes:
            self._incarnations.pop(node, None)
            self._sync_nodes()
        changed = []
        before = {}
        gone: dict[str, RemoteUser] = {}
        for folded, data in event["e"].items():
            before[folded] = self._online(folded)
            old = self.roster.users.get(folded, {}).get(node)
            if self.roster.apply(node, folded, entry_from_wire(node, data), int(data["v"])):
                changed.append(folded)
                if old is not None:
                    gone[folded] = old
        self._presence_after(before, changed, gone)

    def _on_away(self, node: str, event: dict[str, Any]) -> None:
        self.service.away_changed(event["user"], event["away"])

    def _on_hello(self, node: str, event: dict[str, Any]) -> None:
        if self._incarnations.get(node) != event["i"]:
            self._incarnations[node] = event["i"]
            self._read_table(node)

    def _on_quit(self, node: str, event: dict[str, Any]) -> None:
        self._node_gone(node, "stopped")

    def _on_room_created(self, node: str, event: dict[str, Any]) -> None:
        info = wire.room_info_from_wire(event["room"])
        self.sequencer.baseline(f"r:{info.id}", 0, 0)
        self.replica.room(info)

    def _on_room(self, node: str, event: dict[str, Any]) -> None:
        room = self.service.room_named(event["room"])
        if room is None:
            # Created while this node was not listening: the store has it.
            self.store.load_rooms().addCallback(self.service.load).addCallback(
                lambda _: self._apply_room(event)
            ).addErrback(lambda f: log.failure("cluster: reading rooms", f))
            return
        self._apply_room(event)

    def _apply_room(self, event: dict[str, Any]) -> None:
        room = self.service.room_named(event["room"])
        if room is None:
            return
        kind = event["k"]
        if kind == "join":
            self.replica.joined(room, event["user"], event["op"], event["guest"])
        elif kind == "leave":
            self.replica.left(room, event["user"], event["how"], event["by"], event["reason"])
        elif kind == "topic":
            self.replica.topic(room, event["topic"], event["by"], event["at"])
        elif kind == "modes":
            self.replica.modes(
                room,
                event["by"],
                [tuple(change) for change in event["applied"]],  # type: ignore[misc]
                event["flags"],
                event["key"],
                event["limit"],
                event["bans"],
                [tuple(p) for p in event["privileges"]],  # type: ignore[misc]
            )
        elif kind == "invite":
            self.replica.invited(room, event["user"], event["by"])

    def _on_key(self, node: str, event: dict[str, Any]) -> None:
        self.replica.key_changed(
            event["user"], event["device"], event["action"], event["fingerprint"], event["audience"]
        )

    def _on_contact(self, node: str, event: dict[str, Any]) -> None:
        self.replica.contact_event(event["to"], event["user"], event["status"])

    def _on_broadcast(self, node: str, event: dict[str, Any]) -> None:
        self.service.notice_all(event["text"], event["sender"])

    def _on_wallops(self, node: str, event: dict[str, Any]) -> None:
        self.replica.wallops(event["text"], event["sender"])

    def _on_deleted(self, node: str, event: dict[str, Any]) -> None:
        tombstone = wire.message_from_wire(event["m"])
        self.replica.message_deleted(tombstone, event["by"], event["reason"])

    def _on_disconnect(self, node: str, event: dict[str, Any]) -> None:
        self.service.disconnect_here(event["user"], event["reason"])

    def _on_throttle(self, node: str, event: dict[str, Any]) -> None:
        for throttle in self.throttles:
            throttle.remote_event(event["k"], event.get("account"), event.get("address"))

    _handlers: dict[str, Callable[[ClusterFanOut, str, dict[str, Any]], None]] = {
        "m": _on_message,
        "l": _on_live,
        "s": _on_sessions,
        "a": _on_away,
        "h": _on_hello,
        "q": _on_quit,
        "c": _on_room_created,
        "r": _on_room,
        "k": _on_key,
        "o": _on_contact,
        "b": _on_broadcast,
        "x": _on_disconnect,
        "w": _on_wallops,
        "d": _on_deleted,
        "f": _on_throttle,
    }


def _pairs(flat: Any) -> dict[str, Any]:
    """HGETALL's answer as a dict, whether the client paired it up or not."""
    if isinstance(flat, dict):
        return {str(k): v for k, v in flat.items()}
    items = list(flat or ())
    return {str(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}
