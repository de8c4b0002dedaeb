"""End to end: ``SIGHUP`` to a real ``twistd -n pingchat`` while TLS clients stay
connected: a new certificate for new connections on every TLS door, a bad
one refused, the config file's reloadable options applied, nothing closed."""

from __future__ import annotations

import hashlib
import shutil
import signal
import socket
import ssl
import tempfile
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.certs import colons, write_certificate
from tests.client import LineClient
from tests.e2e.harness import ServerProcess, wait_until

LOOPBACK_TLS = "ssl:0:interface=127.0.0.1"


def peer_fingerprint(port: int) -> str:
    """The SHA-256 of the certificate a new TLS connection to *port* is shown."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as s,
    ):
        der = s.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()


class SighupTests(TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="pingchat-reload-e2e-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.key, self.cert = self.tmp / "privkey.pem", self.tmp / "fullchain.pem"
        self.first = write_certificate(self.key, self.cert)
        self.config = self.tmp / "pingchat.toml"
        self.config.write_text('registration = "open"\nrate = 20\n')
        self.server = ServerProcess(
            "--config",
            str(self.config),
            "--tls-cert",
            str(self.cert),
            "--tls-key",
            str(self.key),
            ircs=LOOPBACK_TLS,
            web=LOOPBACK_TLS,
        ).start()
        self.addCleanup(self.server.cleanup)
        self.clients: list[LineClient] = []
        self.addCleanup(lambda: [c.close() for c in self.clients])
        self.doors = {
            "native": self.server.port("NativeFactory-tls"),
            "ircs": self.server.port("IRCFactory-tls"),
            "web": self.server.port("WebSite-tls"),
        }

    def account(self, name: str) -> LineClient:
        c = LineClient("127.0.0.1", self.doors["native"])
        self.clients.append(c)
        self.assertTrue(c.request("register", user=name, password="correct horse")["ok"])
        self.assertTrue(c.request("login", user=name, password="correct horse")["ok"])
        self.assertTrue(c.request("join", room="#ops")["ok"])
        return c

    def hup(self, expect: str) -> str:
        """Send SIGHUP; the first log line containing *expect* that came after it."""
        seen = len(self.server.log)
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGHUP)
        return str(
            wait_until(
                lambda: next((x for x in self.server.log[seen:] if expect in x), None),
                15,
                what=f"a log line with {expect!r}",
            )
        )

    def chats(self, alice: LineClient, bob: LineClient, text: str) -> None:
        self.assertTrue(alice.request("say", room="#ops", text=text)["ok"])
        self.assertEqual(bob.event("message", room="#ops", text=text)["from"], "alice")

    def test_sighup_serves_a_new_certificate_to_new_connections_only(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        for door, port in self.doors.items():
            self.assertEqual(peer_fingerprint(port), self.first, door)
        second = write_certificate(self.key, self.cert)
        line = self.hup("reload: TLS certificate")
        self.assertIn(f"SHA-256 fingerprint {colons(second)}, valid until", line)
        self.chats(alice, bob, "still here after the reload")
        for door, port in self.doors.items():
            self.assertEqual(peer_fingerprint(port), second, door)
        der = alice.sock.getpeercert(binary_form=True)
        assert der is not None
        self.assertEqual(hashlib.sha256(der).hexdigest(), self.first)  # its own, kept

        # A bad certificate: refused, logged, and the one before still served.
        self.cert.write_bytes(b"not a certificate\n")
        line = self.hup("reload: TLS certificate")
        self.assertIn("refused", line)
        self.assertIn(f"still serving {colons(second)}", line)
        for door, port in self.doors.items():
            self.assertEqual(peer_fingerprint(port), second, door)
        write_certificate(self.key, self.cert, san=False)
        self.assertIn("no subjectAltName", self.hup("reload: TLS certificate"))
        self.assertEqual(peer_fingerprint(self.doors["native"]), second)
        self.chats(alice, bob, "and after the refusals")
        self.assertIsNone(self.server.proc.poll() if self.server.proc else 0)

    def test_sighup_applies_the_config_files_reloadable_options(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        self.config.write_text(
            'registration = "closed"\nrate = 20\nsqlite-synchronous = "NORMAL"\n'
        )
        line = self.hup("which take effect only at a restart")
        self.assertIn("changes sqlite_synchronous, which", line)
        self.assertIn(
            "reload: options changed: registration 'open' -> 'closed'\n", self.server.output()
        )
        newcomer = LineClient("127.0.0.1", self.doors["native"])
        self.clients.append(newcomer)
        refused = newcomer.request("register", user="carol", password="correct horse")
        self.assertEqual(refused["error"]["code"], "registration_closed")
        self.chats(alice, bob, "nobody was disconnected")

        self.config.write_text("rate = [")
        self.assertIn("the options stay as they were", self.hup("not read again"))
        self.chats(alice, bob, "a broken config file changes nothing")
