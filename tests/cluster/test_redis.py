"""Three real nodes in one process: threads, TLS, one PostgreSQL and one
Redis (PINGCHAT_TEST_POSTGRESQL, PINGCHAT_TEST_REDIS). Stdlib clients, native
and IRC, on different nodes; they run in threads while the reactor runs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from pingchat.config import Settings
from pingchat.tap import build
from tests.backends import POSTGRESQL, StoreBackend
from tests.client import LineClient
from tests.cluster.live import IRCClient, fresh_redis

PASSWORD = "pass word 1"


class RealNode:
    def __init__(self, server: Any, opened: list[Any]) -> None:
        self.server = server
        self.ports = {o.listener.option: o.port.getHost().port for o in opened}
        self.cluster = server.extras["cluster"]

    def native(self) -> LineClient:
        return LineClient("127.0.0.1", self.ports["chat"])

    def irc(self, nick: str) -> IRCClient:
        return IRCClient(self.ports["irc"], nick, PASSWORD)


class RealClusterTests(StoreBackend, TestCase):
    backend = POSTGRESQL
    timeout = 120

    @inlineCallbacks
    def setUp(self) -> Any:
        store = self.store_url()
        bus = fresh_redis(self)
        self.nodes: list[RealNode] = []
        for name in ("a", "b", "c"):
            data_dir = Path(tempfile.mkdtemp(prefix=f"pingchat-node-{name}-"))
            self.addCleanup(shutil.rmtree, data_dir, True)
            settings = Settings(
                data_dir=data_dir,
                chat=("ssl:0:interface=127.0.0.1",),
                irc=("tcp:0:interface=127.0.0.1",),
                ircs=(),
                manhole=(),
                web=(),
                metrics=(),
                server_name="localhost",
                rate=0,
                store=store,
                bus=bus,
                node_name=f"node-{name}",
            )
            server = build(settings, reactor)
            ready: Deferred[list[Any]] = Deferred()
            server.listeners.ready = ready.callback
            server.top.startService()
            self.addCleanup(self._stop, server)
            self.nodes.append(RealNode(server, (yield ready)))
        yield self.until(lambda: all(len(n.cluster.nodes()) == 3 for n in self.nodes))
        self.a, self.b, self.c = self.nodes
        yield deferToThread(self._accounts)

    def _stop(self, server: Any) -> Deferred[None]:
        for factory in (server.native, server.extras.get("irc")):
            for conn in list(getattr(factory, "connections", ())):
                conn.transport.abortConnection()
        return task.deferLater(reactor, 0.05, server.top.stopService)

    def until(self, predicate: Any, timeout: float = 20.0) -> Deferred[None]:
        tries = int(timeout / 0.02)

        def check(left: int) -> Any:
            if predicate():
                return None
            if left <= 0:
                raise AssertionError("timed out")
            return task.deferLater(reactor, 0.02, check, left - 1)

        return check(tries)  # type: ignore[no-any-return]

    def _accounts(self) -> None:
        c = self.a.native()
        for name in ("alice", "bob", "carol", "dave"):
            assert c.request("register", user=name, password=PASSWORD)["ok"]
        c.close()

    def login(self, node: RealNode, name: str, room: str | None = None) -> LineClient:
        c = node.native()
        reply = c.request("login", user=name, password=PASSWORD)
        assert reply["ok"], reply
        if room is not None:
            assert c.request("join", room=room)["ok"]
        return c

    @inlineCallbacks
    def test_a_room_message_reaches_native_on_b_and_irc_on_c_in_order(self) -> Any:
        def scenario() -> tuple[list[str], list[str]]:
            alice = self.login(self.a, "alice", "#r")
            bob = self.login(self.b, "bob", "#r")
            carol = self.c.irc("carol")
            carol.send("JOIN #r")
            carol.wait_for(lambda line: " 366 " in line)
            for i in range(30):
                assert alice.request("say", room="#r", text=f"m{i}")["ok"]
            got_bob = [bob.event("message", room="#r")["text"] for _ in range(30)]
            got_carol = carol.privmsgs("#r", 30)
            for c in (alice, bob, carol):
                c.close()
            return got_bob, got_carol

        bob, carol = yield deferToThread(scenario)
        expected = [f"m{i}" for i in range(30)]
        self.assertEqual(bob, expected)
        self.assertEqual(carol, expected)

    @inlineCallbacks
    def test_a_dm_reaches_the_recipients_sessions_on_two_nodes_and_irc(self) -> Any:
        def scenario() -> list[str]:
            alice = self.login(self.a, "alice")
            bob_b = self.login(self.b, "bob")
            bob_c = self.c.irc("bob")
            reply = alice.request("dm", to="bob", text="hello bob")
            assert reply["ok"] and reply["delivered"], reply
            got = [bob_b.event("message", to="bob")["text"], *bob_c.privmsgs("bob", 1)]
            for c in (alice, bob_b, bob_c):
                c.close()
            return got

        self.assertEqual((yield deferToThread(scenario)), ["hello bob", "hello bob"])

    @inlineCallbacks
    def test_whois_who_and_ison_see_users_on_other_nodes(self) -> Any:
        def scenario() -> tuple[Any, str, str, list[str]]:
            bob = self.login(self.b, "bob")
            dave = self.c.irc("dave")
            alice = self.login(self.a, "alice")
            whois = alice.request("whois", user="dave")
            dave.send("WHOIS bob", "ISON bob carol")
            whois_line = dave.wait_for(lambda line: " 311 dave bob " in line)
            ison = dave.wait_for(lambda line: " 303 dave " in line)
            users = [u["user"] for u in alice.request("who")["users"]]
            for c in (alice, bob, dave):
                c.close()
            return whois, whois_line, ison, users

        whois, whois_line, ison, users = yield deferToThread(scenario)
        self.assertEqual((whois["presence"], whois["doors"]), ("online", ["irc"]))
        self.assertIn("bob", whois_line)
        self.assertEqual(ison.split(" 303 dave ", 1)[1].lstrip(":"), "bob", ison)
        self.assertEqual(users, ["alice", "bob", "dave"])

    @inlineCallbacks
    def test_kick_ban_and_topic_reach_every_node(self) -> Any:
        def scenario() -> tuple[str, str, dict[str, Any], dict[str, Any], str]:
            alice = self.login(self.a, "alice", "#ops")
            bob = self.login(self.b, "bob", "#ops")
            carol = self.c.irc("carol")
            carol.send("JOIN #ops")
            carol.wait_for(lambda line: " 366 " in line)
            assert alice.request("topic", room="#ops", topic="rules")["ok"]
            topic = carol.wait_for(lambda line: " TOPIC #ops " in line)
            assert alice.request("mode", room="#ops", ban="bob")["ok"]
            ban = carol.wait_for(lambda line: " MODE #ops +b " in line)
            bob.event("mode", room="#ops")  # B has applied the ban
            refused = bob.request("say", room="#ops", text="still here?")
            assert alice.request("kick", room="#ops", user="bob", reason="out")["ok"]
            kicked = bob.event("kicked", room="#ops")
            carol_kick = carol.wait_for(lambda line: " KICK #ops bob" in line)
            for c in (alice, bob, carol):
                c.close()
            return topic, ban, refused, kicked, carol_kick

        topic, ban, refused, kicked, carol_kick = yield deferToThread(scenario)
        self.assertTrue(topic.endswith("TOPIC #ops rules"), topic)
        self.assertIn("bob!*@*", ban)
        self.assertEqual(refused["error"]["code"], "forbidden", refused)
        self.assertEqual((kicked["user"], kicked["by"]), ("bob", "alice"))
        self.assertIn("out", carol_kick)

    @inlineCallbacks
    def test_failed_logins_count_across_nodes(self) -> Any:
        def scenario() -> list[str]:
            for i in range(5):
                c = self.nodes[i % 3].native()
                assert c.request("login", user="carol", password="wrong!!!")["error"]["code"] == (
                    "auth_failed"
                )
                c.close()
            codes = []
            for node in self.nodes:
                c = node.native()
                codes.append(c.request("login", user="carol", password=PASSWORD)["error"]["code"])
                c.close()
            return codes

        codes = yield deferToThread(scenario)
        self.assertEqual(codes, ["rate_limited"] * 3)
