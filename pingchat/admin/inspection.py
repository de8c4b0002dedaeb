"""The manhole's helpers that look: who, rooms, sessions, accounts, audit, stats."""

from __future__ import annotations

import collections
import os
import resource
from typing import Any

from twisted.internet.defer import Deferred

from pingchat.admin.tools import Report, Table, Toolbox
from pingchat.errors import BadRequest
from pingchat.model import Account, fold, iso_ms
from pingchat.twisted_internals import pending_output_bytes


class Inspection(Toolbox):
    """What is connected, what exists, what happened; nothing here changes anything."""

    helpers = ("who", "rooms", "sessions", "accounts", "audit", "stats")

    def who(self) -> Table:
        """Everyone connected: presence, doors, number of sessions, addresses
        (on a cluster: every node's users, and the nodes they are on)."""
        rows = []
        here = self.chat.cluster_status().get("node")
        for user in self.chat.who():
            sessions = self.chat.sessions_of(user["user"])
            remote = self.chat.remote_sessions_of(user["user"])
            doors = {_door(s) for s in sessions}
            for entry in remote:
                doors.update(entry.doors)
            row = {
                "user": user["user"],
                "presence": user["presence"],
                "doors": sorted(doors),
                "sessions": len(sessions) + sum(e.sessions for e in remote),
                "addresses": sorted({s.address or "?" for s in sessions}),
                "guest": user["guest"],
                "away": user["away"],
            }
            if here is not None:
                nodes = {e.node for e in remote}
                if sessions:
                    nodes.add(here)
                row["nodes"] = sorted(nodes)
            rows.append(row)
        columns = ("user", "presence", "doors", "sessions", "addresses", "guest", "away")
        return Table((*columns, "nodes") if here is not None else columns, rows)

    def rooms(self) -> Table:
        """Every room (secret ones too): members online/total, modes, topic."""
        rows: list[dict[str, Any]] = []
        for room in self.chat.all_rooms():
            modes, args = room.mode_string(show_key=False)
            rows.append({
                "room": room.name,
                "members": len(room.members),
                "online": sum(1 for m in room.members.values() if self.chat.is_online(m.name)),
                "modes": " ".join([modes, *args]),
                "bans": len(room.bans),
                "topic": room.topic[:60],
            })
        rows.sort(key=lambda r: fold(r["room"]))
        return Table(("room", "members", "online", "modes", "bans", "topic"), rows)

    def sessions(self, user: str) -> Table:
        """The live sessions of *user*: door, address, connected since."""
        sessions = self._connected(user)
        rows = [
            {
                "user": s.name,
                "door": _door(s),
                "address": s.address,
                "since": iso_ms(s.connected_at),
                "rooms": len(self.chat.rooms_of(s.name)),
            }
            for s in sessions
        ]
        return Table(("user", "door", "address", "since", "rooms"), rows)

    def accounts(self) -> Deferred[Table]:
        """Every account: role, disabled, last seen."""

        def shape(accounts: list[Account]) -> Table:
            return Table(
                ("account", "role", "disabled", "online", "last_seen"),
                (
                    {
                        "account": a.name,
                        "role": a.role,
                        "disabled": a.disabled,
                        "online": self.chat.is_online(a.name),
                        "last_seen": iso_ms(a.last_seen) if a.last_seen else None,
                    }
                    for a in accounts
                ),
            )

        d: Deferred[list[Account]] = self.store.list_accounts()
        return d.addCallback(shape)

    def audit(self, n: int = 20) -> Deferred[Table]:
        """The last *n* entries of the audit log, newest first."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1000:
            raise BadRequest("n is a number of entries, 1 to 1000")

        def shape(rows: list[dict[str, Any]]) -> Table:
            for row in rows:
                row["ts"] = iso_ms(row["ts"])
            return Table(("ts", "event", "account", "actor", "address", "detail"), rows)

        d: Deferred[list[dict[str, Any]]] = self.store.recent_audit(n)
        return d.addCallback(shape)

    def stats(self) -> Report:
        """Connections per door, sessions, rooms, message rates, queues, memory."""
        chat = self.chat
        doors = self._connections()
        by_door: dict[str, int] = collections.Counter(
            _door(s) for s in chat.all_sessions()
        )
        paused, pending, buffered = 0, 0, 0
        for connections in self._door_connections().values():
            for c in list(connections):
                if getattr(c, "paused", False):
                    paused += 1
                pending += int(getattr(c, "backlog", 0) or 0)
                buffered += _buffered(getattr(c, "transport", None))
        report = Report()
        report["connections"] = doors
        report["sessions"] = dict(sorted(by_door.items()))
        report["users_online"] = chat.online_count()
        report["rooms"] = chat.room_count()
        report["messages_stored"] = chat.messages_stored
        report["messages_delivered"] = chat.messages_delivered
        if self.meter is not None:
            stored, delivered = self.meter.rates()
            report["messages_per_s"] = {"stored": stored, "delivered": delivered}
            report["uptime_s"] = int(self.clock.seconds() - self.meter.started)
        db = self.server.db
        report["db_queue"] = db.queue_depth
        report["db_transactions"] = db.transactions
        report["db_commits"] = db.commits
        report["output_buffered"] = _megabytes(buffered)
        report["output_paused"] = paused
        report["output_pending"] = _megabytes(pending)
        report["memory_rss"] = _megabytes(memory_rss())
        nodes = chat.cluster_nodes()
        if nodes:
            report["cluster"] = {
                **chat.cluster_status(),
                "sessions_per_node": dict(sorted(nodes.items())),
            }
        return report

    def _door_connections(self) -> dict[str, Any]:
        """Each door's set of connections: native, and any door kept in ``extras``."""
        found: dict[str, Any] = {"native": self.server.native.connections}
        seen = {id(self.server.native)}
        for key, value in self.server.extras.items():
            connections = getattr(value, "connections", None)
            if connections is None or id(value) in seen:
                continue
            seen.add(id(value))
            try:
                len(connections)
            except TypeError:
                continue
            found[str(getattr(value, "door", key))] = connections
        return found

    def _connections(self) -> dict[str, int]:
        return {door: len(c) for door, c in self._door_connections().items()}


def memory_rss() -> int:
    """The process's resident set size in bytes (its peak, where /proc is absent)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _buffered(transport: Any) -> int:
    """Bytes a connection's transports hold that the kernel has not taken yet (0 if unknown)."""
    return pending_output_bytes(transport) or 0


def _door(session: Any) -> str:
    return str(getattr(session.mind, "door", "?"))
