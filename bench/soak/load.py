"""The soak's load: steady chatters, a loud sender, churn and slow readers.

Every actor runs until ``Load.stop`` is set and counts what happened in its
own counters, which ``bench/soak/__main__.py`` prints every minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from bench.soak.clients import Door, SoakClient, Tally, connect, join, login, part, quit_

PASSWORD = "soak-password"
LOREM = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing"]
PHRASES = [
    "plain ascii chat line", "héllo wörld, ça va ?", "日本語のテキストです", "emoji 🎉🚀 ok",
    "Ελληνικά και русский", "a [bracketed] {line} with | symbols ^ and \\ backslash",
]


@dataclass
class Settings:
    """The mix; rates are totals per second across all clients of a kind."""

    native_chatters: int = 50
    irc_chatters: int = 50
    rooms: int = 5  # the busy room, #soak0, and the chatters' rooms
    say_rate: float = 3.0
    dm_rate: float = 1.0
    offline_share: float = 0.3  # of DMs, to accounts that are offline (or churning)
    offline_accounts: int = 10
    churn_rate: float = 2.0
    churn_accounts: int = 30
    loud_rate: float = 8.0
    loud_bytes: int = 4000
    slow_every: float = 20.0
    slow_rcvbuf: int = 4096
    max_stuck: int = 2  # per door: no new slow reader while this many were not dropped
    max_backlog: int = 1024 * 1024
    bad_every: float = 15.0
    paste_lines: int = 150
    flood_lines: int = 1000

    def room(self, i: int) -> str:
        """The chatters' rooms: #soak1 ... (#soak0 is the busy room)."""
        return f"#soak{1 + i % max(1, self.rooms - 1)}"

    @property
    def busy_room(self) -> str:
        return "#soak0"


def accounts(s: Settings) -> list[str]:
    """Every account the soak uses; registered before the load starts."""
    return [
        *(f"n{i}" for i in range(s.native_chatters)),
        *(f"i{i}" for i in range(s.irc_chatters)),
        *(f"c{i}" for i in range(s.churn_accounts)),
        *(f"o{i}" for i in range(s.offline_accounts)),
        *(f"s{i}" for i in range(3 * (s.max_stuck + 4))),
        *(f"v{i}" for i in range(4)),
        "obsn", "obsi", "loud", "soakmon", "bad", "badirc", "paster", "flooder",
    ]


_seq = itertools.count(1)


def text(tag: str, size: int = 0) -> str:
    """A unique chat line (the store check finds each by its text)."""
    line = f"{tag} #{next(_seq)} {random.choice(PHRASES)}"
    if size > len(line):
        words = itertools.cycle(LOREM)
        while len(line) < size:
            line += " " + next(words)
    return line


@dataclass
class Counts:
    """Successes, and failures by kind with the first example of each."""

    ok: int = 0
    failed: int = 0
    first_error: str | None = None
    kinds: dict[str, list[Any]] = field(default_factory=dict)  # kind -> [count, example]

    def fail(self, what: str, kind: str | None = None) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = what
        entry = self.kinds.setdefault(kind or what, [0, what])
        entry[0] += 1

    def describe(self) -> list[str]:
        return [f"{n} x {example}" for n, example in
                sorted(self.kinds.values(), key=lambda e: -e[0])]


@dataclass
class SlowReader:
    door: str
    account: str
    client: SoakClient
    observer: SoakClient  # a reading member of the same room, same protocol
    started: float
    base: int  # observer.bytes_in when this one stopped reading
    state: str = "pending"  # pending | dropped | stuck
    overdue_at: float | None = None
    late: bool = False  # dropped, but only after it had been counted stuck
    seconds: float | None = None  # from stopping to read to being dropped
    room_bytes: int | None = None  # what the room carried meanwhile, seen by the observer
    held: int = 0  # the latest estimate of what the server holds for it in memory
    kernel: int = 0  # and of what the kernels hold

    def estimate(self) -> int:
        """What the server process must hold for this reader: what the room carried
        since it stopped reading, less what the two kernels hold (the client's
        TLS layer holds a little more, within the allowance)."""
        self.kernel = self.client.kernel_queued()
        self.held = self.observer.bytes_in - self.base - self.kernel
        return self.held


