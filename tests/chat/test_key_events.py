"""Device key changes reach the right minds, through every door's IChatMind."""

from __future__ import annotations

from zope.interface.verify import verifyClass

from pingchat.interfaces import IChatMind
from pingchat.irc.protocol import IRCProtocol
from pingchat.native.protocol import NativeProtocol
from pingchat.testing import RecordingMind
from tests.backends import on_postgresql
from tests.chat.helpers import SessionTestCase


class KeyEventTests(SessionTestCase):
    def test_every_door_implements_key_changed(self) -> None:
        for mind in (NativeProtocol, IRCProtocol, RecordingMind):
            self.assertTrue(verifyClass(IChatMind, mind))

    def test_announced_to_other_sessions_and_the_audience_not_the_origin(self) -> None:
        alice, alice_mind = self.session("alice")
        _, alice2_mind = self.session("alice")
        _, bob_mind = self.session("bob")
        _, carol_mind = self.session("carol")
        self.server.chat.announce_key(alice, "laptop-0001", "published", "ab12", ["BOB"])
        expected = [("alice", "laptop-0001", "published", "ab12")]
        self.assertEqual(alice2_mind.named("key"), expected)
        self.assertEqual(bob_mind.named("key"), expected)
        self.assertEqual(alice_mind.named("key"), [])
        self.assertEqual(carol_mind.named("key"), [])

    def test_publishing_through_the_account_manager_announces_once(self) -> None:
        alice, _ = self.session("alice")
        _, other = self.session("alice")
        key = "A" * 43 + "="
        self.successResultOf(self.server.accounts.publish_key(alice, key, "laptop-0001", None))
        self.successResultOf(self.server.accounts.publish_key(alice, key, "laptop-0001", None))
        self.assertEqual([e[2] for e in other.named("key")], ["published"])
        self.successResultOf(self.server.accounts.revoke_key(alice, "laptop-0001"))
        self.assertEqual([e[2] for e in other.named("key")], ["published", "revoked"])


# The same tests on the PostgreSQL store (tests/backends.py).
KeyEventTestsOnPostgreSQL = on_postgresql(KeyEventTests)
