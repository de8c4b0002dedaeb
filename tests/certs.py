"""Certificates for the tests of certificate reloads: good ones and every kind of bad one."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_certificate(
    key_path: Path,
    cert_path: Path,
    *,
    name: str = "localhost",
    san: bool = True,
    days: float = 90,
    starts_in_days: float = 0,
    key: ec.EllipticCurvePrivateKey | None = None,
    write_key: bool = True,
) -> str:
    """Write a self-signed certificate (and its key); its SHA-256 fingerprint, hex.

    The files are replaced by rename, as a certbot deploy hook would do.
    """
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=starts_in_days)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5, days=max(0.0, 1 - days)))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(key, hashes.SHA256())
    if write_key:
        replace(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    replace(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def replace(path: Path, data: bytes) -> None:
    new = path.with_name(path.name + ".new")
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(new, path)


def colons(hex_digest: str) -> str:
    """``ab12...`` as pingchat logs it: ``AB:12:...``."""
    upper = hex_digest.upper()
    return ":".join(upper[i : i + 2] for i in range(0, len(upper), 2))
