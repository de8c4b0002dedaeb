"""End-to-end keys per device, on the client's side (docs/e2e.md).

:class:`KeyRing` knows this device (its key pair and id), fetches and caches
the devices of the people it writes to, seals a DM once per device that
should read it (the recipient's devices and this account's other devices),
opens what arrives (its own envelope, its own messages read back, the
single-key form of older clients), and keeps trust on first use per
``(user, device)``: what it notices goes to a ``notify`` callback, and the
client decides where to show it.
"""

from __future__ import annotations

import socket
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from pingchat.client.e2e import DecryptionFailed, Identity, KeyStatus, PeerKeys
from pingchat.model import LEGACY_DEVICE, fold, key_fingerprint

Request = Callable[..., Deferred[dict[str, Any]]]
Notify = Callable[[str, str, str], None]
"""``notify(user, level, text)``: *level* is ``info`` or ``warning``."""

OTHER_DEVICES = "[encrypted for other devices of yours; this device cannot read it]"
CANNOT_DECRYPT = (
    "[an encrypted message this device cannot decrypt: sealed for another key, or changed"
    " on the way]"
)
UNKNOWN_SENDER = (
    "[an encrypted message from a device whose key this client does not have (it may have"
    " been removed)]"
)


def device_label() -> str:
    """``terminal on HOSTNAME``: how this device is named to its owner and contacts."""
    host = "".join(c for c in socket.gethostname() if unicodedata.category(c)[0] not in "CZ")
    return f"terminal on {host or 'this computer'}"[:64]


@attrs.frozen
class DeviceKey:
    """One published device key of an account."""

    device: str
    public_key: str
    label: str | None = None
    published_at: str | None = None

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    @property
    def name(self) -> str:
        """How to name it to a person: its label, else its id."""
        if self.device == LEGACY_DEVICE and not self.label:
            return "its only key (from an older client)"
        return self.label or self.device


@attrs.frozen
class KeyList:
    """An account's devices as ``key.get`` gave them.

    ``per_device`` is false for a server from before device keys (no
    ``devices`` in the reply): its one key is then device ``default``, and
    it takes only the single-key form of ``dm``.
    """

    user: str
    devices: tuple[DeviceKey, ...]
    per_device: bool = True

    def get(self, device: str) -> DeviceKey | None:
        for d in self.devices:
            if d.device == device:
                return d
        return None

    @classmethod
    def from_reply(cls, reply: dict[str, Any], user: str) -> KeyList:
        name = str(reply.get("user") or user)
        devices = reply.get("devices")
        if isinstance(devices, list):
            return cls(name, tuple(
                DeviceKey(d["device"], d["public_key"],
                          d.get("label") if isinstance(d.get("label"), str) else None,
                          d.get("published_at") if isinstance(d.get("published_at"), str)
                          else None)
                for d in devices
                if isinstance(d, dict) and isinstance(d.get("device"), str)
                and isinstance(d.get("public_key"), str)
            ))
        key = reply.get("public_key")
        single = (DeviceKey(LEGACY_DEVICE, key),) if isinstance(key, str) else ()
        return cls(name, single, per_device=False)


@attrs.frozen
class Opened:
    """A DM as this device can show it: its text, or a note saying why not."""

    text: str | None
    note: str | None = None
    encrypted: bool = True


