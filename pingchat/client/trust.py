"""Deciding whether the server at the other end of the TLS connection is the right one.

Three policies:

- **trust on first use** (the default, for the server's self-signed
  certificate): the first time, show the certificate's SHA-256 fingerprint and
  ask; remember the answer per ``host:port`` in ``known_hosts`` (mode 0600);
  afterwards accept that certificate only, and refuse loudly if it changes;
- **a CA** (``--ca FILE``): the certificate must chain to that CA and name the
  host (service-identity), checked by OpenSSL during the handshake and once
  more afterwards, because Twisted only logs a certificate without
  subjectAltName instead of refusing it;
- **insecure** (``--insecure``): anything goes; for tests only, and it says so.

The check runs after the handshake and before the client sends a byte, so a
refused server never sees a password or a token.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from pingchat.client.configdir import ServerAddress, write_private

Ask = Callable[[str], Deferred[bool]]
"""Asks the user a yes/no question about trusting a server."""

INSECURE_WARNING = (
    "WARNING: --insecure: the server's certificate is NOT checked; anyone on the"
    " network path could read and change this connection. This option exists for"
    " tests only."
)


class UntrustedServer(Exception):
    """The server failed the trust check; the client must not talk to it."""


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, as ``AB:CD:...`` (like ``pingchat.tls``)."""
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class TrustStatus(Enum):
    KNOWN = "known"
    NEW = "new"
    CHANGED = "changed"


