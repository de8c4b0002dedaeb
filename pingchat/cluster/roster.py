"""The other nodes and their sessions, as this node knows them.

Each node publishes, for every account (or guest) whose sessions on it
change, the whole entry: how many sessions, through which doors, guest or
not, and its away message, with a number that grows with every change the
node makes (its *version*); the same entries sit in a Redis hash per node,
for a node that (re)joins. Entries replace each other (newest version
wins), so events that arrive twice or late, or a snapshot read while events
fly, leave the same view. A node whose heartbeat has expired is dropped
with all its sessions. Pure logic.
"""

from __future__ import annotations

from typing import Any

from pingchat.chat.fanout import RemoteUser


def entry_to_wire(user: RemoteUser | None, version: int) -> dict[str, Any]:
    """An entry as published and stored (None: no sessions left)."""
    if user is None:
        return {"v": version}
    return {
        "v": version,
        "name": user.name,
        "sessions": user.sessions,
        "doors": list(user.doors),
        "guest": user.guest,
        "away": user.away,
    }


def entry_from_wire(node: str, data: dict[str, Any]) -> RemoteUser | None:
    if "name" not in data:
        return None
    return RemoteUser(
        node,
        str(data["name"]),
        int(data["sessions"]),
        tuple(data.get("doors", ())),
        bool(data.get("guest", False)),
        data.get("away"),
    )


class Roster:
    """Sessions on the other nodes: by account (folded name), then by node."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, RemoteUser]] = {}
        self._versions: dict[tuple[str, str], int] = {}  # (node, folded) -> version
        self.nodes: dict[str, int] = {}  # node -> sessions there

    def apply(self, node: str, folded: str, entry: RemoteUser | None, version: int) -> bool:
        """Take one entry if it is newer than what is known; whether it changed."""
        key = (node, folded)
        if version <= self._versions.get(key, -1):
            return False
        self._versions[key] = version
        self.nodes.setdefault(node, 0)
        return self._set(node, folded, entry)

    def replace(self, node: str, snapshot: dict[str, tuple[RemoteUser | None, int]]) -> set[str]:
        """A node's whole table as read from Redis; the accounts whose entries changed.

        Entries absent from it are gone unless known from a newer event.
        """
        changed = set()
        for folded, (entry, version) in snapshot.items():
            if self.apply(node, folded, entry, version):
                changed.add(folded)
        for folded in [f for f, by in self.users.items() if node in by and f not in snapshot]:
            if self._set(node, folded, None):
                changed.add(folded)
        self.nodes.setdefault(node, 0)
        return changed

    def drop(self, node: str) -> set[str]:
        """A node is gone (its heartbeat expired, or it said goodbye)."""
        changed = {f for f, by in self.users.items() if node in by}
        for folded in changed:
            self._set(node, folded, None)
        self.nodes.pop(node, None)
        for key in [k for k in self._versions if k[0] == node]:
            del self._versions[key]
        return changed

    def online(self, folded: str) -> list[RemoteUser]:
        return list(self.users.get(folded, {}).values())

    def sessions_on(self, node: str) -> int:
        return self.nodes.get(node, 0)

    def _set(self, node: str, folded: str, entry: RemoteUser | None) -> bool:
        by = self.users.get(folded)
        old = by.get(node) if by else None
        if old is not None:
            self.nodes[node] = self.nodes.get(node, 0) - old.sessions
        if entry is None or entry.sessions <= 0:
            if by is None or node not in by:
                return False
            del by[node]
            if not by:
                del self.users[folded]
            return True
        self.users.setdefault(folded, {})[node] = entry
        self.nodes[node] = self.nodes.get(node, 0) + entry.sessions
        return True
