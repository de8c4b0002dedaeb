"""Device keys in the store (migration 005): the legacy key becomes device
``default``, one key per device, and DMs sealed per device."""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from pingchat.errors import NoSuchDevice, NoSuchUser, TooManyDevices
from pingchat.model import MAX_DEVICES
from pingchat.store import Store, migrations
from pingchat.store.keys import DeviceKey
from tests.backends import POSTGRESQL, Location, StoreBackend, on_postgresql

DEVICE_KEYS = 5  # the migration that introduced them


def key(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class MigrationTests(StoreBackend, SynchronousTestCase):
    """A database from before device keys (schema 3 or 4) keeps its keys and E2E DMs."""

    def old_database(self, at: Location) -> None:
        conn = self.raw_connection(at, target=DEVICE_KEYS - 1)
        for i, (name, public_key) in enumerate([("alice", key(1)), ("bob", key(2)),
                                                ("carol", None)]):
            conn.execute(
                "INSERT INTO accounts (id, name, name_folded, password_hash, created_at,"
                " public_key) VALUES (?, ?, ?, ?, ?, ?)",
                (i + 1, name, name, b"\x00", 1000 * (i + 1), public_key),
            )
        conn.execute(
            "INSERT INTO messages (ts, conversation, sender, sender_id, recipient_id,"
            " ciphertext, nonce) VALUES (5000, 'd:1:2', 'alice', 1, 2, ?, ?)",
            (b64(b"sealed for bob's one key"), b64(bytes(24))),
        )
        conn.execute(
            "INSERT INTO offline_queue (account_id, message_id) VALUES (2, 1)"
        )

    def test_the_legacy_key_becomes_device_default_and_old_dms_stay_readable(self) -> None:
        at = self.new_location()
        self.old_database(at)
        db = self.open_database(at=at)
        self.assertEqual(db.version, migrations.available()[-1][0])
        store = Store(db)
        self.assertEqual(
            self.successResultOf(store.device_keys("ALICE")),
            ("alice", [DeviceKey("default", key(1), None, 1000)]),
        )
        self.assertEqual(self.successResultOf(store.device_keys("carol")), ("carol", []))
        if self.backend == POSTGRESQL:
            columns = [r[0] for r in db._conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'accounts'"
            )]
        else:
            columns = [r[1] for r in db._conn.execute("PRAGMA table_info(accounts)")]
        self.assertNotIn("public_key", columns)  # one place for keys, not two
        [old] = self.successResultOf(store.dm_history(2, "alice"))
        self.assertEqual(
            (old.ciphertext, old.nonce, old.sender_device, old.envelopes),
            (b64(b"sealed for bob's one key"), b64(bytes(24)), None, None),
        )
        self.assertEqual(old.to_event()["ciphertext"], old.ciphertext)
        [queued], _ = self.successResultOf(store.take_queued(2))
        self.assertEqual(queued.ciphertext, old.ciphertext)


