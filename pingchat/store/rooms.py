"""Rooms: persistent state, membership, bans and invites."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from pingchat.model import Membership, RoomInfo, RoomSnapshot, fold

if TYPE_CHECKING:
    from pingchat.store.database import Database
    from pingchat.store.dialect import Connection


def _row_to_room(row: Any) -> RoomInfo:
    return RoomInfo(
        id=row["id"],
        name=row["name"],
        topic=row["topic"],
        topic_by=row["topic_by"],
        topic_at=row["topic_at"],
        created_at=row["created_at"],
        modes=row["modes"],
        key=row["room_key"],
        limit=row["user_limit"],
        history_days=row["history_days"],
    )


def load_rooms(conn: Connection) -> list[RoomSnapshot]:
    """Every room with its members, bans and invites: the server's rooms at
    start-up (``tap.build`` runs it with ``db.run_sync``, before the writer
    thread), and a node's again after a gap (:meth:`RoomStore.load_rooms`)."""
    rooms: dict[int, RoomSnapshot] = {}
    for row in conn.execute("SELECT * FROM rooms"):
        rooms[row["id"]] = RoomSnapshot(_row_to_room(row), [], [], [])
    for row in conn.execute(
        "SELECT m.room_id, a.name, m.op, m.voice FROM room_members m"
        " JOIN accounts a ON a.id = m.account_id ORDER BY m.joined_at"
    ):
        snap = rooms[row["room_id"]]
        snap.members.append(
            Membership(snap.info.name, row["name"], bool(row["op"]), bool(row["voice"]))
        )
    for row in conn.execute("SELECT room_id, mask FROM room_bans"):
        rooms[row["room_id"]].bans.append(row["mask"])
    for row in conn.execute(
        "SELECT i.room_id, a.name FROM room_invites i JOIN accounts a ON a.id = i.account_id"
    ):
        rooms[row["room_id"]].invites.append(row["name"])
    return list(rooms.values())


def _create_room(conn: Connection, name: str, now: int) -> RoomInfo:
    row = conn.execute(
        "INSERT INTO rooms (name, name_folded, created_at) VALUES (?, ?, ?) RETURNING *",
        (name, fold(name), now),
    ).fetchone()
    return _row_to_room(row)


def _account_id(conn: Connection, name: str) -> int | None:
    row = conn.execute("SELECT id FROM accounts WHERE name_folded = ?", (fold(name),)).fetchone()
    return int(row[0]) if row else None


def _add_member(conn: Connection, room_id: int, account: str, op: bool, now: int) -> None:
    account_id = _account_id(conn, account)
    if account_id is None:
        return  # guests are members only in memory
    conn.execute(
        "INSERT INTO room_members (room_id, account_id, op, joined_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (room_id, account_id, int(op), now),
    )
    conn.execute(
        "DELETE FROM room_invites WHERE room_id = ? AND account_id = ?", (room_id, account_id)
    )


def _remove_member(conn: Connection, room_id: int, account: str) -> None:
    conn.execute(
        "DELETE FROM room_members WHERE room_id = ? AND account_id ="
        " (SELECT id FROM accounts WHERE name_folded = ?)",
        (room_id, fold(account)),
    )


def _set_member_flags(
    conn: Connection, room_id: int, account: str, op: bool, voice: bool
) -> None:
    conn.execute(
        "UPDATE room_members SET op = ?, voice = ? WHERE room_id = ? AND account_id ="
        " (SELECT id FROM accounts WHERE name_folded = ?)",
        (int(op), int(voice), room_id, fold(account)),
    )


def _set_topic(conn: Connection, room_id: int, topic: str, by: str, now: int) -> None:
    conn.execute(
        "UPDATE rooms SET topic = ?, topic_by = ?, topic_at = ? WHERE id = ?",
        (topic, by, now, room_id),
    )


def _save_room_modes(
    conn: Connection,
    room_id: int,
    modes: str,
    key: str | None,
    limit: int | None,
    privileges: list[tuple[str, bool, bool]],
    bans: list[tuple[str, bool]],
    by: str,
    now: int,
    history_days: int | None,
) -> None:
    conn.execute(
        "UPDATE rooms SET modes = ?, room_key = ?, user_limit = ?, history_days = ? WHERE id = ?",
        (modes, key, limit, history_days, room_id),
    )
    for account, op, voice in privileges:
        _set_member_flags(conn, room_id, account, op, voice)
    for mask, on in bans:
        _set_ban(conn, room_id, mask, by, now, on)


def _set_ban(
    conn: Connection, room_id: int, mask: str, by: str, now: int, on: bool
) -> None:
    if on:
        conn.execute(
            "INSERT INTO room_bans (room_id, mask, set_by, set_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (room_id, mask, by, now),
        )
    else:
        conn.execute("DELETE FROM room_bans WHERE room_id = ? AND mask = ?", (room_id, mask))


def _add_invite(conn: Connection, room_id: int, account: str) -> None:
    account_id = _account_id(conn, account)
    if account_id is not None:
        conn.execute(
            "INSERT INTO room_invites (room_id, account_id) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            (room_id, account_id),
        )


class RoomStore:
    """Room transactions."""

    db: Database

    def create_room(self, name: str, now: int) -> Deferred[RoomInfo]:
        return self.db.run("create_room", _create_room, name, now)

    def add_member(self, room_id: int, account: str, op: bool, now: int) -> Deferred[None]:
        return self.db.run("add_member", _add_member, room_id, account, op, now)

    def remove_member(self, room_id: int, account: str) -> Deferred[None]:
        return self.db.run("remove_member", _remove_member, room_id, account)

    def set_topic(self, room_id: int, topic: str, by: str, now: int) -> Deferred[None]:
        return self.db.run("set_topic", _set_topic, room_id, topic, by, now)

    def save_room_modes(
        self,
        room_id: int,
        modes: str,
        key: str | None,
        limit: int | None,
        privileges: list[tuple[str, bool, bool]],
        bans: list[tuple[str, bool]],
        by: str,
        now: int,
        history_days: int | None = None,
    ) -> Deferred[None]:
        """Store a room's modes (+H: *history_days*), member privileges and ban changes at once."""
        return self.db.run(
            "save_room_modes",
            _save_room_modes,
            room_id,
            modes,
            key,
            limit,
            privileges,
            bans,
            by,
            now,
            history_days,
        )

    def add_invite(self, room_id: int, account: str) -> Deferred[None]:
        return self.db.run("add_invite", _add_invite, room_id, account)

    def load_rooms(self) -> Deferred[list[RoomSnapshot]]:
        """Every room with its members, bans and invites (a node catching up)."""
        return self.db.read("load_rooms", load_rooms)
