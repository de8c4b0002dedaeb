"""The web door's wiring in ``build()``: listeners, certificate, factories."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.trial.unittest import SynchronousTestCase

from pingchat.startup import Listener, Opened
from pingchat.testing import make_server
from pingchat.web.door import STATIC, client_urls
from pingchat.web.site import WebSite


class WiringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-web-door-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def services(self, server: Any) -> list[Listener]:
        """The server's ``--web`` listeners."""
        return [s for s in server.listeners.listeners if s.option == "web"]

    def test_web_listeners_serve_one_site_on_the_shared_factories(self) -> None:
        server = make_server(
            self.dir,
            web=("tcp:0:interface=127.0.0.1", "ssl:0:interface=127.0.0.1"),
            web_origin=("https://gamja.example",),
            trusted_proxy=("127.0.0.1",),
        )
        self.addCleanup(server.db.stop)
        site = server.extras["web"]
        self.assertIsInstance(site, WebSite)
        self.assertEqual([s.factory for s in self.services(server)], [site, site])
        endpoints = site.resource.children
        self.assertIs(endpoints[b"ws"].factory, server.native)
        self.assertIs(endpoints[b"irc"].factory, server.extras["irc"])
        self.assertIn("https://gamja.example", endpoints[b"ws"].origins.extra)
        self.assertTrue(site.proxies.trusts("127.0.0.1"))
        # One --trusted-proxy set for the forwarding headers and the PROXY listeners.
        self.assertIs(site.proxies, server.proxies)
        # An ssl: web listener alone is reason enough to make the certificate.
        self.assertTrue((self.dir / "tls-cert.pem").exists())

    def test_none_disables_the_door(self) -> None:
        server = make_server(self.dir, web=())
        self.addCleanup(server.db.stop)
        self.assertNotIn("web", server.extras)
        self.assertEqual(self.services(server), [])

    def test_the_static_folder_ships_an_index(self) -> None:
        self.assertTrue((STATIC / "index.html").is_file())


class FakePort:
    """A listening port bound to one address."""

    def __init__(self, address: IPv4Address | IPv6Address) -> None:
        self.address = address

    def getHost(self) -> IPv4Address | IPv6Address:  # noqa: N802 - IListeningPort
        return self.address


class ClientURLTests(SynchronousTestCase):
    """The start-up line that says where to open the web client."""

    def opened(self, option: str, description: str, host: str, port: int) -> Opened:
        listener = Listener(option, description, lambda: None, None)  # type: ignore[arg-type,return-value]
        kind = IPv6Address if ":" in host else IPv4Address
        return Opened(listener, FakePort(kind("TCP", host, port)))  # type: ignore[arg-type]

    def test_loopback_is_localhost_and_every_interface_the_server_name(self) -> None:
        opened = [
            self.opened("web", "tcp:8080:interface=127.0.0.1", "127.0.0.1", 8080),
            self.opened("web", "ssl:8443", "0.0.0.0", 8443),  # noqa: S104 - a name, not a bind
            self.opened("web", "ssl:9443:interface=\\:\\:1", "::1", 9443),
            self.opened("web", "tcp:8081:interface=192.0.2.7", "192.0.2.7", 8081),
            self.opened("web", "tcp:8082:interface=2001\\:db8\\:\\:7", "2001:db8::7", 8082),
            self.opened("chat", "ssl:7464", "::", 7464),
        ]
        self.assertEqual(
            client_urls(opened, "chat.example"),
            [
                "http://localhost:8080/",
                "https://chat.example:8443/",
                "https://localhost:9443/",
                "http://192.0.2.7:8081/",
                "http://[2001:db8::7]:8082/",
            ],
        )

    def test_a_proxy_listener_has_no_url_browsers_reach_it_through_the_balancer(self) -> None:
        opened = [
            self.opened("web", "haproxy:tcp:8080", "0.0.0.0", 8080),  # noqa: S104 - a name
            self.opened("web", "ssl:8443", "0.0.0.0", 8443),  # noqa: S104 - a name
        ]
        self.assertEqual(client_urls(opened, "chat.example"), ["https://chat.example:8443/"])

    def test_no_web_listener_no_url(self) -> None:
        opened = [self.opened("irc", "tcp:6667", "127.0.0.1", 6667)]
        self.assertEqual(client_urls(opened, "chat.example"), [])
