"""The terminal client with keys per device (docs/e2e.md), against a scripted
server that keeps a key directory: sealing per device, each device reading its
envelope, reading one's own messages back, the legacy single-key form, and
trust on first use per (user, device)."""

from __future__ import annotations

import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pingchat.client.app import ChatClient
from pingchat.client.configdir import ConfigDir, ServerAddress
from pingchat.client.e2e import Identity
from pingchat.client.keyring import OTHER_DEVICES
from pingchat.client.testing import FakeConnector, FakeFrontend, FakeServer, login_reply, refuse
from pingchat.client.trust import Insecure
from pingchat.model import check_envelopes, fold, key_fingerprint


class Directory:
    """The server's key directory and DM log, shared by every scripted connection."""

    def __init__(self) -> None:
        self.devices: dict[str, list[dict[str, Any]]] = {}
        self.dms: list[dict[str, Any]] = []
        self.next_ts = 0

    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args["user"])
        devices = self.devices.get(fold(user), [])
        latest = devices[-1] if devices else None
        return {"user": user.lower(), "devices": [dict(d) for d in devices],
                "public_key": latest and latest["public_key"],
                "fingerprint": latest and latest["fingerprint"]}

    def publish(self, user: str, args: dict[str, Any]) -> dict[str, Any]:
        device = args.get("device") or "default"
        devices = self.devices.setdefault(fold(user), [])
        devices[:] = [d for d in devices if d["device"] != device and not (
            d["device"] == "default" and d["public_key"] == args["public_key"])]
        self.next_ts += 1
        devices.append({"device": device, "public_key": args["public_key"],
                        "fingerprint": key_fingerprint(args["public_key"]),
                        "label": args.get("label"),
                        "published_at": f"2026-01-01T10:00:{self.next_ts:02d}.000Z"})
        return {"device": device, "fingerprint": key_fingerprint(args["public_key"])}

    def set_key(self, user: str, device: str, public_key: str, label: str | None = None) -> None:
        """Another client (not driven here) published a key."""
        self.publish(user, {"device": device, "public_key": public_key, "label": label})

    def dm(self, sender: str, args: dict[str, Any]) -> dict[str, Any]:
        if "envelopes" in args:
            check_envelopes(args["envelopes"], args["to"], sender)  # as the server would
        message = {"event": "message", "msg_id": len(self.dms) + 1,
                   "ts": "2026-01-01T10:00:00.000Z", "from": sender,
                   **{k: v for k, v in args.items()}}
        self.dms.append(message)
        return {"msg_id": message["msg_id"], "ts": message["ts"], "delivered": True}


