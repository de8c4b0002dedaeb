"""``--metrics``: what /metrics says after scripted actions, read with a real parser.

The scrapes go through the metrics site (Twisted's HTTP channel, as bytes)
and are parsed with ``prometheus_client.parser.text_string_to_metric_families``,
the parser of the Prometheus text format.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh.transport import SSHServerTransport
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from pingchat.admin.metrics import URL_FILE, Metrics, MetricsSite, metrics_url
from pingchat.auth.checkers import PasswordCredentials
from pingchat.chat.lagprobe import LagProbe
from pingchat.startup import Listener, Opened
from pingchat.testing import NativeTestClient, make_server
from pingchat.web.door import make_site
from tests.helpers import PASSWORD, ServerTestCase
from tests.irc.helpers import IRCTestClient, plain
from tests.web.helpers import HTTPConnection, NativePeer, WSPeer
from tests.web.wsclient import parse_response


def scrape(
    site: MetricsSite, path: str = "/metrics", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    http = HTTPConnection(site)  # type: ignore[arg-type]
    lines = [f"GET {path} HTTP/1.1", "Host: localhost:9464"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    http.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    response = parse_response(http.take())
    http.lose()
    return response


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class MetricsTestCase(ServerTestCase):
    settings = {"metrics": ("tcp:0:interface=127.0.0.1",)}

    def setUp(self) -> None:
        super().setUp()
        self.metrics: Metrics = self.server.extras["metrics"]
        self.site = MetricsSite(self.metrics.registry)

    def scraped(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, headers, body = scrape(self.site)
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        return samples(body.decode("utf-8"))

    def value(self, name: str, **labels: str) -> float:
        found = self.scraped()
        key = (name, tuple(sorted(labels.items())))
        self.assertIn(key, found, sorted(k for k in found if k[0] == name))
        return found[key]


class ServerMetricsTests(MetricsTestCase):
    def test_connections_sessions_and_logins_are_counted_per_door(self) -> None:
        self.successResultOf(self.server.accounts.register("alice", PASSWORD, "10.0.0.1"))
        native = NativeTestClient(self.server)
        self.assertTrue(native.request("login", user="alice", password=PASSWORD)["ok"])
        NativeTestClient(self.server)  # connected, never logs in
        wrong = NativeTestClient(self.server)
        self.assertFalse(wrong.request("login", user="alice", password="not it at all")["ok"])
        irc = IRCTestClient(self.server.extras["irc"])
        irc.send("CAP LS 302", "NICK alice", "USER a 0 * :A", "CAP REQ :sasl")
        irc.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + plain("alice", PASSWORD), "CAP END")
        # make_server leaves the web door off: its site, on the same server.
        web = NativePeer(HTTPConnection(make_site(self.server.native, irc.factory, self.clock)))
        self.assertTrue(web.request("login", user="alice", password=PASSWORD)["ok"])
        self.clock.advance(0)
        found = self.scraped()

        def at(name: str, door: str) -> float:
            return found[(name, (("door", door),))]

        self.assertEqual(
            [at("pingchat_connections", d) for d in ("native", "irc", "web", "web-irc")],
            [3, 1, 1, 0],
        )
        self.assertEqual(
            [at("pingchat_sessions", d) for d in ("native", "irc", "web", "manhole")], [1, 1, 1, 0]
        )
        self.assertEqual(
            [at("pingchat_logins_total", d) for d in ("native", "irc", "web", "web-irc")],
            [1, 1, 1, 0],
        )
        failed = ("pingchat_login_failures_total", (("door", "native"), ("reason", "auth_failed")))
        self.assertEqual(found[failed], 1)
        self.assertEqual(found[("pingchat_users_online", ())], 1)
        native.disconnect()
        irc.disconnect()
        self.assertEqual(self.value("pingchat_sessions", door="native"), 0)
        self.assertEqual(self.value("pingchat_connections", door="irc"), 0)

    def test_a_fan_out_counts_its_recipients_once_and_a_dm_its_recipient(self) -> None:
        alice, bob, carol = (self.account(n) for n in ("alice", "bob", "carol"))
        for c in (alice, bob, carol):
            self.assertTrue(c.request("join", room="#lobby")["ok"])
        before = self.value("pingchat_messages_delivered_total")
        self.assertTrue(alice.request("say", room="#lobby", text="hello")["ok"])
        self.assertTrue(alice.request("say", room="#lobby", text="again")["ok"])
        self.assertTrue(bob.request("dm", to="carol", text="psst")["ok"])
        found = self.scraped()
        self.assertEqual(found[("pingchat_messages_stored_total", (("kind", "room"),))], 2)
        self.assertEqual(found[("pingchat_messages_stored_total", (("kind", "dm"),))], 1)
        # Two room messages to two other members each, and one DM to one session.
        self.assertEqual(found[("pingchat_messages_delivered_total", ())] - before, 2 * 2 + 1)
        self.assertEqual(found[("pingchat_rooms", ())], 1)

    def test_a_client_dropped_for_its_backlog_is_counted_for_its_door(self) -> None:
        self.server.native.max_backlog = 2000
        alice, bob = self.account("alice"), self.account("bob")
        for c in (alice, bob):
            c.request("join", room="#lobby")
        bob.protocol.pauseProducing()  # bob's socket is full: he stopped reading
        for i in range(20):
            alice.request("say", room="#lobby", text=f"message {i} " + "x" * 200)
        self.assertTrue(bob.transport.disconnecting)
        self.assertEqual(self.value("pingchat_backlog_drops_total", door="native"), 1)
        self.assertEqual(self.value("pingchat_backlog_drops_total", door="irc"), 0)

    def test_the_writer_and_reader_timings_are_histograms(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#lobby")
        before = self.value("pingchat_db_batch_transactions_count")
        alice.request("say", room="#lobby", text="hello")
        found = self.scraped()
        # Inline, every transaction is a batch of its own.
        self.assertEqual(found[("pingchat_db_batch_transactions_count", ())], before + 1)
        self.assertEqual(found[("pingchat_db_batch_transactions_bucket", (("le", "1.0"),))],
                         before + 1)
        self.assertEqual(found[("pingchat_db_commit_seconds_count", ())], before + 1)
        self.assertGreater(found[("pingchat_db_batch_seconds_sum", ())], 0)
        self.assertEqual(found[("pingchat_db_transactions_total", ())],
                         self.server.db.transactions)
        self.assertTrue(alice.request("history", room="#lobby")["ok"])
        reads = [k for k in self.scraped() if k[0] == "pingchat_db_read_seconds_count"]
        self.assertEqual(len(reads), 1)
        [(_, labels)] = reads
        self.assertEqual(labels, (("query", "room_history"),))

    def test_the_reactor_lag_is_the_probes_largest_stall_of_each_second(self) -> None:
        clock = Clock()
        probe = LagProbe(clock, self.metrics.lag_report, interval=0.1, period=1.0)
        probe.startService()
        self.addCleanup(probe.stopService)
        for _ in range(10):
            clock.advance(0.1)
        clock.advance(0.35)  # one call 250 ms late
        for _ in range(10):
            clock.advance(0.1)
        found = self.scraped()
        self.assertEqual(found[("pingchat_reactor_lag_seconds_count", ())], 2)
        self.assertEqual(found[("pingchat_reactor_lag_seconds_bucket", (("le", "0.1"),))], 1)
        self.assertEqual(found[("pingchat_reactor_lag_seconds_bucket", (("le", "0.25"),))], 2)
        self.assertAlmostEqual(found[("pingchat_reactor_lag_max_seconds", ())], 0.25, places=6)

    def test_the_lag_gauge_forgets_stalls_older_than_a_minute(self) -> None:
        self.metrics.lag_report(0.0, 400.0, 10)
        for t in range(1, 61):
            self.assertEqual(self.value("pingchat_reactor_lag_max_seconds"), 0.4)
            self.metrics.lag_report(float(t), 2.0, 10)
        self.assertEqual(self.value("pingchat_reactor_lag_max_seconds"), 0.002)

    def test_the_bcrypt_queue_is_the_pools_waiting_work(self) -> None:
        pool = ThreadPool(minthreads=0, maxthreads=1, name="test-bcrypt")
        self.server.extras["bcrypt_pool"] = pool  # never started: work waits
        self.assertEqual(self.value("pingchat_bcrypt_queue"), 0)
        pool.callInThread(lambda: None)
        pool.callInThread(lambda: None)
        self.assertEqual(self.value("pingchat_bcrypt_queue"), 2)
        self.assertEqual(self.value("pingchat_bcrypt_busy_threads"), 0)

    def test_process_and_platform_collectors_are_there(self) -> None:
        found = self.scraped()
        for name in (
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
            "process_start_time_seconds",
        ):
            self.assertIn((name, ()), found)
            self.assertGreater(found[(name, ())], 0)
        self.assertTrue(any(k[0] == "python_info" for k in found))
        info = [k for k in found if k[0] == "pingchat_info"]
        self.assertEqual(dict(info[0][1])["server_name"], "test.pingchat")


class ManholeMetricsTests(ServerTestCase):
    settings = {
        "metrics": ("tcp:0:interface=127.0.0.1",),
        "manhole": ("tcp:0:interface=127.0.0.1",),
    }

    def test_manhole_connections_sessions_and_logins(self) -> None:
        metrics: Metrics = self.server.extras["metrics"]
        site = MetricsSite(metrics.registry)
        factory = self.server.extras["manhole"]
        factory.doStart()
        self.addCleanup(factory.doStop)
        transport = factory.buildProtocol(None)
        self.assertIsInstance(transport, SSHServerTransport)
        transport.makeConnection(StringTransport())
        self.successResultOf(self.server.accounts.register("root1", PASSWORD, role="admin"))

        def login(password: str) -> Any:
            creds = PasswordCredentials("root1", password, None, "192.0.2.1")
            return factory.portal.login(creds, "192.0.2.1", IConchUser)

        _, _, logout = self.successResultOf(login(PASSWORD))
        self.failureResultOf(login("not the password"), UnauthorizedLogin)
        found = samples(scrape(site)[2].decode())
        self.assertEqual(found[("pingchat_connections", (("door", "manhole"),))], 1)
        self.assertEqual(found[("pingchat_sessions", (("door", "manhole"),))], 1)
        self.assertEqual(found[("pingchat_logins_total", (("door", "manhole"),))], 1)
        failed = (("door", "manhole"), ("reason", "auth_failed"))
        self.assertEqual(found[("pingchat_login_failures_total", failed)], 1)
        logout()
        transport.connectionLost(Failure(ConnectionDone()))
        found = samples(scrape(site)[2].decode())
        self.assertEqual(found[("pingchat_connections", (("door", "manhole"),))], 0)
        self.assertEqual(found[("pingchat_sessions", (("door", "manhole"),))], 0)


class WebIRCMetricsTests(MetricsTestCase):
    def test_irc_over_websocket_is_its_own_door(self) -> None:
        self.successResultOf(self.server.accounts.register("dave", PASSWORD, "10.0.0.1"))
        site = make_site(self.server.native, self.server.extras["irc"], self.clock)
        peer = WSPeer(HTTPConnection(site), "/irc", subprotocols=["text.ircv3.net"])
        peer.send_text(f"PASS :dave:{PASSWORD}")
        peer.send_text("NICK dave")
        peer.send_text("USER dave 0 * :Dave")
        self.clock.advance(0)
        self.assertTrue(any(" 001 " in str(m) for m in peer.messages()))
        found = self.scraped()
        self.assertEqual(found[("pingchat_connections", (("door", "web-irc"),))], 1)
        self.assertEqual(found[("pingchat_sessions", (("door", "web-irc"),))], 1)
        self.assertEqual(found[("pingchat_logins_total", (("door", "web-irc"),))], 1)


class PageTests(MetricsTestCase):
    def test_openmetrics_when_asked_for(self) -> None:
        status, headers, body = scrape(
            self.site, accept="application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
        )
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("application/openmetrics-text"))
        names = {f.name for f in openmetrics_families(body.decode())}
        self.assertIn("pingchat_logins", names)
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_gzip_when_accepted(self) -> None:
        _, headers, body = scrape(self.site, accept_encoding="gzip")
        self.assertEqual(headers["content-encoding"], "gzip")
        self.assertIn(b"pingchat_sessions", gzip.decompress(body))

    def test_a_name_filter_keeps_only_those_families(self) -> None:
        _, _, body = scrape(self.site, "/metrics?name[]=pingchat_rooms")
        found = samples(body.decode())
        self.assertEqual(list(found), [("pingchat_rooms", ())])

    def test_other_paths_are_not_found_and_the_root_points_to_metrics(self) -> None:
        self.assertEqual(scrape(self.site, "/other")[0], 404)
        status, _, body = scrape(self.site, "/")
        self.assertEqual(status, 200)
        self.assertIn(b"/metrics", body)

    def test_two_servers_in_one_process_have_their_own_registries(self) -> None:
        other = make_server(self.data_dir / "other", metrics=("tcp:0:interface=127.0.0.1",))
        self.addCleanup(other.db.stop)
        self.account("alice")
        mine = self.value("pingchat_logins_total", door="native")
        theirs = samples(scrape(MetricsSite(other.extras["metrics"].registry))[2].decode())
        self.assertEqual((mine, theirs[("pingchat_logins_total", (("door", "native"),))]), (1, 0))

    def test_no_metrics_listener_with_none(self) -> None:
        server = make_server(self.data_dir / "none")
        self.addCleanup(server.db.stop)
        self.assertNotIn("metrics", server.extras)
        self.assertEqual([listener.option for listener in server.listeners.listeners], [])
        self.assertEqual(
            [listener.option for listener in self.server.listeners.listeners], ["metrics"]
        )


EVERYWHERE = ".".join("0000")


class FakePort:
    def __init__(self, address: Any) -> None:
        self.address = address

    def getHost(self) -> Any:  # noqa: N802
        return self.address


def opened(description: str, address: Any) -> Opened:
    listener = Listener("metrics", description, lambda: None, None)  # type: ignore[arg-type]
    return Opened(listener, FakePort(address))  # type: ignore[arg-type]


class URLTests(MetricsTestCase):
    def test_the_url_reaches_the_listener_from_this_host(self) -> None:
        self.assertEqual(
            metrics_url(opened("tcp:0:interface=127.0.0.1", IPv4Address("TCP", "127.0.0.1", 9))),
            "http://127.0.0.1:9/metrics",
        )
        self.assertEqual(
            metrics_url(opened("tcp:9464", IPv4Address("TCP", EVERYWHERE, 9464))),
            "http://127.0.0.1:9464/metrics",
        )
        self.assertEqual(
            metrics_url(opened("ssl:9464:interface=\\:\\:", IPv6Address("TCP", "::", 9464))),
            "https://[::1]:9464/metrics",
        )

    def test_the_url_file_is_written_when_listening_and_removed_at_stop(self) -> None:
        path: Path = self.data_dir / URL_FILE
        self.metrics.startService()
        self.metrics.listening(
            [opened("tcp:0:interface=127.0.0.1", IPv4Address("TCP", "127.0.0.1", 4321))]
        )
        self.assertEqual(path.read_text(), "http://127.0.0.1:4321/metrics\n")
        self.metrics.stopService()
        self.assertFalse(path.exists())

    def test_listening_on_every_interface_is_warned_about(self) -> None:
        from twisted.logger import globalLogPublisher

        seen: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        self.metrics.listening([opened("tcp:9464", IPv4Address("TCP", EVERYWHERE, 9464))])
        self.addCleanup((self.data_dir / URL_FILE).unlink, True)
        warnings = [e for e in seen if "all interfaces" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["description"], "tcp:9464")


class LagProbeWiringTests(ServerTestCase):
    """build() runs the lag probe for the metrics, and still for the benchmark's file."""

    def probe(self, server: Any) -> LagProbe:
        probe = server.top.getServiceNamed("lag-probe")
        assert isinstance(probe, LagProbe)
        probe.startService()
        self.addCleanup(probe.stopService)
        return probe

    def run_for_a_second(self, server: Any, step: float) -> None:
        clock = server.extras["clock"]
        for _ in range(round(1.0 / step) + 1):  # (float steps may fall just short)
            clock.advance(step)

    def test_with_the_metrics_the_probe_calls_every_100_ms(self) -> None:
        server = make_server(self.data_dir / "m", metrics=("tcp:0:interface=127.0.0.1",))
        self.addCleanup(server.db.stop)
        self.assertEqual(self.probe(server).interval, 0.1)
        self.run_for_a_second(server, 0.1)
        self.assertEqual(len(server.extras["metrics"].recent_lag), 1)

    def test_the_benchmarks_file_still_gets_a_line_a_second_at_5_ms(self) -> None:
        path = self.data_dir / "lag.jsonl"
        self.patch(os, "environ", {**os.environ, "PINGCHAT_LAG_PROBE": str(path)})
        server = make_server(self.data_dir / "b", metrics=("tcp:0:interface=127.0.0.1",))
        self.addCleanup(server.db.stop)
        self.assertEqual(self.probe(server).interval, 0.005)
        self.run_for_a_second(server, 0.005)
        self.assertEqual(len(path.read_text().splitlines()), 1)
        self.assertEqual(len(server.extras["metrics"].recent_lag), 1)

    def test_no_probe_without_metrics_or_the_file(self) -> None:
        self.assertNotIn("lag-probe", [s.name for s in self.server.top])
