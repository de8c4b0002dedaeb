"""Session tokens: 256 random bits given to the client; only SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32
DEFAULT_TTL_MS = 30 * 24 * 3600 * 1000  # 30 days idle


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
