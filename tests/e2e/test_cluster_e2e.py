"""Three ``twistd pingchat`` nodes on one PostgreSQL (PINGCHAT_TEST_POSTGRESQL)
and one Redis of the test's own: clients on different nodes share a room
and DMs; a node is killed (SIGKILL) under load and its clients go to
another; Redis is killed and started again under load. A generator counts
the acknowledgements: every acknowledged message is in history exactly
once, and every live client receives every one of its room's messages, in
the store's order."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
import time
import urllib.request
from typing import Any

from twisted.trial.unittest import TestCase

from tests.backends import fresh_postgresql
from tests.client import LineClient
from tests.cluster.live import IRCClient, RedisProcess
from tests.e2e.harness import ServerProcess, wait_until

PASSWORD = "correct horse"
ROOM = "#load"


class Receiver:
    """A native client that only listens, in a thread: the room's messages it gets."""

    def __init__(self, port: int, name: str) -> None:
        self.client = LineClient("127.0.0.1", port, timeout=60)
        assert self.client.request("login", user=name, password=PASSWORD)["ok"]
        assert self.client.request("join", room=ROOM)["ok"]
        self.client.sock.settimeout(0.5)
        self.ids: list[int] = []
        self.texts: list[str] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped:
            try:
                event = self.client.read()
            except TimeoutError:
                continue
            except (OSError, ConnectionError, ValueError):
                return
            if event.get("event") == "message" and event.get("room") == ROOM:
                self.ids.append(event["msg_id"])
                self.texts.append(event["text"])

    def stop(self) -> None:
        self.stopped = True
        self.thread.join(5)
        self.client.close()


class Sender:
    """Says numbered messages as fast as acknowledgements come, counting them;
    when its node goes away, it logs in to the next node and goes on."""

    def __init__(self, name: str, ports: list[int], first: int, pause: float = 0.002) -> None:
        self.name = name
        self.pause = pause  # between an acknowledgement and the next message
        self.ports = ports
        self.node = first
        self.acked: list[str] = []
        self.unacked: list[str] = []  # sent, but the connection went before the answer
        self.reconnects = 0
        self.failed: list[Any] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _connect(self) -> LineClient:
        while True:
            try:
                c = LineClient("127.0.0.1", self.ports[self.node], timeout=30)
                assert c.request("login", user=self.name, password=PASSWORD)["ok"]
                assert c.request("join", room=ROOM)["ok"]
                return c
            except (OSError, ConnectionError):
                self.node = (self.node + 1) % len(self.ports)
                self.reconnects += 1
                time.sleep(0.05)

    def _run(self) -> None:
        client = self._connect()
        n = 0
        while not self.stopped:
            text = f"{self.name}-{n}"
            n += 1
            try:
                reply = client.request("say", room=ROOM, text=text)
            except (OSError, ConnectionError):
                self.unacked.append(text)
                client.close()
                self.node = (self.node + 1) % len(self.ports)
                self.reconnects += 1
                client = self._connect()
                continue
            if reply.get("ok"):
                self.acked.append(text)
            elif reply["error"]["code"] == "rate_limited":  # as a client does: wait, again
                time.sleep(reply["error"]["retry_after"])
                n -= 1
            else:
                self.failed.append(reply)
            client.events.clear()
            time.sleep(self.pause)
        client.close()

    def stop(self) -> None:
        self.stopped = True
        self.thread.join(30)


