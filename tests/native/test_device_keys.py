"""End-to-end keys per device over the native protocol (docs/e2e.md): publishing,
revoking and fetching device keys, ``key`` events, and DMs sealed per device."""

from __future__ import annotations

import base64
import json
import sqlite3
from typing import Any

from pingchat.testing import NativeTestClient
from tests.helpers import ServerTestCase


def key(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


NONCE = b64(bytes(range(24)))


def envelope(user: str, device: str, n: int = 0, **overrides: Any) -> dict[str, Any]:
    return {"user": user, "device": device, "ciphertext": b64(bytes([n]) * 40), "nonce": NONCE,
            **overrides}


class KeyOpsTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("alice")
        self.bob = self.account("bob")

    def test_publish_per_device_and_get_lists_every_device_oldest_first(self) -> None:
        reply = self.alice.request("key.publish", public_key=key(1), device="laptop-0001",
                                   label="terminal on laptop")
        self.assertEqual((reply["ok"], reply["device"]), (True, "laptop-0001"))
        self.clock.advance(5)
        self.alice.request("key.publish", public_key=key(2), device="browser-0001")
        got = self.bob.request("key.get", user="ALICE")
        first = self.server.chat.now() - 5000
        self.assertEqual(got["user"], "alice")
        self.assertEqual(got["devices"], [
            {"device": "laptop-0001", "public_key": key(1), "fingerprint": reply["fingerprint"],
             "label": "terminal on laptop", "published_at": iso(first)},
            {"device": "browser-0001", "public_key": key(2),
             "fingerprint": got["devices"][1]["fingerprint"], "label": None,
             "published_at": iso(first + 5000)},
        ])
        # The legacy fields, for old clients: the newest device's key.
        self.assertEqual((got["public_key"], got["fingerprint"]),
                         (key(2), got["devices"][1]["fingerprint"]))
        self.assertRegex(reply["fingerprint"], r"^([0-9a-f]{4} ){7}[0-9a-f]{4}$")

    def test_no_keys_is_an_empty_list_and_null_legacy_fields(self) -> None:
        got = self.alice.request("key.get", user="bob")
        self.assertEqual((got["devices"], got["public_key"], got["fingerprint"]), ([], None, None))

    def test_without_a_device_the_key_is_the_legacy_default(self) -> None:
        reply = self.alice.request("key.publish", public_key=key(1))
        self.assertEqual(reply["device"], "default")
        got = self.bob.request("key.get", user="alice")
        self.assertEqual([d["device"] for d in got["devices"]], ["default"])
        self.assertEqual(got["public_key"], key(1))

    def test_an_upgraded_client_publishing_its_old_key_replaces_the_default(self) -> None:
        self.alice.request("key.publish", public_key=key(1))
        self.alice.request("key.publish", public_key=key(1), device="laptop-0001",
                           label="terminal on laptop")
        got = self.bob.request("key.get", user="alice")
        self.assertEqual([d["device"] for d in got["devices"]], ["laptop-0001"])

    def test_bad_device_ids_and_labels_are_bad_requests(self) -> None:
        for bad in ["short", "x" * 65, "has space1", "slash/in/it", "default", "ünïcode-id",
                    12345678, ""]:
            self.assertError(self.alice.request("key.publish", public_key=key(1), device=bad),
                             "bad_request")
        for bad in ["", "   ", "x" * 65, "two\nlines", "bell\x07", "tab\there", "\u202eevil",
                    42, ["list"]]:
            self.assertError(self.alice.request("key.publish", public_key=key(1),
                                                device="laptop-0001", label=bad), "bad_request")
        self.assertEqual(self.bob.request("key.get", user="alice")["devices"], [])
        reply = self.alice.request("key.publish", public_key=key(1), device="A-z_0-9" + "x" * 57,
                                   label="Chromium on Linux ✓ " + "é" * 40)
        self.assertTrue(reply["ok"], reply)

    def test_the_twenty_first_device_is_refused_until_one_is_revoked(self) -> None:
        for i in range(20):
            self.assertTrue(self.alice.request("key.publish", public_key=key(i),
                                               device=f"device-{i:04d}")["ok"])
        reply = self.alice.request("key.publish", public_key=key(50), device="device-0020")
        self.assertError(reply, "too_many_devices")
        self.assertIn("key.revoke", reply["error"]["message"])
        self.assertTrue(self.alice.request("key.publish", public_key=key(51),
                                           device="device-0007")["ok"])
        self.assertTrue(self.alice.request("key.revoke", device="device-0000")["ok"])
        self.assertTrue(self.alice.request("key.publish", public_key=key(50),
                                           device="device-0020")["ok"])

    def test_revoke_removes_only_ones_own_device(self) -> None:
        self.alice.request("key.publish", public_key=key(1), device="laptop-0001")
        self.alice.request("key.publish", public_key=key(2))
        self.assertError(self.bob.request("key.revoke", device="laptop-0001"), "no_such_device")
        self.assertTrue(self.alice.request("key.revoke", device="default")["ok"])
        self.assertTrue(self.alice.request("key.revoke", device="laptop-0001")["ok"])
        self.assertError(self.alice.request("key.revoke", device="laptop-0001"), "no_such_device")
        self.assertError(self.alice.request("key.revoke"), "bad_request")
        self.assertError(self.alice.request("key.revoke", device="bad id"), "bad_request")
        got = self.bob.request("key.get", user="alice")
        self.assertEqual((got["devices"], got["public_key"]), ([], None))

    def test_publish_and_revoke_are_audited_without_the_key(self) -> None:
        reply = self.alice.request("key.publish", public_key=key(7), device="laptop-0001",
                                   label="terminal on laptop")
        self.alice.request("key.revoke", device="laptop-0001")
        conn = sqlite3.connect(self.data_dir / "pingchat.sqlite3")
        self.addCleanup(conn.close)
        rows = conn.execute("SELECT event, account, detail FROM audit_log"
                            " WHERE event LIKE 'key_%' ORDER BY id").fetchall()
        self.assertEqual([(e, a) for e, a, _ in rows],
                         [("key_published", "alice"), ("key_revoked", "alice")])
        for _, _, detail in rows:
            self.assertEqual(json.loads(detail),
                             {"device": "laptop-0001", "fingerprint": reply["fingerprint"]})
        self.assertNotIn(key(7), repr(rows))


def iso(ms: int) -> str:
    from pingchat.model import iso_ms

    return iso_ms(ms)


class KeyEventTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("alice")
        self.alice2 = self.login("alice")
        self.bob = self.account("bob")  # a contact
        self.carol = self.account("carol")  # a DM partner
        self.dave = self.account("dave")  # a stranger
        self.alice.request("contact.add", user="bob")
        self.bob.request("contact.add", user="alice")
        self.carol.request("dm", to="alice", text="hi")
        for c in (self.alice, self.alice2, self.bob, self.carol, self.dave):
            c.take_events()

    def test_a_published_key_is_announced_to_the_other_sessions_contacts_and_partners(
        self,
    ) -> None:
        reply = self.alice.request("key.publish", public_key=key(1), device="laptop-0001")
        expected = {"event": "key", "user": "alice", "device": "laptop-0001",
                    "action": "published", "fingerprint": reply["fingerprint"]}
        for c in (self.alice2, self.bob, self.carol):
            self.assertEqual(c.take_events("key"), [expected])
        self.assertEqual(self.alice.take_events("key"), [])  # it has the reply
        self.assertEqual(self.dave.take_events("key"), [])
        # Publishing the same again changes nothing and says nothing.
        self.alice.request("key.publish", public_key=key(1), device="laptop-0001")
        self.assertEqual(self.bob.take_events("key"), [])

    def test_a_revoked_key_is_announced_likewise(self) -> None:
        reply = self.alice.request("key.publish", public_key=key(1), device="laptop-0001")
        for c in (self.alice2, self.bob, self.carol):
            c.take_events()
        self.alice2.request("key.revoke", device="laptop-0001")
        expected = {"event": "key", "user": "alice", "device": "laptop-0001",
                    "action": "revoked", "fingerprint": reply["fingerprint"]}
        for c in (self.alice, self.bob, self.carol):
            self.assertEqual(c.take_events("key"), [expected])
        self.assertEqual(self.alice2.take_events("key"), [])


class EnvelopeDMTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("alice")
        self.alice2 = self.login("alice")
        self.bob = self.account("bob")
        self.bob2 = self.login("bob")
        self.envelopes = [envelope("bob", "bob-phone-01", 1), envelope("bob", "bob-laptop1", 2),
                          envelope("alice", "alice-web-01", 3)]
        for c in (self.alice, self.alice2, self.bob, self.bob2):
            c.take_events()

    def dm(self, c: NativeTestClient | None = None, **fields: Any) -> dict[str, Any]:
        args = {"to": "bob", "device": "alice-term-1", "envelopes": self.envelopes, **fields}
        return (c or self.alice).request("dm", **{k: v for k, v in args.items() if v is not None})

    def test_every_session_of_both_accounts_gets_the_same_bytes(self) -> None:
        reply = self.dm()
        self.assertTrue(reply["ok"], reply)
        self.assertTrue(reply["delivered"])
        lines = []
        for c in (self.bob, self.bob2, self.alice2):
            data = c.transport.value()
            c.transport.clear()
            lines.append(data)
        self.assertEqual(len(set(lines)), 1)
        event = json.loads(lines[0])
        self.assertEqual(event, {"event": "message", "msg_id": reply["msg_id"], "ts": reply["ts"],
                                 "from": "alice", "to": "bob", "device": "alice-term-1",
                                 "envelopes": self.envelopes})
        self.assertEqual(self.alice.take_events("message"), [])

    def test_history_gives_both_sides_the_envelopes(self) -> None:
        reply = self.dm()
        for c, peer in ((self.bob, "alice"), (self.alice, "bob")):
            [m] = c.request("history", **{"with": peer})["messages"]
            self.assertEqual((m["msg_id"], m["device"], m["envelopes"]),
                             (reply["msg_id"], "alice-term-1", self.envelopes))
            self.assertNotIn("text", m)
            self.assertNotIn("ciphertext", m)

    def test_an_offline_recipient_gets_the_envelopes_at_login(self) -> None:
        self.bob.disconnect()
        self.bob2.disconnect()
        reply = self.dm()
        self.assertFalse(reply["delivered"])
        bob = self.login("bob")
        [event] = bob.take_events("message")
        self.assertEqual((event["offline"], event["device"], event["envelopes"], event["msg_id"]),
                         (True, "alice-term-1", self.envelopes, reply["msg_id"]))

    def test_envelopes_for_a_legacy_default_key_and_in_any_case_are_accepted(self) -> None:
        self.envelopes = [envelope("BOB", "default"), envelope("Alice", "alice-web-01")]
        self.assertTrue(self.dm()["ok"])

    def test_sixty_four_envelopes_fit(self) -> None:
        self.envelopes = [envelope("bob", f"device-{i:04d}") for i in range(64)]
        self.assertTrue(self.dm()["ok"])

    def test_every_bad_shape_is_a_bad_request_and_nothing_is_stored(self) -> None:
        good = envelope("bob", "bob-phone-01")
        bad_envelopes: list[Any] = [
            [],
            "not a list",
            {"user": "bob"},
            [good, "not an object"],
            [good] + [envelope("bob", f"device-{i:04d}") for i in range(64)],
            [{k: v for k, v in good.items() if k != "user"}],
            [envelope("carol", "carol-phone1")],  # neither the recipient nor the sender
            [envelope(["bob"], "bob-phone-01")],  # type: ignore[arg-type]
            [{k: v for k, v in good.items() if k != "device"}],
            [envelope("bob", "short")],
            [envelope("bob", "with space!")],
            [envelope("bob", 12345678)],  # type: ignore[arg-type]
            [{k: v for k, v in good.items() if k != "ciphertext"}],
            [envelope("bob", "bob-phone-01", ciphertext="")],
            [envelope("bob", "bob-phone-01", ciphertext="not base64!")],
            [envelope("bob", "bob-phone-01", ciphertext=b64(bytes(9300)))],  # > 12 KiB
            [envelope("bob", "bob-phone-01", ciphertext=7)],
            [{k: v for k, v in good.items() if k != "nonce"}],
            [envelope("bob", "bob-phone-01", nonce=b64(bytes(23)))],
            [envelope("bob", "bob-phone-01", nonce=b64(bytes(25)))],
            [envelope("bob", "bob-phone-01", nonce="%%%")],
            [good, envelope("BOB", "bob-phone-01", 9)],  # the same device twice
        ]
        for bad in bad_envelopes:
            reply = self.dm(envelopes=bad)
            self.assertError(reply, "bad_request")
        bad_requests: list[dict[str, Any]] = [
            {"device": None},  # the sending device is required with envelopes
            {"device": "short"},
            {"device": "default"},
            {"device": 12345678},
            {"text": "hello"},
            {"ciphertext": b64(b"x")},
            {"nonce": NONCE},
        ]
        for fields in bad_requests:
            self.assertError(self.dm(**fields), "bad_request")
        # A device id goes with envelopes only.
        self.assertError(self.alice.request("dm", to="bob", text="hi", device="alice-term-1"),
                         "bad_request")
        self.assertError(self.alice.request("dm", to="bob", ciphertext=b64(b"x"),
                                            device="alice-term-1"), "bad_request")
        self.assertEqual(self.bob.take_events("message"), [])
        self.assertEqual(self.bob.request("history", **{"with": "alice"})["messages"], [])

    def test_a_request_over_the_line_limit_is_refused_whole(self) -> None:
        self.envelopes = [envelope("bob", f"device-{i:04d}") | {"ciphertext": b64(bytes(300))}
                          for i in range(64)]
        line = json.dumps({"id": 1, "op": "dm", "to": "bob", "device": "alice-term-1",
                           "envelopes": self.envelopes}).encode()
        self.assertGreater(len(line), 16 * 1024)
        self.alice.send_line(line + b"\n")
        self.alice.pump()
        [error] = self.alice.replies
        self.assertEqual(error["error"]["code"], "line_too_long")
        self.assertEqual(self.bob.take_events("message"), [])

    def test_the_single_key_form_still_works_beside_it(self) -> None:
        reply = self.alice.request("dm", to="bob", ciphertext=b64(b"old"), nonce=NONCE)
        self.assertTrue(reply["ok"])
        [event] = self.bob.take_events("message")
        self.assertEqual((event["ciphertext"], event["nonce"]), (b64(b"old"), NONCE))
        self.assertNotIn("envelopes", event)
        self.assertNotIn("device", event)

