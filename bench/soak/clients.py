"""The soak's connections: native and IRC clients that keep the server's word.

Built on the load generator's ``Client`` (``bench/loadgen.py``: line framing,
PING/PONG, native request futures, IRC line waiters). On top of it each
connection here

* parses every native line strictly (``NaN``/``Infinity`` are not JSON: such a
  line is recorded as malformed, not accepted as Python's ``json`` would);
* records every crash-looking line (``internal_error``, ``INTERNAL_ERROR``);
* counts the bytes it received (the slow readers' yardstick) and the room
  messages and DMs delivered to it;
* keeps the account it is logged in as in ``Tally.live``, so the soak knows
  how many accounts *should* be online when it asks the server.

``say``/``dm`` (native, acknowledged by the reply's ``msg_id``) and
``PRIVMSG`` (IRC, acknowledged by the ``echo-message`` copy's ``msgid`` tag,
matched by its unique text) record what the server acknowledged in
``Tally.acked``; at the end every one of them must be in the store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import Client

TCP_STATES = {1: "established", 7: "closed", 8: "close-wait"}
CRASH_MARKS = (b'"internal_error"', b"INTERNAL_ERROR")


_queues: tuple[float, dict[tuple[int, int], tuple[int, int]]] = (0.0, {})


def tcp_queues() -> dict[tuple[int, int], tuple[int, int]]:
    """(local port, remote port) -> (send queue, receive queue) of every IPv4 TCP socket.

    From ``/proc/net/tcp`` (this machine's, so both ends of a loopback
    connection are there); read at most twice a second.
    """
    global _queues
    now = time.monotonic()
    if now - _queues[0] > 0.5:
        table = {}
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote = fields[1], fields[2]
                tx, rx = fields[4].split(":")
                table[(int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))] = (
                    int(tx, 16), int(rx, 16))
        _queues = (now, table)
    return _queues[1]


def strict_json(line: bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and numbers that overflow."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def number(text: str) -> float:
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise ValueError(f"{text} overflows")
        return value

    return json.loads(line, parse_constant=refuse, parse_float=number)


@dataclass
class Tally:
    """What every connection of the soak adds up to."""

    acked: list[tuple[int, str]] = field(default_factory=list)  # (msg_id, text)
    sent: int = 0
    unacked: int = 0  # refused, timed out or connection lost before the ack
    refusals: collections.Counter[str] = field(default_factory=collections.Counter)
    crashes: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # server lines that are not JSON
    live: collections.Counter[str] = field(default_factory=collections.Counter)
    delivered: int = 0  # message events / PRIVMSGs received
    offline_delivered: int = 0

    def ack(self, msg_id: int, text: str) -> None:
        self.acked.append((msg_id, text))

    def online_accounts(self) -> int:
        return sum(1 for n in self.live.values() if n > 0)


@dataclass
class Door:
    """One of the server's listeners."""

    name: str  # native | irc | ircs
    port: int
    tls: bool

    @property
    def kind(self) -> str:
        return "native" if self.name == "native" else "irc"


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # loopback, the server's self-signed certificate
    return ctx


TLS = client_tls()


