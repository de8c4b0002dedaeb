"""The independent clients on a cluster, as an administrator runs it
(docs/deployment.md): three ``twistd pingchat`` nodes on one PostgreSQL and
one Redis, sharing one TLS certificate and one ``secret.key``, behind HAProxy
in TCP mode, with the PROXY protocol to the native door (and, for the web
door, also in HTTP mode ending TLS, as the doc has it). The bundled terminal
client (in tmux) and the web client (in headless Chromium) connect through
the balancer; when their node is killed (SIGKILL) they reconnect by
themselves, through the balancer, to a node still up, and chat on. irssi on
one node and a native client on another share a room and DMs."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

from tests.backends import fresh_postgresql
from tests.certs import write_certificate
from tests.client import LineClient
from tests.cluster.live import fresh_redis
from tests.e2e.balancer import HAProxy
from tests.e2e.browser import BrowserTestCase, expect, join, log_in, message, send
from tests.e2e.harness import PINGCHAT, ServerProcess, wait_until
from tests.e2e.irc_clients import Irssi
from tests.e2e.terminal import Tmux
from tests.e2e.test_cluster_e2e import ROOM as LOAD_ROOM
from tests.e2e.test_cluster_e2e import Sender

PASSWORD = "correct horse"  # tests.e2e.test_cluster_e2e's Sender logs in with it
ROOM = "#team"
NODES = ("node-a", "node-b", "node-c")


class ClusterBehindHAProxy(BrowserTestCase):
    """Three nodes (native over TLS, IRC over TLS, web over HTTP, metrics) and
    HAProxy with a native and a web frontend. A browser test case, so that
    the web client's test has its Chromium; the others do not start it."""

    launch_browser = False

    @classmethod
    def setUpClass(cls) -> None:
        if cls.launch_browser:
            super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.launch_browser:
            super().tearDownClass()

    def setUp(self) -> None:
        store, bus = fresh_postgresql(self), fresh_redis(self)
        self.store = store
        tls = Path(tempfile.mkdtemp(prefix="pingchat-e2e-tls-"))
        self.addCleanup(shutil.rmtree, tls, True)
        write_certificate(tls / "privkey.pem", tls / "fullchain.pem")
        self.nodes = {name: self.node(name, store, bus, tls) for name in NODES}
        first, *others = self.nodes.values()
        first.start(timeout=60)
        # The same secret.key on every node (docs/deployment.md); the others
        # start together.
        for node in others:
            shutil.copy(first.data_dir / "secret.key", node.data_dir / "secret.key")
        starting = [threading.Thread(target=n.start, kwargs={"timeout": 60}) for n in others]
        for t in starting:
            t.start()
        for t in starting:
            t.join(90)
        wait_until(
            lambda: all("bus: connected" in n.output() for n in self.nodes.values()),
            30,
            0.1,
            "the nodes to join the bus",
        )
        web = {name: n.port("WebSite") for name, n in self.nodes.items()}
        self.balancer = HAProxy(
            {
                # the nodes' haproxy: listeners (docs/deployment.md)
                "native": {n: x.port("NativeFactory-tls-proxy") for n, x in self.nodes.items()},
                "web": web,  # TCP mode
                "https": web,  # docs/deployment.md's: HAProxy ends TLS, HTTP mode
            },
            https="https",
            proxy=("native",),
        )
        # The same certificate for HAProxy's TLS, key and certificate in one file.
        (self.balancer.dir / "https.pem").write_bytes(
            (tls / "fullchain.pem").read_bytes() + (tls / "privkey.pem").read_bytes()
        )
        self.balancer.start()
        self.addCleanup(self.balancer.stop)
        wait_until(
            lambda: set(self.balancer.status("native").values()) == {"UP"},
            20,
            0.1,
            "haproxy to find every node up",
        )
        self.clients: list[Any] = []
        self.addCleanup(lambda: [c.close() for c in self.clients])
        setup = self.native("node-a")
        for name in ("alice", "bob", "carol", "dave", "erin", "frank"):
            self.assertTrue(setup.request("register", user=name, password=PASSWORD)["ok"])

    def node(self, name: str, store: str, bus: str, tls: Path) -> ServerProcess:
        node = ServerProcess(
            "--store", store, "--bus", bus, "--node-name", name,
            "--tls-cert", str(tls / "fullchain.pem"), "--tls-key", str(tls / "privkey.pem"),
            # The balancer: its PROXY headers and its X-Forwarded-For are believed.
            "--trusted-proxy", "127.0.0.1",
            # The native door twice: for the balancer, and for the test's own
            # clients, which go to a node directly (docs/deployment.md).
            "--chat", "haproxy:ssl:0:interface=127.0.0.1",
            "--chat", "ssl:0:interface=127.0.0.1",
            chat=None,
            ircs="ssl:0:interface=127.0.0.1",
            web="tcp:0:interface=127.0.0.1",
            metrics="tcp:0:interface=127.0.0.1",
        )  # fmt: skip
        self.addCleanup(node.cleanup)
        return node

    def native(self, node: str, name: str | None = None) -> LineClient:
        c = LineClient("127.0.0.1", self.nodes[node].port(), timeout=30)
        self.clients.append(c)
        if name is not None:
            reply = c.request("login", user=name, password=PASSWORD)
            self.assertTrue(reply["ok"], reply)
        return c

    def sessions(self, node: str, door: str) -> int:
        """Logged-in sessions of *door* on *node*, from its metrics."""
        url = (self.nodes[node].data_dir / "metrics-url").read_text().strip()
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our loopback
            text = response.read().decode()
        match = re.search(rf'^pingchat_sessions\{{door="{door}"\}} (\S+)$', text, re.M)
        assert match is not None, text
        return int(float(match.group(1)))

    def door_sessions(self, door: str) -> dict[str, int]:
        return {n: self.sessions(n, door) for n in self.nodes}

    def node_of_the_new(self, door: str, before: dict[str, int]) -> str:
        """The node with one more *door* session than in *before* (a client
        that came through the balancer)."""
        counts = wait_until(
            lambda: (c := self.door_sessions(door)) and sum(c.values()) == sum(before.values()) + 1
            and c,
            20,
            0.2,
            f"one more {door} session on the nodes",
        )
        return next(n for n in self.nodes if counts[n] == before[n] + 1)

    def kill(self, node: str) -> list[str]:
        """SIGKILL *node*; the names of the others."""
        self.nodes[node].kill()
        return [n for n in self.nodes if n != node]

    def history_texts(self, client: LineClient, room: str) -> list[str]:
        out: list[str] = []
        after = 0
        while True:
            reply = client.request("history", room=room, after=after, limit=200)
            self.assertTrue(reply["ok"], reply)
            out += [m["text"] for m in reply["messages"]]
            if len(reply["messages"]) < 200:
                return out
            after = reply["messages"][-1]["msg_id"]

    def joined(self, client: LineClient, room: str, user: str) -> None:
        client.event("joined", room=room, user=user)


