"""End-to-end encrypted direct messages with NaCl's ``Box``, one key per device.

Each account has, on this device, an X25519 key pair; the private key stays
in the config dir (mode 0600) beside this device's id, and the public key is
published on the server under that id (``key.publish``). A DM is sealed once
per device that should read it, with ``Box(my_private, their_public)``:
X25519 key agreement, then XSalsa20-Poly1305, so the message is secret and
authenticated (only the two devices could have written it, and any change to
it is detected). The box is symmetric, so the sender can read its own
messages back. :mod:`pingchat.client.keyring` decides what to seal for whom
and how to open a message (docs/e2e.md).

The public keys of every device one has exchanged encrypted messages with
are remembered (:class:`PeerKeys`), so that a changed key, which may mean an
impostor, is shown as a warning until the user accepts it.
"""

from __future__ import annotations

import base64
import binascii
import os
from enum import Enum
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from pingchat.client.configdir import ConfigDir, write_private
from pingchat.model import DEVICE_ID_RE, LEGACY_DEVICE, fold, key_fingerprint


class DecryptionFailed(Exception):
    """The ciphertext was not made for this key pair, or was changed on the way."""


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


def load_or_create_device_id(path: Path) -> str:
    """This device's id for one account (``keys/USER.device``), made the first time.

    16 random bytes in unpadded base64url: 22 characters, as docs/e2e.md says.
    """
    try:
        device = path.read_text("ascii").strip()
    except FileNotFoundError:
        device = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        write_private(path, device.encode("ascii") + b"\n")
        return device
    except UnicodeDecodeError:
        device = ""
    if not DEVICE_ID_RE.fullmatch(device):
        raise ValueError(f"{path} is damaged: not a device id")
    return device


class KeyStatus(Enum):
    NEW = "new"  # the first key seen of this user
    NEW_DEVICE = "new device"  # a device of a known user, seen for the first time
    SAME = "same"
    CHANGED = "changed"  # not the key trusted before, until the user accepts it


class PeerKeys:
    """The public keys of the devices an account exchanged encrypted messages
    with, per (user, device): trust on first use.

    The file maps each user (folded) to ``{device: {"key", "label", "was"?}}``;
    ``was`` is the key trusted before an unaccepted change. A file from before
    device keys (``{user: key}``) reads as each user's device ``default``.
    """

    def __init__(self, config: ConfigDir, path: Path) -> None:
        self.config = config
        self.path = path

    def _read(self) -> dict[str, dict[str, dict[str, Any]]]:
        data = self.config.read_json(self.path)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for user, entry in data.items():
            if isinstance(entry, str):
                out[user] = {LEGACY_DEVICE: {"key": entry}}
            elif isinstance(entry, dict):
                out[user] = {d: v for d, v in entry.items()
                             if isinstance(v, dict) and isinstance(v.get("key"), str)}
        return out

    def devices(self, user: str) -> dict[str, dict[str, Any]]:
        """What is remembered of *user*'s devices: ``{device: {"key", ...}}``."""
        return self._read().get(fold(user), {})

    def get(self, user: str, device: str = LEGACY_DEVICE) -> str | None:
        key = self.devices(user).get(device, {}).get("key")
        return key if isinstance(key, str) else None

    def observe(
        self, user: str, device: str, key: str, label: str | None = None
    ) -> tuple[KeyStatus, str | None]:
        """Remember *key* for *user*'s *device*; say whether it is new, the same,
        or changed (then with the key trusted before), until :meth:`accept`.

        A new device whose key is one already trusted for the user (a client
        that kept its key and gained a device id) counts as the same.
        """
        data = self._read()
        entry = data.setdefault(fold(user), {})
        known = entry.get(device)
        if known is None:
            status = KeyStatus.NEW_DEVICE if entry else KeyStatus.NEW
            if any(k.get("key") == key and "was" not in k for k in entry.values()):
                status = KeyStatus.SAME
            entry[device] = {"key": key, "label": label}
            self.config.write_json(self.path, data)
            return status, None
        was = known.get("was")
        if known["key"] == key and was is None:
            if known.get("label") != label:
                known["label"] = label
                self.config.write_json(self.path, data)
            return KeyStatus.SAME, key
        if key == was:  # changed back to the trusted key
            entry[device] = {"key": key, "label": label}
            self.config.write_json(self.path, data)
            return KeyStatus.SAME, key
        if known["key"] != key:
            was = was or known["key"]
            entry[device] = {"key": key, "label": label, "was": was}
            self.config.write_json(self.path, data)
        return KeyStatus.CHANGED, was

    def changed(self, user: str, device: str) -> str | None:
        """The key trusted before an unaccepted change of this device's key, if any."""
        was = self.devices(user).get(device, {}).get("was")
        return was if isinstance(was, str) else None

    def accept(self, user: str) -> list[str]:
        """Trust the current keys of *user*'s changed devices; return those devices."""
        data = self._read()
        entry = data.get(fold(user), {})
        accepted = [d for d, k in entry.items() if k.pop("was", None) is not None]
        if accepted:
            self.config.write_json(self.path, data)
        return accepted