class SoakClient(Client):
    """One connection of the soak (see the module docstring)."""

    def __init__(self, door: Door, tally: Tally, raw: bool = False) -> None:
        super().__init__(door.kind)
        self.door = door
        self.tally = tally
        self.raw = raw  # probes: every line goes to ``lines``, nothing is dispatched
        self.lines: asyncio.Queue[bytes] = asyncio.Queue()
        self.account: str | None = None  # counted in tally.live while set
        self.bytes_in = 0
        self.sock: socket.socket | None = None
        self.echoes: dict[str, asyncio.Future[str | None]] = {}  # IRC text -> msgid
        self.disconnect_reason: str | None = None

    # -- bookkeeping -----------------------------------------------------------------

    def logged_in(self, account: str) -> None:
        if self.account is None:
            self.account = account
            self.tally.live[account] += 1

    def logged_out(self) -> None:
        if self.account is not None:
            self.tally.live[self.account] -= 1
            self.account = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.logged_out()
        for fut in self.echoes.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"connection closed: {exc}"))
        self.lines.put_nowait(b"")  # end of stream, for probes
        super().connection_lost(exc)

    def kernel_queued(self) -> int:
        """Bytes for this client that both kernels hold: the server's send queue
        plus this socket's receive queue."""
        if self.sock is None or self.sock.fileno() < 0:
            return 0
        port = self.sock.getsockname()[1]
        table = tcp_queues()
        return table.get((self.door.port, port), (0, 0))[0] + table.get((port, self.door.port),
                                                                        (0, 0))[1]

    def tcp_state(self) -> str:
        """The kernel's view of the connection, read without reading any data."""
        if self.sock is None or self.sock.fileno() < 0:
            return "closed"
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return TCP_STATES.get(info[0], str(info[0]))

    # -- input -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        super().data_received(data)

    def _line(self, line: bytes) -> None:
        if any(mark in line for mark in CRASH_MARKS):
            self.tally.crashes.append(f"{self.door.name}: {line[:300]!r}")
        if self.raw:
            self.lines.put_nowait(line)
            if self.kind == "irc" and line.startswith(b"PING"):
                self.write(b"PONG" + line[4:] + b"\r\n")
            return
        if self.kind == "native":
            self._native(line)
        else:
            self._irc(line)

    def _native(self, line: bytes) -> None:
        try:
            msg = strict_json(line)
        except ValueError:
            self.tally.malformed.append(f"native: {line[:300]!r}")
            return
        if "id" in msg and "event" not in msg:
            fut = self.replies.pop(msg["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            return
        event = msg.get("event")
        if event == "message":
            self.tally.delivered += 1
            self.tally.offline_delivered += bool(msg.get("offline"))
        elif event == "hello" and not self.hello.done():
            self.hello.set_result(None)
        elif event == "disconnect":
            self.disconnect_reason = str(msg.get("reason"))

    def _irc(self, line: bytes) -> None:
        if line.startswith(b"PING"):
            self.write(b"PONG" + line[4:] + b"\r\n")
        elif line.startswith(b"ERROR"):
            self.disconnect_reason = line.decode(errors="replace")
        elif b" PRIVMSG " in line:
            tags, prefix, text = split_privmsg(line)
            if prefix.split("!", 1)[0] == self.name and text in self.echoes:
                fut = self.echoes.pop(text)
                if not fut.done():
                    fut.set_result(tags.get("msgid"))
            else:
                self.tally.delivered += 1
        self._match(line)

    # -- saying things -----------------------------------------------------------------

    async def say(self, text: str, room: str | None = None, to: str | None = None,
                  timeout: float = 60.0) -> int | None:
        """Send a room message or a DM; the acknowledged ``msg_id`` (recorded), or None."""
        self.tally.sent += 1
        try:
            if self.kind == "native":
                op, args = ("say", {"room": room}) if room else ("dm", {"to": to})
                reply = await asyncio.wait_for(self.send_request(op, text=text, **args), timeout)
                if not reply.get("ok"):
                    self.tally.refusals[str(reply.get("error", {}).get("code"))] += 1
                    self.tally.unacked += 1
                    return None
                msg_id = int(reply["msg_id"])
            else:
                fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
                self.echoes[text] = fut
                self.write(f"PRIVMSG {room or to} :{text}\r\n".encode())
                tag = await asyncio.wait_for(fut, timeout)
                if tag is None or not tag.isdigit():
                    self.tally.refusals["echo without msgid"] += 1
                    self.tally.unacked += 1
                    return None
                msg_id = int(tag)
        except (ConnectionError, TimeoutError) as e:
            self.echoes.pop(text, None)
            self.tally.refusals[type(e).__name__] += 1
            self.tally.unacked += 1
            return None
        self.tally.ack(msg_id, text)
        return msg_id

    async def next_line(self, timeout: float = 15.0) -> bytes:
        """A probe's next raw line; ``b""`` once the connection has closed."""
        return await asyncio.wait_for(self.lines.get(), timeout)


def split_privmsg(line: bytes) -> tuple[dict[str, str], str, str]:
    """(tags, prefix, text) of an IRC ``PRIVMSG`` line."""
    text = line.decode("utf-8", errors="replace")
    tags: dict[str, str] = {}
    if text.startswith("@"):
        raw, _, text = text[1:].partition(" ")
        for item in raw.split(";"):
            key, _, value = item.partition("=")
            tags[key] = value
    prefix = ""
    if text.startswith(":"):
        prefix, _, text = text[1:].partition(" ")
    _command, _, rest = text.partition(" ")
    _target, _, body = rest.partition(" ")
    return tags, prefix, body[1:] if body.startswith(":") else body


async def connect(
    door: Door,
    tally: Tally,
    *,
    source: str | None = None,
    rcvbuf: int | None = None,
    raw: bool = False,
    timeout: float = 30.0,
) -> SoakClient:
    """Open a connection to *door*, from *source* (a loopback address) if given.

    *rcvbuf* sets ``SO_RCVBUF`` before connecting (the slow readers' tiny
    window). A native connection is returned once the server's hello is in.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            sock.bind((source, 0))
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", door.port)), timeout)
        _, client = await asyncio.wait_for(loop.create_connection(
            lambda: SoakClient(door, tally, raw), sock=sock,
            ssl=TLS if door.tls else None, server_hostname="localhost" if door.tls else None,
        ), timeout)
    except BaseException:
        sock.close()
        raise
    client.sock = sock
    if door.kind == "native" and not raw:
        await asyncio.wait_for(client.hello, timeout)
    return client


async def login(client: SoakClient, account: str, secret: str, timeout: float = 60.0,
                token: bool = False) -> dict[str, Any]:
    """Log *client* in (native: ``login``, or ``resume`` with *token*; IRC: PASS)."""
    client.name = account
    if client.kind == "native":
        if token:
            reply = await client.request("resume", timeout, token=secret)
        else:
            reply = await client.request("login", timeout, user=account, password=secret)
        client.logged_in(account)
        return reply
    welcome = client.wait_line(lambda line: b" 001 " in line or line.startswith(b"ERROR"))
    client.write(
        b"CAP REQ :echo-message message-tags\r\n"
        + f"PASS {account}:{secret}\r\nNICK {account}\r\nUSER {account} 0 * :soak\r\n".encode()
        + b"CAP END\r\n"
    )
    line = await asyncio.wait_for(welcome, timeout)
    if b" 001 " not in line:
        raise RuntimeError(f"IRC login of {account} refused: {line[:200]!r}")
    client.logged_in(account)
    return {}


async def join(client: SoakClient, room: str, timeout: float = 60.0) -> None:
    if client.kind == "native":
        await client.request("join", timeout, room=room)
        return
    # An account is joined to its rooms when it connects (membership belongs
    # to the account), and a JOIN of a room one is in gets no answer: ask for
    # the NAMES too, whose end (366) comes either way.
    done = client.wait_line(lambda line: b" 366 " in line and room.encode() in line)
    client.write(f"JOIN {room}\r\nNAMES {room}\r\n".encode())
    await asyncio.wait_for(done, timeout)


async def part(client: SoakClient, room: str, timeout: float = 60.0) -> None:
    if client.kind == "native":
        await client.request("part", timeout, room=room)
        return
    done = client.wait_line(lambda line: b" PART " in line and room.encode() in line)
    client.write(f"PART {room}\r\n".encode())
    await asyncio.wait_for(done, timeout)


class NotClosed(Exception):
    """The server said it closes the connection, and did not."""


async def quit_(client: SoakClient, timeout: float = 10.0) -> None:
    """Leave politely and wait for the close.

    On IRC: ``QUIT``, then the server's ``ERROR`` and its close (which must
    come within *timeout*: a server that answers ``ERROR`` and keeps the
    connection open raises ``NotClosed``); native: the client closes.
    """
    if client.kind == "irc":
        error = client.wait_line(lambda line: line.startswith(b"ERROR"))
        client.write(b"QUIT :soak churn\r\n")
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(error, timeout)
        client.logged_out()  # the server ended the session
        try:
            await asyncio.wait_for(asyncio.shield(client.closed), timeout)
        except TimeoutError:
            raise NotClosed(f"{client.door.name}: ERROR after QUIT, but the connection was "
                            f"still open {timeout:g}s later") from None
        finally:
            client.close()
        return
    client.close()
    try:
        await asyncio.wait_for(asyncio.shield(client.closed), timeout)
    finally:
        client.close()
