"""U+0000 in an IRC line: refused whole, on SQLite and PostgreSQL alike.

PostgreSQL's ``text`` cannot hold NUL where SQLite stores it; a NUL that
reached the store failed there with an internal error. The gateway refuses a
line holding one with ``FAIL <command> INVALID_MESSAGE`` (docs/irc.md), as
its WebSocket door already did, and nothing of the line is used.
"""

from __future__ import annotations

from typing import Any

from tests.backends import StoreBackend, on_postgresql
from tests.irc.helpers import PASSWORD, IRCTestCase
from tests.logged import errors_logged


class NulLineTests(StoreBackend, IRCTestCase):
    def setUp(self) -> None:
        self.settings = {**self.settings, **self.store_settings()}
        super().setUp()
        self.logged = errors_logged(self)

    def assertRefused(self, c: Any, line: bytes, command: str) -> None:
        c.send_raw(line + b"\r\n")
        self.clock.advance(0)
        replies = c.read()
        fails = [m for m in replies if m.command == "FAIL"]
        self.assertEqual(
            [m.params[:2] for m in fails], [(command, "INVALID_MESSAGE")],
            (line, [str(m) for m in replies]),
        )
        self.assertIn("NUL", fails[0].params[-1])
        self.assertEqual([m for m in replies if m.command != "FAIL"], [], line)

    def test_every_command_holding_nul_is_refused_and_nothing_is_stored(self) -> None:
        alice = self.connect("alice")
        bob = self.connect("bob")
        for c in (alice, bob):
            c.send("JOIN #a")
        self.clock.advance(0)
        alice.read()
        bob.read()
        for line, command in [
            (b"PRIVMSG #a :hi\x00", "PRIVMSG"),
            (b"NOTICE #a :hi\x00", "NOTICE"),
            (b"PRIVMSG bob :hi\x00", "PRIVMSG"),
            (b"TOPIC #a :a \x00 topic", "TOPIC"),
            (b"AWAY :gone\x00", "AWAY"),
            (b"MODE #a +k k\x00", "MODE"),
            (b"KICK #a bob :bye\x00", "KICK"),
            (b"PART #a :bye\x00", "PART"),
            (b"REDACT #a 1 :spam\x00", "REDACT"),
            (b"PRIVMSG NickServ :REGISTER pass\x00word long x@example.org", "PRIVMSG"),
            (b"PRIVMSG NickServ :IDENTIFY al\x00ice " + PASSWORD.encode(), "PRIVMSG"),
            (b"NS IDENTIFY alice pass\x00word", "NS"),
            (b"\x00\x01\x02", "*"),
            (b"QUIT :bye\x00", "QUIT"),
        ]:
            self.assertRefused(alice, line, command)
        self.assertFalse(alice.closed)
        self.assertEqual(bob.read(), [])  # nothing relayed, nobody kicked
        room = self.server.chat.get_room("#a")
        self.assertEqual(sorted(room.members), ["alice", "bob"])
        self.assertFalse(room.topic)
        self.assertIsNone(room.key)
        # Before registration too: a PASS whose account name holds a NUL.
        guest = self.irc()
        self.assertRefused(guest, b"PASS :al\x00ice:" + PASSWORD.encode(), "PASS")
        self.assertRefused(guest, b"NICK al\x00ice", "NICK")
        guest.send("PASS :alice:" + PASSWORD, "NICK alice2", "USER a 0 * :A")
        self.clock.advance(0)
        self.assertIn("001", [m.command for m in guest.read()])
        self.assertEqual(self.logged, [])
        alice.send("PRIVMSG #a :still here")
        self.clock.advance(0)
        self.assertEqual([m.params for m in bob.read()], [("#a", "still here")])

    def test_a_nul_in_a_tag_is_dropped_as_before_and_the_line_is_used(self) -> None:
        alice = self.connect("alice", caps=("message-tags",))
        bob = self.connect("bob")
        for c in (alice, bob):
            c.send("JOIN #a")
        self.clock.advance(0)
        bob.read()
        alice.send_raw(b"@+nul=a\x00b PRIVMSG #a :hi\r\n")
        self.clock.advance(0)
        self.assertEqual([m.params for m in bob.read()], [("#a", "hi")])


NulLineTestsOnPostgreSQL = on_postgresql(NulLineTests)
