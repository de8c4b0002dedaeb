"""The manhole's namespace: live objects and helpers that are safe at a prompt.

Every helper runs on the reactor thread (the manhole is a protocol like any
other). Helpers that only read or change memory answer at once; helpers that
touch the database return a Deferred, which the manhole waits for before it
prints the next prompt. Bad names raise a :class:`~pingchat.errors.ChatError`
whose message says what was wrong. Every helper that changes state writes an
audit record naming the administrator.
"""

from __future__ import annotations

import collections
import os
import resource
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from pingchat.chat.service import ChatService
from pingchat.errors import BadRequest, Forbidden, NoSuchUser
from pingchat.model import (
    TOPIC_MAX,
    Account,
    Room,
    check_account_name,
    check_room_name,
    check_text,
    clean_text,
    fold,
    iso_ms,
)
from pingchat.server import Server
from pingchat.twisted_internals import pending_output_bytes

KICK_REASON = "disconnected by an administrator"
DISABLE_REASON = "this account has been disabled"
RESET_PASSWORD_LENGTH = 16


# -- values that print nicely --------------------------------------------------------


class Done(str):
    """A one-line outcome; shown without quotes at the prompt."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


class Table(list[dict[str, Any]]):
    """Rows of a listing: a list of dicts that prints as aligned columns."""

    def __init__(self, columns: Sequence[str], rows: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(rows)
        self.columns = tuple(columns)

    def __repr__(self) -> str:
        if not self:
            return "(none)"
        cells = [[_cell(row.get(c)) for c in self.columns] for row in self]
        widths = [
            max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(self.columns)
        ]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(line.rstrip() for line in lines)


class Report(dict[str, Any]):
    """A mapping that prints as ``key: value`` lines (nested mappings inline)."""

    def __repr__(self) -> str:
        width = max((len(k) for k in self), default=0)
        return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in self.items())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


# -- measurements --------------------------------------------------------------------


class RateMeter:
    """Samples the chat service's message counters to report rates per second.

    :meth:`sample` runs every few seconds (a ``TimerService`` does it); the
    rate is taken over the samples of the last *window* seconds.
    """

    def __init__(
        self, clock: IReactorTime, counters: Callable[[], tuple[int, int]], window: float = 60.0
    ) -> None:
        self.clock = clock
        self.counters = counters
        self.window = window
        self.started = clock.seconds()
        self.samples: collections.deque[tuple[float, int, int]] = collections.deque()
        self.sample()

    def sample(self) -> None:
        now = self.clock.seconds()
        self.samples.append((now, *self.counters()))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def rates(self) -> tuple[float, float]:
        """Messages stored and delivered per second over the recent window."""
        now = self.clock.seconds()
        stored, delivered = self.counters()
        then, stored0, delivered0 = self.samples[0]
        for sample in self.samples:
            if now - sample[0] <= self.window:
                then, stored0, delivered0 = sample
                break
        elapsed = now - then
        if elapsed <= 0:
            return 0.0, 0.0
        return (stored - stored0) / elapsed, (delivered - delivered0) / elapsed


def memory_rss() -> int:
    """The process's resident set size in bytes (its peak, where /proc is absent)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


# -- the helpers -----------------------------------------------------------------------


