"""TLS for the listeners: a self-signed certificate on first run, and
``CertificateOptions`` built from ``cryptography`` objects (TLS 1.2 minimum).

Every TLS door takes its certificate from a :class:`ServerCertificate`,
which a reload (``SIGHUP``, the manhole's ``reload()``) replaces: new
connections get the new certificate, existing ones keep theirs.

``ssl:`` endpoint strings are accepted as usual, but instead of letting
Twisted load PEM files through deprecated pyOpenSSL objects, pingchat turns
them into a ``tcp:`` endpoint wrapped in TLS with its own context; without
``privateKey=``/``certKey=`` the data dir's certificate is used.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat import twisted_internals
from pingchat.proxy import UNDER_PROXY, PeerCheck, ProxyListenerEndpoint, behind_proxy
from pingchat.runtime import ServerReactor, TurnFlusher, server_reactor, turn_flusher

KEY_FILE = "tls-key.pem"
CERT_FILE = "tls-cert.pem"
TLS_ARGUMENTS = frozenset({"privateKey", "certKey", "extraCertChain", "sslmethod", "dhParameters"})


def write_secret(path: Path, data: bytes) -> None:
    """Write *data* to a new file readable only by its owner (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def ensure_certificate(data_dir: Path, server_name: str) -> tuple[Path, Path]:
    """Return the data dir's key and certificate, generating them the first time."""
    key_path, cert_path = data_dir / KEY_FILE, data_dir / CERT_FILE
    if key_path.exists() and cert_path.exists():
        return key_path, cert_path
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    if server_name and server_name != "localhost":
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(server_name)))
        except ValueError:
            names.append(x509.DNSName(server_name))
    names += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name or "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    for stale in (key_path, cert_path):
        if stale.exists():
            stale.unlink()
    write_secret(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def certificate_fingerprint(cert_path: Path) -> str:
    return fingerprint_of(x509.load_pem_x509_certificate(cert_path.read_bytes()))


def fingerprint_of(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint as browsers show it (``AB:CD:...``)."""
    digest = cert.fingerprint(hashes.SHA256()).hex()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


def server_options(key_path: Path, cert_path: Path) -> CertificateOptions:
    """A server context from PEM files: first certificate is the leaf, the rest its chain."""
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    kwargs: dict[str, Any] = {
        "privateKey": key,
        "certificate": chain[0],
        "raiseMinimumTo": TLSVersion.TLSv1_2,
    }
    if len(chain) > 1:
        kwargs["extraCertChain"] = chain[1:]
    return CertificateOptions(**kwargs)


class CertificateRefused(ValueError):
    """A certificate and key that must not be served; the message says why."""


@attrs.frozen
class LoadedCertificate:
    """A certificate and key read from their files, ready to serve."""

    options: CertificateOptions
    fingerprint: str
    not_after: datetime.datetime
    # What clients would object to (no subjectAltName, expired, not yet valid).
    problems: tuple[str, ...] = ()


def load_certificate(
    key_path: Path, cert_path: Path, now: datetime.datetime | None = None
) -> LoadedCertificate:
    """Read and check a key and certificate chain; :class:`CertificateRefused` if unusable.

    Unreadable files, a key that is not the certificate's, or a context
    OpenSSL refuses, raise; what clients would refuse is listed in
    ``problems`` (a reload refuses those too; at start-up they are logged).
    """
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        key_data, cert_data = key_path.read_bytes(), cert_path.read_bytes()
    except OSError as e:
        raise CertificateRefused(f"cannot read {e.filename}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as e:
        raise CertificateRefused(f"{key_path} holds no usable PEM private key ({e})") from None
    try:
        chain = x509.load_pem_x509_certificates(cert_data)
    except ValueError:
        raise CertificateRefused(f"{cert_path} holds no PEM certificate") from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != (
        leaf.public_key().public_bytes(serialization.Encoding.DER, spki)
    ):
        raise CertificateRefused(f"the key {key_path} is not the key of {cert_path}")
    kwargs: dict[str, Any] = {
        "privateKey": key,
        "certificate": leaf,
        "raiseMinimumTo": TLSVersion.TLSv1_2,
    }
    if len(chain) > 1:
        kwargs["extraCertChain"] = chain[1:]
    try:
        options = CertificateOptions(**kwargs)
        options.getContext()  # OpenSSL's own checks, now rather than at the first client
    except Exception as e:
        raise CertificateRefused(f"OpenSSL refuses {cert_path}: {e}") from None
    problems = []
    try:
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        problems.append("it has no subjectAltName, which clients require")
    if leaf.not_valid_after_utc <= now:
        problems.append(f"it expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if leaf.not_valid_before_utc > now:
        problems.append(f"it is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    return LoadedCertificate(
        options, fingerprint_of(leaf), leaf.not_valid_after_utc, tuple(problems)
    )


@implementer(IOpenSSLServerConnectionCreator)
class ServerCertificate:
    """The certificate of one or more TLS listeners, replaceable while they listen.

    Each new connection takes the OpenSSL context of the certificate loaded
    last; a connection keeps the context it started with, so a reload
    closes nothing.
    """

    def __init__(self, key_path: Path, cert_path: Path) -> None:
        self.key_path = key_path
        self.cert_path = cert_path
        self.current = load_certificate(key_path, cert_path)

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> Any:  # noqa: N802
        return self.current.options.serverConnectionForTLS(tlsProtocol)

    def getContext(self) -> Any:  # noqa: N802
        """The current OpenSSL context (made at once, not at the first client)."""
        return self.current.options.getContext()

    def reload(self, now: datetime.datetime | None = None) -> LoadedCertificate:
        """Read the files again and serve them; the old certificate stays if they fail."""
        loaded = load_certificate(self.key_path, self.cert_path, now)
        if loaded.problems:
            raise CertificateRefused("; ".join(loaded.problems))
        self.current = loaded
        return loaded


class Certificates:
    """Every certificate the server's TLS listeners serve: the default one and any
    named in an ``ssl:`` string (``privateKey=``/``certKey=``), reloaded together."""

    def __init__(self, default: ServerCertificate | None = None) -> None:
        self.default = default
        self._named: dict[tuple[Path, Path], ServerCertificate] = {}

    def for_files(self, key_path: Path, cert_path: Path) -> ServerCertificate:
        found = self._named.get((key_path, cert_path))
        if found is None:
            found = self._named[(key_path, cert_path)] = ServerCertificate(key_path, cert_path)
        return found

    def all(self) -> list[ServerCertificate]:
        every = [self.default] if self.default is not None else []
        return every + [c for c in self._named.values() if c is not self.default]


# A TLS connection's memory BIOs keep the capacity of the largest chunk that
# ever went through them; past this many bytes in one go they are replaced.
COMPACT_AFTER = 4096
COMPACT_DELAY = 1.0  # seconds after such a burst; see CompactTLSTransport


class TurnWrites:
    """A TLS connection's writes of one reactor turn, given to TLS together at its end.

    Takes the place of Twisted's ``_AggregateSmallWrites`` (the same
    ``write``/``flush``/``close``): that one asks its clock for a
    ``callLater(0)`` per connection and turn; this one puts itself on the
    :class:`~pingchat.runtime.TurnFlusher`'s list once per turn and
    otherwise only appends. A member of a busy room is written to by every
    message; this is the cost of each of those writes.
    """

    __slots__ = ("_buffer", "_flusher", "_write", "pending")

    def __init__(self, write: Callable[[bytes], object], flusher: TurnFlusher) -> None:
        self._write = write
        self._flusher = flusher
        self._buffer: list[bytes] | None = None
        self.pending = 0  # bytes written this turn (pingchat.output measures it)

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:  # a mutable buffer could change before the end of the turn
            data = bytes(data)
        self.pending += len(data)
        buffer = self._buffer
        if buffer is None:
            self._buffer = [data]
            self._flusher.add_layer(self)
        else:
            buffer.append(data)

    def flush_turn(self) -> None:
        buffer = self._buffer
        if buffer is not None:
            self._buffer = None
            self.pending = 0
            self._write(b"".join(buffer))

    flush = close = flush_turn

    def held_bytes(self) -> int:
        """Bytes written this turn, not yet given to TLS (twisted_internals.HeldBytes)."""
        return self.pending


class CompactTLSTransport(twisted_internals.TLSTransport):
    """Twisted's TLS transport, leaner per read and write, with compacted BIOs.

    *Per write.* With a :class:`~pingchat.runtime.TurnFlusher` as the
    factory's clock, a turn's writes are joined by :class:`TurnWrites`, and
    the joined data is encrypted with one ``SSL_write`` and taken from the
    outgoing BIO directly through cffi (``twisted_internals.openssl.fast_write``).
    pyOpenSSL's ``send`` and ``bio_read`` around the same two calls, and
    Twisted's loop around those, cost about as much again as the encryption
    (a fan-out to 200 members writes to 200 connections each turn). Anything
    unusual (the handshake not done, data held back by TLS, an error, more
    than one record's worth) takes Twisted's own path.

    *Per read.* Once the handshake is done, what arrives is decrypted by
    ``SSL_read`` until OpenSSL wants more instead of calling pyOpenSSL's
    ``recv`` until it raises (``twisted_internals.openssl.fast_read``).

    *Compaction.* Once after the handshake, and :data:`COMPACT_DELAY`
    seconds after any read or write of :data:`COMPACT_AFTER` bytes or more:
    an idle connection then costs its TLS state and not its largest burst
    (``bench`` connect case, 10,000 connections: 26.6 -> 25.9 KiB per
    connection with an x25519 client; ~4.5 KB saved per connection with
    X25519MLKEM768 clients). The delay matters to busy connections: a member
    of a busy room is written several KiB every reactor turn, and compacting
    after each of them was ~3 % of the server's time in a fan-out.

    Each of these is done only where Twisted's and pyOpenSSL's internals
    are what :mod:`pingchat.twisted_internals` checked them to be;
    otherwise that part is Twisted's own.
    """

    _compacted = False
    _compaction: IDelayedCall | None = None

    def __init__(
        self,
        factory: TLSMemoryBIOFactory,
        wrappedProtocol: Any,
        _connectWrapped: bool = True,
    ) -> None:
        super().__init__(factory, wrappedProtocol, _connectWrapped)
        clock = self.factory.clock
        if isinstance(clock, TurnFlusher):
            self.batch_writes(lambda tls_write: TurnWrites(tls_write, clock))
        if not self.factory.compaction:
            self._compacted = True  # nothing to do: reads take the short branch

    def received(self, data: bytes) -> None:
        if not self._compacted:
            self._compact()
        elif len(data) >= COMPACT_AFTER and self.factory.compaction:
            self._compact_soon()

    def encrypted(self, data: bytes) -> None:
        if len(data) >= COMPACT_AFTER and self.factory.compaction:
            self._compact_soon()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self._compaction is not None:
            self._compaction.cancel()
            self._compaction = None
        super().connectionLost(reason)

    def _compact_soon(self) -> None:
        if self._compaction is None:
            self._compaction = self.factory.clock.callLater(COMPACT_DELAY, self._compact_later)

    def _compact_later(self) -> None:
        self._compaction = None
        self._compact()

    def _compact(self) -> None:
        if self.compact_memory():
            self._compacted = True


class CompactTLSFactory(twisted_internals.TLSFactory):
    """The TLS factory of ``ssl:`` listeners, building :class:`CompactTLSTransport`."""

    protocol = CompactTLSTransport


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """Any stream endpoint, with TLS on top."""

    def __init__(
        self,
        wrapped: IStreamServerEndpoint,
        options: CertificateOptions | ServerCertificate,
        reactor: Any = None,
    ) -> None:
        self.wrapped = wrapped
        self.options = options
        self.reactor = reactor

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        # The TLS layer's per-connection write batching runs at the end of the
        # turn with everything else pingchat sends (pingchat.runtime.TurnFlusher).
        clock: Any = turn_flusher(self.reactor) if self.reactor is not None else None
        # The OpenSSL context is made on first use: make it now, not while the
        # first client connects (it took ~50 ms of the reactor's time).
        self.options.getContext()
        return self.wrapped.listen(
            CompactTLSFactory(self.options, False, protocolFactory, clock=clock)
        )


def _split(description: str) -> list[str]:
    """Split an endpoint string on unescaped colons, keeping the escapes."""
    parts, current, escaped = [], "", False
    for ch in description:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            current += ch
            escaped = True
        elif ch == ":":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _unescape(value: str) -> str:
    out, escaped = "", False
    for ch in value:
        if escaped:
            out += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out += ch
    return out


def is_tls(description: str) -> bool:
    """Whether a listener's endpoint string serves TLS (``ssl:``, ``haproxy:ssl:``)."""
    return behind_proxy(description)[1].startswith("ssl:")


def server_endpoint(
    reactor: Any,
    description: str,
    default_tls: Certificates | ServerCertificate | CertificateOptions | None,
    proxies: PeerCheck | None = None,
) -> IStreamServerEndpoint:
    """An endpoint for *description*; ``ssl:`` strings get pingchat's TLS context.

    With :class:`Certificates` (the server's), every ``ssl:`` listener's
    certificate is reloadable, those named in the string included.

    TCP listeners are pingchat.runtime.ServerPort: bounded accepts per turn,
    one send() per connection per turn
    (:func:`pingchat.runtime.server_reactor`).

    ``haproxy:`` before ``tcp:``, ``tcp6:`` or ``ssl:`` makes a PROXY
    listener for the peers in *proxies* (:mod:`pingchat.proxy`): the header
    is read on the TCP connection, before TLS. The prefix is never given to
    Twisted, whose own ``haproxy:ssl:`` would read it inside TLS and from
    anyone.
    """
    reactor = server_reactor(reactor)
    proxied, inner = behind_proxy(description)
    parts = _split(inner)
    if proxied:
        if parts[0] not in UNDER_PROXY:
            raise ValueError(
                f"{description}: haproxy: goes before tcp:, tcp6: or ssl: (the balancer"
                " connects over TCP)"
            )
        if proxies is None or not proxies.networks:
            raise ValueError(
                f"{description}: a PROXY listener needs --trusted-proxy (the balancer's address)"
            )

    def under_tls(endpoint: IStreamServerEndpoint) -> IStreamServerEndpoint:
        if not proxied:
            return endpoint
        assert proxies is not None
        return ProxyListenerEndpoint(endpoint, proxies, reactor, description)

    if parts[0] != "ssl":
        return under_tls(endpoints.serverFromString(reactor, inner))
    kept, tls = ["tcp"], {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep and key in TLS_ARGUMENTS:
            tls[key] = _unescape(value)
        else:
            kept.append(part)
    options: CertificateOptions | ServerCertificate | None
    if "privateKey" in tls:
        key_path = Path(tls["privateKey"])
        cert_path = Path(tls.get("certKey", tls["privateKey"]))
        if isinstance(default_tls, Certificates):
            options = default_tls.for_files(key_path, cert_path)
        else:
            options = server_options(key_path, cert_path)
    elif isinstance(default_tls, Certificates):
        options = default_tls.default
    else:
        options = default_tls
    if options is None:
        raise ValueError(f"{description}: no TLS certificate available")
    return TLSServerEndpoint(
        under_tls(endpoints.serverFromString(reactor, ":".join(kept))),
        options,
        reactor.reactor if isinstance(reactor, ServerReactor) else None,
    )