class TerminalClientTests(ClusterBehindHAProxy):
    def terminal(self, name: str) -> tuple[Tmux, str]:
        """The bundled terminal client in tmux, logged in as *name* through the balancer."""
        config = Path(tempfile.mkdtemp(prefix="pingchat-client-"))
        self.addCleanup(shutil.rmtree, config, True)
        tmux, pane = Tmux(self), name
        tmux.start(pane, PINGCHAT, "client", "--config-dir", str(config),
                   f"127.0.0.1:{self.balancer.ports['native']}")  # fmt: skip
        tmux.trust_and_log_in(pane, name, PASSWORD)
        tmux.wait_for(pane, f"Logged in as {name}")
        return tmux, pane

    def test_the_terminal_client_goes_to_another_node_by_itself_when_its_node_is_killed(
        self,
    ) -> None:
        # Load through the balancer: one sender per node (leastconn), so the
        # node killed below has one too.
        senders: list[Sender] = []
        for name in ("dave", "erin", "frank"):
            senders.append(Sender(name, [self.balancer.ports["native"]], 0, pause=0.02))
            wait_until(lambda s=senders[-1]: s.acked, 30, 0.05, f"{name} to say something")
        try:
            self.chat_across_a_kill()
        finally:
            for s in senders:
                s.stop()
        acked = [t for s in senders for t in s.acked]
        self.assertGreater(len(acked), 20)
        self.assertGreater(sum(s.reconnects for s in senders), 0, "a sender lost its node")
        texts = self.history_texts(self.native(self.survivors[0], "dave"), LOAD_ROOM)
        self.assertEqual([t for t in acked if texts.count(t) != 1], [],
                         "every acknowledged message is in history exactly once")  # fmt: skip
        self.assertEqual(len(texts), len(set(texts)), "nothing is stored twice")
        for s in senders:
            self.assertEqual(s.failed, [], s.name)

    def chat_across_a_kill(self) -> None:
        before = self.door_sessions("native")
        tmux, pane = self.terminal("alice")
        doomed = self.node_of_the_new("native", before)
        # bob (native) and carol (IRC) on the other two nodes, in the room.
        others = [n for n in NODES if n != doomed]
        bob = self.native(others[0], "bob")
        self.assertTrue(bob.request("join", room=ROOM)["ok"])
        tmux.type(pane, f"/join {ROOM}")
        self.joined(bob, ROOM, "alice")
        tmux.type(pane, "hello from the terminal")
        self.assertEqual(bob.event("message", room=ROOM)["text"], "hello from the terminal")
        self.assertTrue(bob.request("say", room=ROOM, text="hello terminal")["ok"])
        tmux.wait_for(pane, r"<bob> hello terminal")

        self.survivors = self.kill(doomed)
        self.assertTrue(bob.request("say", room=ROOM, text="said while you were away")["ok"])
        tmux.wait_for(pane, r"reconnected", timeout=30)  # nothing typed: by itself
        tmux.wait_for(pane, r"<bob> said while you were away")
        tmux.type(pane, "back on another node")
        self.assertEqual(bob.event("message", room=ROOM, text="back on another node")["from"],
                         "alice")  # fmt: skip
        self.assertTrue(bob.request("say", room=ROOM, text="welcome back")["ok"])
        tmux.wait_for(pane, r"<bob> welcome back")
        self.assertEqual(
            self.history_texts(bob, ROOM),
            ["hello from the terminal", "hello terminal", "said while you were away",
             "back on another node", "welcome back"],
        )  # fmt: skip