class DeviceKeyTests(StoreBackend, SynchronousTestCase):
    def setUp(self) -> None:
        self.db = self.open_database()
        self.store = Store(self.db)
        self.ids = {
            name: self.successResultOf(self.store.create_account(name, b"h", 0)).id
            for name in ("alice", "bob", "carol", "dave")
        }

    def publish(self, device: str, public_key: str, label: str | None = None,
                now: int = 10, who: str = "alice") -> bool:
        change = self.successResultOf(self.store.publish_device_key(
            self.ids[who], device, public_key, label, now, MAX_DEVICES))
        return change.changed

    def devices(self, who: str = "alice") -> list[tuple[str, str, str | None, int]]:
        _, keys = self.successResultOf(self.store.device_keys(who))
        return [(k.device, k.public_key, k.label, k.published_at) for k in keys]

    def test_devices_are_listed_oldest_first_and_replaced_in_place(self) -> None:
        self.publish("laptop-0001", key(1), "terminal on laptop", now=30)
        self.publish("browser-001", key(2), "Chromium", now=20)
        self.publish("laptop-0001", key(3), "terminal on laptop", now=40)
        self.assertEqual(self.devices(), [("browser-001", key(2), "Chromium", 20),
                                          ("laptop-0001", key(3), "terminal on laptop", 40)])

    def test_a_new_label_alone_keeps_the_publication_time(self) -> None:
        self.assertTrue(self.publish("laptop-0001", key(1), "old", now=10))
        self.assertFalse(self.publish("laptop-0001", key(1), "old", now=20))
        self.assertTrue(self.publish("laptop-0001", key(1), "new", now=30))
        self.assertEqual(self.devices(), [("laptop-0001", key(1), "new", 10)])

    def test_the_same_key_under_a_device_id_replaces_the_legacy_default(self) -> None:
        self.publish("default", key(1), now=10)
        self.publish("browser-001", key(2), now=20)
        self.assertTrue(self.publish("laptop-0001", key(1), "terminal", now=30))
        self.assertEqual([d[0] for d in self.devices()], ["browser-001", "laptop-0001"])

    def test_a_different_key_under_a_device_id_leaves_the_default(self) -> None:
        self.publish("default", key(1), now=10)
        self.publish("laptop-0001", key(2), now=20)
        self.assertEqual([d[0] for d in self.devices()], ["default", "laptop-0001"])

    def test_at_most_twenty_devices_counting_the_default(self) -> None:
        self.publish("default", key(99))
        for i in range(MAX_DEVICES - 1):
            self.publish(f"device-{i:04d}", key(i))
        self.failureResultOf(self.store.publish_device_key(
            self.ids["alice"], "one-too-many", key(200), None, 50, MAX_DEVICES), TooManyDevices)
        # Replacing a device's key is not a new device.
        self.assertTrue(self.publish("device-0003", key(201)))
        # Nor is taking over the default with its own key.
        self.assertTrue(self.publish("upgraded-01", key(99)))
        self.assertEqual(len(self.devices()), MAX_DEVICES)

    def test_revoke_removes_one_device_and_says_which_key(self) -> None:
        self.publish("laptop-0001", key(1))
        self.publish("browser-001", key(2))
        change = self.successResultOf(self.store.revoke_device_key(self.ids["alice"],
                                                                   "laptop-0001"))
        self.assertEqual((change.device, change.public_key), ("laptop-0001", key(1)))
        self.assertEqual([d[0] for d in self.devices()], ["browser-001"])
        self.failureResultOf(self.store.revoke_device_key(self.ids["alice"], "laptop-0001"),
                             NoSuchDevice)
        self.failureResultOf(self.store.revoke_device_key(self.ids["bob"], "browser-001"),
                             NoSuchDevice)  # only one's own

    def test_unknown_user_has_no_keys(self) -> None:
        self.failureResultOf(self.store.device_keys("nobody"), NoSuchUser)

    def test_contacts_and_dm_partners_hear_of_a_change_strangers_do_not(self) -> None:
        # bob: mutual contact; carol: asked alice, not answered; dave: a DM partner.
        self.successResultOf(self.store.contact_add(self.ids["alice"], "bob", 0))
        self.successResultOf(self.store.contact_add(self.ids["bob"], "alice", 0))
        self.successResultOf(self.store.contact_add(self.ids["carol"], "alice", 0))
        self.successResultOf(self.store.add_dm(self.ids["dave"], "dave", "alice", 0, text="hi"))
        self.successResultOf(self.store.add_dm(self.ids["alice"], "alice", "alice", 0, text="me"))
        change = self.successResultOf(self.store.publish_device_key(
            self.ids["alice"], "laptop-0001", key(1), None, 0, MAX_DEVICES))
        self.assertEqual(sorted(change.audience), ["bob", "dave"])
        revoked = self.successResultOf(self.store.revoke_device_key(self.ids["alice"],
                                                                    "laptop-0001"))
        self.assertEqual(sorted(revoked.audience), ["bob", "dave"])


class EnvelopeStorageTests(StoreBackend, SynchronousTestCase):
    def setUp(self) -> None:
        self.db = self.open_database()
        self.store = Store(self.db)
        self.alice = self.successResultOf(self.store.create_account("alice", b"h", 0)).id
        self.bob = self.successResultOf(self.store.create_account("bob", b"h", 0)).id
        self.envelopes = [
            {"user": "bob", "device": "bob-phone", "ciphertext": b64(b"1"),
             "nonce": b64(bytes(24))},
            {"user": "alice", "device": "alice-web", "ciphertext": b64(b"2"),
             "nonce": b64(bytes(24))},
        ]

    def test_envelopes_come_back_from_history_and_the_offline_queue_as_sent(self) -> None:
        sent = self.successResultOf(self.store.add_dm(
            self.alice, "alice", "bob", 7, sender_device="alice-laptop",
            envelopes=self.envelopes, queue=True))
        self.assertEqual((sent.sender_device, sent.envelopes), ("alice-laptop", self.envelopes))
        [stored] = self.successResultOf(self.store.dm_history(self.bob, "alice"))
        [queued], _ = self.successResultOf(self.store.take_queued(self.bob))
        for m in (stored, queued):
            self.assertEqual(m, sent)
            self.assertEqual(m.to_event(), {
                "msg_id": sent.id, "ts": "1970-01-01T00:00:00.007Z", "from": "alice",
                "to": "bob", "device": "alice-laptop", "envelopes": self.envelopes})
        raw = self.db._conn.execute("SELECT body, ciphertext, envelopes FROM messages").fetchone()
        self.assertEqual((raw[0], raw[1]), (None, None))
        self.assertNotIn(" ", raw[2])  # compact JSON


# The same tests on PostgreSQL (tests/backends.py).
MigrationTestsOnPostgreSQL = on_postgresql(MigrationTests)
DeviceKeyTestsOnPostgreSQL = on_postgresql(DeviceKeyTests)
EnvelopeStorageTestsOnPostgreSQL = on_postgresql(EnvelopeStorageTests)