class AdminTools:
    """The helpers of one administrator's manhole session.

    *actor* is the administrator's account name: it goes into the audit log
    with every change made here.
    """

    def __init__(
        self,
        server: Server,
        actor: str,
        clock: IReactorTime,
        meter: RateMeter | None = None,
        address: str | None = None,
    ) -> None:
        self.server = server
        self.actor = actor
        self.clock = clock
        self.meter = meter
        self.address = address

    @property
    def chat(self) -> ChatService:
        return self.server.chat

    @property
    def store(self) -> Any:
        return self.server.store

    def _audit(self, event: str, account: str | None = None, **detail: Any) -> None:
        self.server.audit(
            event, account=account, actor=self.actor, address=self.address, **detail
        )

    def namespace(self) -> dict[str, Any]:
        """The names an administrator finds at the prompt."""
        names: dict[str, Any] = {
            "server": self.server,
            "chat": self.server.chat,
            "store": self.server.store,
            "accounts_manager": self.server.accounts,
        }
        for helper in HELPERS:
            names[helper] = getattr(self, helper)
        names["help"] = self.help
        return names

    def help(self, thing: Any = None) -> Done:
        """This list of helpers, or the description of one of them: help(kick)."""
        if thing is None:
            return Done(BANNER.rstrip())
        doc = getattr(thing, "__doc__", None) or "(no description)"
        return Done(" ".join(doc.replace("*", "").split()))

    # -- looking -----------------------------------------------------------------------

    def who(self) -> Table:
        """Everyone connected: presence, doors, number of sessions, addresses."""
        rows = []
        for user in self.chat.who():
            sessions = self.chat.sessions_of(user["user"])
            rows.append({
                "user": user["user"],
                "presence": user["presence"],
                "doors": sorted({_door(s) for s in sessions}),
                "sessions": len(sessions),
                "addresses": sorted({s.address or "?" for s in sessions}),
                "guest": user["guest"],
                "away": user["away"],
            })
        return Table(("user", "presence", "doors", "sessions", "addresses", "guest", "away"), rows)

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
        queue = getattr(db, "_queue", None)
        report["db_queue"] = queue.qsize() if queue is not None else 0
        report["db_transactions"] = getattr(db, "transactions", 0)
        report["db_commits"] = getattr(db, "commits", 0)
        report["output_buffered"] = _megabytes(buffered)
        report["output_paused"] = paused
        report["output_pending"] = _megabytes(pending)
        report["memory_rss"] = _megabytes(memory_rss())
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

    # -- acting on users ------------------------------------------------------------

    def _connected(self, user: str) -> list[Any]:
        check_account_name(user)
        sessions = self.chat.sessions_of(user)
        if not sessions:
            raise NoSuchUser(f"{user} is not connected")
        return sessions  # type: ignore[no-any-return]

    def kick(self, user: str, reason: str = KICK_REASON) -> Done:
        """Close every session of *user*, through every door (native and IRC)."""
        sessions = self._connected(user)
        reason = check_text(reason, "reason")[:300]
        name = sessions[0].name
        n = self.chat.disconnect_user(name, reason)
        self._audit("admin_kick", name, reason=reason, sessions=n)
        return Done(f"kicked {name}: {n} session(s) closed")

    def disable(self, user: str, reason: str = DISABLE_REASON) -> Deferred[Done]:
        """Disable *user*'s account: its sessions end, its tokens and logins are refused."""
        check_account_name(user)
        if fold(user) == fold(self.actor):
            raise Forbidden("you cannot disable your own account from its manhole")
        reason = check_text(reason, "reason")[:300]

        def disabled(account: Account) -> Done:
            n = self.chat.disconnect_user(account.name, reason)
            self._audit("admin_disable", account.name, sessions=n)
            return Done(f"{account.name} disabled; {n} session(s) closed")

        d: Deferred[Account] = self.store.set_disabled(user, True)
        return d.addCallback(disabled)

    def enable(self, user: str) -> Deferred[Done]:
        """Enable *user*'s account again."""
        check_account_name(user)

        def enabled(account: Account) -> Done:
            self._audit("admin_enable", account.name)
            return Done(f"{account.name} enabled")

        d: Deferred[Account] = self.store.set_disabled(user, False)
        return d.addCallback(enabled)

    def delete_user(self, user: str) -> Deferred[Done]:
        """Delete *user*'s account for good: sessions end, messages go as
        --deleted-messages says (remove or anonymise), the name is freed after 30 days."""
        check_account_name(user)
        if fold(user) == fold(self.actor):
            raise Forbidden("you cannot delete your own account from its manhole")

        def done(r: dict[str, Any]) -> Done:
            return Done(
                f"{r['user']} deleted (now {r['placeholder']} in the audit log);"
                f" {r['removed']} message(s) removed, {r['anonymised']} anonymised;"
                f" {r['sessions']} session(s) closed; the name is free again from"
                f" {iso_ms(r['reserved_until'])}"
            )

        eraser = self.server.accounts.eraser
        assert eraser is not None
        d: Deferred[dict[str, Any]] = eraser.erase(
            user, self.actor, self.address, "this account has been deleted by an administrator"
        )
        return d.addCallback(done)

    def reset(self, user: str) -> Deferred[Done]:
        """Give *user* a new random password, shown here once; their tokens are revoked."""
        check_account_name(user)
        length = max(RESET_PASSWORD_LENGTH, self.server.accounts.min_password_length)
        password = secrets.token_urlsafe(length)[:length]

        def done(account: Account) -> Done:
            return Done(
                f"new password for {account.name} (shown once, pass it on safely): {password}"
            )

        d: Deferred[Account] = self.server.accounts.set_password_admin(
            user, password, self.actor
        )
        return d.addCallback(done)

    def adduser(self, user: str, admin: bool = False) -> Deferred[Done]:
        """Create an account with a random password, shown here once (any registration policy)."""
        length = max(RESET_PASSWORD_LENGTH, self.server.accounts.min_password_length)
        password = secrets.token_urlsafe(length)[:length]
        role = "admin" if admin else "user"

        def done(result: dict[str, Any]) -> Done:
            name = result["account"].name
            codes = "\n".join(f"  {c}" for c in result["recovery_codes"])
            return Done(
                f"created {role} {name}; password (shown once, pass it on safely): {password}\n"
                f"recovery codes (shown once; each resets the password once):\n{codes}"
            )

        d: Deferred[dict[str, Any]] = self.server.accounts.create_account_admin(
            user, password, self.actor, role
        )
        return d.addCallback(done)

    def invite(self, uses: int = 1, expires_days: float = 7.0) -> Deferred[Done]:
        """A new invite code for --registration invite: *uses* accounts, valid *expires_days*
        days (0: for ever). The code is shown here once."""

        def done(made: dict[str, Any]) -> Done:
            until = iso_ms(made["expires_at"]) if made["expires_at"] is not None else "never"
            return Done(
                f"invite {made['id']} (shown once): {made['code']}"
                f"  [{made['uses']} use(s), expires {until}]"
            )

        d: Deferred[dict[str, Any]] = self.server.accounts.create_invite(
            self.actor, uses, expires_days
        )
        return d.addCallback(done)

    def invites(self) -> Deferred[Table]:
        """Every invite code's state, uses and expiry (the codes themselves are not kept)."""
        now = int(self.clock.seconds() * 1000)

        def shape(found: list[Any]) -> Table:
            return Table(
                ("id", "state", "left", "used", "expires", "by"),
                (
                    {
                        "id": i.id,
                        "state": i.state(now),
                        "left": i.uses_left,
                        "used": i.used,
                        "expires": iso_ms(i.expires_at) if i.expires_at is not None else "never",
                        "by": i.created_by,
                    }
                    for i in found
                ),
            )

        d: Deferred[list[Any]] = self.store.list_invite_codes()
        return d.addCallback(shape)

    def revoke_invite(self, invite_id: int) -> Deferred[Done]:
        """Revoke an invite code by its id (see invites())."""
        if isinstance(invite_id, bool) or not isinstance(invite_id, int):
            raise BadRequest("give the invite's id, a number (see invites())")

        def done(revoked: bool) -> Done:
            if not revoked:
                raise BadRequest(f"no invite {invite_id}, or it is revoked already")
            self._audit("invite_revoke", invite=invite_id)
            return Done(f"invite {invite_id} revoked")

        d: Deferred[bool] = self.store.revoke_invite_code(
            invite_id, int(self.clock.seconds() * 1000)
        )
        return d.addCallback(done)

    def promote(self, user: str) -> Deferred[Done]:
        """Give *user* the admin role (manhole access)."""
        return self._set_role(user, "admin", "admin_promote")

    def demote(self, user: str) -> Deferred[Done]:
        """Take the admin role from *user*."""
        check_account_name(user)
        if fold(user) == fold(self.actor):
            raise Forbidden("you cannot demote yourself")
        return self._set_role(user, "user", "admin_demote")

    def _set_role(self, user: str, role: str, event: str) -> Deferred[Done]:
        check_account_name(user)

        def changed(account: Account) -> Done:
            self._audit(event, account.name, role=role)
            n = self.chat.moderation.role_changed(account)
            live = f"; {n} live session(s) changed operator status" if n else ""
            return Done(f"{account.name} is now {role}{live}")

        d: Deferred[Account] = self.store.set_role(user, role)
        return d.addCallback(changed)

    # -- talking and rooms ---------------------------------------------------------------

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


    # -- the server ----------------------------------------------------------------------

    def reload(self) -> Done:
        """Read the TLS certificates and the config file's reloadable options again, as
        SIGHUP does: new connections get a new certificate, no connection closes."""
        reloader = self.server.extras.get("reloader")
        if reloader is None:
            raise BadRequest("this server cannot reload")
        lines = reloader.reload()
        self._audit("admin_reload", outcome=lines)
        return Done("\n".join(lines) or "nothing to reload")


