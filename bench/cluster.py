"""Several nodes: fan-out and DM throughput, and what a delivery through the
bus costs a node, against one node.

    python -m bench.cluster [--quick] [--name cluster]

Starts a throwaway PostgreSQL (.ci/postgresql) and Redis (.ci/redis), then
for each configuration fresh ``twistd pingchat`` nodes (pinned to core 0,
the generator to core 1; PostgreSQL and Redis run where the kernel puts
them, and their CPU is reported apart):

* ``sqlite-1``: one node on SQLite (the default server);
* ``pg-1``: one node on PostgreSQL, no bus;
* ``bus-1``: one node on PostgreSQL with ``--bus`` (what the bus costs a
  node that has nobody to share with);
* ``bus-2``: two nodes on PostgreSQL and the bus, clients spread evenly.

Scenarios: ``fanout`` (4 senders, 200 receivers in one room, every message
to every receiver) and ``dm`` (200 clients, each sends DMs to others,
spread over the nodes). And ``bus-cost``: two nodes, the senders on node A
and the receivers on node B only, with 10 and then 100 receivers: node B's
CPU per message is a fixed cost per message received from the bus plus a
cost per delivery to a session, solved from the two runs; node A's CPU per
message with nobody to deliver to is the cost of storing and publishing.

Server CPU is every node's user+system time over the measured phase, from
/proc. Results: bench/results/<name>.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import server_cpu
from bench.servers import PINGCHAT_LIMITS, VENV_BIN, free_port, pin

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PASSWORD = "bench-password"
ROOM = "#bench"
SERVER_CORE, GENERATOR_CORE = 0, 1


# -- the services -----------------------------------------------------------------------


class Services:
    """A throwaway PostgreSQL and Redis for the whole run."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-bench-cluster-"))
        self.dir.chmod(0o755)  # PostgreSQL runs as its own user under it when we are root
        self.pg_url = self._script("postgresql", "start", self.dir / "pg")
        self.redis_url = self._script("redis", "start", self.dir / "redis")
        self.schemas = 0

    def _script(self, name: str, command: str, where: Path) -> str:
        done = subprocess.run(
            ["bash", str(ROOT / ".ci" / name), command, str(where)],
            capture_output=True, text=True, timeout=120, check=True,
        )
        return done.stdout.strip()

    def fresh_store(self) -> str:
        """A new database for a configuration (the nodes migrate it)."""
        import psycopg

        self.schemas += 1
        name = f"bench{self.schemas}"
        with psycopg.connect(self.pg_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.pg_url.rsplit("/", 1)[0] + f"/{name}"

    def flush_redis(self) -> None:
        socket = self.redis_url[len("unix://"):]
        subprocess.run(["redis-cli", "-s", socket, "FLUSHALL"], capture_output=True, check=True)

    def cpu(self) -> dict[str, float]:
        """CPU seconds of the PostgreSQL and Redis processes."""
        out = {"postgresql": 0.0, "redis": 0.0}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"redis-server" in cmd and str(self.dir).encode() in cmd:
                out["redis"] += server_cpu(int(pid))
            elif cmd.startswith(b"postgres"):
                with contextlib.suppress(OSError):
                    out["postgresql"] += server_cpu(int(pid))
        return out

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._script("redis", "stop", self.dir / "redis")
        with contextlib.suppress(subprocess.CalledProcessError):
            self._script("postgresql", "stop", self.dir / "pg")
        shutil.rmtree(self.dir, ignore_errors=True)


class Node:
    """``twistd -n pingchat``, native door only, on core 0."""

    def __init__(self, name: str, store: str | None, bus: str | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"pingchat-bench-{name}-"))
        self.port = free_port()
        args = [
            str(VENV_BIN / "twistd"), "-n", "--pidfile=", "pingchat",
            "--data-dir", str(self.dir / "data"), "--server-name", "bench",
            "--chat", f"ssl:{self.port}:interface=127.0.0.1",
            "--irc", "none", "--ircs", "none", "--manhole", "none", "--web", "none",
            "--metrics", "none", *PINGCHAT_LIMITS,
        ]
        if store:
            args += ["--store", store]
        if bus:
            args += ["--bus", bus, "--node-name", name]
        self.log = open(self.dir / "log", "wb")  # noqa: SIM115
        env = {**os.environ, "PINGCHAT_BCRYPT_ROUNDS": "4"}
        self.proc = subprocess.Popen(
            args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.dir,
            preexec_fn=lambda: pin(SERVER_CORE),  # noqa: PLW1509
        )

    def copy_key_from(self, other: Node) -> None:
        (self.dir / "data").mkdir(mode=0o700, exist_ok=True)
        shutil.copy(other.dir / "data" / "secret.key", self.dir / "data" / "secret.key")

    def wait_ready(self, bus: bool) -> None:
        needle = b"bus: connected" if bus else b"pingchat ready"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = (self.dir / "log").read_bytes()
            if needle in text and b"pingchat ready" in text:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(text.decode()[-3000:])
            time.sleep(0.1)
        raise RuntimeError("node did not start: " + (self.dir / "log").read_text()[-3000:])

    def cpu(self) -> float:
        return server_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_nodes(services: Services, config: str) -> list[Node]:
    if config == "sqlite-1":
        node = Node("n1", None, None)
        node.wait_ready(False)
        return [node]
    store = services.fresh_store()
    services.flush_redis()
    count = int(config.rsplit("-", 1)[1])
    bus = services.redis_url if config.startswith("bus") else None
    nodes = [Node("n1", store, bus)]
    nodes[0].wait_ready(bus is not None)
    for i in range(2, count + 1):
        node = Node(f"n{i}", store, bus)
        nodes.append(node)
    for node in nodes[1:]:
        node.wait_ready(bus is not None)
    if bus is not None:
        time.sleep(3)  # a heartbeat round: the nodes know each other
    return nodes


