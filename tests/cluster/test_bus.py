"""--bus and --node-name: the URL forms, and what the options refuse."""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pingchat.cluster.bus import RedisAddress, parse_url
from pingchat.tap import Options


class ParseURLTests(SynchronousTestCase):
    def test_tcp_with_password_and_database(self) -> None:
        a = parse_url("redis://:s3cret@10.0.0.20:6380/2")
        self.assertEqual(
            (a.host, a.port, a.db, a.password, a.tls), ("10.0.0.20", 6380, 2, "s3cret", False)
        )
        self.assertNotIn("s3cret", a.where)
        self.assertNotIn("s3cret", repr(a))

    def test_defaults_and_tls(self) -> None:
        self.assertEqual(parse_url("redis://localhost"), RedisAddress(host="localhost"))
        self.assertTrue(parse_url("rediss://redis.example.org").tls)

    def test_unix_socket_with_database(self) -> None:
        a = parse_url("unix:///run/redis/redis.sock?db=3")
        self.assertEqual((a.path, a.db), ("/run/redis/redis.sock", 3))
        self.assertEqual(a.where, "unix:///run/redis/redis.sock?db=3")

    def test_user_and_password(self) -> None:
        a = parse_url("redis://pingchat:p%40ss@h/0")
        self.assertEqual((a.username, a.password), ("pingchat", "p@ss"))

    def test_bad_urls_are_refused(self) -> None:
        for url in ("http://h", "redis://h/notanumber", "unix://", "redis://h:port/0"):
            self.assertRaises(ValueError, parse_url, url)


class OptionTests(SynchronousTestCase):
    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--data-dir", "/nonexistent-pingchat", *args])
        return options

    def test_bus_and_node_name_reach_the_settings(self) -> None:
        o = self.parse("--store", "postgresql://h/db", "--bus", "redis://h/1", "--node-name", "n1")
        self.assertEqual((o.settings.bus, o.settings.node_name), ("redis://h/1", "n1"))

    def test_no_bus_by_default_and_none_is_none(self) -> None:
        self.assertIsNone(self.parse().settings.bus)
        self.assertIsNone(self.parse("--bus", "none").settings.bus)

    def test_a_bus_needs_a_shared_store(self) -> None:
        e = self.assertRaises(usage.UsageError, self.parse, "--bus", "redis://h")
        self.assertIn("--bus needs --store postgresql://", str(e))

    def test_a_bad_bus_url_is_one_clear_line(self) -> None:
        e = self.assertRaises(
            usage.UsageError, self.parse, "--store", "postgresql://h/db", "--bus", "http://x"
        )
        self.assertIn("--bus", str(e))
