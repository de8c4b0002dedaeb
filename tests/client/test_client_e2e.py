"""End-to-end encryption of DMs: the NaCl box, the key and device files, and noticing a
new device or a changed key."""

from __future__ import annotations

import base64
import os
import stat

from twisted.trial.unittest import TestCase

from pingchat.client.configdir import ConfigDir
from pingchat.client.e2e import (
    DecryptionFailed,
    Identity,
    KeyStatus,
    PeerKeys,
    load_or_create_device_id,
)
from pingchat.model import check_ciphertext, check_device_id, check_public_key, key_fingerprint
from tests.helpers import temp_dir


class BoxTests(TestCase):
    def setUp(self) -> None:
        self.alice, self.bob = Identity.generate(), Identity.generate()
        self.eve = Identity.generate()

    def test_round_trip_between_two_key_pairs(self) -> None:
        ciphertext, nonce = self.alice.seal(self.bob.public_key, "meet at 6 ✓")
        self.assertEqual(self.bob.open(self.alice.public_key, ciphertext, nonce), "meet at 6 ✓")

    def test_the_sender_can_read_its_own_message_back(self) -> None:
        ciphertext, nonce = self.alice.seal(self.bob.public_key, "for bob")
        self.assertEqual(self.alice.open(self.bob.public_key, ciphertext, nonce), "for bob")

    def test_the_server_sees_neither_the_text_nor_a_reusable_nonce(self) -> None:
        first = self.alice.seal(self.bob.public_key, "same text")
        second = self.alice.seal(self.bob.public_key, "same text")
        self.assertNotEqual(first, second)
        for ciphertext, nonce in (first, second):
            self.assertNotIn(b"same text", base64.b64decode(ciphertext))
            check_ciphertext(ciphertext, nonce)  # what the server accepts

    def test_tampered_ciphertext_or_nonce_is_detected(self) -> None:
        ciphertext, nonce = self.alice.seal(self.bob.public_key, "pay 10 euros")
        raw = bytearray(base64.b64decode(ciphertext))
        raw[-1] ^= 1
        flipped = base64.b64encode(bytes(raw)).decode()
        self.assertRaises(DecryptionFailed, self.bob.open, self.alice.public_key, flipped, nonce)
        other_nonce = base64.b64encode(bytes(24)).decode()
        self.assertRaises(DecryptionFailed, self.bob.open, self.alice.public_key, ciphertext,
                          other_nonce)
        self.assertRaises(DecryptionFailed, self.bob.open, self.alice.public_key, "not base64!",
                          nonce)

    def test_a_third_party_cannot_read_or_forge(self) -> None:
        ciphertext, nonce = self.alice.seal(self.bob.public_key, "private")
        self.assertRaises(DecryptionFailed, self.eve.open, self.alice.public_key, ciphertext,
                          nonce)
        forged, forged_nonce = self.eve.seal(self.bob.public_key, "from alice, honest")
        self.assertRaises(DecryptionFailed, self.bob.open, self.alice.public_key, forged,
                          forged_nonce)

    def test_combined_form_without_a_separate_nonce_is_read_too(self) -> None:
        ciphertext, nonce = self.alice.seal(self.bob.public_key, "combined")
        combined = base64.b64encode(base64.b64decode(nonce) + base64.b64decode(ciphertext))
        self.assertEqual(self.bob.open(self.alice.public_key, combined.decode(), None),
                         "combined")

    def test_public_key_is_what_the_server_accepts_with_the_same_fingerprint(self) -> None:
        self.assertEqual(check_public_key(self.alice.public_key), self.alice.public_key)
        # One definition for the server and every client (pingchat.model).
        self.assertEqual(self.alice.fingerprint, key_fingerprint(self.alice.public_key))
        self.assertEqual(self.bob.fingerprint, key_fingerprint(self.bob.public_key))


