"""Several nodes in one process on one database, joined by an in-memory bus
(pingchat.cluster.testing): the bus's logic, driven through the native door
on a task.Clock."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pingchat.cluster.fanout import HEARTBEAT, HEARTBEAT_TTL, ClusterFanOut
from pingchat.cluster.order import GAP_WAIT
from pingchat.cluster.testing import FakeBus, FakeRedis
from pingchat.model import Message
from pingchat.testing import START_TIME, NativeTestClient, RecordingMind, make_server
from tests.backends import StoreBackend, on_postgresql
from tests.helpers import PASSWORD


class Node:
    def __init__(self, case: ClusterTestCase, name: str) -> None:
        self.case = case
        self.bus = FakeBus(case.redis)
        self.server = make_server(
            case.data_dir,
            case.clock,
            bus=self.bus,
            node_name=name,
            **case.store_config,
        )
        case.addCleanup(self.server.db.stop)
        self.cluster: ClusterFanOut = self.server.extras["cluster"]
        self.cluster.startService()
        case.addCleanup(self.stop)

    def stop(self) -> None:
        if self.cluster.running:
            self.cluster.stopService()

    def client(self) -> NativeTestClient:
        return NativeTestClient(self.server)

    def login(self, name: str) -> NativeTestClient:
        c = self.client()
        reply = c.request("login", user=name, password=PASSWORD)
        self.case.assertTrue(reply["ok"], reply)
        self.case.clock.advance(0)
        return c


class ClusterTestCase(StoreBackend, TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START_TIME)
        self.redis = FakeRedis(self.clock)
        self.data_dir = Path(tempfile.mkdtemp(prefix="pingchat-cluster-"))
        self.addCleanup(shutil.rmtree, self.data_dir, True)
        self.store_config = self.store_settings()
        self.a, self.b, self.c = (Node(self, n) for n in ("node-a", "node-b", "node-c"))
        for name in ("alice", "bob", "carol"):
            reply = self.a.client().request("register", user=name, password=PASSWORD)
            self.assertTrue(reply["ok"], reply)

    def texts(self, client: NativeTestClient, room: str | None = None) -> list[str]:
        return [
            e.get("text")
            for e in client.take_events("message")
            if room is None or e.get("room") == room
        ]

    def room_of_three(self) -> tuple[NativeTestClient, NativeTestClient, NativeTestClient]:
        alice, bob, carol = self.a.login("alice"), self.b.login("bob"), self.c.login("carol")
        for c in (alice, bob, carol):
            self.assertTrue(c.request("join", room="#r")["ok"])
        for c in (alice, bob, carol):
            c.take_events()
        return alice, bob, carol


class MessageTests(ClusterTestCase):
    def test_a_room_message_reaches_sessions_on_every_node_in_order(self) -> None:
        alice, bob, carol = self.room_of_three()
        for i in range(5):
            self.assertTrue(alice.request("say", room="#r", text=f"a{i}")["ok"])
        self.assertTrue(bob.request("say", room="#r", text="from b")["ok"])
        self.assertEqual(self.texts(bob), [f"a{i}" for i in range(5)])
        self.assertEqual(self.texts(carol), [*(f"a{i}" for i in range(5)), "from b"])
        self.assertEqual(self.texts(alice), ["from b"])

    def test_the_senders_other_session_on_the_same_node_still_gets_it(self) -> None:
        alice, _, _ = self.room_of_three()
        alice2 = self.a.login("alice")
        alice.request("say", room="#r", text="hi")
        self.assertEqual(self.texts(alice2), ["hi"])
        self.assertEqual(self.texts(alice), [])

    def test_messages_that_arrive_out_of_order_are_delivered_in_order(self) -> None:
        alice, bob, _carol = self.room_of_three()
        self.b.bus.hold = True
        for i in range(4):
            alice.request("say", room="#r", text=f"m{i}")
        self.b.bus.release([3, 1, 2, 0])
        self.assertEqual(self.texts(bob), ["m0", "m1", "m2", "m3"])
        self.assertEqual(self.b.cluster.sequencer.reordered, 3)

    def test_a_message_the_bus_drops_is_read_from_the_store_after_a_short_wait(self) -> None:
        alice, bob, _ = self.room_of_three()
        self.b.bus.drop = True
        alice.request("say", room="#r", text="lost")
        self.b.bus.drop = False
        alice.request("say", room="#r", text="next")
        self.assertEqual(self.texts(bob), [])
        self.clock.advance(GAP_WAIT)
        self.assertEqual(self.texts(bob), ["lost", "next"])
        # and nothing twice, however long one waits
        self.clock.advance(30)
        self.assertEqual(self.texts(bob), [])

    def test_a_dm_reaches_the_recipients_sessions_on_every_node(self) -> None:
        alice = self.a.login("alice")
        bob_b, bob_c = self.b.login("bob"), self.c.login("bob")
        alice_c = self.c.login("alice")
        reply = alice.request("dm", to="bob", text="hello")
        self.assertTrue(reply["ok"] and reply["delivered"], reply)
        self.assertEqual(self.texts(bob_b), ["hello"])
        self.assertEqual(self.texts(bob_c), ["hello"])
        self.assertEqual(self.texts(alice_c), ["hello"], "the sender's other sessions too")
        self.assertEqual(self.texts(alice), [])

    def test_a_dm_to_an_account_online_only_on_another_node_is_not_queued(self) -> None:
        alice = self.a.login("alice")
        self.b.login("bob")
        self.assertTrue(alice.request("dm", to="bob", text="x")["delivered"])
        later = self.c.login("bob")
        self.assertEqual([e for e in later.take_events("message") if e.get("offline")], [])

    def test_a_live_message_reaches_other_nodes_unstored(self) -> None:
        self.room_of_three()
        bob = self.b.server.chat.sessions_of("bob")[0]
        mind = RecordingMind()
        self.b.server.chat.attach(bob.account, mind, "127.0.0.1")
        alice = self.a.server.chat.sessions_of("alice")[0]
        typing = Message(id=0, ts=0, sender="alice", text=None, room="#r", kind="tagmsg")
        self.a.server.chat.say_live(alice, "#r", typing)  # as IRC's TAGMSG does
        self.assertEqual([m.kind for m, _ in mind.named("message")], ["tagmsg"])


class PresenceTests(ClusterTestCase):
    def test_who_whois_and_members_see_users_on_other_nodes(self) -> None:
        alice, _, _ = self.room_of_three()
        who = alice.request("who")
        self.assertEqual([u["user"] for u in who["users"]], ["alice", "bob", "carol"])
        whois = alice.request("whois", user="bob")
        self.assertEqual((whois["presence"], whois["sessions"]), ("online", 1))
        self.c.login("bob")
        self.assertEqual(alice.request("whois", user="bob")["sessions"], 2)
        members = alice.request("members", room="#r")["members"]
        self.assertEqual(
            {m["user"]: m["presence"] for m in members},
            dict.fromkeys(("alice", "bob", "carol"), "online"),
        )

    def test_an_account_goes_offline_only_when_its_last_session_anywhere_ends(self) -> None:
        alice, bob, _ = self.room_of_three()
        bob_c = self.c.login("bob")
        alice.take_events()
        bob.disconnect()
        self.clock.advance(0)
        self.assertEqual(alice.take_events("presence"), [])
        self.assertEqual(alice.request("whois", user="bob")["presence"], "online")
        bob_c.disconnect()
        self.clock.advance(0)
        presence = alice.take_events("presence")
        self.assertEqual([(e["user"], e["presence"]) for e in presence], [("bob", "offline")])

    def test_logging_in_on_a_second_node_announces_nothing_new(self) -> None:
        alice, _, _ = self.room_of_three()
        alice.take_events()
        self.c.login("bob")
        self.assertEqual(alice.take_events("presence"), [])

    def test_away_set_on_one_node_is_seen_on_the_others(self) -> None:
        alice, bob, _ = self.room_of_three()
        bob.request("away", text="lunch")
        events = alice.take_events("presence")
        self.assertEqual(
            [(e["user"], e["presence"], e["away"]) for e in events], [("bob", "away", "lunch")]
        )
        self.assertEqual(alice.request("whois", user="bob")["away"], "lunch")

    def test_a_dead_nodes_sessions_leave_presence_after_its_heartbeat_expires(self) -> None:
        alice, _, _ = self.room_of_three()
        alice.take_events()
        # node B dies: it says nothing more and its heartbeat is not renewed.
        self.b.bus.stop()
        self.b.cluster._heartbeat.stop()  # type: ignore[union-attr]
        self.clock.advance(HEARTBEAT_TTL - HEARTBEAT)
        self.assertEqual(alice.request("whois", user="bob")["presence"], "online")
        self.clock.advance(HEARTBEAT * 2)
        self.assertEqual(alice.request("whois", user="bob")["presence"], "offline")
        self.assertEqual(
            [(e["user"], e["presence"]) for e in alice.take_events("presence")],
            [("bob", "offline")],
        )
        self.assertNotIn("node-b", self.a.cluster.nodes())

    def test_a_node_that_stops_cleanly_is_forgotten_at_once(self) -> None:
        alice, _, _ = self.room_of_three()
        self.c.stop()
        self.assertEqual(alice.request("whois", user="carol")["presence"], "offline")
        self.assertEqual(sorted(self.a.cluster.nodes()), ["node-a", "node-b"])

    def test_a_node_that_joins_late_reads_the_others_sessions(self) -> None:
        self.a.login("alice")
        self.b.login("bob")
        late = Node(self, "node-d")
        c = late.login("carol")
        self.assertEqual([u["user"] for u in c.request("who")["users"]], ["alice", "bob", "carol"])
        self.assertEqual(late.cluster.nodes(), {"node-a": 1, "node-b": 1, "node-c": 0, "node-d": 1})


class RoomTests(ClusterTestCase):
    def test_joins_and_parts_are_seen_on_every_node(self) -> None:
        alice = self.a.login("alice")
        alice.request("join", room="#r")
        alice.take_events()
        bob = self.b.login("bob")
        self.assertTrue(bob.request("join", room="#r")["ok"])
        self.assertEqual([e["user"] for e in alice.take_events("joined")], ["bob"])
        self.assertEqual(
            sorted(m["user"] for m in alice.request("members", room="#r")["members"]),
            ["alice", "bob"],
        )
        bob.request("part", room="#r")
        self.assertEqual([e["user"] for e in alice.take_events("parted")], ["bob"])

    def test_a_room_created_on_one_node_is_known_to_the_others(self) -> None:
        alice = self.a.login("alice")
        alice.request("join", room="#new")
        rooms = self.b.login("bob").request("rooms")["rooms"]
        self.assertEqual([r["name"] for r in rooms], ["#new"])

    def test_kick_ban_topic_and_modes_reach_every_node(self) -> None:
        alice, bob, carol = self.room_of_three()
        self.assertTrue(alice.request("topic", room="#r", topic="news")["ok"])
        self.assertEqual([e["topic"] for e in carol.take_events("topic")], ["news"])
        self.assertEqual(self.c.server.chat.room_named("#r").topic, "news")
        self.a.server.chat.change_modes(None, "#r", [("+b", "bob")])
        self.assertEqual(self.b.server.chat.room_named("#r").bans, ["bob!*@*"])
        reply = bob.request("say", room="#r", text="banned?")
        self.assertFalse(reply["ok"])
        self.assertTrue(alice.request("kick", room="#r", user="carol", reason="bye")["ok"])
        kicked = carol.take_events("kicked")
        self.assertEqual([(e["user"], e["by"]) for e in kicked], [("carol", "alice")])
        self.assertNotIn("carol", self.c.server.chat.room_named("#r").members)
        self.assertNotIn("carol", self.b.server.chat.room_named("#r").members)

    def test_an_op_given_on_one_node_may_act_on_another(self) -> None:
        _alice, bob, _ = self.room_of_three()
        self.a.server.chat.change_modes(None, "#r", [("+o", "bob")])
        self.assertTrue(bob.request("topic", room="#r", topic="by bob")["ok"])
        self.assertEqual(self.a.server.chat.room_named("#r").topic, "by bob")


class OutageTests(ClusterTestCase):
    def test_a_node_that_lost_the_bus_catches_its_sessions_up_when_it_is_back(self) -> None:
        alice, bob, _ = self.room_of_three()
        self.b.bus.down()
        for i in range(3):
            self.assertTrue(alice.request("say", room="#r", text=f"during {i}")["ok"])
        self.assertEqual(self.texts(bob), [])
        self.b.bus.up_again()
        self.clock.advance(GAP_WAIT)
        self.assertEqual(self.texts(bob), ["during 0", "during 1", "during 2"])

    def test_without_the_bus_a_node_serves_its_sessions_from_its_store(self) -> None:
        alice, bob, _ = self.room_of_three()
        self.b.bus.down()
        alice.request("say", room="#r", text="unheard")
        bob2 = self.b.login("bob")
        bob.take_events()
        self.assertTrue(bob.request("say", room="#r", text="local")["ok"])
        # B's own message follows one B never heard of: B reads it from the store.
        self.assertEqual(self.texts(bob2), [])
        self.clock.advance(GAP_WAIT)
        self.assertEqual(self.texts(bob2), ["unheard", "local"])
        self.assertEqual(self.texts(bob), ["unheard"])

    def test_dms_sent_while_a_node_had_no_bus_reach_its_sessions_when_it_is_back(self) -> None:
        alice = self.a.login("alice")
        bob = self.b.login("bob")
        self.b.bus.down()
        self.clock.advance(1)
        self.assertTrue(alice.request("dm", to="bob", text="while you were out")["ok"])
        self.assertEqual(self.texts(bob), [])
        self.b.bus.up_again()
        self.clock.advance(GAP_WAIT)
        self.assertEqual(self.texts(bob), ["while you were out"])

    def test_room_changes_missed_while_the_bus_was_down_are_read_again(self) -> None:
        alice, _bob, _ = self.room_of_three()
        self.b.bus.down()
        alice.request("topic", room="#r", topic="changed meanwhile")
        self.assertNotEqual(self.b.server.chat.room_named("#r").topic, "changed meanwhile")
        self.b.bus.up_again()
        self.assertEqual(self.b.server.chat.room_named("#r").topic, "changed meanwhile")


class ThrottleTests(ClusterTestCase):
    def test_failed_logins_count_across_nodes(self) -> None:
        free = self.a.server.settings.login_free_attempts
        for i in range(free):
            node = (self.a, self.b, self.c)[i % 3]
            reply = node.client().request("login", user="alice", password="wrong password")
            self.assertEqual(reply["error"]["code"], "auth_failed", reply)
        for node in (self.a, self.b, self.c):
            reply = node.client().request("login", user="alice", password=PASSWORD)
            self.assertEqual(reply["error"]["code"], "rate_limited", reply)

    def test_registrations_count_across_nodes(self) -> None:
        for node in (self.a, self.b, self.c):
            node.server.accounts.register_limiter.set_rate(1 / 3600, 2)
        replies = [
            node.client().request("register", user=f"user{i}", password=PASSWORD)
            for i, node in enumerate((self.a, self.b, self.c))
        ]
        self.assertEqual([r["ok"] for r in replies], [True, True, False])


MessageTestsOnPostgreSQL = on_postgresql(MessageTests)
OutageTestsOnPostgreSQL = on_postgresql(OutageTests)


class OtherEventTests(ClusterTestCase):
    def test_a_contact_request_reaches_the_accounts_session_on_another_node(self) -> None:
        alice, bob = self.a.login("alice"), self.b.login("bob")
        self.assertTrue(alice.request("contact.add", user="bob")["ok"])
        self.assertEqual(
            [(e["user"], e["status"]) for e in bob.take_events("contact")], [("alice", "request")]
        )

    def test_a_broadcast_and_a_disconnect_from_the_manhole_reach_every_node(self) -> None:
        bob = self.b.login("bob")
        self.assertEqual(self.a.server.chat.broadcast("maintenance"), 0)
        self.assertEqual([e["text"] for e in bob.take_events("notice")], ["maintenance"])
        self.a.server.chat.disconnect_user("bob", "bye")
        self.assertTrue(bob.transport.disconnecting)


class ObservingTests(ClusterTestCase):
    """The manhole's who() and stats(), /metrics and pingchat status show the cluster."""

    def test_the_manhole_shows_every_nodes_users_and_the_nodes(self) -> None:
        from pingchat.admin.inspection import Inspection

        self.a.login("alice")
        self.b.login("bob")
        self.c.login("bob")
        tools = Inspection(self.a.server, "root", self.clock, None, "192.0.2.7")
        rows = {r["user"]: r for r in tools.who()}
        self.assertEqual(sorted(rows), ["alice", "bob"])
        self.assertEqual((rows["bob"]["sessions"], rows["bob"]["nodes"]), (2, ["node-b", "node-c"]))
        self.assertEqual(rows["alice"]["nodes"], ["node-a"])
        cluster = tools.stats()["cluster"]
        self.assertEqual(cluster["sessions_per_node"], {"node-a": 1, "node-b": 1, "node-c": 1})
        self.assertTrue(cluster["bus_up"])

    def test_metrics_and_pingchat_status_show_nodes_and_sessions_per_node(self) -> None:
        from pingchat.admin.metrics import Metrics, MetricsSite
        from pingchat.admin.status import Scrape, render
        from tests.admin.test_metrics import scrape

        self.a.login("alice")
        self.b.login("bob")
        self.c.login("carol")
        self.c.login("carol")
        metrics = Metrics(self.a.server)
        _, _, body = scrape(MetricsSite(metrics.registry))
        text = body.decode()
        self.assertIn("pingchat_cluster_nodes 3.0", text)
        self.assertIn('pingchat_cluster_sessions{local="no",node="node-c"} 2.0', text)
        self.assertIn("pingchat_bus_up 1.0", text)
        shown = render(Scrape.parse(text), "http://x/metrics", now=0.0)
        line = next(x for x in shown.splitlines() if x.startswith("cluster"))
        self.assertIn("3 nodes, 4 sessions: node-a (this one) 1, node-b 1, node-c 2; bus up", line)
        self.b.bus.down()
        _, _, body = scrape(MetricsSite(Metrics(self.b.server).registry))
        self.assertIn("pingchat_bus_up 0.0", body.decode())
        shown = render(Scrape.parse(body.decode()), "http://x/metrics", now=0.0)
        self.assertIn("BUS DOWN", shown)


