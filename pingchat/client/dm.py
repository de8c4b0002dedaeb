"""Direct messages, end-to-end encrypted where the other side has a key (docs/e2e.md).

:class:`DirectMessages` holds this device's key pair and key ring for the
logged-in account (:mod:`pingchat.client.keyring` does the crypto and the
trust on first use), sends a DM sealed per device (or in clear, saying so),
opens what arrives, and answers the key commands (``/keys``, ``/trust``,
``/revoke``). What the key ring notices about someone's keys goes to their
DM window.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost

from pingchat.client.commands import Command, CommandError
from pingchat.client.configdir import ConfigDir, ServerAddress
from pingchat.client.connection import ClientProtocol, NotConnected, RequestFailed
from pingchat.client.e2e import Identity, PeerKeys, load_or_create_device_id
from pingchat.client.keyring import CANNOT_DECRYPT, KeyRing, Opened
from pingchat.client.screen import Screen
from pingchat.client.session import Account
from pingchat.client.view import Line, local_time, message_line, who
from pingchat.native.wire import MAX_LINE, encode

E2E_OFF = "[an encrypted message: end-to-end encryption is off on this device]"


class DirectMessages:
    """This device's end-to-end keys (``identity``, ``keyring``: ``None``
    until a login, or when they cannot be loaded) and the DMs sent with them."""

    def __init__(self, screen: Screen, account: Account, config: ConfigDir,
                 server: ServerAddress) -> None:
        self.screen = screen
        self.account = account
        self.config = config
        self.server = server
        self.identity: Identity | None = None
        self.keyring: KeyRing | None = None
        self._keys_proto: ClientProtocol | None = None

    def _files(self, user: str) -> tuple[Path, Path, Path]:
        """This device's files for *user*: private key, device id, keys seen of others."""
        folder = self.config.server_dir(self.server)
        name = user.lower()
        return (folder / "keys" / f"{name}.key", folder / "keys" / f"{name}.device",
                folder / f"peer-keys-{name}.json")

    def start(self, user: str, proto: ClientProtocol) -> None:
        """*user* logged in over *proto*: load (the first time, make) this
        device's key pair and device id for them."""
        self._keys_proto = proto
        key_file, device_file, peers_file = self._files(user)
        try:
            self.identity = Identity.load_or_create(key_file)
            device = load_or_create_device_id(device_file)
        except (OSError, ValueError) as e:
            self.identity, self.keyring = None, None
            self.screen.warning(f"end-to-end encryption is off: {e}")
            return
        peers = PeerKeys(self.config, peers_file)
        self.keyring = KeyRing(user, self.identity, device, peers, self._key_request,
                               self._key_note)

    def forget_account(self, user: str) -> list[str]:
        """*user*'s account was deleted: delete this device's private key,
        device id and remembered keys of others for it. Returns what could
        not be deleted (to be said: a private key must not stay unnoticed)."""
        self.identity, self.keyring, self._keys_proto = None, None, None
        left = []
        for path in self._files(user):
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                left.append(f"{path}: {e.strerror or e}")
        return left

    def _key_request(self, op: str, **args: Any) -> Deferred[dict[str, Any]]:
        proto = self.account.proto or self._keys_proto
        if proto is None:
            raise NotConnected("not connected")
        return proto.request(op, **args)

    def _key_note(self, user: str, level: str, text: str) -> None:
        """What the key ring noticed about *user*'s keys: in their DM window
        (in the server window for this account's own devices)."""
        windows = self.screen.windows
        if self.account.is_me(user):
            window = windows.status
        else:
            window = windows.find(user) or windows.open("dm", user)
        if level == "warning":
            self.screen.warning(text, window)
            if window is not windows.current:
                self.screen.warning(text, echo=True)
        else:
            self.screen.info(text, window)

    async def publish(self) -> None:
        """Publish this device's key, unless the server has it already."""
        if self.keyring is None:
            return
        status = self.screen.windows.status
        try:
            note = await self.keyring.publish()
        except RequestFailed as e:
            hint = " (/keys lists your devices, /revoke DEVICE removes one)" if (
                e.code == "too_many_devices") else ""
            self.screen.warning(f"could not publish your encryption key: {e.message}{hint}",
                                status)
        except (NotConnected, ConnectionLost) as e:
            self.screen.warning(f"could not publish your encryption key: {e}", status)
        else:
            if note is not None:
                self.screen.info(note, status)

    # -- messages ---------------------------------------------------------------------

    async def open(self, m: dict[str, Any]) -> Opened:
        """An encrypted message as this device can show it."""
        if self.keyring is None:
            return Opened(None, E2E_OFF)
        try:
            return await self.keyring.open(m)
        except (RequestFailed, NotConnected, ConnectionLost):
            return Opened(None, CANNOT_DECRYPT)

    async def send(self, to: str, text: str) -> None:
        """Send *text* to *to*: sealed for each device that should read it, or
        in clear (with a warning, once) to someone without a key."""
        proto = self.account.need_proto()
        screen = self.screen
        sealed = await self.keyring.seal(to, text) if self.keyring is not None else None
        if sealed is not None:
            name, fields = sealed
            window = screen.windows.open("dm", name)
            request = {"op": "dm", "to": name, **fields}
            if len(encode(request)) + 24 > MAX_LINE:  # + the request's id
                devices = len(fields.get("envelopes", [1]))
                raise CommandError(
                    f"this message is too long to seal for {devices} device(s) in one request;"
                    " send it in shorter pieces")
            reply = await proto.request("dm", to=name, **fields)
            window.encrypted = True
        else:
            name = to if self.keyring is None else (await self.keyring.keys_of(to)).user
            window = screen.windows.open("dm", name)
            reply = await proto.request("dm", to=name, text=text)
            window.encrypted = False
            if not window.warned_plain:
                window.warned_plain = True
                warning = (f"{name} has not published an encryption key (they may use IRC"
                           " or another client), so this conversation is NOT end-to-end"
                           " encrypted: the server can read it.")
                screen.warning(warning, window)
                if window is not screen.here:
                    screen.warning(warning, echo=True)
        if isinstance(reply.get("msg_id"), int):
            window.mark_seen(reply["msg_id"])
        msg_id = reply.get("msg_id")
        line = message_line(text, "own", sender=self.account.user, ts=reply.get("ts"),
                            encrypted=bool(window.encrypted),
                            msg_id=msg_id if isinstance(msg_id, int) else None)
        screen.add(window, line)
        if window is not screen.here:
            mark = "[e2e] " if window.encrypted else ""
            screen.add(screen.here, Line(f"[to {name}] {who(line)} {mark}{line.text}",
                                         "elsewhere", echo=True))
        if reply.get("delivered") is False:
            screen.info(f"{name} is offline: the message waits on the server until they"
                        " connect", window)

    # -- keys ---------------------------------------------------------------------------

    async def key_changed(self, event: dict[str, Any]) -> None:
        """A device key of this account, a contact or a DM partner changed:
        refetch it (trust on first use then says what is new or changed)."""
        user = str(event.get("user", ""))
        if self.keyring is None or not user:
            return
        self.keyring.forget(user)
        if event.get("action") == "revoked":
            if self.keyring.is_me(user):
                self.screen.info(f"the key of your device {event.get('device')} was removed",
                                 self.screen.windows.status)
            return
        if self.keyring.knows(user):
            with contextlib.suppress(RequestFailed, NotConnected, ConnectionLost):
                await self.keyring.keys_of(user, fresh=True)

    async def describe_keys(self, user: str) -> None:
        """``/whois``'s last line: whether DMs to *user* are end-to-end encrypted."""
        if self.keyring is None:
            return
        keys = await self.keyring.keys_of(user, fresh=True)
        if keys.devices:
            self.screen.info(f"  encryption keys: {len(keys.devices)} device(s); /keys"
                             f" {keys.user} lists their fingerprints")
        else:
            self.screen.info("  no encryption key: direct messages to them are not"
                             " end-to-end encrypted")

    async def cmd_keys(self, cmd: Command) -> None:
        """``/keys [user]``: every device key of *user* (default: you), with its
        fingerprint and label, and whether a changed one awaits ``/trust``."""
        ring = self.keyring
        if ring is None:
            self.screen.error("end-to-end encryption is off on this device")
            return
        info = self.screen.info
        user = cmd.get("user") or ring.me
        keys = await ring.keys_of(user, fresh=True)
        mine = ring.is_me(keys.user)
        if mine:
            info(f"this device: {ring.label} ({ring.device}), fingerprint"
                 f" {ring.identity.fingerprint}")
        if not keys.devices:
            info(f"{keys.user} has no encryption key")
            return
        whose = "your account's" if mine else f"{keys.user}'s"
        info(f"{whose} devices ({len(keys.devices)}):")
        for d in keys.devices:
            marks = []
            if mine and d.device == ring.device:
                marks.append("this device")
            if ring.peers.changed(keys.user, d.device) is not None:
                marks.append(f"CHANGED, not accepted yet: /trust {keys.user}")
            since = local_time(d.published_at, full=True) if d.published_at else None
            when = f", since {since}" if since else ""
            mark = f"  [{'; '.join(marks)}]" if marks else ""
            label = d.label or "(no label)"
            info(f"  {label}  {d.device}  fingerprint {d.fingerprint}{when}{mark}")
        ring.warn_if_changed(keys.user, keys.devices)

    async def cmd_trust(self, cmd: Command) -> None:
        """``/trust user``: accept the changed keys of *user*'s devices."""
        if self.keyring is None:
            self.screen.error("end-to-end encryption is off on this device")
            return
        keys = await self.keyring.keys_of(cmd.args["user"], fresh=True)
        accepted = self.keyring.peers.accept(keys.user)
        if accepted:
            names = ", ".join(d.name if (d := keys.get(a)) else a for a in accepted)
            self.screen.info(f"you now trust {keys.user}'s changed key(s): {names}")
        else:
            self.screen.info(f"nothing to accept: no key of {keys.user} changed")

    async def cmd_revoke(self, cmd: Command) -> None:
        """``/revoke DEVICE``: remove one of your devices' keys (a lost device)."""
        device = cmd.args["device"]
        await self.account.need_proto().request("key.revoke", device=device)
        if self.keyring is not None:
            self.keyring.forget(self.keyring.me)
            if device == self.keyring.device:
                self.screen.warning("you removed this device's key: it gets no end-to-end"
                                    " encrypted messages until it publishes its key again"
                                    " (at the next login)")
                return
        self.screen.info(f"removed the key of your device {device}: messages are no longer"
                         " sealed for it")
