"""The load generator: many chat clients in one asyncio process.

It speaks the native PingChat protocol (JSON lines over TLS) and plain IRC,
so the same scenario runs against pingchat and against ``twistd words``. It is
started by ``bench/run.py`` (pinned to its own core) as::

    python -m bench.loadgen '<json spec>'

and prints one JSON object with the measurements of every repetition.

Clients have two modes. While a scenario sets up (register, log in, join),
each line is parsed and requests wait for their replies. While it measures,
a client only *counts* message lines (``bytes.count`` on whole lines), and a
few *observer* clients also pull the send time stamp out of each message to
give latencies: parsing 100,000 JSON lines a second in Python would make the
generator, not the server, the bottleneck. The generator reports its own CPU
use; when it was busy more than ``SATURATED`` of the time, results are marked
as lower bounds of what the server can do.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import resource
import ssl
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOM = "#bench"
SATURATED = 0.85  # generator busy fraction above which results are lower bounds
PAD = "x" * 40  # message body after the time stamp: a short chat line
CLK_TCK = os.sysconf("SC_CLK_TCK")

_NATIVE_STAMP = re.compile(rb'"text":"L(\d+) ')
_IRC_STAMP = re.compile(rb" :L(\d+) ")


# -- what the server process is doing -----------------------------------------------


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_rss(pid: int) -> int:
    """Resident memory of the process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


