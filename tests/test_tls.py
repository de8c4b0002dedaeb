"""Certificates: generated once, private, with SANs; and real TLS over loopback."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from pingchat.tls import ensure_certificate, server_endpoint, server_options


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


class CertificateTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_generated_once_with_private_key_file(self) -> None:
        key, cert = ensure_certificate(self.dir, "chat.example")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        first = cert.read_bytes()
        ensure_certificate(self.dir, "chat.example")
        self.assertEqual(cert.read_bytes(), first)

    def test_certificate_has_subject_alt_names(self) -> None:
        _, cert = ensure_certificate(self.dir, "chat.example")
        parsed = x509.load_pem_x509_certificate(cert.read_bytes())
        san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertIn("chat.example", san.get_values_for_type(x509.DNSName))
        self.assertIn("localhost", san.get_values_for_type(x509.DNSName))

    def listen(self) -> tuple[int, Path]:
        key, cert = ensure_certificate(self.dir, "localhost")
        endpoint = server_endpoint(reactor, "ssl:0:interface=127.0.0.1", server_options(key, cert))
        d = endpoint.listen(Factory.forProtocol(Echo))
        port = self.successResultOf(d)
        self.addCleanup(port.stopListening)
        return port.getHost().port, cert

    def test_verified_connection_with_hostname_check(self) -> Any:
        port, cert = self.listen()

        def talk(hostname: str) -> bytes:
            ctx = ssl.create_default_context(cafile=str(cert))
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                ctx.wrap_socket(raw, server_hostname=hostname) as s,
            ):
                s.sendall(b"ping")
                return s.recv(4)

        d = deferToThread(talk, "localhost")
        d.addCallback(self.assertEqual, b"ping")
        d.addCallback(
            lambda _: self.assertFailure(
                deferToThread(talk, "wrong.example"), ssl.SSLCertVerificationError
            )
        )
        return d

    def test_context_refuses_anything_below_tls_1_2(self) -> None:
        from OpenSSL import SSL

        key, cert = ensure_certificate(self.dir, "localhost")
        options = server_options(key, cert).getContext().set_options(0)  # returns the mask
        for old in (SSL.OP_NO_SSLv3, SSL.OP_NO_TLSv1, SSL.OP_NO_TLSv1_1):
            self.assertTrue(options & old)
        self.assertFalse(options & SSL.OP_NO_TLSv1_2)

    def test_plain_endpoints_pass_through(self) -> None:
        endpoint = server_endpoint(reactor, "tcp:0:interface=127.0.0.1", None)
        port = self.successResultOf(endpoint.listen(Factory.forProtocol(Echo)))
        self.addCleanup(port.stopListening)
        self.assertEqual(port.getHost().host, "127.0.0.1")