# -- the clients -------------------------------------------------------------------------


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.next = 0
        self.messages = 0  # message events counted while measuring
        self.counting = False
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int) -> Client:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, limit=2**22)
        c = cls(reader, writer)
        await reader.readline()  # hello
        c.task = asyncio.ensure_future(c._read())
        return c

    async def _read(self) -> None:
        while True:
            line = await self.reader.readline()
            if not line:
                return
            if line.startswith(b'{"event":"message"') or b'"event":"message"' in line[:40]:
                self.messages += 1
                continue
            if b'"event"' in line[:12]:
                continue
            reply = json.loads(line)
            future = self.replies.pop(reply.get("id"), None)
            if future is not None and not future.done():
                future.set_result(reply)

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        self.next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[self.next] = future
        self.writer.write(json.dumps({"id": self.next, "op": op, **args}).encode() + b"\n")
        return await future

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.writer.close()


async def clients_for(names: list[str], ports: list[int], register: bool) -> list[Client]:
    out = []
    for i, name in enumerate(names):
        c = await Client.connect(ports[i % len(ports)])
        if register:
            await c.request("register", user=name, password=PASSWORD)
        reply = await c.request("login", user=name, password=PASSWORD)
        assert reply.get("ok"), reply
        out.append(c)
    return out


async def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False


def measure_cpu(nodes: list[Node], services: Services) -> dict[str, Any]:
    return {"nodes": [n.cpu() for n in nodes], **services.cpu()}


def cpu_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodes": [b - a for a, b in zip(before["nodes"], after["nodes"], strict=True)],
        "postgresql": after["postgresql"] - before["postgresql"],
        "redis": after["redis"] - before["redis"],
    }


async def fanout(
    nodes: list[Node], services: Services, receivers: int, messages: int,
    sender_nodes: list[int] | None = None, receiver_nodes: list[int] | None = None,
) -> dict[str, Any]:
    ports = [n.port for n in nodes]
    sender_ports = [ports[i] for i in (sender_nodes or range(len(ports)))]
    receiver_ports = [ports[i] for i in (receiver_nodes or range(len(ports)))]
    tag = random.randint(0, 10**9)  # noqa: S311
    rx = await clients_for([f"r{tag}x{i}" for i in range(receivers)], receiver_ports, True)
    tx = await clients_for([f"s{tag}x{i}" for i in range(4)], sender_ports, True)
    for c in rx + tx:
        assert (await c.request("join", room=ROOM))["ok"]
    await asyncio.sleep(1)
    for c in rx:
        c.messages, c.counting = 0, True
    expected = receivers * messages * len(tx)
    before = measure_cpu(nodes, services)
    started = time.monotonic()

    async def send(c: Client) -> None:
        window = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with window:
                reply = await c.request("say", room=ROOM, text=f"m{i} " + "x" * 40)
                assert reply.get("ok"), reply

        await asyncio.gather(*(one(i) for i in range(messages)))

    await asyncio.gather(*(send(c) for c in tx))
    done = await wait_for(lambda: sum(c.messages for c in rx) >= expected, 120)
    elapsed = time.monotonic() - started
    cpu = cpu_delta(before, measure_cpu(nodes, services))
    delivered = sum(c.messages for c in rx)
    for c in rx + tx:
        c.close()
    stored = messages * len(tx)
    return {
        "receivers": receivers,
        "messages": stored,
        "deliveries": delivered,
        "complete": done,
        "seconds": round(elapsed, 3),
        "deliveries_per_s": round(delivered / elapsed),
        "messages_per_s": round(stored / elapsed),
        "cpu": cpu,
        "node_us_per_delivery": round(sum(cpu["nodes"]) / max(delivered, 1) * 1e6, 2),
        "node_us_per_message": [round(c / stored * 1e6, 1) for c in cpu["nodes"]],
    }