class ModerationTests(ClusterTestCase):
    """Deleting a message, KILL and WALLOPS (pingchat.chat.moderation) on every node."""

    def test_a_deleted_message_goes_on_every_node(self) -> None:
        alice, bob, carol = self.room_of_three()
        said = alice.request("say", room="#r", text="oops")
        bob.take_events()
        self.assertTrue(alice.request("message.delete", msg_id=said["msg_id"])["ok"])
        for c in (bob, carol):
            deleted = c.take_events("deleted")
            self.assertEqual([(e["msg_id"], e["by"]) for e in deleted], [(said["msg_id"], "alice")])

    def test_an_operator_kills_and_wallops_a_user_of_another_node(self) -> None:
        self.a.server.store.db.run_sync(
            lambda conn: conn.execute("UPDATE accounts SET role = 'admin' WHERE name = 'alice'")
        )
        alice = self.a.login("alice")
        carol = self.c.login("carol")
        bob = self.b.login("bob")
        op = self.a.server.chat.sessions_of("alice")[0]
        self.assertEqual(self.a.server.chat.moderation.kill(op, "bob", "spam"), 1)
        self.assertTrue(bob.transport.disconnecting)
        self.c.server.store.db.run_sync(
            lambda conn: conn.execute("UPDATE accounts SET role = 'admin' WHERE name = 'carol'")
        )
        self.c.server.chat.sessions_of("carol")[0].operator = "carol"
        self.a.server.chat.moderation.wallops(op, "maintenance at noon")
        self.assertEqual(
            [e["text"] for e in carol.take_events("notice") if e.get("wallops")],
            ["maintenance at noon"],
        )
        del alice