class ClientAddressTests(ClusterBehindHAProxy):
    def test_the_nodes_see_each_clients_own_address_through_the_balancer(self) -> None:
        """HAProxy's PROXY header (send-proxy-v2) names the client: a login
        through the balancer from 127.0.0.2 is audited as from 127.0.0.2,
        not from the balancer's 127.0.0.1, on whichever node took it."""
        import psycopg

        client = LineClient("127.0.0.1", self.balancer.ports["native"], timeout=30,
                            source="127.0.0.2")  # fmt: skip
        self.clients.append(client)
        self.assertTrue(client.request("login", user="alice", password=PASSWORD)["ok"])
        wrong = LineClient("127.0.0.1", self.balancer.ports["native"], timeout=30,
                           source="127.0.0.3")  # fmt: skip
        self.clients.append(wrong)
        self.assertFalse(wrong.request("login", user="bob", password="wrong")["ok"])

        def audited() -> list[tuple[str, str]]:
            with psycopg.connect(self.store) as db:
                rows = db.execute(
                    "SELECT event, address FROM audit_log"
                    " WHERE event IN ('login', 'login_failed') ORDER BY id"
                ).fetchall()
            return [(str(e), str(a)) for e, a in rows] if len(rows) >= 2 else []

        rows = wait_until(audited, 20, 0.2, "the logins in the audit log")
        self.assertEqual(rows, [("login", "127.0.0.2"), ("login_failed", "127.0.0.3")])


