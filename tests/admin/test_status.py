"""``pingchat status``: where it looks, how it reads a scrape, and what it prints."""

from __future__ import annotations

import socket

from prometheus_client.exposition import generate_latest
from twisted.trial.unittest import SynchronousTestCase

from pingchat.admin.status import (
    Scrape,
    StatusError,
    choose_url,
    endpoint_url,
    histogram_quantile,
    render,
    scrape,
)
from tests.admin.test_metrics import MetricsTestCase
from tests.helpers import temp_dir


class WhereTests(SynchronousTestCase):
    def test_the_option_wins_then_the_servers_file_then_the_config_then_the_default(self) -> None:
        data_dir = temp_dir(self)
        config = {"metrics": ["tcp:9999:interface=127.0.0.2"]}
        self.assertEqual(
            choose_url("http://h:1/metrics", data_dir, config, "c.toml"),
            ("http://h:1/metrics", "from --metrics-url"),
        )
        self.assertEqual(
            choose_url(None, data_dir, config, "c.toml"),
            ("http://127.0.0.2:9999/metrics", "from metrics in c.toml"),
        )
        self.assertEqual(
            choose_url(None, data_dir, {}, None),
            ("http://127.0.0.1:9464/metrics", "the default listener"),
        )
        (data_dir / "metrics-url").write_text("http://127.0.0.1:4321/metrics\n")
        url, source = choose_url(None, data_dir, config, "c.toml")
        self.assertEqual(url, "http://127.0.0.1:4321/metrics")
        self.assertIn("written by the server", source)

    def test_metrics_turned_off_in_the_config_is_said_so(self) -> None:
        with self.assertRaises(StatusError) as caught:
            choose_url(None, temp_dir(self), {"metrics": "none"}, "c.toml")
        self.assertIn("turned off in c.toml", str(caught.exception))

    def test_endpoint_strings_become_urls_reachable_from_here(self) -> None:
        self.assertEqual(endpoint_url("tcp:9464"), "http://127.0.0.1:9464/metrics")
        self.assertEqual(endpoint_url("tcp:port=80"), "http://127.0.0.1:80/metrics")
        self.assertEqual(
            endpoint_url("tcp6:9464:interface=\\:\\:"), "http://[::1]:9464/metrics"
        )
        self.assertEqual(
            endpoint_url("ssl:9464:interface=10.1.2.3"), "https://10.1.2.3:9464/metrics"
        )
        with self.assertRaises(StatusError):
            endpoint_url("unix:/run/metrics.sock")


class QuantileTests(SynchronousTestCase):
    def test_interpolates_within_the_bucket_as_promql_does(self) -> None:
        # 10 observations: 4 up to 1, 4 more up to 2, 2 more up to 4.
        buckets = [(1.0, 4.0), (2.0, 8.0), (4.0, 10.0), (float("inf"), 10.0)]
        self.assertEqual(histogram_quantile(0.5, buckets), 1.25)
        self.assertEqual(histogram_quantile(0.2, buckets), 0.5)
        self.assertEqual(histogram_quantile(0.9, buckets), 3.0)

    def test_past_the_last_bucket_is_its_bound_and_empty_is_none(self) -> None:
        self.assertEqual(histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 10.0)]), 1.0)
        self.assertIsNone(histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]))


class ReadTests(MetricsTestCase):
    def test_a_scrape_is_rendered_as_a_table_of_doors_and_essentials(self) -> None:
        alice = self.account("alice")
        bob = self.account("bob")
        for c in (alice, bob):
            c.request("join", room="#lobby")
        alice.request("say", room="#lobby", text="hello")
        self.metrics.lag_report(0.0, 12.0, 10)
        text = generate_latest(self.metrics.registry).decode()
        shown = render(Scrape.parse(text), "http://x/metrics", now=0.0)
        lines = shown.splitlines()
        self.assertTrue(lines[0].startswith("pingchat 0.1.0 on test.pingchat"))
        header = lines.index(next(x for x in lines if x.startswith("door")))
        columns = ["door", "connections", "sessions", "logins", "failed", "dropped"]
        self.assertEqual(lines[header].split(), columns)
        self.assertEqual(lines[header + 1].split(), ["native", "2", "2", "2", "0", "0"])
        self.assertEqual(lines[header + 5].split(), ["manhole", "0", "0", "0", "0", "-"])
        self.assertEqual(lines[header + 6].split(), ["total", "2", "2", "2", "0", "0"])
        facts = dict(
            (line.split("  ", 1)[0], line.split("  ", 1)[1].strip())
            for line in lines[header + 7 :]
            if "  " in line
        )
        self.assertEqual(facts["messages"], "1 stored (1 room, 0 DM), 1 delivered")
        self.assertEqual(facts["online"], "2 users in 1 rooms")
        self.assertIn("; 12 ms at most in the last minute", facts["reactor lag"])
        self.assertIn("commits of p50 1 / p99 1 transactions", facts["writer"])
        self.assertIn("0 waiting", facts["bcrypt"])
        self.assertIn("RSS", facts["process"])

    def test_text_that_is_not_prometheus_is_refused(self) -> None:
        with self.assertRaises(StatusError):
            Scrape.parse("this is { not metrics\n")

    def test_a_closed_port_is_one_clear_error(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}/metrics"
        with self.assertRaises(StatusError) as caught:
            scrape(url, "from --metrics-url", timeout=5)
        message = str(caught.exception)
        self.assertIn(f"cannot reach the server's metrics at {url} (from --metrics-url)", message)
        self.assertIn("is the server running", message)
        self.assertNotIn("\n", message)

    def test_other_schemes_are_refused(self) -> None:
        with self.assertRaises(StatusError):
            scrape("file:///etc/passwd", "from --metrics-url")