@dataclass
class Load:
    """Everything the soak runs against one server."""

    settings: Settings
    doors: dict[str, Door]
    tally: Tally
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    chatters: list[SoakClient] = field(default_factory=list)
    rooms_of: dict[str, list[str]] = field(default_factory=dict)
    observers: dict[str, SoakClient] = field(default_factory=dict)  # kind -> busy-room only
    dropped_chatters: list[str] = field(default_factory=list)
    churn: Counts = field(default_factory=Counts)
    slow: list[SlowReader] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    slow_errors: Counts = field(default_factory=Counts)  # a slow reader that could not start
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    replacing: set[int] = field(default_factory=set)
    others: list[SoakClient] = field(default_factory=list)  # loud sender etc.

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def pace(self, rate: float, jitter: bool = True) -> bool:
        """Sleep one period of a *rate*/s process; False once the soak is stopping."""
        period = random.expovariate(rate) if jitter else 1.0 / rate
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), period)
        return not self.stop.is_set()

    # -- steady chatters -------------------------------------------------------------

    async def start_chatters(self) -> None:
        s = self.settings
        names = [(f"n{i}", "native") for i in range(s.native_chatters)]
        names += [(f"i{i}", "irc") for i in range(s.irc_chatters)]
        semaphore = asyncio.Semaphore(16)

        async def one(k: int, name: str, door: str) -> SoakClient:
            async with semaphore:
                client = await connect(self.doors[door], self.tally)
                await login(client, name, PASSWORD)
                rooms = [s.room(k)] + ([s.room(k + 1)] if k % 7 == 0 else [])
                if k % 10 == 0:  # a few chatters in the busy room too
                    rooms.append(s.busy_room)
                rooms = list(dict.fromkeys(rooms))
                for room in rooms:
                    await join(client, room)
                self.rooms_of[name] = rooms
                return client

        # interleave the protocols, so that every room has both
        order = sorted(enumerate(names), key=lambda e: (e[0] % max(1, s.native_chatters), e[0]))
        self.chatters = list(await asyncio.gather(*(one(k, n, d) for k, (n, d) in order)))
        # Members of the busy room and nothing else (no DMs, no other room): what
        # they receive is what each slow reader of their protocol is sent.
        for kind, name in (("native", "obsn"), ("irc", "obsi")):
            observer = await connect(self.doors[kind], self.tally)
            await login(observer, name, PASSWORD)
            await join(observer, s.busy_room)
            self.observers[kind] = observer
            self.others.append(observer)

    def _online_chatter(self) -> SoakClient | None:
        for _ in range(10):
            c = random.choice(self.chatters)
            if not c.closed.done():
                return c
        return None

    async def run_chatters(self) -> None:
        s = self.settings
        rate = s.say_rate + s.dm_rate
        offline = [f"o{i}" for i in range(s.offline_accounts)]
        offline += [f"c{i}" for i in range(s.churn_accounts)]
        while await self.pace(rate):
            self._check_chatters()
            c = self._online_chatter()
            if c is None:
                continue
            if random.random() < s.say_rate / rate:
                room = random.choice(self.rooms_of[c.name])
                self.spawn(c.say(text(c.name), room=room))
            else:
                if random.random() < s.offline_share and offline:
                    to = random.choice(offline)
                else:
                    to = random.choice(self.chatters).name
                if to != c.name:
                    self.spawn(c.say(text(c.name), to=to))

    def _check_chatters(self) -> None:
        """A well-behaved client the server dropped is counted, then reconnected."""
        for i, c in enumerate(self.chatters):
            if c.closed.done() and i not in self.replacing:
                self.replacing.add(i)
                self.dropped_chatters.append(f"{c.name} ({c.door.name}): {c.disconnect_reason}")
                self.spawn(self._replace(i, c))

    async def _replace(self, i: int, old: SoakClient) -> None:
        try:
            client = await connect(old.door, self.tally)
            await login(client, old.name, PASSWORD)  # rooms are the account's: no re-join
        except Exception:  # noqa: BLE001 - tried again at the next check
            self.replacing.discard(i)
            return
        self.chatters[i] = client
        self.replacing.discard(i)

    async def run_loud(self) -> None:
        """One native client that fills the busy room (what slow readers fall behind on)."""
        s = self.settings
        if s.loud_rate <= 0:
            return
        client = await connect(self.doors["native"], self.tally)
        self.others.append(client)
        await login(client, "loud", PASSWORD)
        await join(client, s.busy_room)
        while await self.pace(s.loud_rate, jitter=False):
            self.spawn(client.say(text("loud", s.loud_bytes), room=s.busy_room))

    # -- churn -------------------------------------------------------------------------

    async def run_churn(self) -> None:
        s = self.settings
        free = [f"c{i}" for i in range(s.churn_accounts)]
        random.shuffle(free)
        doors = ["native", "native", "irc", "ircs"]

        async def cycle(account: str) -> None:
            door = random.choice(doors)
            try:
                await asyncio.wait_for(self._churn_once(account, door), 120)
                self.churn.ok += 1
            except Exception as e:  # noqa: BLE001 - counted and shown
                self.churn.fail(f"{door} {account}: {type(e).__name__}: {e}"[:300],
                                f"{door} {type(e).__name__}")
            finally:
                free.append(account)

        while await self.pace(s.churn_rate):
            if free:
                self.spawn(cycle(free.pop(0)))

    async def _churn_once(self, account: str, door_name: str) -> None:
        room = f"#soak{random.randrange(self.settings.rooms)}"
        door = self.doors[door_name]
        if door.kind == "native":
            c = await connect(door, self.tally)
            try:
                reply = await login(c, account, PASSWORD)
                self.tokens[account] = reply["token"]
                await join(c, room)
                await part(c, room)
            finally:
                await quit_(c)
            c = await connect(door, self.tally)  # again, with the session token
            try:
                await login(c, account, self.tokens[account], token=True)
                await join(c, room)
                if random.random() < 0.3:
                    await c.say(text(account), room=room)
                await part(c, room)
                if random.random() < 0.5:  # else the token stays valid, for IRC
                    await c.request("logout")
                    c.logged_out()
                    self.tokens.pop(account, None)
            finally:
                await quit_(c)
            return
        c = await connect(door, self.tally)
        try:
            token = self.tokens.get(account)
            secret = token if token and random.random() < 0.5 else PASSWORD
            await login(c, account, secret)
            await join(c, room)
            await part(c, room)
        finally:
            await quit_(c)

    # -- slow readers ------------------------------------------------------------------

    def stuck(self, door: str) -> int:
        return sum(1 for r in self.slow if r.door == door and r.state == "stuck")

    async def run_slow_readers(self) -> None:
        s = self.settings
        names = itertools.cycle(f"s{i}" for i in range(3 * (s.max_stuck + 4)))
        doors = itertools.cycle(["native", "irc", "ircs"])
        while await self.pace(1.0 / s.slow_every, jitter=False):
            door = next(doors)
            if self.stuck(door) >= s.max_stuck:
                continue
            busy = {r.account for r in self.slow if r.state != "dropped"}
            account = next(n for n in names if n not in busy)
            self.spawn(self._slow_reader(door, account))

    async def _slow_reader(self, door_name: str, account: str) -> None:
        s = self.settings
        door = self.doors[door_name]
        observer = self.observers.get(door.kind)
        if observer is None:
            return
        try:
            client = await connect(door, self.tally, rcvbuf=s.slow_rcvbuf)
        except Exception as e:  # noqa: BLE001 - counted and shown
            self.slow_errors.fail(f"{door_name} {account}: {type(e).__name__}: {e}"[:300])
            return
        # Closed by close_all even when the run ends while it logs in or joins.
        self.others.append(client)
        try:
            await login(client, account, PASSWORD)
            await join(client, s.busy_room)
        except Exception as e:  # noqa: BLE001 - counted and shown
            self.slow_errors.fail(f"{door_name} {account}: {type(e).__name__}: {e}"[:300])
            client.close()
            return
        assert client.transport is not None
        client.transport.pause_reading()
        reader = SlowReader(door_name, account, client, observer, time.monotonic(),
                            observer.bytes_in)
        self.slow.append(reader)
        # What the server may hold before it must have given up: its backlog
        # bound plus Twisted's own buffer and what the client's TLS layer reads
        # ahead (asyncio: up to 256 KiB), generously.
        allowance = 1.5 * s.max_backlog + 512 * 1024
        keepalive = itertools.count()
        while reader.state != "dropped":
            await asyncio.sleep(1.0)
            if client.tcp_state() != "established":
                reader.late = reader.state == "stuck"
                reader.state = "dropped"
                reader.seconds = time.monotonic() - reader.started
                reader.room_bytes = observer.bytes_in - reader.base
                client.logged_out()
                client.close()
                return
            if self.stop.is_set():
                return
            if next(keepalive) % 30 == 29:  # still talking, so no keepalive drops it
                client.write(b'{"op":"ping"}\n' if door.kind == "native" else b"PING :soak\r\n")
            if reader.estimate() <= allowance:
                reader.overdue_at = None
            elif reader.overdue_at is None:
                reader.overdue_at = time.monotonic()
            elif time.monotonic() - reader.overdue_at > 15:
                reader.state = "stuck"

    # -- the end -------------------------------------------------------------------------

    async def close_all(self) -> None:
        """Stop every actor and close every connection (the drain check follows)."""
        self.stop.set()
        await asyncio.sleep(1.5)  # let the slow-reader loops notice
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for c in [*self.chatters, *self.others, *(r.client for r in self.slow)]:
            c.close()
            if c.transport is not None:
                c.transport.abort()
        await asyncio.sleep(0.5)
