"""Trust in the server's certificate: the TOFU store, CA verification, and real
TLS handshakes on 127.0.0.1 through the client's Connector."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from pingchat.client.configdir import ServerAddress
from pingchat.client.connection import ClientProtocol, Connector
from pingchat.client.trust import (
    CertificateAuthority,
    Insecure,
    KnownHosts,
    TrustOnFirstUse,
    TrustStatus,
    UntrustedServer,
    certificate_fingerprint,
)
from pingchat.tls import certificate_fingerprint as server_fingerprint
from pingchat.tls import ensure_certificate

NOW = datetime.datetime.now(datetime.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("Test CA")).issuer_name(_name("Test CA"))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
              names: list[x509.GeneralName] | None) -> tuple[ec.EllipticCurvePrivateKey,
                                                            x509.Certificate]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder().subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
    )
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


class TempDirMixin:
    def tempdir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="pingchat-client-test-"))
        self.addCleanup(shutil.rmtree, path, True)  # type: ignore[attr-defined]
        return path


def answer(yes: bool, asked: list[str]) -> Any:
    def ask(question: str) -> Deferred[bool]:
        asked.append(question)
        return succeed(yes)

    return ask


class KnownHostsTests(TempDirMixin, TestCase):
    def setUp(self) -> None:
        self.dir = self.tempdir()
        self.known = KnownHosts(self.dir / "known_hosts")
        self.server = ServerAddress("chat.example", 7464)
        _key, self.cert = make_leaf(make_ca(), [x509.DNSName("chat.example")])
        _key, self.other = make_leaf(make_ca(), [x509.DNSName("chat.example")])

    def test_fingerprint_matches_the_servers_own_format(self) -> None:
        _, cert_path = ensure_certificate(self.dir, "localhost")
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        self.assertEqual(certificate_fingerprint(cert), server_fingerprint(cert_path))

    def test_first_use_asks_shows_the_fingerprint_and_remembers_a_yes(self) -> None:
        asked: list[str] = []
        policy = TrustOnFirstUse(self.known)
        note = self.successResultOf(policy.verify(self.server, self.cert, answer(True, asked)))
        self.assertEqual(len(asked), 1)
        self.assertIn(certificate_fingerprint(self.cert), asked[0])
        self.assertIn("trusting chat.example:7464", note)
        self.assertEqual(self.known.lookup(self.server), certificate_fingerprint(self.cert))
        # Known now: accepted without asking again.
        self.successResultOf(policy.verify(self.server, self.cert, answer(False, asked)))
        self.assertEqual(len(asked), 1)

    def test_the_store_is_private_to_its_owner(self) -> None:
        self.known.remember(self.server, certificate_fingerprint(self.cert))
        mode = stat.S_IMODE(os.stat(self.known.path).st_mode)
        self.assertEqual(mode, 0o600)

    def test_a_no_remembers_nothing_and_refuses(self) -> None:
        policy = TrustOnFirstUse(self.known)
        failure = self.failureResultOf(
            policy.verify(self.server, self.cert, answer(False, [])), UntrustedServer)
        self.assertIn("nothing was sent", str(failure.value))
        self.assertIsNone(self.known.lookup(self.server))

    def test_a_changed_certificate_is_refused_loudly_without_asking(self) -> None:
        self.known.remember(self.server, certificate_fingerprint(self.cert))
        asked: list[str] = []
        with self.assertRaises(UntrustedServer) as caught:
            TrustOnFirstUse(self.known).verify(self.server, self.other, answer(True, asked))
        message = str(caught.exception)
        self.assertIn("CERTIFICATE OF chat.example:7464 HAS CHANGED", message)
        self.assertIn(certificate_fingerprint(self.cert), message)
        self.assertIn(certificate_fingerprint(self.other), message)
        self.assertIn(str(self.known.path), message)
        self.assertEqual(asked, [])
        # The trusted fingerprint stays as it was.
        self.assertEqual(self.known.check(self.server, certificate_fingerprint(self.cert)),
                         TrustStatus.KNOWN)

    def test_entries_are_per_host_and_port(self) -> None:
        self.known.remember(self.server, "AA:BB")
        self.known.remember(ServerAddress("chat.example", 7000), "CC:DD")
        self.known.remember(ServerAddress("::1", 7464), "EE:FF")
        self.assertEqual(self.known.lookup(self.server), "AA:BB")
        self.assertEqual(self.known.lookup(ServerAddress("chat.example", 7000)), "CC:DD")
        self.assertEqual(self.known.lookup(ServerAddress("::1", 7464)), "EE:FF")
        self.assertEqual(self.known.check(ServerAddress("other", 7464), "AA:BB"),
                         TrustStatus.NEW)


class CertificateAuthorityTests(TempDirMixin, TestCase):
    def setUp(self) -> None:
        self.ca = make_ca()
        self.ca_file = self.tempdir() / "ca.pem"
        self.ca_file.write_bytes(self.ca[1].public_bytes(serialization.Encoding.PEM))

    def test_a_certificate_naming_the_host_is_accepted(self) -> None:
        _key, cert = make_leaf(self.ca, [x509.DNSName("chat.example")])
        policy = CertificateAuthority(self.ca_file)
        self.successResultOf(policy.verify(ServerAddress("chat.example"), cert, answer(False, [])))

    def test_an_ip_address_is_checked_against_ip_names(self) -> None:
        _key, cert = make_leaf(self.ca, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        policy = CertificateAuthority(self.ca_file)
        self.successResultOf(policy.verify(ServerAddress("127.0.0.1"), cert, answer(False, [])))
        self.assertRaises(UntrustedServer, policy.verify, ServerAddress("127.0.0.2"), cert,
                          answer(False, []))

    def test_a_wrong_host_name_is_refused(self) -> None:
        _key, cert = make_leaf(self.ca, [x509.DNSName("elsewhere.example")])
        with self.assertRaises(UntrustedServer) as caught:
            CertificateAuthority(self.ca_file).verify(ServerAddress("chat.example"), cert,
                                                      answer(True, []))
        self.assertIn("does not name chat.example", str(caught.exception))

    def test_a_certificate_without_subject_alt_name_is_refused(self) -> None:
        _key, cert = make_leaf(self.ca, None)
        self.assertRaises(UntrustedServer, CertificateAuthority(self.ca_file).verify,
                          ServerAddress("localhost"), cert, answer(True, []))

    def test_a_file_that_is_not_pem_is_a_clear_error(self) -> None:
        bad = self.tempdir() / "bad.pem"
        bad.write_text("hello")
        self.assertRaises(ValueError, CertificateAuthority, bad)


class _Recorder(Protocol):
    """The server side of a handshake test: says hello, remembers what it got."""

    def connectionMade(self) -> None:  # noqa: N802
        self.factory.connections.append(self)  # type: ignore[attr-defined]
        self.received = b""
        self.transport.write(b'{"event":"hello","server":"test","protocol":1}\n')  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data


class _Client:
    """A ConnectorClient that records what the connector tells it."""

    def __init__(self, trust: bool = True) -> None:
        self.answer = trust
        self.asked: list[str] = []
        self.states: list[tuple[str, str]] = []
        self.refusals: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.sessions: Deferred[ClientProtocol] = Deferred()
        self.ended: Deferred[str] = Deferred()

    def ask_trust(self, question: str) -> Deferred[bool]:
        self.asked.append(question)
        return succeed(self.answer)

    def trusted(self, note: str, first: bool) -> None:
        pass

    def session_started(self, proto: ClientProtocol) -> Deferred[Any]:
        self.sessions.callback(proto)
        return succeed(None)

    def event(self, proto: ClientProtocol, event: dict[str, Any]) -> None:
        self.events.append(event)

    def state_changed(self, state: str, detail: str) -> None:
        self.states.append((state, detail))
        if state in ("failed", "refused", "offline") and not self.ended.called:
            self.ended.callback(state)

    def refused(self, message: str) -> None:
        self.refusals.append(message)


class HandshakeTests(TempDirMixin, TestCase):
    """Real TLS on 127.0.0.1 port 0: the policy decides before a byte is sent."""

    def listen(self, key: Any, cert: x509.Certificate) -> Deferred[int]:
        options = CertificateOptions(privateKey=key, certificate=cert,
                                     raiseMinimumTo=TLSVersion.TLSv1_2)
        factory = Factory.forProtocol(_Recorder)
        factory.connections = []  # type: ignore[attr-defined]
        self.server_factory = factory
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")

        def listening(port: Any) -> int:
            self.addCleanup(port.stopListening)
            return int(port.getHost().port)

        return endpoint.listen(TLSMemoryBIOFactory(options, False, factory)).addCallback(
            listening)

    def connect(self, host: str, port: int, policy: Any, client: _Client) -> Connector:
        connector = Connector(reactor, ServerAddress(host, port), policy, client)

        def stop() -> Deferred[None]:
            connector.stop()
            return connector.closed()

        self.addCleanup(stop)
        connector.start()
        return connector

    async def test_tofu_accepts_a_new_server_after_asking(self) -> None:
        key, cert = make_leaf(make_ca(), [x509.DNSName("localhost")])
        port = await self.listen(key, cert)
        known = KnownHosts(self.tempdir() / "known_hosts")
        client = _Client(trust=True)
        connector = self.connect("127.0.0.1", port, TrustOnFirstUse(known), client)
        proto = await client.sessions
        self.assertEqual(len(client.asked), 1)
        self.assertEqual(known.lookup(connector.server), certificate_fingerprint(cert))
        self.assertIs(connector.proto, proto)

    async def test_tofu_refuses_a_swapped_certificate_and_sends_nothing(self) -> None:
        key, cert = make_leaf(make_ca(), [x509.DNSName("localhost")])
        port = await self.listen(key, cert)
        known = KnownHosts(self.tempdir() / "known_hosts")
        known.remember(ServerAddress("127.0.0.1", port), "00:11:22")
        client = _Client(trust=True)
        self.connect("127.0.0.1", port, TrustOnFirstUse(known), client)
        self.assertEqual(await client.ended, "refused")
        self.assertEqual(client.asked, [])
        self.assertIn("HAS CHANGED", client.refusals[0])
        self.assertFalse(client.sessions.called)
        self.assertEqual(self.server_factory.connections[0].received, b"")  # type: ignore[attr-defined]

    async def test_ca_accepts_a_certificate_naming_the_host(self) -> None:
        ca = make_ca()
        key, cert = make_leaf(ca, [x509.DNSName("localhost")])
        port = await self.listen(key, cert)
        ca_file = self.tempdir() / "ca.pem"
        ca_file.write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
        client = _Client()
        self.connect("localhost", port, CertificateAuthority(ca_file), client)
        await client.sessions

    async def test_ca_refuses_a_wrong_host_name_in_the_handshake(self) -> None:
        ca = make_ca()
        key, cert = make_leaf(ca, [x509.DNSName("elsewhere.example")])
        port = await self.listen(key, cert)
        ca_file = self.tempdir() / "ca.pem"
        ca_file.write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
        client = _Client()
        self.connect("localhost", port, CertificateAuthority(ca_file), client)
        self.assertEqual(await client.ended, "refused")
        self.assertFalse(client.sessions.called)
        self.assertIn("TLS with localhost", client.refusals[0])

    async def test_ca_refuses_a_certificate_from_another_ca(self) -> None:
        key, cert = make_leaf(make_ca(), [x509.DNSName("localhost")])
        port = await self.listen(key, cert)
        ca_file = self.tempdir() / "ca.pem"
        ca_file.write_bytes(make_ca()[1].public_bytes(serialization.Encoding.PEM))
        client = _Client()
        self.connect("localhost", port, CertificateAuthority(ca_file), client)
        self.assertEqual(await client.ended, "refused")
        self.assertFalse(client.sessions.called)

    async def test_insecure_accepts_anything(self) -> None:
        key, cert = make_leaf(make_ca(), [x509.DNSName("elsewhere.example")])
        port = await self.listen(key, cert)
        client = _Client(trust=False)
        connector = self.connect("localhost", port, Insecure(), client)
        await client.sessions
        self.assertEqual(client.asked, [])
        connector.stop()
        await client.ended


class PinnedFingerprintTests(TempDirMixin, TestCase):
    def setUp(self) -> None:
        self.known = KnownHosts(self.tempdir() / "known_hosts")
        self.server = ServerAddress("chat.example")
        _key, self.cert = make_leaf(make_ca(), [x509.DNSName("chat.example")])
        self.fingerprint = certificate_fingerprint(self.cert)

    def test_a_matching_fingerprint_is_trusted_without_asking(self) -> None:
        asked: list[str] = []
        pin = self.fingerprint.lower().replace(":", "")
        policy = TrustOnFirstUse(self.known, pin)
        self.successResultOf(policy.verify(self.server, self.cert, answer(False, asked)))
        self.assertEqual(asked, [])
        self.assertEqual(self.known.lookup(self.server), self.fingerprint)

    def test_a_matching_fingerprint_replaces_an_old_one(self) -> None:
        self.known.remember(self.server, "AA:BB")
        policy = TrustOnFirstUse(self.known, self.fingerprint)
        self.successResultOf(policy.verify(self.server, self.cert, answer(False, [])))
        self.assertEqual(self.known.lookup(self.server), self.fingerprint)

    def test_another_certificate_is_refused(self) -> None:
        policy = TrustOnFirstUse(self.known, "AB" * 32)
        with self.assertRaises(UntrustedServer) as caught:
            policy.verify(self.server, self.cert, answer(True, []))
        self.assertIn(self.fingerprint, str(caught.exception))
        self.assertIsNone(self.known.lookup(self.server))

    def test_a_malformed_fingerprint_is_an_error(self) -> None:
        for bad in ("AB:CD", "XY" * 32, "AB" * 33):
            self.assertRaises(ValueError, TrustOnFirstUse, self.known, bad)