async def dms(nodes: list[Node], services: Services, clients: int, each: int) -> dict[str, Any]:
    ports = [n.port for n in nodes]
    tag = random.randint(0, 10**9)  # noqa: S311
    names = [f"d{tag}x{i}" for i in range(clients)]
    cs = await clients_for(names, ports, True)
    await asyncio.sleep(1)
    for c in cs:
        c.messages, c.counting = 0, True
    before = measure_cpu(nodes, services)
    started = time.monotonic()

    async def send(i: int, c: Client) -> None:
        window = asyncio.Semaphore(8)

        async def one(k: int) -> None:
            async with window:
                # a peer on another node where there is one (i+1: the next port)
                to = names[(i + 1 + 2 * k) % clients]
                reply = await c.request("dm", to=to, text=f"dm{k} " + "x" * 40)
                assert reply.get("ok"), reply

        await asyncio.gather(*(one(k) for k in range(each)))

    await asyncio.gather(*(send(i, c) for i, c in enumerate(cs)))
    total = clients * each
    done = await wait_for(lambda: sum(c.messages for c in cs) >= total, 120)
    elapsed = time.monotonic() - started
    cpu = cpu_delta(before, measure_cpu(nodes, services))
    for c in cs:
        c.close()
    return {
        "clients": clients,
        "dms": total,
        "complete": done,
        "seconds": round(elapsed, 3),
        "dms_per_s": round(total / elapsed),
        "cpu": cpu,
        "node_us_per_dm": round(sum(cpu["nodes"]) / total * 1e6, 2),
    }


# -- the run -------------------------------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    services = Services()
    results: dict[str, Any] = {}
    messages = 50 if quick else 1000
    try:
        for config in ("sqlite-1", "pg-1", "bus-1", "bus-2"):
            nodes = start_nodes(services, config)
            try:
                results[config] = {
                    "fanout": asyncio.run(fanout(nodes, services, 200, messages)),
                    "dm": asyncio.run(dms(nodes, services, 200, 10 if quick else 40)),
                }
            finally:
                for n in nodes:
                    n.stop()
            print(config, json.dumps(results[config]), file=sys.stderr, flush=True)
        cost: dict[str, Any] = {}
        for receivers in (10, 100):
            nodes = start_nodes(services, "bus-2")
            try:
                cost[str(receivers)] = asyncio.run(
                    fanout(nodes, services, receivers, messages, [0], [1])
                )
            finally:
                for n in nodes:
                    n.stop()
        results["bus-cost"] = cost
        local: dict[str, Any] = {}
        for receivers in (10, 100):
            nodes = start_nodes(services, "bus-1")
            try:
                local[str(receivers)] = asyncio.run(
                    fanout(nodes, services, receivers, messages, [0], [0])
                )
            finally:
                for n in nodes:
                    n.stop()
        results["local-cost"] = local
    finally:
        services.stop()
    return results


def model(results: dict[str, Any]) -> dict[str, float]:
    """Per-node costs (µs) solved from the bus-cost runs."""
    few, many = results["bus-cost"]["10"], results["bus-cost"]["100"]
    b_few = few["node_us_per_message"][1]
    b_many = many["node_us_per_message"][1]
    per_delivery = (b_many - b_few) / 90
    per_bus_message = b_few - 10 * per_delivery
    lfew, lmany = results["local-cost"]["10"], results["local-cost"]["100"]
    l_few, l_many = lfew["node_us_per_message"][0], lmany["node_us_per_message"][0]
    local_delivery = (l_many - l_few) / 90
    return {
        "remote_node_us_per_bus_message": round(per_bus_message, 1),
        "remote_node_us_per_delivery": round(per_delivery, 2),
        "storing_node_us_per_message_nobody_to_deliver": round(
            (few["node_us_per_message"][0] + many["node_us_per_message"][0]) / 2, 1
        ),
        "local_node_us_per_message_store_and_publish": round(l_few - 10 * local_delivery, 1),
        "local_node_us_per_delivery": round(local_delivery, 2),
        "messages_per_s_remote_runs": round(
            (few["messages_per_s"] + many["messages_per_s"]) / 2
        ),
        "messages_per_s_local_runs": round((lfew["messages_per_s"] + lmany["messages_per_s"]) / 2),
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'config':10} {'fan-out deliveries/s':>21} {'µs/delivery':>12}"
        f" {'DMs/s':>7} {'µs/DM':>7} {'PG CPU s':>9} {'Redis CPU s':>11}"
    ]
    for config in ("sqlite-1", "pg-1", "bus-1", "bus-2"):
        r = results[config]
        f, d = r["fanout"], r["dm"]
        lines.append(
            f"{config:10} {f['deliveries_per_s']:>21,} {f['node_us_per_delivery']:>12}"
            f" {d['dms_per_s']:>7,} {d['node_us_per_dm']:>7}"
            f" {f['cpu']['postgresql'] + d['cpu']['postgresql']:>9.2f}"
            f" {f['cpu']['redis'] + d['cpu']['redis']:>11.2f}"
        )
    lines.append("")
    lines += [f"{k}: {v}" for k, v in model(results).items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default="cluster")
    args = parser.parse_args(argv)
    pin(GENERATOR_CORE % (os.cpu_count() or 1))
    started = time.time()
    results = run(args.quick)
    text = table(results)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "duration_s": round(time.time() - started),
        "quick": args.quick,
        "cores": os.cpu_count(),
        "results": results,
        "model": model(results),
        "table": text,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
