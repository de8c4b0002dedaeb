"""Reloading a running server: certificates (over real TLS on loopback), the
reloadable options, SIGHUP, and the manhole's ``reload()``."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pingchat.admin.namespace import AdminTools, Done
from pingchat.auth.checkers import TokenChecker
from pingchat.reload import RELOADABLE, ReloadOnSignal
from pingchat.startup import StartupFailed
from pingchat.tap import Options, _reread
from pingchat.testing import make_server
from pingchat.tls import (
    CERT_FILE,
    KEY_FILE,
    CertificateRefused,
    Certificates,
    ServerCertificate,
    server_endpoint,
)
from tests.certs import colons, write_certificate
from tests.helpers import PASSWORD, ServerTestCase


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.transport.write(data)  # type: ignore[union-attr]


def connect(port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def fingerprint(s: ssl.SSLSocket) -> str:
    der = s.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def echo(s: ssl.SSLSocket, data: bytes) -> bytes:
    s.sendall(data)
    return s.recv(len(data))


class LogLines:
    """Collects what the server logs while a test runs."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def at(self, level: str) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events if e.get("log_level").name == level]


class ServerCertificateTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-reload-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.key, self.cert = self.dir / KEY_FILE, self.dir / CERT_FILE
        self.first = write_certificate(self.key, self.cert)
        self.certificate = ServerCertificate(self.key, self.cert)

    def listen(self) -> int:
        endpoint = server_endpoint(
            reactor, "ssl:0:interface=127.0.0.1", Certificates(self.certificate)
        )
        port = self.successResultOf(endpoint.listen(Factory.forProtocol(Echo)))
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    def test_new_connections_get_the_new_certificate_old_ones_keep_theirs(self) -> Any:
        port = self.listen()
        opened: list[ssl.SSLSocket] = []
        self.addCleanup(lambda: [s.close() for s in opened])

        def before() -> str:
            opened.append(connect(port))
            self.assertEqual(echo(opened[0], b"one"), b"one")
            return fingerprint(opened[0])

        def reload(seen: str) -> str:
            self.assertEqual(seen, self.first)
            second = write_certificate(self.key, self.cert)
            loaded = self.certificate.reload()
            self.assertEqual(loaded.fingerprint, colons(second))
            return second

        def after(second: str) -> None:
            fresh = connect(port)
            opened.append(fresh)
            self.assertEqual(fingerprint(fresh), second)
            self.assertEqual(echo(fresh, b"two"), b"two")
            self.assertEqual(echo(opened[0], b"still"), b"still")  # the old one goes on
            self.assertEqual(fingerprint(opened[0]), self.first)

        d = deferToThread(before)
        d.addCallback(reload)
        d.addCallback(lambda second: deferToThread(after, second))
        return d

    def test_a_refused_certificate_leaves_the_old_one_served(self) -> Any:
        port = self.listen()
        self.cert.write_bytes(
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
        )
        self.assertRaises(CertificateRefused, self.certificate.reload)

        def check() -> None:
            s = connect(port)
            try:
                self.assertEqual(fingerprint(s), self.first)
            finally:
                s.close()

        return deferToThread(check)

    def refused(self, because: str) -> None:
        old = self.certificate.current
        with self.assertRaises(CertificateRefused) as e:
            self.certificate.reload()
        self.assertIn(because, str(e.exception))
        self.assertIs(self.certificate.current, old)

    def test_unparseable_certificate(self) -> None:
        self.cert.write_bytes(b"hello")
        self.refused("holds no PEM certificate")

    def test_unparseable_key(self) -> None:
        self.key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        self.refused("holds no usable PEM private key")

    def test_key_that_is_not_the_certificates(self) -> None:
        write_certificate(self.key, self.cert, write_key=False)  # a new key, not written
        self.refused(f"the key {self.key} is not the key of {self.cert}")

    def test_expired(self) -> None:
        write_certificate(self.key, self.cert, days=-1)
        self.refused("it expired on")

    def test_not_yet_valid(self) -> None:
        write_certificate(self.key, self.cert, starts_in_days=2)
        self.refused("it is not valid before")

    def test_without_subject_alt_name(self) -> None:
        write_certificate(self.key, self.cert, san=False)
        self.refused("no subjectAltName")

    def test_missing_file(self) -> None:
        self.cert.unlink()
        self.refused(f"cannot read {self.cert}")

    def test_a_chain_is_served_whole(self) -> None:
        intermediate = self.dir / "other.pem"
        write_certificate(self.dir / "other-key.pem", intermediate, name="ca.example")
        with self.cert.open("ab") as f:
            f.write(intermediate.read_bytes())
        loaded = self.certificate.reload()
        self.assertEqual(loaded.fingerprint, colons(self.first))
        self.assertEqual(len(loaded.options.extraCertChain), 1)

    def test_named_certificates_are_reloaded_with_the_default(self) -> None:
        other_key, other_cert = self.dir / "k2.pem", self.dir / "c2.pem"
        write_certificate(other_key, other_cert)
        certificates = Certificates(self.certificate)
        description = f"ssl:0:interface=127.0.0.1:privateKey={other_key}:certKey={other_cert}"
        endpoint: Any = server_endpoint(reactor, description, certificates)
        self.assertIsInstance(endpoint.options, ServerCertificate)
        self.assertEqual(certificates.all(), [self.certificate, endpoint.options])
        self.assertIs(server_endpoint(reactor, "ssl:0", certificates).options, self.certificate)  # type: ignore[attr-defined]