class KeyFileTests(TestCase):
    def test_private_key_is_created_once_mode_0600_and_reloaded(self) -> None:
        path = temp_dir(self) / "servers" / "x_7464" / "keys" / "alice.key"
        first = Identity.load_or_create(path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        again = Identity.load_or_create(path)
        self.assertEqual(first.public_key, again.public_key)
        self.assertNotIn(first.public_key.encode(), path.read_bytes())

    def test_a_damaged_key_file_is_an_error_not_a_new_key(self) -> None:
        path = temp_dir(self) / "alice.key"
        path.write_text("garbage!")
        self.assertRaises(ValueError, Identity.load_or_create, path)
        self.assertEqual(path.read_text(), "garbage!")


class DeviceIdTests(TestCase):
    def test_the_device_id_is_made_once_mode_0600_and_is_what_the_server_accepts(self) -> None:
        path = temp_dir(self) / "keys" / "alice.device"
        first = load_or_create_device_id(path)
        self.assertEqual(check_device_id(first), first)
        self.assertEqual(len(first), 22)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(load_or_create_device_id(path), first)
        self.assertNotEqual(load_or_create_device_id(path.with_name("bob.device")), first)

    def test_a_damaged_device_file_is_an_error(self) -> None:
        path = temp_dir(self) / "alice.device"
        path.write_text("no spaces allowed\n")
        self.assertRaises(ValueError, load_or_create_device_id, path)


class PeerKeyTests(TestCase):
    def setUp(self) -> None:
        folder = temp_dir(self)
        self.peers = PeerKeys(ConfigDir(folder), folder / "peer-keys-alice.json")
        self.k1, self.k2 = Identity.generate().public_key, Identity.generate().public_key
        self.k3 = Identity.generate().public_key

    def test_first_key_is_new_then_the_same(self) -> None:
        self.assertEqual(self.peers.observe("Bob", "bob-laptop", self.k1), (KeyStatus.NEW, None))
        self.assertEqual(self.peers.observe("bob", "bob-laptop", self.k1),
                         (KeyStatus.SAME, self.k1))
        self.assertEqual(self.peers.get("BOB", "bob-laptop"), self.k1)

    def test_another_device_of_a_known_user_is_a_new_device(self) -> None:
        self.peers.observe("bob", "bob-laptop", self.k1)
        self.assertEqual(self.peers.observe("bob", "bob-browser", self.k2),
                         (KeyStatus.NEW_DEVICE, None))
        self.assertEqual(self.peers.observe("carol", "carol-phone", self.k2),
                         (KeyStatus.NEW, None))

    def test_a_changed_key_stays_changed_until_accepted(self) -> None:
        self.peers.observe("bob", "bob-laptop", self.k1)
        self.assertEqual(self.peers.observe("bob", "bob-laptop", self.k2),
                         (KeyStatus.CHANGED, self.k1))
        self.assertEqual(self.peers.observe("bob", "bob-laptop", self.k2),
                         (KeyStatus.CHANGED, self.k1))
        self.assertEqual(self.peers.changed("bob", "bob-laptop"), self.k1)
        # A second change still compares with the key trusted first.
        self.assertEqual(self.peers.observe("bob", "bob-laptop", self.k3),
                         (KeyStatus.CHANGED, self.k1))
        self.assertEqual(self.peers.accept("bob"), ["bob-laptop"])
        self.assertEqual(self.peers.observe("bob", "bob-laptop", self.k3),
                         (KeyStatus.SAME, self.k3))
        self.assertIsNone(self.peers.changed("bob", "bob-laptop"))
        self.assertEqual(self.peers.accept("bob"), [])

    def test_a_key_changed_back_to_the_trusted_one_is_the_same_again(self) -> None:
        self.peers.observe("bob", "bob-laptop", self.k1)
        self.peers.observe("bob", "bob-laptop", self.k2)
        self.assertEqual(self.peers.observe("bob", "bob-laptop", self.k1),
                         (KeyStatus.SAME, self.k1))
        self.assertIsNone(self.peers.changed("bob", "bob-laptop"))

    def test_a_file_from_before_device_keys_reads_as_device_default(self) -> None:
        self.peers.config.write_json(self.peers.path, {"bob": self.k1})
        self.assertEqual(self.peers.get("bob"), self.k1)
        self.assertEqual(self.peers.observe("bob", "default", self.k2),
                         (KeyStatus.CHANGED, self.k1))

    def test_an_upgraded_device_keeping_its_trusted_key_is_not_news(self) -> None:
        self.peers.config.write_json(self.peers.path, {"bob": self.k1})
        self.assertEqual(self.peers.observe("bob", "bob-laptop", self.k1),
                         (KeyStatus.SAME, None))

    def test_the_file_is_private(self) -> None:
        self.peers.observe("bob", "bob-laptop", self.k1)
        self.assertEqual(stat.S_IMODE(os.stat(self.peers.path).st_mode), 0o600)
