"""End-to-end encrypted direct messages with NaCl's ``Box``.

Each account has, on this device, an X25519 key pair; the private key stays
in the config dir (mode 0600) and the public key is published on the server
(``key.publish``). A DM to someone with a published key is sealed with
``Box(my_private, their_public)``: X25519 key agreement, then
XSalsa20-Poly1305, so the message is secret and authenticated (only the two
of them could have written it, and any change to it is detected). The box is
symmetric, so the sender can read its own messages back from history.

The server stores ``ciphertext`` and ``nonce`` (both base64) and nothing else.
The public keys of the people one has written to are remembered, so that a
changed key, which may mean an impostor, is shown as a warning.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from enum import Enum
from pathlib import Path

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from pingchat.client.configdir import ConfigDir, write_private


class DecryptionFailed(Exception):
    """The ciphertext was not made for this key pair, or was changed on the way."""


def key_fingerprint(public_key_b64: str) -> str:
    """A short, readable digest of a public key (the same as the server shows)."""
    digest = hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()[:32]
    return " ".join(digest[i : i + 4] for i in range(0, 32, 4))


def _public_key(b64: str) -> PublicKey:
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionFailed("the public key is not valid base64") from None
    if len(raw) != 32:
        raise DecryptionFailed("the public key is not 32 bytes")
    return PublicKey(raw)


class Identity:
    """This device's key pair for one account."""

    def __init__(self, private_key: PrivateKey) -> None:
        self._private = private_key

    @classmethod
    def generate(cls) -> Identity:
        return cls(PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        """Read the private key from *path*, creating it (mode 0600) the first time."""
        try:
            raw = base64.b64decode(path.read_text("ascii").strip(), validate=True)
        except FileNotFoundError:
            identity = cls.generate()
            write_private(path, base64.b64encode(bytes(identity._private)) + b"\n")
            return identity
        except (binascii.Error, ValueError):
            raise ValueError(f"{path} is damaged: not a base64 private key") from None
        if len(raw) != 32:
            raise ValueError(f"{path} is damaged: a private key has 32 bytes")
        return cls(PrivateKey(raw))

    @property
    def public_key(self) -> str:
        return base64.b64encode(bytes(self._private.public_key)).decode("ascii")

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def seal(self, their_key: str, text: str) -> tuple[str, str]:
        """Encrypt *text* for the holder of *their_key*: ``(ciphertext, nonce)`` in base64."""
        box = Box(self._private, _public_key(their_key))
        sealed = box.encrypt(text.encode("utf-8"))
        return (
            base64.b64encode(sealed.ciphertext).decode("ascii"),
            base64.b64encode(sealed.nonce).decode("ascii"),
        )

    def open(self, their_key: str, ciphertext: str, nonce: str | None) -> str:
        """Decrypt a message exchanged with the holder of *their_key*.

        Without a separate *nonce*, the ciphertext is NaCl's combined form
        (nonce followed by the box).
        """
        box = Box(self._private, _public_key(their_key))
        try:
            data = base64.b64decode(ciphertext, validate=True)
            if nonce is None:
                plain = box.decrypt(data)
            else:
                plain = box.decrypt(data, base64.b64decode(nonce, validate=True))
            return plain.decode("utf-8")
        except (binascii.Error, ValueError, CryptoError, UnicodeDecodeError):
            raise DecryptionFailed(
                "could not decrypt: the message was changed on the way, or was made"
                " for another key"
            ) from None


class KeyStatus(Enum):
    NEW = "new"
    SAME = "same"
    CHANGED = "changed"


class PeerKeys:
    """The public keys of the people an account exchanged encrypted messages with."""

    def __init__(self, config: ConfigDir, path: Path) -> None:
        self.config = config
        self.path = path

    def get(self, user: str) -> str | None:
        key = self.config.read_json(self.path).get(user.lower())
        return key if isinstance(key, str) else None

    def observe(self, user: str, key: str) -> tuple[KeyStatus, str | None]:
        """Remember *key* for *user*; say whether it is new, the same, or changed
        (and then the previous key)."""
        keys = self.config.read_json(self.path)
        previous = keys.get(user.lower())
        if previous == key:
            return KeyStatus.SAME, previous
        keys[user.lower()] = key
        self.config.write_json(self.path, keys)
        if previous is None:
            return KeyStatus.NEW, None
        return KeyStatus.CHANGED, previous