class KeyRing:
    """This device's end-to-end keys, and what it knows of everyone's devices."""

    def __init__(
        self,
        me: str,
        identity: Identity,
        device: str,
        peers: PeerKeys,
        request: Request,
        notify: Notify,
        label: str | None = None,
    ) -> None:
        self.me = me
        self.identity = identity
        self.device = device
        self.label = label or device_label()
        self.peers = peers
        self.request = request
        self.notify = notify
        self._cache: dict[str, KeyList] = {}

    def is_me(self, user: str) -> bool:
        return fold(user) == fold(self.me)

    # -- the key directory ------------------------------------------------------------

    async def keys_of(self, user: str, fresh: bool = False) -> KeyList:
        """*user*'s devices: from the cache, or (*fresh*, or not cached) from the server."""
        cached = self._cache.get(fold(user))
        if cached is not None and not fresh:
            return cached
        keys = KeyList.from_reply(await self.request("key.get", user=user), user)
        self._cache[fold(keys.user)] = keys
        self._remember(keys)
        return keys

    def forget(self, user: str) -> None:
        """Drop *user*'s cached devices (a ``key`` event said they changed)."""
        self._cache.pop(fold(user), None)

    def knows(self, user: str) -> bool:
        """Whether *user*'s devices were ever seen (their changes are worth fetching)."""
        return self.is_me(user) or bool(self.peers.devices(user))

    def _remember(self, keys: KeyList) -> None:
        """Trust on first use: note new devices (a changed key warns when used).

        The devices of a user seen for the first time are listed together;
        after that, each new one is pointed out. This device counts among its
        account's own, so a device added later is news.
        """
        me = self.is_me(keys.user)
        first_time = not self.peers.devices(keys.user)
        if me:
            self.peers.observe(keys.user, self.device, self.identity.public_key, self.label)
        found: list[DeviceKey] = []
        for d in keys.devices:
            if me and (d.device == self.device or d.public_key == self.identity.public_key):
                continue  # this device (also under the legacy id, before its upgrade)
            status, _ = self.peers.observe(keys.user, d.device, d.public_key, d.label)
            if status in (KeyStatus.NEW, KeyStatus.NEW_DEVICE):
                found.append(d)
        if found and first_time:
            self._first_keys(keys.user, found)
        else:
            for d in found:
                self._new_device(keys.user, d)

    def _new_device(self, user: str, d: DeviceKey) -> None:
        if self.is_me(user):
            self.notify(user, "warning",
                        f"Your account has a new device: {d.name}, fingerprint {d.fingerprint}."
                        " Direct messages are sealed for it too. If it is not yours, change"
                        f" your password (/passwd) and remove it (/revoke {d.device}).")
        else:
            self.notify(user, "info", f"{user} has a new device: {d.name}, fingerprint"
                                      f" {d.fingerprint}; /keys {user} lists them all.")

    def _first_keys(self, user: str, devices: list[DeviceKey]) -> None:
        if self.is_me(user):
            listed = "; ".join(f"{d.name}: {d.fingerprint}" for d in devices)
            self.notify(user, "info", f"Your other devices: {listed}.")
        elif len(devices) == 1:
            self.notify(user, "info",
                        f"{user}'s encryption key has the fingerprint {devices[0].fingerprint};"
                        f" to be sure it is really theirs, compare it with what /keys shows on"
                        f" {user}'s screen.")
        else:
            listed = "; ".join(f"{d.name}: {d.fingerprint}" for d in devices)
            self.notify(user, "info",
                        f"{user} has {len(devices)} devices with encryption keys ({listed});"
                        f" to be sure they are really theirs, compare them with what /keys"
                        f" shows on {user}'s screen.")

    def warn_if_changed(self, user: str, devices: Iterable[DeviceKey]) -> None:
        """The loud warning, for each of these devices whose key changed and
        was not accepted yet (``/trust``): shown every time such a key is used."""
        for d in devices:
            was = self.peers.changed(user, d.device)
            if was is None:
                continue
            on = "" if d.device == LEGACY_DEVICE else f" on the device {d.name}"
            if self.is_me(user):
                text = (f"WARNING: your encryption key{on} has CHANGED (was"
                        f" {key_fingerprint(was)}, now {d.fingerprint}). If you did not"
                        " reinstall pingchat there, someone may have your password: change it"
                        f" (/passwd) and remove the device (/revoke {d.device}). /trust"
                        f" {user} accepts the new key.")
            else:
                text = (f"WARNING: {user}'s encryption key has CHANGED{on} (was"
                        f" {key_fingerprint(was)}, now {d.fingerprint}). This happens when"
                        f" {user} reinstalls or uses another device, or when someone is"
                        f" pretending to be {user}. Compare fingerprints with {user} (/keys"
                        f" {user}) before sharing secrets; /trust {user} accepts the new key.")
            self.notify(user, "warning", text)

    # -- sealing ----------------------------------------------------------------------------

    async def seal(self, to: str, text: str) -> tuple[str, dict[str, Any]] | None:
        """``(to, dm fields)`` for *text* sealed end to end, or ``None`` when *to*
        has published no key (the DM can then only go in clear).

        Sealed per device (``device`` + ``envelopes``) for the recipient's
        devices and this account's other devices. The single-key form
        (``ciphertext`` + ``nonce``) when the server predates device keys, or
        when the recipient's only key is the legacy ``default`` (a client
        from before device keys, which could not read envelopes).
        """
        theirs = await self.keys_of(to, fresh=True)
        if not theirs.devices:
            return None
        only_legacy = [d.device for d in theirs.devices] == [LEGACY_DEVICE]
        if not theirs.per_device or only_legacy:
            target = theirs.devices[-1]
            self.warn_if_changed(theirs.user, [target])
            ciphertext, nonce = self.identity.seal(target.public_key, text)
            return theirs.user, {"ciphertext": ciphertext, "nonce": nonce}
        mine = theirs if self.is_me(theirs.user) else await self.keys_of(self.me, fresh=True)
        targets = [(theirs.user, d) for d in theirs.devices]
        targets += [(mine.user, d) for d in mine.devices if d.device != self.device]
        envelopes, seen = [], set()
        for user, d in targets:
            if (fold(user), d.device) in seen:
                continue
            seen.add((fold(user), d.device))
            if not (self.is_me(user) and d.device == self.device):
                self.warn_if_changed(user, [d])
            ciphertext, nonce = self.identity.seal(d.public_key, text)
            envelopes.append({"user": user, "device": d.device, "ciphertext": ciphertext,
                              "nonce": nonce})
        return theirs.user, {"device": self.device, "envelopes": envelopes}

    # -- opening ------------------------------------------------------------------------------

    async def _keys_for(self, user: str, device: str, fresh: bool) -> list[str]:
        """Keys *user*'s *device* may have sealed with: the published one, then
        those remembered (a device revoked since is still in history)."""
        keys = []
        published = (await self.keys_of(user, fresh)).get(device)
        if published is not None:
            keys.append(published.public_key)
        remembered = self.peers.devices(user).get(device, {})
        for k in (remembered.get("key"), remembered.get("was")):
            if isinstance(k, str) and k not in keys:
                keys.append(k)
        if self.is_me(user) and device == self.device:
            keys.append(self.identity.public_key)
        return keys

    async def _try_open(self, candidates: Callable[[bool], Awaitable[list[str]]],
                        ciphertext: str, nonce: str | None) -> str | None:
        """Open with the first key that fits: cached keys first, then fetched ones."""
        tried: set[str] = set()
        for fresh in (False, True):
            for key in await candidates(fresh):
                if key in tried:
                    continue
                tried.add(key)
                try:
                    return self.identity.open(key, ciphertext, nonce)
                except DecryptionFailed:
                    continue
        return None

    async def open(self, m: dict[str, Any]) -> Opened:
        """Open an encrypted DM (a ``message`` event or a history entry)."""
        sender = str(m.get("from", ""))
        envelopes = m.get("envelopes")
        if isinstance(envelopes, list):
            return await self._open_envelopes(m, sender, [
                e for e in envelopes if isinstance(e, dict)
                and isinstance(e.get("ciphertext"), str) and isinstance(e.get("nonce"), str)
                and isinstance(e.get("user"), str) and isinstance(e.get("device"), str)
            ])
        ciphertext, nonce = m.get("ciphertext"), m.get("nonce")
        if not isinstance(ciphertext, str):
            return Opened(str(m.get("text") or ""), encrypted=False)
        peer = str(m.get("to") or sender) if self.is_me(sender) else sender

        async def legacy_keys(fresh: bool) -> list[str]:
            # Every key the peer has, or had: the box is the same both ways.
            keys = [d.public_key for d in (await self.keys_of(peer, fresh)).devices]
            keys += [str(k.get("key")) for k in self.peers.devices(peer).values()]
            keys += [str(k["was"]) for k in self.peers.devices(peer).values() if "was" in k]
            return keys

        text = await self._try_open(legacy_keys, ciphertext,
                                    nonce if isinstance(nonce, str) else None)
        return Opened(text) if text is not None else Opened(None, CANNOT_DECRYPT)

    async def _open_envelopes(self, m: dict[str, Any], sender: str,
                              envelopes: list[dict[str, str]]) -> Opened:
        sender_device = str(m.get("device", ""))
        for e in envelopes:
            if self.is_me(e["user"]) and e["device"] == self.device:
                keys = await self._keys_for(sender, sender_device, False)
                if not keys:
                    keys = await self._keys_for(sender, sender_device, True)
                if not keys:
                    return Opened(None, UNKNOWN_SENDER)
                text = await self._try_open(partial(self._keys_for, sender, sender_device),
                                            e["ciphertext"], e["nonce"])
                if text is None:
                    return Opened(None, CANNOT_DECRYPT)
                if not (self.is_me(sender) and sender_device == self.device):
                    self.warn_if_changed(sender, [d for d in (
                        (await self.keys_of(sender)).get(sender_device),) if d is not None])
                return Opened(text)
        if self.is_me(sender) and sender_device == self.device:
            # Our own message read back: no envelope is ours, but the box is
            # symmetric, so any envelope opens with its device's key.
            for e in envelopes:
                text = await self._try_open(partial(self._keys_for, e["user"], e["device"]),
                                            e["ciphertext"], e["nonce"])
                if text is not None:
                    return Opened(text)
            return Opened(None, CANNOT_DECRYPT)
        return Opened(None, OTHER_DEVICES)

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self) -> str | None:
        """Publish this device's key if the server does not have it (with this
        label); return what to tell the user, or ``None`` when nothing changed."""
        mine = await self.keys_of(self.me, fresh=True)
        if not mine.per_device:
            # A server from before device keys: one key per account.
            if mine.devices and mine.devices[0].public_key == self.identity.public_key:
                return None
            await self.request("key.publish", public_key=self.identity.public_key)
            self.forget(self.me)
            note = ("Published your encryption key; its fingerprint is"
                    f" {self.identity.fingerprint}")
            if mine.devices:
                note += (". This server keeps one key per account, and your account had"
                         " another (from another device or an earlier install): messages"
                         " encrypted for it can be read only there.")
            return note
        current = mine.get(self.device)
        if current is not None and (current.public_key, current.label) == (
                self.identity.public_key, self.label):
            return None
        await self.request("key.publish", public_key=self.identity.public_key,
                           device=self.device, label=self.label)
        self.forget(self.me)
        return (f"Published your encryption key for this device ({self.label}); its"
                f" fingerprint is {self.identity.fingerprint}")
