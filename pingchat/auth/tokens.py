"""Session tokens and device secrets: 256 random bits given to the client;
only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32
DEFAULT_TTL_MS = 30 * 24 * 3600 * 1000  # 30 days idle


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_device_secret() -> str:
    """A device secret, handed out at a password login and sent back at the next."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def device_hash(secret: str) -> bytes:
    """What is stored of a device secret (domain-separated from token hashes)."""
    return hashlib.sha256(b"device\0" + secret.encode("utf-8", "surrogatepass")).digest()
