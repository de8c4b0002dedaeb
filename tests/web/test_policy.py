"""Trusted proxies and origins: pure functions over header values."""

from __future__ import annotations

from ipaddress import ip_address

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pingchat.web.policy import (
    OriginPolicy,
    TrustedProxies,
    normalize_origin,
    own_origin,
    parse_address,
    parse_forwarded,
    parse_network,
)

PROXY = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8", "::1"])


class AddressTests(SynchronousTestCase):
    def test_hop_forms_all_give_the_address(self) -> None:
        for text, expected in [
            ("192.0.2.1", "192.0.2.1"),
            (" 192.0.2.1 ", "192.0.2.1"),
            ("192.0.2.1:4711", "192.0.2.1"),
            ('"192.0.2.1:4711"', "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ('"[2001:db8::1]:4711"', "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::ffff:192.0.2.9", "192.0.2.9"),
        ]:
            self.assertEqual(str(parse_address(text)), expected, text)

    def test_names_and_garbage_are_not_addresses(self) -> None:
        for text in ("unknown", "_hidden", "", "example.org", "[2001:db8::1", "1.2.3.4.5"):
            self.assertIsNone(parse_address(text), text)

    def test_networks_accept_hosts_and_cidr_and_refuse_the_rest(self) -> None:
        self.assertIn(ip_address("10.1.2.3"), parse_network("10.0.0.0/8"))
        self.assertIn(ip_address("10.1.2.3"), parse_network("10.1.2.3/8"))  # not strict
        self.assertIn(ip_address("127.0.0.1"), parse_network("::ffff:127.0.0.1"))
        for bad in ("", "10.0.0.0/33", "proxy.example", "1.2.3"):
            with self.assertRaises(ValueError, msg=bad):
                parse_network(bad)


class ForwardedForTests(SynchronousTestCase):
    def view(self, peer: str, xff: str | None = None, **kw: str) -> tuple[str, str]:
        v = PROXY.view(
            peer,
            kw.get("secure") == "yes",
            [xff.encode()] if xff is not None else None,
            [kw["proto"].encode()] if "proto" in kw else None,
            [kw["forwarded"].encode()] if "forwarded" in kw else None,
        )
        return v.host, v.scheme

    def test_headers_from_an_untrusted_peer_are_never_believed(self) -> None:
        self.assertEqual(
            self.view("198.51.100.7", "203.0.113.9", proto="https", forwarded="for=1.2.3.4"),
            ("198.51.100.7", "http"),
        )

    def test_a_trusted_proxy_names_the_client(self) -> None:
        self.assertEqual(self.view("127.0.0.1", "203.0.113.9"), ("203.0.113.9", "http"))

    def test_the_rightmost_untrusted_hop_wins_not_what_the_client_wrote(self) -> None:
        # The client sent "X-Forwarded-For: 1.1.1.1"; nginx appended its address.
        self.assertEqual(self.view("127.0.0.1", "1.1.1.1, 203.0.113.9"), ("203.0.113.9", "http"))

    def test_chains_of_trusted_proxies_are_walked(self) -> None:
        self.assertEqual(
            self.view("127.0.0.1", "1.1.1.1, 203.0.113.9, 10.0.0.5, 10.0.0.6"),
            ("203.0.113.9", "http"),
        )

    def test_garbage_stops_the_walk_at_the_last_trusted_address(self) -> None:
        self.assertEqual(self.view("127.0.0.1", "1.1.1.1, unknown"), ("127.0.0.1", "http"))
        self.assertEqual(self.view("127.0.0.1", "junk, 10.0.0.5"), ("10.0.0.5", "http"))

    def test_several_header_lines_are_one_list(self) -> None:
        v = PROXY.view("127.0.0.1", False, [b"1.1.1.1", b"203.0.113.9"])
        self.assertEqual(v.host, "203.0.113.9")

    def test_all_trusted_gives_the_leftmost(self) -> None:
        self.assertEqual(self.view("127.0.0.1", "10.0.0.1, 10.0.0.2"), ("10.0.0.1", "http"))

    def test_proto_from_the_proxy(self) -> None:
        self.assertEqual(
            self.view("127.0.0.1", "203.0.113.9", proto="https"), ("203.0.113.9", "https")
        )
        # Appended by a second proxy: the nearest one's word counts.
        self.assertEqual(
            self.view("127.0.0.1", "203.0.113.9", proto="http, https"), ("203.0.113.9", "https")
        )
        self.assertEqual(
            self.view("127.0.0.1", "203.0.113.9", proto="gopher"), ("203.0.113.9", "http")
        )

    def test_ipv6_and_mapped_peers(self) -> None:
        self.assertEqual(self.view("::1", "2001:db8::7"), ("2001:db8::7", "http"))
        self.assertEqual(self.view("::ffff:127.0.0.1", "203.0.113.9"), ("203.0.113.9", "http"))
        self.assertEqual(self.view("::ffff:198.51.100.7", "1.1.1.1"), ("198.51.100.7", "http"))

    def test_no_header_from_a_proxy_is_the_proxy(self) -> None:
        v = PROXY.view("127.0.0.1", True)
        self.assertEqual((v.host, v.scheme, v.proxied), ("127.0.0.1", "https", False))

    def test_nothing_is_trusted_by_default(self) -> None:
        v = TrustedProxies().view("127.0.0.1", False, [b"203.0.113.9"])
        self.assertEqual(v.host, "127.0.0.1")


class ForwardedHeaderTests(SynchronousTestCase):
    def test_elements_pairs_and_quotes(self) -> None:
        self.assertEqual(
            parse_forwarded(
                ['for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"']
            ),
            [
                {"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"},
                {"for": "[2001:db8:cafe::17]:4711"},
            ],
        )
        # A comma inside quotes does not split an element.
        self.assertEqual(
            parse_forwarded(['for="a,b";proto=https']), [{"for": "a,b", "proto": "https"}]
        )

    def test_forwarded_names_the_client_and_its_scheme(self) -> None:
        v = PROXY.view(
            "127.0.0.1", False, forwarded=[b'for=1.1.1.1, for="203.0.113.9:5555";proto=https']
        )
        self.assertEqual((v.host, v.scheme), ("203.0.113.9", "https"))

    def test_x_forwarded_for_wins_over_forwarded(self) -> None:
        v = PROXY.view("127.0.0.1", False, [b"203.0.113.9"], None, [b"for=6.6.6.6"])
        self.assertEqual(v.host, "203.0.113.9")

    @given(st.lists(st.text(max_size=20), max_size=5))
    def test_any_header_gives_an_address_believed_or_the_peer(self, hops: list[str]) -> None:
        header = ",".join(hops).encode("utf-8", "replace")
        v = PROXY.view("127.0.0.1", False, [header], None, [header])
        self.assertTrue(v.host == "127.0.0.1" or parse_address(v.host) is not None, v)


class OriginTests(SynchronousTestCase):
    def test_normal_form(self) -> None:
        for text, expected in [
            ("https://Example.ORG", "https://example.org"),
            ("https://example.org:443", "https://example.org"),
            ("http://example.org:80/", "http://example.org"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
        ]:
            self.assertEqual(normalize_origin(text), expected, text)

    def test_not_origins(self) -> None:
        for text in (
            "null",
            "",
            "file://",
            "ftp://example.org",
            "https://example.org/path",
            "https://user@example.org",
            "https://example.org?x",
            "https://example.org:99999",
            "example.org",
        ):
            self.assertIsNone(normalize_origin(text), text)

    def test_own_origin_follows_the_scheme_and_host_header(self) -> None:
        self.assertEqual(own_origin("http", "localhost:8080"), "http://localhost:8080")
        self.assertEqual(own_origin("https", "chat.example:443"), "https://chat.example")
        self.assertIsNone(own_origin("http", None))

    def test_policy(self) -> None:
        policy = OriginPolicy.parse(["https://gamja.example"])
        self.assertTrue(policy.allows(None, "http", "localhost:8080"))  # not a browser
        self.assertTrue(policy.allows("http://localhost:8080", "http", "localhost:8080"))
        self.assertTrue(policy.allows("https://chat.example", "https", "chat.example:443"))
        self.assertTrue(policy.allows("https://GAMJA.example:443", "http", "localhost:8080"))
        # Another scheme, host or port is another origin.
        self.assertFalse(policy.allows("https://localhost:8080", "http", "localhost:8080"))
        self.assertFalse(policy.allows("http://localhost:8081", "http", "localhost:8080"))
        self.assertFalse(policy.allows("http://127.0.0.1:8080", "http", "localhost:8080"))
        self.assertFalse(policy.allows("null", "http", "localhost:8080"))
        self.assertFalse(policy.allows("http://evil.example", "http", None))

    def test_bad_configured_origins_are_refused(self) -> None:
        with self.assertRaises(ValueError):
            OriginPolicy.parse(["gamja.example"])