class Phase:
    """Wall time, server CPU and generator CPU over one measured phase."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.t0 = time.perf_counter()
        self.wall0 = time.time()
        self.server0 = server_cpu(server_pid)
        self.own0 = own_cpu()

    def end(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        own = own_cpu() - self.own0
        return {
            "seconds": wall,
            "server_cpu_s": server_cpu(self.pid) - self.server0,
            "generator_cpu_s": own,
            "generator_busy": own / wall if wall > 0 else 0.0,
            "lower_bound": own / wall > SATURATED if wall > 0 else False,
            "wall_start": self.wall0,
            "wall_end": time.time(),
        }


# -- one connection -------------------------------------------------------------------


class Client(asyncio.Protocol):
    """One chat connection, native or IRC."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.transport: asyncio.Transport | None = None
        self.rest = b""
        self.counting = False
        self.mark = b'"event":"message"' if kind == "native" else b" PRIVMSG "
        self.stamp = _NATIVE_STAMP if kind == "native" else _IRC_STAMP
        self.received = 0
        self.errors = 0
        self.samples: list[int] | None = None  # latencies (ns), observers only
        self.on_count: Callable[[int], None] | None = None
        self.progress: asyncio.Future[None] | None = None  # woken when `received` grows
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.line_waiters: list[tuple[Callable[[bytes], bool], asyncio.Future[bytes]]] = []
        self.ids = itertools.count(1)
        self.name = ""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        error = ConnectionError(f"connection closed: {exc}")
        for fut in self.replies.values():
            if not fut.done():
                fut.set_exception(error)
        for _, fut in self.line_waiters:
            if not fut.done():
                fut.set_exception(error)

    def data_received(self, data: bytes) -> None:
        buf = self.rest + data
        cut = buf.rfind(b"\n") + 1
        self.rest = buf[cut:]
        if not cut:
            return
        chunk = buf[:cut]
        if self.counting:
            self._count(chunk)
        else:
            for line in chunk.split(b"\n")[:-1]:
                self._line(line.rstrip(b"\r"))

    def _count(self, chunk: bytes) -> None:
        n = chunk.count(self.mark)
        if self.samples is not None and n:
            now = time.perf_counter_ns()
            self.samples.extend(now - int(t) for t in self.stamp.findall(chunk))
        if self.kind == "native":
            if b'"ok":false' in chunk:
                self.errors += chunk.count(b'"ok":false')
        elif b"PING" in chunk:
            for line in chunk.split(b"\n"):
                if line.startswith(b"PING"):
                    self.write(b"PONG" + line[4:].rstrip(b"\r") + b"\r\n")
        if n:
            self.received += n
            if self.on_count is not None:
                self.on_count(n)
            if self.progress is not None and not self.progress.done():
                self.progress.set_result(None)

    def _line(self, line: bytes) -> None:
        if self.kind == "native":
            msg = json.loads(line)
            fut = self.replies.pop(msg.get("id"), None) if "id" in msg else None
            if fut is not None and not fut.done():
                fut.set_result(msg)
            elif msg.get("event") == "hello" and not self.hello.done():
                self.hello.set_result(None)
            return
        if line.startswith(b"PING"):
            self.write(b"PONG" + line[4:] + b"\r\n")
        self._match(line)

    def _match(self, line: bytes) -> None:
        for item in list(self.line_waiters):
            predicate, fut = item
            if predicate(line):
                self.line_waiters.remove(item)
                if not fut.done():
                    fut.set_result(line)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def wait_line(self, predicate: Callable[[bytes], bool]) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.line_waiters.append((predicate, fut))
        return fut

    # native requests
    def send_request(self, op: str, **args: Any) -> asyncio.Future[dict[str, Any]]:
        rid = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[rid] = fut
        self.write(json.dumps({"id": rid, "op": op, **args}).encode() + b"\n")
        return fut

    async def request(self, op: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
        reply = await asyncio.wait_for(self.send_request(op, **args), timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"{op} failed: {reply.get('error')}")
        return reply

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # the lines a scenario sends while measuring
    def room_line(self, text: str) -> bytes:
        if self.kind == "native":
            return b'{"op":"say","room":"%s","text":"%s"}\n' % (ROOM.encode(), text.encode())
        return b"PRIVMSG %s :%s\r\n" % (ROOM.encode(), text.encode())

    def dm_line(self, to: str, text: str) -> bytes:
        if self.kind == "native":
            return b'{"op":"dm","to":"%s","text":"%s"}\n' % (to.encode(), text.encode())
        return b"PRIVMSG %s :%s\r\n" % (to.encode(), text.encode())


def stamped() -> str:
    return f"L{time.perf_counter_ns()} {PAD}"


# -- the server under test ------------------------------------------------------------


class Target:
    """How to reach one server and log in to it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.kind: str = spec["kind"]  # native | irc
        self.server: str = spec["server"]  # pingchat | words
        self.host = "127.0.0.1"
        self.port: int = spec["port"]
        self.chat_port: int | None = spec.get("chat_port")  # pingchat's native door
        self.pid: int = spec["pid"]
        self.password: str = spec["password"]
        self.lag_file: str | None = spec.get("lag_file")
        self.ssl = ssl.create_default_context()
        self.ssl.check_hostname = False
        self.ssl.verify_mode = ssl.CERT_NONE  # loopback, self-signed test certificate

    @property
    def registers(self) -> bool:
        return self.server == "pingchat"

    async def connect(self, kind: str | None = None, timeout: float = 60.0) -> Client:
        kind = kind or self.kind
        loop = asyncio.get_running_loop()
        port = self.port if kind == self.kind else self.chat_port
        assert port is not None
        if kind == "native":
            _, client = await asyncio.wait_for(loop.create_connection(
                lambda: Client(kind), self.host, port, ssl=self.ssl, server_hostname="localhost",
            ), timeout)
            await asyncio.wait_for(client.hello, timeout)
        else:
            _, client = await asyncio.wait_for(
                loop.create_connection(lambda: Client(kind), self.host, port), timeout
            )
        return client

    async def register(self, names: list[str], concurrency: int = 32) -> float:
        """Register accounts over the native door; returns registrations per second."""
        if not self.registers:
            return 0.0
        queue = list(reversed(names))

        async def worker() -> None:
            client = await self.connect("native")
            try:
                while queue:
                    name = queue.pop()
                    await client.request("register", user=name, password=self.password)
            finally:
                client.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(names)))))
        return len(names) / (time.perf_counter() - t0)

    async def login(self, name: str, timeout: float = 120.0) -> Client:
        """A connected, authenticated client for account *name*."""
        client = await self.connect(timeout=timeout)
        client.name = name
        await self.authenticate(client, name, timeout)
        return client

    async def authenticate(self, client: Client, name: str, timeout: float = 120.0) -> None:
        if self.kind == "native":
            await client.request("login", timeout, user=name, password=self.password)
            return
        welcome = client.wait_line(lambda line: b" 001 " in line)
        password = f"{name}:{self.password}" if self.server == "pingchat" else self.password
        client.write(
            f"PASS {password}\r\nNICK {name}\r\nUSER {name} 0 * :{name}\r\n".encode()
        )
        await asyncio.wait_for(welcome, timeout)

    async def join(self, client: Client, room: str = ROOM) -> None:
        if self.kind == "native":
            await client.request("join", room=room)
            return
        done = client.wait_line(lambda line: b" 366 " in line)
        client.write(f"JOIN {room}\r\n".encode())
        await asyncio.wait_for(done, 60)

    async def barrier(self, client: Client) -> None:
        """Return once the server has answered everything sent to *client* so far."""
        if self.kind == "native":
            await client.request("ping")
            return
        done = client.wait_line(lambda line: b"PONG" in line)
        client.write(b"PING :barrier\r\n")
        await asyncio.wait_for(done, 60)

    def max_stall_ms(self, start: float, end: float) -> float | None:
        """The largest reactor stall the server's lag probe saw in [start, end]."""
        if not self.lag_file or not os.path.exists(self.lag_file):
            return None
        stalls = []
        for line in Path(self.lag_file).read_text().splitlines():
            rec = json.loads(line)
            # each record covers the second before its time stamp
            if start <= rec["t"] <= end + 1.0:
                stalls.append(rec["max_stall_ms"])
        return max(stalls) if stalls else None


async def bounded(coros: list[Coroutine[Any, Any, Any]], limit: int) -> list[Any]:
    """Run coroutines with at most *limit* at a time; results in order."""
    semaphore = asyncio.Semaphore(limit)

    async def one(coro: Coroutine[Any, Any, Any]) -> Any:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


def names(count: int, prefix: str = "b") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


async def logged_in(target: Target, count: int, prefix: str = "b",
                    concurrency: int = 64) -> tuple[list[Client], float]:
    """Register (pingchat) and log in *count* accounts; returns clients, reg/s."""
    accounts = names(count, prefix)
    rate = await target.register(accounts)
    clients = await bounded([target.login(n) for n in accounts], concurrency)
    return clients, rate


async def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def latency_ms(samples: list[int]) -> dict[str, float | None]:
    ms = [s / 1e6 for s in samples]
    return {
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
        "samples": len(ms),
    }


# -- scenarios ------------------------------------------------------------------------


async def room_clients(target: Target, p: dict[str, Any]) -> list[Client]:
    clients, _ = await logged_in(target, p["clients"])
    for c in clients:
        await target.join(c)
    await asyncio.gather(*(target.barrier(c) for c in clients))
    return clients


def start_counting(clients: list[Client], observers: int) -> None:
    for i, c in enumerate(clients):
        c.counting = True
        c.received = 0
        c.errors = 0
        c.samples = [] if i >= len(clients) - observers else None


def delivery_result(
    phase: Phase, clients: list[Client], expected: list[int], done: bool
) -> dict[str, Any]:
    """What every delivery scenario reports once its messages are in (or timed out)."""
    result = phase.end()
    delivered = sum(c.received for c in clients)
    samples = [s for c in clients if c.samples for s in c.samples]
    result.update(
        deliveries=delivered,
        lost=sum(max(0, e - c.received) for c, e in zip(clients, expected, strict=True)),
        errors=sum(c.errors for c in clients),
        complete=done,
        deliveries_per_s=delivered / result["seconds"],
        server_us_per_delivery=result["server_cpu_s"] * 1e6 / max(1, delivered),
        **latency_ms(samples),
    )
    return result


async def all_received(clients: list[Client], expected: list[int], timeout: float) -> bool:
    return await wait_for(
        lambda: all(c.received >= e for c, e in zip(clients, expected, strict=True)), timeout
    )


class Window:
    """At most *size* messages sent but not yet seen by the *tail* client."""

    def __init__(self, tail: Client, size: int) -> None:
        self.tail = tail
        self.size = size
        self.sent = 0
        self.waiting: list[asyncio.Future[None]] = []
        tail.on_count = self.progress

    def progress(self, n: int) -> None:
        while self.waiting and self.sent - self.tail.received < self.size:
            fut = self.waiting.pop()
            if not fut.done():
                fut.set_result(None)

    async def acquire(self) -> None:
        while self.sent - self.tail.received >= self.size:
            fut = asyncio.get_running_loop().create_future()
            self.waiting.append(fut)
            await asyncio.wait_for(fut, 30)
        self.sent += 1

    def close(self) -> None:
        self.tail.on_count = None


async def fanout_once(
    target: Target, clients: list[Client], senders: list[Client], p: dict[str, Any]
) -> dict[str, Any]:
    start_counting(clients, p["observers"])
    # The tail joined last, so it is the last to get each message.
    window = Window(clients[-1], p["window"] * len(senders))
    per_sender = p["messages"]
    phase = Phase(target.pid)

    async def send(c: Client) -> None:
        for _ in range(per_sender):
            await window.acquire()
            c.write(c.room_line(stamped()))

    await asyncio.gather(*(send(c) for c in senders))
    total = per_sender * len(senders)
    expected = [total - (per_sender if c in senders else 0) for c in clients]
    done = await all_received(clients, expected, 60)
    window.close()
    result = delivery_result(phase, clients, expected, done)
    result.update(messages=total, messages_per_s=total / result["seconds"])
    return result


async def scenario_fanout(target: Target, p: dict[str, Any]) -> dict[str, Any]:
    """Senders pipeline room messages (a bounded window) to every member."""
    clients = await room_clients(target, p)
    senders = clients[: p["senders"]]
    runs = [await fanout_once(target, clients, senders, p) for _ in range(p["repeats"])]
    for c in clients:
        c.close()
    return {"runs": runs}


async def paced_once(
    target: Target, clients: list[Client], senders: list[Client], p: dict[str, Any]
) -> dict[str, Any]:
    start_counting(clients, p["observers"])
    rate, count = p["rate"], int(p["rate"] * p["duration"])
    phase = Phase(target.pid)

    async def send(c: Client, offset: float) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + offset
        for i in range(count):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            c.write(c.room_line(stamped()))

    await asyncio.gather(*(send(c, i / (rate * len(senders))) for i, c in enumerate(senders)))
    total = count * len(senders)
    expected = [total - (count if c in senders else 0) for c in clients]
    done = await all_received(clients, expected, 60)
    result = delivery_result(phase, clients, expected, done)
    result.update(
        messages=total,
        offered_deliveries_per_s=rate * len(senders) * (len(clients) - 1),
    )
    return result


async def scenario_paced(target: Target, p: dict[str, Any]) -> dict[str, Any]:
    """Senders at a fixed rate each; latency at a steady, known load."""
    clients = await room_clients(target, p)
    senders = clients[: p["senders"]]
    runs = [await paced_once(target, clients, senders, p) for _ in range(p["repeats"])]
    for c in clients:
        c.close()
    return {"runs": runs}


async def dm_once(target: Target, clients: list[Client], p: dict[str, Any]) -> dict[str, Any]:
    start_counting(clients, len(clients))
    per_client, window = p["messages"], p["window"]
    phase = Phase(target.pid)

    loop = asyncio.get_running_loop()

    async def send(c: Client, other: Client) -> None:
        for i in range(per_client):
            while i - other.received >= window:
                # woken by the partner's next delivery, not by polling: 200 polling
                # coroutines made the generator the bottleneck of this case
                other.progress = loop.create_future()
                await other.progress
            c.write(c.dm_line(other.name, stamped()))

    await asyncio.gather(*(send(c, clients[i ^ 1]) for i, c in enumerate(clients)))
    expected = [per_client] * len(clients)
    done = await all_received(clients, expected, 60)
    result = delivery_result(phase, clients, expected, done)
    result.update(
        messages=per_client * len(clients),
        messages_per_s=result["deliveries"] / result["seconds"],
    )
    return result


async def scenario_dm(target: Target, p: dict[str, Any]) -> dict[str, Any]:
    """Clients in pairs, each pipelining direct messages to its partner."""
    clients, _ = await logged_in(target, p["clients"])
    runs = [await dm_once(target, clients, p) for _ in range(p["repeats"])]
    for c in clients:
        c.close()
    return {"runs": runs}


async def scenario_connect(target: Target, p: dict[str, Any]) -> dict[str, Any]:
    """Many authenticated, idle connections: how fast they come, what each costs."""
    count = p["connections"]
    accounts = names(count, "c")
    registrations = await target.register(accounts, p["register_concurrency"])
    await asyncio.sleep(1.0)
    rss0 = server_rss(target.pid)
    phase = Phase(target.pid)
    clients = await bounded([target.login(n) for n in accounts], p["concurrency"])
    result = phase.end()
    await asyncio.sleep(1.0)
    rss1 = server_rss(target.pid)
    alive = sum(1 for c in clients if not c.closed.done())
    result.update(
        connections=count,
        held=alive,
        registrations_per_s=registrations if target.registers else None,
        logins_per_s=count / result["seconds"],
        rss_before_mib=rss0 / 2**20,
        rss_after_mib=rss1 / 2**20,
        rss_per_connection_kib=(rss1 - rss0) / count / 1024,
        max_stall_ms=target.max_stall_ms(result["wall_start"], result["wall_end"]),
    )
    for c in clients:
        c.close()
    return {"runs": [result]}


async def scenario_storm(target: Target, p: dict[str, Any]) -> dict[str, Any]:
    """Password logins and token resumes, all sent at once on open connections."""
    logins, resumes = p["logins"], p["resumes"]
    # IRC has no tokens, and twistd words allows one session per account: there
    # the resumes become password logins of as many more accounts.
    accounts = names(logins if target.kind == "native" else logins + resumes, "s")
    await target.register(accounts)
    tokens: list[tuple[str, str]] = []
    if target.kind == "native":
        # Each account logs in resumes/logins times to hold that many tokens;
        # each login on its own connection, closed without logging out.
        per = -(-resumes // logins)
        async def collect_keep(name: str) -> None:
            for _ in range(per):
                client = await target.connect()
                try:
                    reply = await client.request("login", user=name, password=target.password)
                    tokens.append((name, reply["token"]))
                finally:
                    client.close()

        await bounded([collect_keep(n) for n in accounts], 32)
        tokens = tokens[:resumes]
    else:
        tokens = [(name, "") for name in accounts[logins:]]
    total = logins + len(tokens)
    connect_phase = Phase(target.pid)
    clients = await bounded([target.connect() for _ in range(total)], p["concurrency"])
    connected = connect_phase.end()
    await asyncio.sleep(1.5)
    for c in clients:
        c.counting = False
    loop = asyncio.get_running_loop()
    finished: dict[str, list[float]] = {"login": [], "resume": []}
    failures: dict[str, int] = {"login": 0, "resume": 0}

    async def one(c: Client, what: str, name: str, token: str, t0: float) -> None:
        try:
            if what == "resume":
                reply = await asyncio.wait_for(c.send_request("resume", token=token), 120)
            elif target.kind == "native":
                reply = await asyncio.wait_for(
                    c.send_request("login", user=name, password=target.password), 120
                )
            else:
                await target.authenticate(c, name, 120)
                reply = {"ok": True}
        except (ConnectionError, TimeoutError):
            reply = {"ok": False}
        if reply.get("ok"):
            finished[what].append(loop.time() - t0)
        else:
            failures[what] += 1

    phase = Phase(target.pid)
    t0 = loop.time()
    jobs = []
    for i, c in enumerate(clients):
        if i < logins:
            jobs.append(one(c, "login", accounts[i], "", t0))
        else:
            name, token = tokens[i - logins]
            kind = "resume" if target.kind == "native" else "login"
            jobs.append(one(c, kind, name, token, t0))
    await asyncio.gather(*jobs)
    result = phase.end()
    await asyncio.sleep(1.5)  # let the lag probe write its last period
    result.update(
        logins=logins,
        resumes=len(tokens) if target.kind == "native" else 0,
        login_failures=failures["login"],
        resume_failures=failures["resume"],
        completed=len(finished["login"]) + len(finished["resume"]),
        completion_rate=(len(finished["login"]) + len(finished["resume"])) / total,
        logins_per_s=len(finished["login"]) / max(finished["login"] or [1e-9]),
        resumes_per_s=(len(finished["resume"]) / max(finished["resume"])
                       if finished["resume"] else None),
        all_done_s=max(finished["login"] + finished["resume"] or [0.0]),
        max_stall_ms=target.max_stall_ms(result["wall_start"], result["wall_end"]),
        connect_s=connected["seconds"],
        connect_max_stall_ms=target.max_stall_ms(
            connected["wall_start"], connected["wall_end"]
        ),
    )
    for c in clients:
        c.close()
    return {"runs": [result]}


async def scenario_history(target: Target, p: dict[str, Any]) -> dict[str, Any]:
    """The latest page of a room with a long history, asked for again and again."""
    if target.kind != "native":
        return {"runs": [], "skipped": "history is measured over the native protocol"}
    (client,), _ = await logged_in(target, 1, "h")
    await client.request("join", room=p["room"])
    runs = []
    for _ in range(p["repeats"]):
        phase = Phase(target.pid)
        samples = []
        for _ in range(p["requests"]):
            t = time.perf_counter_ns()
            reply = await client.request("history", room=p["room"], limit=p["limit"])
            samples.append(time.perf_counter_ns() - t)
            if len(reply["messages"]) != p["limit"]:
                raise RuntimeError(f"history returned {len(reply['messages'])} messages")
        result = phase.end()
        result.update(requests=p["requests"], **latency_ms(samples))
        runs.append(result)
    client.close()
    return {"runs": runs}


SCENARIOS = {
    "fanout": scenario_fanout,
    "paced": scenario_paced,
    "dm": scenario_dm,
    "connect": scenario_connect,
    "storm": scenario_storm,
    "history": scenario_history,
}


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    target = Target(spec["target"])
    result = await SCENARIOS[spec["scenario"]](target, spec["params"])
    result["loop"] = type(asyncio.get_running_loop()).__module__
    return result


def run(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main(spec))
    return uvloop.run(main(spec))


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(run(spec)))
