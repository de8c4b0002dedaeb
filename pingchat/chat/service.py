"""The chat service: the one live world that every door shares.

It owns the in-memory state (rooms with their members, the sessions of each
account, presence) and routes every event to the *minds* (connections) that
should see it. Durable state goes through the store; a message is delivered
and acknowledged only after the store has committed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pingchat.chat.fanout import LocalFanOut, RemoteUser
from pingchat.chat.messages import Messages
from pingchat.chat.moderation import Moderation
from pingchat.chat.rooms import Rooms
from pingchat.chat.session import Session
from pingchat.errors import (
    Forbidden,
    NoSuchUser,
)
from pingchat.interfaces import IChatMind, IStore
from pingchat.loglines import TurnLines
from pingchat.model import (
    Account,
    Member,
    Message,
    Presence,
    PresenceState,
    Room,
    RoomSnapshot,
    check_account_name,
    check_text,
    clean_text,
    fold,
)

log = Logger()


class ChatService(Rooms, Messages, Service):
    """Rooms, sessions, presence and routing, independent of any protocol.

    Doors act through its methods (``join``, ``say``, ``dm``...) and read the
    live world only through its questions (``room_named``, ``rooms_of``,
    ``sessions_of``, ``presence_of``...) and the rooms and sessions these hand
    out; the dicts behind them and the store are its own. The room operations
    (``join``, ``set_topic``, ``kick``, ``change_modes``...) are in
    :class:`~pingchat.chat.rooms.Rooms`, and saying, delivering and reading
    back messages (``say``, ``dm``, ``history``...) in
    :class:`~pingchat.chat.messages.Messages`: it inherits both.
    """

    name = "chat"

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        server_name: str = "pingchat",
        rooms: Iterable[RoomSnapshot] = (),
        audit: Callable[..., object] | None = None,
    ) -> None:
        self._store = store
        self.audit: Callable[..., object] = audit or (lambda *a, **k: None)
        self.clock = clock
        self.server_name = server_name
        self._rooms: dict[str, Room] = {}  # by folded name
        self._sessions: dict[str, list[Session]] = {}
        self._presence: dict[str, PresenceState] = {}
        self._creating: dict[str, list[Deferred[Room]]] = {}  # room -> who waits for it
        # Each room's sessions and their ``message`` methods, made at its
        # first message and forgotten whenever a membership or a session
        # changes (see _changed): a fan-out walks one dict instead of every
        # member's session list.
        self._receivers: dict[Room, dict[Session, Callable[[Message], object]]] = {}
        # Counted once per message (a fan-out adds its number of recipients),
        # never per delivery; the metrics read them when scraped.
        self.messages_delivered = 0
        self.room_messages_stored = 0
        self.dm_messages_stored = 0
        # A reconnect storm starts and ends thousands of sessions: each
        # turn's are logged as one line (see pingchat.loglines).
        self._started_lines = TurnLines(
            log,
            clock,
            "session started: {user} via {door} from {address}",
            "{count} sessions started: {entries}",
            "{user} via {door} from {address}",
        )
        self._offline_lines = TurnLines(
            log, clock, "{user} is offline", "{count} are offline: {entries}", "{user}"
        )
        # Where stored messages and changes go: delivered here (the default),
        # or also published to the other nodes of a cluster (pingchat.cluster).
        self.fanout: LocalFanOut = LocalFanOut(self)
        self.load(rooms)
        # Server operators, KILL, WALLOPS and message deletion.
        self.moderation = Moderation(self, store)

    def load(self, snapshots: Iterable[RoomSnapshot]) -> None:
        """Take the rooms loaded from the store (at start-up, or a node catching up).

        A room already here keeps its live object (doors hold it) and its
        guests, who are members only in memory; its stored fields, members,
        bans and invites become the store's.
        """
        for snap in snapshots:
            fresh = Room.from_info(snap.info)
            for m in snap.members:
                fresh.members[fold(m.account)] = Member(m.account, m.op, m.voice)
            fresh.bans = list(snap.bans)
            fresh.invites = {fold(n) for n in snap.invites}
            room = self._rooms.get(fold(fresh.name))
            if room is None:
                self._rooms[fold(fresh.name)] = fresh
                continue
            guests = {f: m for f, m in room.members.items() if m.guest}
            for field in attrs.fields(Room):
                setattr(room, field.name, getattr(fresh, field.name))
            room.members.update(guests)
        self._changed()

    def now(self) -> int:
        return int(self.clock.seconds() * 1000)

    @property
    def messages_stored(self) -> int:
        """Room messages and DMs stored since the server started."""
        return self.room_messages_stored + self.dm_messages_stored

    def stopService(self) -> None:
        """Close every session while the store can still record it."""
        super().stopService()
        for sessions in list(self._sessions.values()):
            for session in list(sessions):
                session.mind.disconnect("the server is shutting down")
        self._started_lines.flush()
        self._offline_lines.flush()

    # -- sessions and presence -------------------------------------------------

    def attach(
        self, account: Account | None, mind: IChatMind, address: str | None, name: str = ""
    ) -> Session:
        """Register a new session (the realm calls this at login)."""
        session = Session(account, account.name if account else name, mind, address, self.now())
        sessions = self._sessions.setdefault(session.folded, [])
        sessions.append(session)
        self._changed()
        self.moderation.session_started(session)
        state = self._presence.setdefault(session.folded, PresenceState())
        if len(sessions) == 1 and not self.fanout.remote(session.folded):
            state.presence = Presence.AWAY if state.away else Presence.ONLINE
            self._announce_presence(session.name, state)
        self.fanout.sessions_changed(session)
        self._started_lines(user=session.name, door=getattr(mind, "door", "?"), address=address)
        return session

    def detach(self, session: Session) -> None:
        """Forget a session (its connection closed or it logged out)."""
        if not session.attached:
            return
        session.attached = False
        sessions = self._sessions.get(session.folded, [])
        if session in sessions:
            sessions.remove(session)
        self._changed()
        self.moderation.session_ended(session)
        self.fanout.sessions_changed(session)
        if sessions:
            return
        self._sessions.pop(session.folded, None)
        if self.fanout.remote(session.folded):
            return  # still online on another node of the cluster
        self.went_offline(session.name, session.account, session.guest)
        self._offline_lines(user=session.name)

    def went_offline(self, name: str, account: Account | None, guest: bool) -> None:
        """*name* has no session left anywhere: offline, seen now, and (a
        guest) out of its rooms. The cluster calls this when another node's
        last session of an account ends or that node dies."""
        folded = fold(name)
        state = self._presence.setdefault(folded, PresenceState())
        state.presence = Presence.OFFLINE
        state.away = None
        state.last_seen = self.now()
        if account is not None:
            self._store.touch_last_seen(account.id, state.last_seen).addErrback(
                lambda f: log.failure("could not record last seen", f)
            )
        elif guest:
            for room in list(self._rooms.values()):
                member = room.members.get(folded)
                if member is not None and member.guest:
                    self._remove_member(room, name, None, "quit")
        self._announce_presence(name, state)

    def rename(self, session: Session, name: str) -> None:
        """Give a guest a new name (IRC ``NICK``); an account's name never changes.

        The caller checks that *name* is not a registered account (that needs
        the store). Minds sharing a room (and the guest's own) are told with
        ``renamed(old, new)`` when they have it, else with a part and a join.
        """
        check_account_name(name)
        if session.account is not None:
            raise Forbidden("an account's name cannot change")
        if not session.attached:
            raise Forbidden("this session has ended")
        old, folded = session.name, fold(name)
        if folded != session.folded and folded in self._sessions:
            raise Forbidden(f"{name} is in use")
        sessions = self._sessions.pop(session.folded, [])
        state = self._presence.pop(session.folded, PresenceState())
        rooms = self.rooms_of(old)
        for room in rooms:
            member = room.members.pop(session.folded)
            member.name = name
            room.members[folded] = member
        session.name, session.folded = name, folded
        self._sessions[folded] = sessions
        self._changed()
        self._presence[folded] = state
        for mind in self._minds(self._audience(name)):
            renamed = getattr(mind, "renamed", None)
            if renamed is not None:
                renamed(old, name)
            else:
                for room in rooms:
                    mind.parted(room.name, old, f"now known as {name}")
                    mind.joined(room.name, name)
        log.info("guest {old} is now {new}", old=old, new=name)

    def deliver_offline(self, session: Session) -> Deferred[list[Message]]:
        """Hand a new session what waited while its account was offline.

        The queued DMs (oldest first, flagged offline) and the contact
        events, taken from the store in one transaction.
        """
        if session.account is None:
            return succeed([])

        def deliver(queued: tuple[list[Message], list[dict[str, Any]]]) -> list[Message]:
            messages, events = queued
            for m in messages:
                session.mind.message(m, offline=True)
            for e in events:
                if e.get("event") == "contact":
                    session.mind.contact_event(e["user"], e["status"])
            return messages

        return self._store.take_queued(session.account.id).addCallback(deliver)

    def sessions_of(self, name: str) -> list[Session]:
        """The live sessions of *name* (an account or a guest) here, oldest first."""
        return list(self._sessions.get(fold(name), ()))

    def remote_sessions_of(self, name: str) -> list[RemoteUser]:
        """*name*'s sessions on the other nodes of a cluster, one entry per node."""
        return self.fanout.remote(fold(name))

    def is_online(self, name: str) -> bool:
        """Whether *name* has at least one live session (on any node)."""
        folded = fold(name)
        return folded in self._sessions or bool(self.fanout.remote(folded))

    def cluster_nodes(self) -> dict[str, int]:
        """Every node of the cluster (this one too) with its sessions; {} when
        this server is not a node of one."""
        return self.fanout.nodes()

    def cluster_status(self) -> dict[str, Any]:
        """This node's bus: its name, whether Redis is there, event counts; {} alone."""
        return self.fanout.status()

    def online_as(self, name: str) -> tuple[str, bool] | None:
        """How *name* is shown while online (any node), and whether it is a
        guest; None when offline."""
        sessions = self._sessions.get(fold(name))
        if sessions:
            return sessions[0].name, sessions[0].guest
        remote = self.fanout.remote(fold(name))
        if remote:
            return remote[0].name, remote[0].guest
        return None

    def online_count(self) -> int:
        """How many accounts and guests have at least one live session (any node)."""
        remote = self.fanout.remote_users()
        if not remote:
            return len(self._sessions)
        return len(self._sessions.keys() | remote.keys())

    def all_sessions(self) -> Iterator[Session]:
        """Every live session, through every door. It walks the live sessions:
        make a list of them before doing what ends or starts one."""
        for sessions in self._sessions.values():
            yield from sessions

    def presence_of(self, name: str) -> PresenceState | None:
        """*name*'s presence (online, away and its message, last seen), or None
        if nobody of that name has been online since the server started.

        The service's own record, handed out to be read, not changed:
        ``set_away`` changes it.
        """
        return self._presence.get(fold(name))

    def _audience(self, name: str) -> set[str]:
        """Folded names of the accounts that share a room with *name*, and itself."""
        folded = fold(name)
        seen = {folded}
        for room in self._rooms.values():
            if folded in room.members:
                seen.update(room.members)
        return seen

    def _minds(self, names: Iterable[str], exclude: Session | None = None) -> Iterator[IChatMind]:
        for folded in names:
            for s in self._sessions.get(folded, ()):
                if s is not exclude:
                    yield s.mind

    def announce_key(
        self,
        origin: Session,
        device: str,
        action: str,
        fingerprint: str,
        audience: Iterable[str],
    ) -> None:
        """Tell the account's other sessions, and the online sessions of
        *audience* (its contacts and DM partners), that a device key was
        ``published`` or ``revoked``, so that their clients refetch the keys."""
        audience = list(audience)
        names = {origin.folded, *(fold(n) for n in audience)}
        for mind in self._minds(names, exclude=origin):
            mind.key_changed(origin.name, device, action, fingerprint)
        self.fanout.key_changed(origin.name, device, action, fingerprint, audience)

    def _announce_presence(self, name: str, state: PresenceState) -> None:
        for mind in self._minds(self._audience(name)):
            mind.presence_changed(name, state.presence.value, state.away)

    def set_away(self, session: Session, text: str | None) -> None:
        """Mark the account away (with a message) or back (``None``)."""
        if text is not None:
            text = clean_text(text)[:300] or None
        self.away_changed(session.name, text)
        self.fanout.away_changed(session.name, text)

    def away_changed(self, name: str, text: str | None) -> None:
        """*name* (online) is away with *text*, or back (None): here or on another node."""
        state = self._presence.setdefault(fold(name), PresenceState())
        state.away = text
        state.presence = Presence.AWAY if text else Presence.ONLINE
        self._announce_presence(name, state)

    def who(self) -> list[dict[str, Any]]:
        """Everyone online (on any node), with presence."""
        online = {folded: (s[0].name, s[0].guest) for folded, s in self._sessions.items()}
        for folded, entries in self.fanout.remote_users().items():
            online.setdefault(folded, (entries[0].name, entries[0].guest))
        out = []
        for folded, (name, guest) in online.items():
            state = self._presence.get(folded, PresenceState())
            out.append(
                {
                    "user": name,
                    "presence": state.presence.value,
                    "away": state.away,
                    "guest": guest,
                }
            )
        return sorted(out, key=lambda u: fold(u["user"]))

    def whois(self, name: str) -> Deferred[dict[str, Any]]:
        check_account_name(name)

        def found(account: Account | None) -> dict[str, Any]:
            local = self._sessions.get(fold(name), [])
            remote = self.fanout.remote(fold(name))
            online = bool(local or remote)
            if account is None and not online:
                raise NoSuchUser(f"no such user: {name}")
            state = self._presence.get(fold(name), PresenceState())
            last_seen = state.last_seen or (account.last_seen if account else None)
            rooms = sorted(r.name for r in self._rooms.values() if fold(name) in r.members)
            doors = {getattr(s.mind, "door", "?") for s in local}
            for entry in remote:
                doors.update(entry.doors)
            shown = account.name if account else local[0].name if local else remote[0].name
            return {
                "user": shown,
                "presence": state.presence.value if online else Presence.OFFLINE.value,
                "away": state.away if online else None,
                "last_seen": last_seen,
                "rooms": rooms,
                "sessions": len(local) + sum(e.sessions for e in remote),
                "guest": account is None,
                "role": account.role if account else None,
                "doors": sorted(doors),
            }

        return self._store.get_account(name).addCallback(found)

    # -- administration ----------------------------------------------------------

    def broadcast(self, text: str, sender: str | None = None) -> int:
        """Send a server notice to every session; returns how many received it."""
        text = check_text(text)
        self.fanout.broadcast(text, sender or self.server_name)
        return self.notice_all(text, sender or self.server_name)

    def notice_all(self, text: str, sender: str) -> int:
        """A server notice to every session here; how many received it."""
        n = 0
        for sessions in list(self._sessions.values()):
            for s in sessions:
                s.mind.notice(text, sender)
                n += 1
        return n

    def disconnect_user(self, name: str, reason: str) -> int:
        """Close every session of an account, through every door, on every node.

        Returns how many were closed here."""
        self.fanout.disconnect_user(name, reason)
        return self.disconnect_here(name, reason)

    def disconnect_here(self, name: str, reason: str) -> int:
        """Close every session of an account on this node."""
        sessions = self.sessions_of(name)
        for s in sessions:
            s.mind.disconnect(reason)
        return len(sessions)

    def remove_account(
        self, name: str, placeholder: str, reason: str, keep: Session | None = None
    ) -> int:
        """An account was deleted: end its sessions (but *keep*, which ends
        itself after its reply), take it out of every room in memory (the
        store has already), lift bans of its bare name and show *placeholder*
        as the setter of topics it set. Returns the sessions ended."""
        folded = fold(name)
        sessions = [s for s in self.sessions_of(name) if s is not keep]
        for s in sessions:
            s.mind.disconnect(reason)
        for room in list(self._rooms.values()):
            if folded in room.members:
                room.members.pop(folded)
                self._changed()
                for mind in self._minds(room.members):
                    mind.parted(room.name, name, reason)
            room.invites.discard(folded)
            room.bans = [b for b in room.bans if fold(b) != f"{folded}!*@*"]
            if room.topic_by is not None and fold(room.topic_by) == folded:
                room.topic_by = placeholder
        if keep is None:
            self._presence.pop(folded, None)
        return len(sessions)
