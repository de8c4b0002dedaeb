"""End to end: ``twistd -n pingchat`` with the web door, in a subprocess.

The page is fetched over HTTP and HTTPS (with the data dir's certificate),
and the native protocol goes over ``/ws`` to meet a client of the TLS door.
"""

from __future__ import annotations

import socket
import ssl

from twisted.trial.unittest import TestCase

from tests.client import LineClient
from tests.e2e.harness import ServerProcess, wait_until
from tests.web.wsclient import IRCWS, NativeWS, http_request

PASSWORD = "correct horse"


class WebEndToEndTests(TestCase):
    def setUp(self) -> None:
        self.server = ServerProcess(
            "--web",
            "ssl:0:interface=127.0.0.1",
            web="tcp:0:interface=127.0.0.1",
        ).start()
        self.addCleanup(self.server.cleanup)
        self.http_port = self.server.port("WebSite")
        self.https_port = self.server.port("WebSite-tls")

    def test_the_page_is_served_over_http(self) -> None:
        status, headers, body = http_request(
            "127.0.0.1",
            self.http_port,
            b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertIn("script-src 'self'", headers["content-security-policy"])
        self.assertNotIn("strict-transport-security", headers)
        self.assertIn(b"<html", body.lower())

    def test_https_with_the_data_dirs_certificate(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.server.data_dir / "tls-cert.pem"))
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(b"HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            head = b""
            while chunk := sock.recv(65536):
                head += chunk
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        self.assertIn(b"strict-transport-security: max-age=31536000", head.lower())

    def test_a_browser_session_meets_the_tls_door_and_irc_over_websocket(self) -> None:
        web = NativeWS("127.0.0.1", self.http_port, origin=f"http://localhost:{self.http_port}")
        self.addCleanup(web.close)
        self.assertEqual(web.hello["event"], "hello")
        for name in ("alice", "carol"):
            self.assertTrue(web.request("register", user=name, password=PASSWORD)["ok"])
        self.assertTrue(web.request("login", user="alice", password=PASSWORD)["ok"])
        self.assertTrue(web.request("join", room="#lobby")["ok"])
        tls = LineClient("127.0.0.1", self.server.port())
        self.addCleanup(tls.close)
        self.assertTrue(tls.request("register", user="bob", password=PASSWORD)["ok"])
        self.assertTrue(tls.request("login", user="bob", password=PASSWORD)["ok"])
        self.assertTrue(tls.request("join", room="#lobby")["ok"])
        self.assertTrue(web.request("say", room="#lobby", text="hello from a browser")["ok"])
        self.assertEqual(tls.event("message", room="#lobby")["text"], "hello from a browser")
        self.assertTrue(tls.request("say", room="#lobby", text="hello back")["ok"])
        self.assertEqual(web.event("message", room="#lobby")["text"], "hello back")

        irc = IRCWS("127.0.0.1", self.https_port, tls=True, subprotocols=["text.ircv3.net"])
        self.addCleanup(irc.close)
        self.assertEqual(irc.subprotocol, "text.ircv3.net")
        for line in (
            f"PASS carol:{PASSWORD}",
            "NICK carol",
            "USER carol 0 * :Carol",
            "JOIN #lobby",
        ):
            irc.send_line(line)
        irc.expect(" 366 ")
        irc.send_line("PRIVMSG #lobby :hello from gamja")
        self.assertEqual(web.event("message", room="#lobby")["text"], "hello from gamja")
        # The server's output is read as it comes: wait for the session's line.
        wait_until(
            lambda: "carol via web-irc from 127.0.0.1" in self.server.output(),
            what="the server to log carol's session on /irc",
        )