class KnownHosts:
    """Trusted certificate fingerprints, one ``host:port fingerprint`` line per server.

    A plain text file like ssh's ``known_hosts``, so that a user whose server
    really changed its certificate can delete one line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, str]:
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return {}
        entries = {}
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                host, _, fingerprint = line.partition(" ")
                entries[host] = fingerprint.strip()
        return entries

    def lookup(self, server: ServerAddress) -> str | None:
        return self._read().get(str(server))

    def check(self, server: ServerAddress, fingerprint: str) -> TrustStatus:
        known = self.lookup(server)
        if known is None:
            return TrustStatus.NEW
        return TrustStatus.KNOWN if known == fingerprint.upper() else TrustStatus.CHANGED

    def remember(self, server: ServerAddress, fingerprint: str) -> None:
        entries = self._read()
        entries[str(server)] = fingerprint.upper()
        lines = ["# pingchat: servers trusted on first use (host:port SHA-256 fingerprint)"]
        lines += [f"{host} {fp}" for host, fp in sorted(entries.items())]
        write_private(self.path, ("\n".join(lines) + "\n").encode("utf-8"))


@implementer(IOpenSSLClientConnectionCreator)
class _AnyCertificate:
    """TLS 1.2+ without certificate verification (the policy checks afterwards), with SNI."""

    def __init__(self, host: str) -> None:
        self._options = CertificateOptions(raiseMinimumTo=TLSVersion.TLSv1_2)
        self._server_name = None if _is_ip(host) else host.encode("idna")

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:  # noqa: N802, N803
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        return connection


class TrustPolicy:
    """How a connection decides the server is genuine: a TLS connection
    creator for the handshake, then :meth:`verify` on the certificate."""

    def creator(self, server: ServerAddress) -> IOpenSSLClientConnectionCreator:
        return _AnyCertificate(server.host)

    def verify(self, server: ServerAddress, cert: x509.Certificate, ask: Ask) -> Deferred[str]:
        """Fire with a line to tell the user, or fail with :class:`UntrustedServer`."""
        raise NotImplementedError


def normal_fingerprint(text: str) -> str:
    """``ab:cd...``, ``ABCD...`` or ``AB CD ...`` as ``AB:CD:...``."""
    digits = "".join(c for c in text.upper() if c in "0123456789ABCDEF")
    if len(digits) != 64 or len(digits) != len(text.replace(":", "").replace(" ", "")):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


class TrustOnFirstUse(TrustPolicy):
    """Ask once, then insist on the same certificate. With *expected* (a
    fingerprint the user got from the administrator) nothing is asked: the
    certificate must match it, and it is remembered (replacing an old one)."""

    def __init__(self, known_hosts: KnownHosts, expected: str | None = None) -> None:
        self.known_hosts = known_hosts
        self.expected = normal_fingerprint(expected) if expected else None

    def verify(self, server: ServerAddress, cert: x509.Certificate, ask: Ask) -> Deferred[str]:
        fingerprint = certificate_fingerprint(cert)
        if self.expected is not None:
            if fingerprint != self.expected:
                raise UntrustedServer(
                    f"the certificate of {server} is not the one given with --fingerprint:\n"
                    f"  expected: {self.expected}\n  offered:  {fingerprint}"
                )
            self.known_hosts.remember(server, fingerprint)
            return succeed(f"certificate of {server} matches --fingerprint")
        status = self.known_hosts.check(server, fingerprint)
        if status is TrustStatus.KNOWN:
            return succeed(f"certificate of {server} matches the one trusted before")
        if status is TrustStatus.CHANGED:
            raise UntrustedServer(changed_message(
                server, self.known_hosts.lookup(server) or "?", fingerprint,
                self.known_hosts.path))
        question = (
            f"The server {server} is new to this client. Its certificate's SHA-256"
            f" fingerprint is\n    {fingerprint}\nCompare it with the one your server's"
            " administrator gave you (the server logs it at start-up, and"
            " `pingchat fingerprint` prints it).\nTrust this server?"
            " (yes/no)"
        )

        def answered(yes: bool) -> str:
            if not yes:
                raise UntrustedServer(f"not trusting {server}: nothing was sent to it")
            self.known_hosts.remember(server, fingerprint)
            return f"trusting {server} from now on (fingerprint saved in {self.known_hosts.path})"

        return ask(question).addCallback(answered)


def changed_message(server: ServerAddress, old: str, new: str, path: Path) -> str:
    return (
        f"DANGER: THE CERTIFICATE OF {server} HAS CHANGED!\n"
        f"  trusted before: {old}\n"
        f"  offered now:    {new}\n"
        "Someone may be intercepting this connection, so the client refuses to talk"
        " to this server. If the administrator really replaced the certificate, check"
        " the new fingerprint with them, then connect once with --fingerprint and the"
        f" new fingerprint (or delete the line for {server} from {path})."
    )


class CertificateAuthority(TrustPolicy):
    """The certificate must be issued (directly or through a chain) by a CA in a PEM file."""

    def __init__(self, ca_file: Path) -> None:
        self.ca_file = ca_file
        try:
            certs = x509.load_pem_x509_certificates(ca_file.read_bytes())
        except ValueError as e:
            raise ValueError(f"{ca_file}: not a PEM certificate file ({e})") from None
        self._roots = [Certificate.loadPEM(c.public_bytes(Encoding.PEM)) for c in certs]

    def creator(self, server: ServerAddress) -> IOpenSSLClientConnectionCreator:
        return optionsForClientTLS(
            server.host,
            trustRoot=trustRootFromCertificates(self._roots),
            extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2},
        )

    def verify(self, server: ServerAddress, cert: x509.Certificate, ask: Ask) -> Deferred[str]:
        try:
            if _is_ip(server.host):
                verify_certificate_ip_address(cert, server.host)
            else:
                verify_certificate_hostname(cert, server.host)
        except (VerificationError, CertificateError) as e:
            raise UntrustedServer(
                f"the certificate of {server} does not name {server.host}: {e}"
            ) from None
        return succeed(f"certificate of {server} verified by {self.ca_file}")


class Insecure(TrustPolicy):
    def verify(self, server: ServerAddress, cert: x509.Certificate, ask: Ask) -> Deferred[str]:
        return succeed(INSECURE_WARNING)