class StartupTests(SynchronousTestCase):
    def test_a_bad_certificate_ends_the_start_with_one_line(self) -> None:
        where = Path(tempfile.mkdtemp(prefix="pingchat-reload-"))
        self.addCleanup(shutil.rmtree, where, True)
        key, cert = where / "key.pem", where / "cert.pem"
        write_certificate(key, cert)
        write_certificate(where / "other.pem", cert, write_key=False)
        with self.assertRaises(StartupFailed) as e:
            make_server(where / "data", chat=("ssl:0",), tls_cert=cert, tls_key=key)
        self.assertIn("TLS certificate: the key", e.exception.message)


class ReloaderTests(ServerTestCase):
    settings = {"chat": ("ssl:0:interface=127.0.0.1",)}

    def setUp(self) -> None:
        super().setUp()
        self.reloader = self.server.extras["reloader"]
        self.log = LogLines(self)

    def test_one_line_per_reload_with_the_new_fingerprint_and_expiry(self) -> None:
        key, cert = self.data_dir / KEY_FILE, self.data_dir / CERT_FILE
        second = write_certificate(key, cert, days=30)
        lines = self.reloader.reload()
        self.assertEqual(len(lines), 1)
        self.assertRegex(
            lines[0],
            rf"^reload: TLS certificate {cert}: SHA-256 fingerprint {colons(second)},"
            r" valid until \d{4}-\d\d-\d\d \d\d:\d\d UTC$",
        )
        self.assertEqual(self.log.at("info"), lines)
        self.assertEqual(self.server.tls.default.current.fingerprint, colons(second))

    def test_a_refused_certificate_is_an_error_line_and_the_old_one_stays(self) -> None:
        old = self.server.tls.default.current
        write_certificate(self.data_dir / KEY_FILE, self.data_dir / CERT_FILE, days=-1)
        lines = self.reloader.reload()
        self.assertIn("refused: it expired on", lines[0])
        self.assertIn(f"still serving {old.fingerprint}", lines[0])
        self.assertEqual(self.log.at("error"), lines)
        self.assertIs(self.server.tls.default.current, old)

    def reread(self, **changes: Any) -> None:
        self.reloader.config = "pingchat.toml"
        self.reloader.reread = lambda: attrs.evolve(self.server.settings, **changes)

    def test_reloadable_options_take_effect_at_once_for_every_connection(self) -> None:
        self.account("alice")
        connected = self.client()
        self.reread(
            rate=2.0,
            rate_burst=3.0,
            max_backlog=5000,
            guests=True,
            registration="closed",
            min_password_length=12,
            login_free_attempts=2,
            login_backoff_max=60.0,
            registrations_per_hour=4.0,
            token_ttl_days=1.0,
        )
        lines = self.reloader.reload()
        self.assertEqual(len(lines), 2)  # the certificate, the options
        self.assertTrue(lines[1].startswith("reload: options changed: "), lines[1])
        self.assertIn("rate 20.0 -> 2.0, rate_burst 60.0 -> 3.0", lines[1])
        self.assertIn("registration 'open' -> 'closed'", lines[1])
        native, irc, accounts = self.server.native, self.server.extras["irc"], self.server.accounts
        self.assertEqual((native.rate, native.burst, native.max_backlog), (2.0, 3.0, 5000))
        self.assertEqual((irc.rate, irc.burst, irc.max_backlog, irc.guests), (2.0, 3.0, 5000, True))
        self.assertEqual((connected.protocol.bucket.rate, connected.protocol.bucket.burst), (2, 3))
        self.assertTrue(any("guest" in line.lower() for line in irc.motd))
        self.assertEqual((accounts.registration, accounts.min_password_length), ("closed", 12))
        day = 24 * 3600 * 1000
        checkers = {type(c): c for c in self.server.portal.checkers.values()}
        self.assertEqual((accounts.token_ttl_ms, checkers[TokenChecker].ttl_ms), (day, day))
        throttle = accounts.login_throttle
        self.assertEqual((throttle.free, throttle.cap), (2, 60.0))
        self.assertEqual(accounts.register_limiter.burst, 4.0)
        refused = self.client().request("register", user="bob", password=PASSWORD)
        self.assertEqual(refused["error"]["code"], "registration_closed")
        for name in RELOADABLE:
            self.assertEqual(
                getattr(self.server.settings, name), getattr(self.reloader.reread(), name)
            )

    def test_other_options_need_a_restart_and_are_not_applied(self) -> None:
        self.reread(chat=("ssl:1234",), server_name="elsewhere", rate=5.0)
        lines = self.reloader.reload()
        self.assertIn("reload: options changed: rate 20.0 -> 5.0", lines[1])
        self.assertEqual(
            lines[2],
            "reload: pingchat.toml changes chat, server_name, which take effect only at a restart",
        )
        self.assertEqual(self.log.at("warn"), [lines[2]])
        self.assertEqual(self.server.settings.chat, ("ssl:0:interface=127.0.0.1",))
        self.assertEqual(self.server.settings.server_name, "test.pingchat")

    def test_nothing_changed(self) -> None:
        self.reread()
        self.assertEqual(
            self.reloader.reload()[1], "reload: no reloadable option changed in pingchat.toml"
        )

    def test_a_config_that_cannot_be_read_changes_nothing(self) -> None:
        def broken() -> Any:
            raise usage.UsageError("--config: pingchat.toml is not valid TOML: line 3")

        self.reloader.config = "pingchat.toml"
        self.reloader.reread = broken
        before = self.server.settings
        lines = self.reloader.reload()
        self.assertEqual(
            lines[1],
            "reload: pingchat.toml not read again (--config: pingchat.toml is not valid TOML:"
            " line 3); the options stay as they were",
        )
        self.assertIs(self.server.settings, before)

    def test_the_manhole_reload_does_the_same_and_is_audited(self) -> None:
        second = write_certificate(self.data_dir / KEY_FILE, self.data_dir / CERT_FILE)
        tools = AdminTools(self.server, "root", self.clock, None, "192.0.2.7")
        done = tools.namespace()["reload"]()
        self.assertIsInstance(done, Done)
        self.assertIn(f"SHA-256 fingerprint {colons(second)}", done)
        rows = self.successResultOf(self.server.store.recent_audit(10))
        self.assertEqual(
            [r["event"] for r in rows if r["event"] == "admin_reload"], ["admin_reload"]
        )


