"""Fan-out CPU per delivery: the web door (ws://, wss://) against the native TLS door.

A quick measurement, not yet part of ``bench/run.py``: one ``twistd
pingchat`` (pinned to core 0) with the native TLS door and the web door on
HTTP and HTTPS; this process (pinned to core 1) connects N receivers of one
kind to a room, and one native TLS sender says M messages into it, at most
WINDOW unanswered. The server's CPU time over the sending phase divided by
M x N is the cost of one delivery. The kinds take turns, R rounds::

    .venv/bin/python -m bench.web_fanout [N] [M] [R]

Receivers only count ``"event":"message"`` in what arrives (the JSON is
readable inside unmasked server frames), so the generator stays cheap.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import server_cpu
from bench.servers import PINGCHAT_LIMITS, free_port

PATTERN = b'"event":"message"'
PASSWORD = "bench password"
WINDOW = 20
VENV_BIN = Path(sys.executable).parent


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def ws_frame(text: str) -> bytes:
    """A masked client text frame (the mask is zero: the payload goes as is)."""
    payload = text.encode()
    n = len(payload)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


class Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self.count = 0
        self.tail = b""
        self.buffer = b""
        self.counting = False
        self.waiter: asyncio.Future[None] | None = None
        self.marker = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.counting:
            joined = self.tail + data
            self.count += joined.count(PATTERN) - self.tail.count(PATTERN)
            self.tail = joined[-(len(PATTERN) - 1) :]
            return
        self.buffer += data
        if self.waiter is not None and self.marker in self.buffer:
            self.waiter.set_result(None)
            self.waiter = None

    async def until(self, marker: bytes) -> None:
        if marker not in self.buffer:
            self.marker = marker
            self.waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self.waiter, 60)
        self.buffer = self.buffer[self.buffer.index(marker) + len(marker) :]


async def connect(kind: str, ports: dict[str, int]) -> Receiver:
    loop = asyncio.get_running_loop()
    tls = _tls() if kind in ("native", "wss") else None
    port = ports[kind]
    _, proto = await loop.create_connection(Receiver, "127.0.0.1", port, ssl=tls)
    if kind != "native":
        key = base64.b64encode(os.urandom(16)).decode()
        proto.transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
    await proto.until(b'"event":"hello"')
    return proto


def send(proto: Receiver, kind: str, obj: dict[str, Any]) -> None:
    text = json.dumps(obj)
    proto.transport.write(text.encode() + b"\n" if kind == "native" else ws_frame(text))


async def login(kind: str, ports: dict[str, int], name: str, room: str) -> Receiver:
    proto = await connect(kind, ports)
    send(proto, kind, {"id": 1, "op": "login", "user": name, "password": PASSWORD})
    await proto.until(b'"id":1,"ok":true')
    send(proto, kind, {"id": 2, "op": "join", "room": room})
    await proto.until(b'"id":2,"ok":true')
    return proto


async def measure(kind: str, ports: dict[str, int], pid: int, n: int, m: int, r: int) -> float:
    room = f"#fan-{kind}-{r}"
    receivers = [await login(kind, ports, f"u{i}", room) for i in range(n)]
    sender = await login("native", ports, "sender", room)
    await asyncio.sleep(0.5)
    for proto in receivers:
        proto.counting = True
    acked = 0
    cpu0, t0 = server_cpu(pid), time.perf_counter()
    for i in range(m):
        send(sender, "native", {"id": 100 + i, "op": "say", "room": room, "text": f"m{i} hello"})
        if i - acked >= WINDOW:
            await sender.until(f'"id":{100 + acked},"ok":true'.encode())
            acked += 1
    while min(p.count for p in receivers) < m:
        await asyncio.sleep(0.01)
    cpu = server_cpu(pid) - cpu0
    wall = time.perf_counter() - t0
    for proto in [*receivers, sender]:
        proto.transport.close()
    await asyncio.sleep(0.5)
    per_delivery = cpu / (m * n) * 1e6
    print(
        f"{kind:6} N={n} M={m}: server {cpu:.2f} s CPU in {wall:.2f} s, "
        f"{per_delivery:.2f} us per delivery",
        flush=True,
    )
    return per_delivery


async def main(n: int, m: int, rounds: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="pingchat-webfan-"))
    ports = {"native": free_port(), "ws": free_port(), "wss": free_port()}
    env = {**os.environ, "PINGCHAT_BCRYPT_ROUNDS": "4"}
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "twistd"), "-n", "--pidfile=", "pingchat",
            "--data-dir", str(data / "d"), "--server-name", "bench",
            "--chat", f"ssl:{ports['native']}:interface=127.0.0.1",
            "--web", f"tcp:{ports['ws']}:interface=127.0.0.1",
            "--web", f"ssl:{ports['wss']}:interface=127.0.0.1",
            "--irc", "none", "--ircs", "none", "--manhole", "none",
            "--metrics", "tcp:0:interface=127.0.0.1",
            "--sqlite-synchronous", "NORMAL", *PINGCHAT_LIMITS,
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(proc.pid, {0})
            os.sched_setaffinity(0, {1})
        await asyncio.sleep(3)
        setup = await connect("native", ports)
        for i, name in enumerate([f"u{i}" for i in range(n)] + ["sender"]):
            send(setup, "native", {"id": i, "op": "register", "user": name, "password": PASSWORD})
            await setup.until(f'"id":{i},'.encode())
        setup.transport.close()
        results: dict[str, list[float]] = {"native": [], "ws": [], "wss": []}
        for r in range(rounds):
            for kind in results:
                results[kind].append(await measure(kind, ports, proc.pid, n, m, r))
        best = {kind: min(values) for kind, values in results.items()}
        for kind in ("ws", "wss"):
            print(f"{kind} / native (best of {rounds}): {best[kind] / best['native']:.2f}")
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    n, m, rounds = (args + [200, 300, 3][len(args) :])[:3]
    asyncio.run(main(n, m, rounds))