class ClusterEndToEndTests(TestCase):
    def setUp(self) -> None:
        self.store = fresh_postgresql(self)
        self.redis_dir = tempfile.mkdtemp(prefix="pingchat-e2e-redis-")
        self.addCleanup(shutil.rmtree, self.redis_dir, True)
        self.redis = RedisProcess(self.redis_dir)
        self.redis.start()
        self.addCleanup(self.redis.kill)
        self.nodes: list[ServerProcess] = []
        for name in ("a", "b", "c"):
            node = self.node(name)
            if self.nodes:  # every node has the same secret.key (docs/deployment.md)
                shutil.copy(self.nodes[0].data_dir / "secret.key", node.data_dir / "secret.key")
            node.start(timeout=60)
            self.nodes.append(node)
        self.clients: list[Any] = []
        self.addCleanup(lambda: [c.close() for c in self.clients])
        first = self.native(0)
        for name in ("alice", "bob", "carol", "dave", "erin", "frank"):
            self.assertTrue(first.request("register", user=name, password=PASSWORD)["ok"])
        self.wait_for_nodes(3)

    def node(self, name: str) -> ServerProcess:
        node = ServerProcess(
            "--store",
            self.store,
            "--bus",
            self.redis.url,
            "--node-name",
            f"node-{name}",
            irc="tcp:0:interface=127.0.0.1",
            metrics="tcp:0:interface=127.0.0.1",
        )
        self.addCleanup(node.cleanup)
        return node

    def wait_for_nodes(self, count: int) -> None:
        wait_until(
            lambda: all("bus: connected" in n.output() for n in self.nodes),
            30,
            0.2,
            "the nodes to join the bus",
        )
        # and each sees the others (their heartbeats and session tables read)
        wait_until(
            lambda: all(self.nodes_seen_by(n) == count for n in self.nodes),
            30,
            0.2,
            f"every node to see {count} nodes",
        )

    @staticmethod
    def nodes_seen_by(node: ServerProcess) -> int:
        """The cluster's nodes as *node* counts them (its /metrics)."""
        url = (node.data_dir / "metrics-url").read_text().strip()
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our loopback
            text = response.read().decode()
        match = re.search(r"^pingchat_cluster_nodes (\S+)$", text, re.M)
        return int(float(match.group(1))) if match else 0

    def native(self, i: int, name: str | None = None) -> LineClient:
        c = LineClient("127.0.0.1", self.nodes[i].port(), timeout=30)
        self.clients.append(c)
        if name is not None:
            reply = c.request("login", user=name, password=PASSWORD)
            self.assertTrue(reply["ok"], reply)
        return c

    def history(self, client: LineClient) -> list[dict[str, Any]]:
        """The whole room, oldest first, page by page."""
        out: list[dict[str, Any]] = []
        after = 0
        while True:
            reply = client.request("history", room=ROOM, after=after, limit=200)
            self.assertTrue(reply["ok"], reply)
            page = reply["messages"]
            out += page
            if len(page) < 200:
                return out
            after = page[-1]["msg_id"]

    def test_clients_on_different_nodes_share_a_room_and_dms(self) -> None:
        alice = self.native(0, "alice")
        self.assertTrue(alice.request("join", room="#r")["ok"])
        bob = IRCClient(self.nodes[1].port("IRCFactory"), "bob", PASSWORD)
        self.clients.append(bob)
        bob.send("JOIN #r")
        bob.wait_for(lambda line: " 366 " in line)
        carol = self.native(2, "carol")
        self.assertTrue(carol.request("join", room="#r")["ok"])
        self.assertTrue(alice.request("say", room="#r", text="from a")["ok"])
        self.assertEqual(bob.privmsgs("#r", 1), ["from a"])
        self.assertEqual(carol.event("message", room="#r")["text"], "from a")
        bob.send("PRIVMSG #r :from b")
        self.assertEqual(alice.event("message", room="#r")["text"], "from b")
        self.assertEqual(carol.event("message", room="#r")["text"], "from b")
        reply = carol.request("dm", to="bob", text="psst")
        self.assertTrue(reply["ok"] and reply["delivered"], reply)
        self.assertEqual(bob.privmsgs("bob", 1), ["psst"])
        bob.send("PRIVMSG alice :hi alice")
        self.assertEqual(alice.event("message", to="alice")["text"], "hi alice")
        whois = alice.request("whois", user="bob")
        self.assertEqual((whois["presence"], whois["doors"]), ("online", ["irc"]))

    def run_load(self, disrupt: Any, seconds: float = 3.0) -> tuple[list[Sender], list[Receiver]]:
        ports = [n.port() for n in self.nodes]
        receivers = [Receiver(ports[i], name) for i, name in enumerate(("dave", "erin", "frank"))]
        senders = [Sender(name, ports, i) for i, name in enumerate(("alice", "bob", "carol"))]
        time.sleep(seconds / 2)
        disrupt()
        time.sleep(seconds)
        for s in senders:
            s.stop()
        return senders, receivers

    def check_history(self, senders: list[Sender], survivor: int) -> list[dict[str, Any]]:
        client = self.native(survivor, "alice")
        history = self.history(client)
        texts = [m["text"] for m in history]
        acked = [t for s in senders for t in s.acked]
        self.assertGreater(len(acked), 50)
        missing = [t for t in acked if texts.count(t) != 1]
        self.assertEqual(missing, [], "every acknowledged message is in history exactly once")
        self.assertEqual(len(texts), len(set(texts)), "nothing is stored twice")
        for s in senders:
            self.assertEqual(s.failed, [], s.name)
        return history

    def test_a_node_killed_under_load_loses_no_acknowledged_message(self) -> None:
        senders, receivers = self.run_load(lambda: self.nodes[1].kill())
        self.assertGreater(senders[1].reconnects, 0, "bob's client went to another node")
        history = self.check_history(senders, survivor=0)
        ids = [m["msg_id"] for m in history]
        # The receivers on the nodes still up got every message, in order.
        for r in (receivers[0], receivers[2]):
            wait_until(lambda r=r: len(r.ids) >= len(ids), 20, what="the receivers to catch up")
            r.stop()
            self.assertEqual(r.ids, ids)
        receivers[1].stop()

    def test_redis_killed_and_started_again_under_load(self) -> None:
        def outage() -> None:
            self.redis.kill()
            time.sleep(2)
            self.redis.start()

        senders, receivers = self.run_load(outage, seconds=4)
        history = self.check_history(senders, survivor=0)
        ids = [m["msg_id"] for m in history]
        for r in receivers:
            wait_until(lambda r=r: len(r.ids) >= len(ids), 30, what="the receivers to catch up")
            r.stop()
            self.assertEqual(r.ids, ids, "every live client got every message, in order")
        for node in self.nodes:
            with contextlib.suppress(AssertionError):
                wait_until(lambda node=node: "bus: connected" in node.output(), 10)
            self.assertIn("bus: lost", node.output())