class Device:
    """One client install (its own config dir, so its own key and device id)."""

    def __init__(self, case: DeviceTestCase, user: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-device-test-"))
        case.addCleanup(shutil.rmtree, self.dir, True)
        self.user = user
        self.server = FakeServer()
        directory = case.directory
        self.server.on("login", lambda a: login_reply(a["user"]))
        self.server.on("resume", lambda a: login_reply(user))
        self.server.on("key.get", directory.get)
        self.server.on("key.publish", lambda a: directory.publish(user, a))
        self.server.on("dm", lambda a: directory.dm(user, a))
        self.server.on("history", lambda a: {"messages": []})
        self.client = ChatClient(Clock(), ServerAddress("chat.example"), ConfigDir(self.dir),
                                 Insecure(), connector=FakeConnector())  # type: ignore[arg-type]
        self.frontend = FakeFrontend("login", user, "pw")
        self.client.start(self.frontend)
        self.client.state_changed("logging in", "")
        case.successResultOf(self.client.session_started(self.server))  # type: ignore[arg-type]

    @property
    def id(self) -> str:
        assert self.client.dms.keyring is not None
        return self.client.dms.keyring.device

    @property
    def identity(self) -> Identity:
        assert self.client.dms.identity is not None
        return self.client.dms.identity

    def receive(self, event: dict[str, Any]) -> None:
        self.client.event(self.server, event)  # type: ignore[arg-type]

    def text(self) -> str:
        return self.frontend.text()

    def lines(self, window: str) -> list[Any]:
        found = self.client.windows.find(window)
        assert found is not None, f"no window {window}"
        return list(found.lines)


class DeviceTestCase(TestCase):
    def setUp(self) -> None:
        self.directory = Directory()

    def device(self, user: str) -> Device:
        return Device(self, user)


class SealingTests(DeviceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice1, self.alice2 = self.device("alice"), self.device("alice")
        self.bob1, self.bob2 = self.device("bob"), self.device("bob")

    def test_each_device_publishes_its_own_key_under_its_own_id_with_a_label(self) -> None:
        devices = self.directory.devices["alice"]
        self.assertEqual([d["device"] for d in devices], [self.alice1.id, self.alice2.id])
        self.assertNotEqual(self.alice1.id, self.alice2.id)
        self.assertEqual(devices[0]["public_key"], self.alice1.identity.public_key)
        self.assertTrue(devices[0]["label"].startswith("terminal on "))
        self.assertIn("Published your encryption key for this device", self.alice1.text())

    def test_a_dm_is_sealed_for_every_device_of_the_recipient_and_ones_other_devices(
        self,
    ) -> None:
        self.alice1.client.input("/msg bob the vault code is 1234")
        [dm] = self.directory.dms
        self.assertNotIn("text", dm)
        self.assertNotIn("1234", repr(dm))
        self.assertEqual(dm["device"], self.alice1.id)
        self.assertEqual([(e["user"], e["device"]) for e in dm["envelopes"]],
                         [("bob", self.bob1.id), ("bob", self.bob2.id),
                          ("alice", self.alice2.id)])
        # Each envelope opens with its device's private key and the sender's public key.
        for reader, envelope in zip((self.bob1, self.bob2, self.alice2), dm["envelopes"],
                                    strict=True):
            self.assertEqual(reader.identity.open(self.alice1.identity.public_key,
                                                 envelope["ciphertext"], envelope["nonce"]),
                             "the vault code is 1234")
        self.assertIn("@bob <alice> [e2e] the vault code is 1234", self.alice1.text())

    def test_every_device_reads_its_own_envelope(self) -> None:
        self.alice1.client.input("/msg bob meet at 6")
        [dm] = self.directory.dms
        for reader in (self.bob1, self.bob2, self.alice2):
            reader.receive(dm)
            self.assertIn("<alice> [e2e] meet at 6", reader.text())
        [line] = [x for x in self.alice2.lines("bob") if x.kind == "own"]
        self.assertEqual((line.text, line.encrypted), ("meet at 6", True))

    def test_the_replies_reach_both_devices_of_the_sender(self) -> None:
        self.alice1.client.input("/msg bob ping")
        self.bob1.receive(self.directory.dms[0])
        self.bob1.client.input("/msg alice pong")
        reply = self.directory.dms[1]
        self.assertEqual(sorted((e["user"], e["device"]) for e in reply["envelopes"]),
                         sorted([("alice", self.alice1.id), ("alice", self.alice2.id),
                                 ("bob", self.bob2.id)]))
        for reader in (self.alice1, self.alice2, self.bob2):
            reader.receive(reply)
            self.assertIn("<bob> [e2e] pong", reader.text())

    def test_the_sending_device_reads_its_own_message_back_from_history(self) -> None:
        self.alice1.client.input("/msg bob from the archive")
        [dm] = self.directory.dms
        stored = {k: v for k, v in dm.items() if k != "event"}
        self.alice1.server.on("history", lambda a: {"messages": [stored]})
        self.alice1.client.input("/history bob")
        history = [x for x in self.alice1.lines("bob") if x.history]
        self.assertEqual([(x.text, x.encrypted, x.kind) for x in history],
                         [("from the archive", True, "own")])

    def test_a_device_added_after_the_message_says_so_calmly(self) -> None:
        self.alice1.client.input("/msg bob before you existed")
        [dm] = self.directory.dms
        alice3 = self.device("alice")
        alice3.receive(dm)
        [line] = [x for x in alice3.lines("bob") if x.sender == "alice"]
        self.assertEqual((line.text, line.kind, line.encrypted), (OTHER_DEVICES, "own", False))
        bob3 = self.device("bob")
        bob3.receive(dm)
        [line] = [x for x in bob3.lines("alice") if x.sender == "alice"]
        self.assertEqual((line.text, line.kind), (OTHER_DEVICES, "message"))
        self.assertNotIn("!!", bob3.text())

    def test_a_message_too_long_for_its_envelopes_is_refused_before_sending(self) -> None:
        self.alice1.client.input("/msg bob " + "x" * 4000)
        self.assertEqual(self.directory.dms, [])
        self.assertIn("too long to seal for 3 device(s)", self.alice1.text())


class LegacyTests(DeviceTestCase):
    """Peers whose only key is the legacy ``default`` (clients from before device keys)."""

    def setUp(self) -> None:
        super().setUp()
        self.bob = Identity.generate()  # an old client, not driven here
        self.directory.set_key("bob", "default", self.bob.public_key)
        self.alice1, self.alice2 = self.device("alice"), self.device("alice")

    def test_a_dm_to_an_account_with_only_a_legacy_key_uses_the_single_key_form(self) -> None:
        self.alice1.client.input("/msg bob hello old friend")
        [dm] = self.directory.dms
        self.assertNotIn("envelopes", dm)
        self.assertNotIn("device", dm)
        self.assertEqual(self.bob.open(self.alice1.identity.public_key, dm["ciphertext"],
                                       dm["nonce"]), "hello old friend")
        # The sending device reads it back; the box is symmetric.
        self.alice1.server.on("history", lambda a: {"messages": [
            {k: v for k, v in dm.items() if k != "event"}]})
        self.alice1.client.input("/history bob")
        self.assertIn("hello old friend", [x.text for x in self.alice1.lines("bob")
                                           if x.history])

    def test_a_single_key_dm_from_an_old_client_is_read(self) -> None:
        ciphertext, nonce = self.bob.seal(self.alice2.identity.public_key, "hi from 2025")
        self.alice2.receive({"event": "message", "from": "bob", "to": "alice", "msg_id": 3,
                             "ciphertext": ciphertext, "nonce": nonce})
        self.assertIn("<bob> [e2e] hi from 2025", self.alice2.text())
        # Sealed for another of alice's keys: this device says it cannot read it.
        self.alice1.receive({"event": "message", "from": "bob", "to": "alice", "msg_id": 3,
                             "ciphertext": ciphertext, "nonce": nonce})
        self.assertIn("cannot decrypt: sealed for another key", self.alice1.text())

    def test_an_upgraded_client_keeps_its_key_and_old_messages(self) -> None:
        # carol's old install: a key file and no device id, its key published
        # without one.
        old = self.device("carol")
        key = old.identity.public_key
        device_file = old.dir / "servers" / "chat.example_7464" / "keys" / "carol.device"
        device_file.unlink()
        self.directory.devices["carol"] = []
        self.directory.set_key("carol", "default", key)
        sealed = self.bob.seal(key, "sealed to the old key")
        upgraded = self.device_from(old)
        self.assertEqual(upgraded.identity.public_key, key)
        self.assertEqual(device_file.read_text().strip(), upgraded.id)
        self.assertEqual(stat.S_IMODE(device_file.stat().st_mode), 0o600)
        # The same key under the new id: the server dropped the default.
        self.assertEqual([(d["device"], d["public_key"]) for d in self.directory.devices["carol"]],
                         [(upgraded.id, key)])
        upgraded.receive({"event": "message", "from": "bob", "to": "carol", "msg_id": 4,
                          "ciphertext": sealed[0], "nonce": sealed[1]})
        self.assertIn("<bob> [e2e] sealed to the old key", upgraded.text())

    def device_from(self, old: Device) -> Device:
        """The same config dir, logging in again (as after an upgrade)."""
        again = Device.__new__(Device)
        again.dir, again.user = old.dir, old.user
        again.server = old.server
        again.client = ChatClient(Clock(), ServerAddress("chat.example"), ConfigDir(old.dir),
                                  Insecure(), connector=FakeConnector())  # type: ignore[arg-type]
        again.frontend = FakeFrontend("login", old.user, "pw")
        again.client.start(again.frontend)
        again.client.state_changed("logging in", "")
        self.successResultOf(again.client.session_started(old.server))  # type: ignore[arg-type]
        return again


class TrustTests(DeviceTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.bob_laptop = Identity.generate()
        self.directory.set_key("bob", "bob-laptop-01", self.bob_laptop.public_key,
                               "terminal on laptop")
        self.alice = self.device("alice")

    def test_a_new_device_of_a_known_user_is_an_info_line(self) -> None:
        self.alice.client.input("/msg bob one")
        browser = Identity.generate()
        self.directory.set_key("bob", "bob-browser-1", browser.public_key, "Chromium on Linux")
        self.alice.client.input("/msg bob two")
        self.assertIn(f"bob has a new device: Chromium on Linux, fingerprint"
                      f" {key_fingerprint(browser.public_key)}", self.alice.text())
        self.assertNotIn("WARNING", self.alice.text())

    def test_a_key_event_refetches_and_shows_the_new_device(self) -> None:
        self.alice.client.input("/msg bob one")
        browser = Identity.generate()
        self.directory.set_key("bob", "bob-browser-1", browser.public_key, "Chromium on Linux")
        self.alice.receive({"event": "key", "user": "bob", "device": "bob-browser-1",
                            "action": "published",
                            "fingerprint": key_fingerprint(browser.public_key)})
        self.assertIn("bob has a new device: Chromium on Linux", self.alice.text())

    def test_a_new_device_of_ones_own_account_is_pointed_out(self) -> None:
        other = Identity.generate()
        self.directory.set_key("alice", "alice-browser", other.public_key, "Firefox")
        self.alice.receive({"event": "key", "user": "alice", "device": "alice-browser",
                            "action": "published", "fingerprint": "x"})
        self.assertIn("Your account has a new device: Firefox", self.alice.text())
        self.assertIn("/revoke alice-browser", self.alice.text())

    def test_a_changed_device_key_warns_loudly_until_trusted(self) -> None:
        self.alice.client.input("/msg bob one")
        old_fp = key_fingerprint(self.bob_laptop.public_key)
        new = Identity.generate()
        self.directory.set_key("bob", "bob-laptop-01", new.public_key, "terminal on laptop")
        self.alice.client.input("/msg bob two")
        warning = (f"WARNING: bob's encryption key has CHANGED on the device terminal on"
                   f" laptop (was {old_fp}, now {key_fingerprint(new.public_key)})")
        self.assertIn(warning, self.alice.text())
        # Received messages from that device warn too.
        ciphertext, nonce = new.seal(self.alice.identity.public_key, "it is me")
        self.alice.receive({"event": "message", "from": "bob", "to": "alice", "msg_id": 9,
                            "device": "bob-laptop-01", "envelopes": [
                                {"user": "alice", "device": self.alice.id,
                                 "ciphertext": ciphertext, "nonce": nonce}]})
        self.assertEqual(self.alice.text().count(warning), 2)
        self.alice.client.input("/keys bob")
        self.assertIn("CHANGED, not accepted yet: /trust bob", self.alice.text())
        self.alice.client.input("/trust bob")
        count = self.alice.text().count("has CHANGED")
        self.alice.client.input("/msg bob three")
        self.assertEqual(self.alice.text().count("has CHANGED"), count)

    def test_keys_lists_every_devices_fingerprint_and_label(self) -> None:
        browser = Identity.generate()
        self.directory.set_key("bob", "bob-browser-1", browser.public_key, None)
        self.alice.client.input("/keys bob")
        text = self.alice.text()
        self.assertIn("bob's devices (2):", text)
        self.assertIn(f"terminal on laptop  bob-laptop-01  fingerprint"
                      f" {key_fingerprint(self.bob_laptop.public_key)}", text)
        self.assertIn(f"(no label)  bob-browser-1  fingerprint"
                      f" {key_fingerprint(browser.public_key)}", text)
        self.alice.client.input("/keys")
        self.assertIn(f"this device: {self.alice.client.dms.keyring.label} ({self.alice.id}),"  # type: ignore[union-attr]
                      f" fingerprint {self.alice.identity.fingerprint}", self.alice.text())
        self.assertIn("[this device]", self.alice.text())

    def test_revoke_removes_a_device_key(self) -> None:
        self.alice.server.on("key.revoke", lambda a: {})
        self.alice.client.input("/revoke old-laptop-1")
        self.assertEqual(self.alice.server.sent("key.revoke"), [
            {"op": "key.revoke", "device": "old-laptop-1"}])
        self.assertIn("removed the key of your device old-laptop-1", self.alice.text())

    def test_too_many_devices_says_how_to_make_room(self) -> None:
        def full(args: dict[str, Any]) -> dict[str, Any]:
            raise refuse("too_many_devices", "an account may publish keys for at most 20"
                         " devices; revoke one with key.revoke first")

        self.directory = Directory()
        device = Device.__new__(Device)
        self.directory.publish = lambda user, args: full(args)  # type: ignore[method-assign]
        device.__init__(self, "carol")  # type: ignore[misc]
        self.assertIn("/revoke DEVICE removes one", device.text())
