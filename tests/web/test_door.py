"""The web door's wiring in ``build()``: listeners, certificate, factories."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pingchat.startup import Listener
from pingchat.testing import make_server
from pingchat.web.door import STATIC
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
        # An ssl: web listener alone is reason enough to make the certificate.
        self.assertTrue((self.dir / "tls-cert.pem").exists())

    def test_none_disables_the_door(self) -> None:
        server = make_server(self.dir, web=())
        self.addCleanup(server.db.stop)
        self.assertNotIn("web", server.extras)
        self.assertEqual(self.services(server), [])

    def test_the_static_folder_ships_an_index(self) -> None:
        self.assertTrue((STATIC / "index.html").is_file())