def _buffered(transport: Any) -> int:
    """Bytes a connection's transports hold that the kernel has not taken yet (0 if unknown)."""
    return pending_output_bytes(transport) or 0


def _door(session: Any) -> str:
    return str(getattr(session.mind, "door", "?"))


HELPERS = (
    "who", "rooms", "sessions", "accounts", "audit", "stats",
    "kick", "disable", "enable", "delete_user", "reset", "adduser", "promote", "demote",
    "invite", "invites", "revoke_invite",
    "broadcast", "topic", "ban", "unban",
    "reload",
)

BANNER = """\
  chat, store, server       the live chat service, the store, the whole server
  who()                     who is connected, through which door
  rooms()                   every room: members, modes, topic
  sessions(user)            the live sessions of a user
  accounts()                every account: role, disabled, last seen
  kick(user, reason)        close every session of a user (native and IRC)
  disable(user), enable(user)
                            disabling ends the user's sessions and refuses logins
  delete_user(user)         delete an account for good (docs/admin.md)
  reset(user)               set a new random password and show it once
  adduser(user, admin=False)
                            create an account with a random password, shown once
  invite(uses=1, expires_days=7), invites(), revoke_invite(id)
                            invite codes, for --registration invite
  promote(user), demote(user)
                            grant or take the admin role
  broadcast(text)           a server notice to every session
  topic(room, text)         set a room's topic
  ban(room, user), unban(room, user)
  stats()                   connections, sessions, rooms, messages/s, queues, memory
  reload()                  re-read the TLS certificates and reloadable options (as SIGHUP)
  audit(n)                  the last n audit log entries
  help(), help(kick)        this list, or one helper's description
Helpers that touch the database wait for it (Ctrl-C stops waiting).
Every change made here is audited under your name. Ctrl-D leaves.
"""


def banner(actor: str, server_name: str) -> str:
    return f"pingchat manhole on {server_name}, logged in as {actor}.\n{BANNER}"