class RereadTests(SynchronousTestCase):
    def test_the_config_file_is_read_again_and_the_command_line_still_wins(self) -> None:
        where = Path(tempfile.mkdtemp(prefix="pingchat-reload-"))
        self.addCleanup(shutil.rmtree, where, True)
        config = where / "pingchat.toml"
        config.write_text('rate = 5\nregistration = "open"\n')
        options = Options()
        options.parseOptions(["--config", str(config), "--data-dir", str(where), "--rate", "7"])
        config.write_text('rate = 9\nregistration = "invite"\n')
        settings = _reread(options)
        self.assertEqual((settings.rate, settings.registration), (7.0, "invite"))
        config.write_text("rate = [")
        self.assertRaises(usage.UsageError, _reread, options)


class FakeReactor:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def callFromThread(self, f: Any, *args: Any) -> None:  # noqa: N802
        self.calls.append((f, args))


class ReloadOnSignalTests(SynchronousTestCase):
    def setUp(self) -> None:
        def before(signum: int, frame: Any) -> None:
            raise AssertionError("the old handler ran")

        self.before = before
        previous = signal.signal(signal.SIGHUP, before)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        self.reactor = FakeReactor()
        self.reloads: list[int] = []
        self.service = ReloadOnSignal(self.reactor, lambda: self.reloads.append(1))

    def test_sighup_asks_the_reactor_to_reload_and_does_nothing_itself(self) -> None:
        self.service.startService()
        self.addCleanup(self.service.stopService)
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(len(self.reactor.calls), 1)  # Python ran the handler at once
        self.assertEqual(self.reloads, [])
        f, args = self.reactor.calls[0]
        f(*args)
        self.assertEqual(self.reloads, [1])

    def test_stopping_puts_the_old_handler_back(self) -> None:
        self.service.startService()
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), self.before)
        self.service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), self.before)

    def test_a_failing_reload_is_logged_not_raised(self) -> None:
        log = LogLines(self)

        def fail() -> None:
            raise RuntimeError("boom")

        service = ReloadOnSignal(self.reactor, fail)
        service._run()
        self.assertTrue(any("reload failed" in line for line in log.at("critical")))
        self.flushLoggedErrors(RuntimeError)
