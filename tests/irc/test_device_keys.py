"""IRC and DMs sealed per device: the placeholder, live and in CHATHISTORY, and
notices of the account's own device keys."""

from __future__ import annotations

import base64

from pingchat.irc.chathistory import ENCRYPTED
from tests.irc.helpers import IRCTestCase


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


ENVELOPES = [{"user": "alice", "device": "alice-phone1", "ciphertext": b64(b"sealed"),
              "nonce": b64(bytes(24))}]


class EncryptedPlaceholderTests(IRCTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.irc_alice = self.connect("alice", caps=("draft/chathistory", "batch"))
        self.make_account("bob")
        self.bob = self.native("bob")

    def test_a_dm_sealed_per_device_shows_the_placeholder_live_and_in_history(self) -> None:
        reply = self.bob.request("dm", to="alice", device="bob-laptop-1", envelopes=ENVELOPES)
        self.assertTrue(reply["ok"], reply)
        [live] = [m for m in self.irc_alice.read() if m.command == "PRIVMSG"]
        self.assertEqual(live.params, ("alice", ENCRYPTED))
        self.irc_alice.send("CHATHISTORY LATEST bob * 10")
        [stored] = [m for m in self.irc_alice.read() if m.command == "PRIVMSG"]
        self.assertEqual(stored.params, ("alice", ENCRYPTED))

    def test_the_single_key_form_still_shows_it_too(self) -> None:
        self.bob.request("dm", to="alice", ciphertext=b64(b"sealed"), nonce=b64(bytes(24)))
        [live] = [m for m in self.irc_alice.read() if m.command == "PRIVMSG"]
        self.assertEqual(live.params, ("alice", ENCRYPTED))


class KeyNoticeTests(IRCTestCase):
    def test_a_key_published_for_ones_own_account_is_a_nickserv_notice(self) -> None:
        irc = self.connect("alice")
        native = self.native("alice")
        reply = native.request("key.publish", public_key=b64(bytes(32)), device="laptop-0001")
        [notice] = irc.read()
        self.assertEqual((notice.command, notice.source.split("!")[0]), ("NOTICE", "NickServ"))
        self.assertIn("laptop-0001", notice.params[-1])
        self.assertIn(reply["fingerprint"], notice.params[-1])
        native.request("key.revoke", device="laptop-0001")
        [notice] = irc.read()
        self.assertIn("revoked", notice.params[-1])

    def test_a_contacts_key_is_not_shown_on_irc(self) -> None:
        irc = self.connect("alice")
        self.make_account("bob")
        bob = self.native("bob")
        alice = self.native("alice")
        alice.request("contact.add", user="bob")
        bob.request("contact.add", user="alice")
        irc.read()
        bob.request("key.publish", public_key=b64(bytes(32)), device="laptop-0001")
        self.assertEqual(irc.read(), [])