class WebClientTests(ClusterBehindHAProxy):
    launch_browser = True

    def test_the_web_client_goes_to_another_node_by_itself_when_its_node_is_killed(
        self,
    ) -> None:
        """Through the balancer in TCP mode, to the nodes' plain HTTP."""
        self.chat_across_a_kill(f"http://localhost:{self.balancer.ports['web']}/")

    def test_the_same_through_https_ended_by_the_balancer(self) -> None:
        """Through the web frontend of docs/deployment.md: HAProxy ends TLS
        and says so in X-Forwarded-Proto, which the nodes believe of it."""
        self.chat_across_a_kill(f"https://localhost:{self.balancer.ports['https']}/")

    def chat_across_a_kill(self, url: str) -> None:
        page = self.open_page(url, ignore_https_errors=True)
        log_in(page, "alice", PASSWORD)
        join(page, ROOM)
        doomed = self.node_of_the_new("web", dict.fromkeys(self.nodes, 0))
        bob = self.native(next(n for n in NODES if n != doomed), "bob")
        self.assertTrue(bob.request("join", room=ROOM)["ok"])
        send(page, "hello from the browser")
        self.assertEqual(bob.event("message", room=ROOM)["text"], "hello from the browser")
        self.assertTrue(bob.request("say", room=ROOM, text="hello browser")["ok"])
        expect(message(page, "bob", "hello browser")).to_be_visible()

        self.kill(doomed)
        self.assertTrue(bob.request("say", room=ROOM, text="said while you were away")["ok"])
        # Only a new connection, to a node still up, can bring it.
        expect(message(page, "bob", "said while you were away")).to_be_visible(timeout=30_000)
        expect(page.locator(".conn")).to_contain_text("Connected")
        send(page, "back on another node")
        self.assertEqual(bob.event("message", room=ROOM, text="back on another node")["from"],
                         "alice")  # fmt: skip
        self.assertTrue(bob.request("say", room=ROOM, text="welcome back")["ok"])
        expect(message(page, "bob", "welcome back")).to_be_visible()
        survivors = [n for n in NODES if n != doomed]
        wait_until(lambda: sum(self.sessions(n, "web") for n in survivors) == 1, 10, 0.2,
                   "the page's session on a node still up")  # fmt: skip
        self.assertEqual(
            self.history_texts(bob, ROOM),
            ["hello from the browser", "hello browser", "said while you were away",
             "back on another node", "welcome back"],
        )  # fmt: skip
        self.assertEqual(page.errors, [])


class IrssiTests(ClusterBehindHAProxy):
    def test_irssi_on_one_node_and_a_native_user_on_another_share_a_room_and_dms(self) -> None:
        bob = self.native("node-c", "bob")
        self.assertTrue(bob.request("join", room=ROOM)["ok"])
        carol = Irssi("carol", self.nodes["node-b"].port("IRCFactory-tls"), PASSWORD).start()
        self.addCleanup(carol.stop)
        wait_until(lambda: "End of /MOTD" in carol.screen(), 20, what="irssi to log in")
        carol.type(f"/join {ROOM}")
        self.joined(bob, ROOM, "carol")
        self.assertTrue(bob.request("say", room=ROOM, text="hello irssi on node b")["ok"])
        carol.wait_log(ROOM, "hello irssi on node b")
        carol.type(f"/window goto {ROOM}")
        carol.type("hi native on node c")
        event = bob.event("message", room=ROOM, text="hi native on node c")
        self.assertEqual(event["from"], "carol")

        carol.type("/msg bob a private word across nodes")
        event = bob.event("message", to="bob")
        self.assertEqual((event["from"], event["text"]), ("carol", "a private word across nodes"))
        reply = bob.request("dm", to="carol", text="a private answer")
        self.assertTrue(reply["ok"] and reply["delivered"], reply)
        carol.wait_log("bob", "a private answer")
        self.assertEqual(bob.request("whois", user="carol")["doors"], ["irc"])
        self.assertIn("<bob> hello irssi on node b", carol.log(ROOM).replace("<@", "<"))
