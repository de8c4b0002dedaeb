"""Sealing of server-side secrets that must be read back (TOTP secrets).

A TOTP secret cannot be hashed: the server needs it to compute codes. It is
stored encrypted (Fernet: AES-128-CBC + HMAC-SHA256) under a key kept in its
own file in the data dir (mode 0600), so a copy of the database alone does
not reveal any second factor.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "secret.key"


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._key = key

    @classmethod
    def generate(cls) -> Sealer:
        return cls(Fernet.generate_key())

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> Sealer:
        """Load the data dir's key, creating it (mode 0600) on first use."""
        from pingchat.tls import write_secret

        path = data_dir / KEY_FILE
        if not path.exists():
            write_secret(path, Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def digest(self, purpose: str, text: str) -> bytes:
        """A keyed digest of *text* (HMAC-SHA256 under the data dir's key).

        For what must be recognised but never read back, such as a deleted
        account's name: without the key file a copy of the database cannot
        tell which names they were, not even by trying every likely name.
        *purpose* keeps digests made for different uses apart.
        """
        message = purpose.encode("utf-8") + b"\0" + text.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def unseal(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise ValueError("a sealed secret does not match the data dir's key") from None
