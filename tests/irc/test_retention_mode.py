"""Channel mode +H: a room's retention in days, set by its operators over IRC."""

from __future__ import annotations

from tests.irc.helpers import IRCTestCase


class RetentionModeTests(IRCTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice")
        self.bob = self.connect("bob")
        for c in (self.alice, self.bob):
            c.send("JOIN #lobby")
            c.read()
        self.alice.read()

    def test_an_operator_sets_and_clears_it_and_members_see_it(self) -> None:
        self.alice.send("MODE #lobby +H 30")
        change = self.alice.read()[0]
        self.assertEqual((change.command, change.params), ("MODE", ("#lobby", "+H", "30")))
        self.assertEqual(self.bob.read()[0].params, change.params)
        self.assertEqual(self.server.chat.get_room("#lobby").history_days, 30)
        self.bob.send("MODE #lobby")
        self.assertEqual(self.bob.read()[0].params[2:], ("+ntH", "30"))
        self.alice.send("MODE #lobby -H")
        self.assertEqual(self.alice.read()[0].params, ("#lobby", "-H"))
        self.assertIsNone(self.server.chat.get_room("#lobby").history_days)

    def test_only_operators_and_only_a_number_of_days(self) -> None:
        self.bob.send("MODE #lobby +H 3")
        self.assertEqual(self.bob.commands(), ["482"])
        self.alice.send("MODE #lobby +H", "MODE #lobby +H 0", "MODE #lobby +H soon",
                        "MODE #lobby +H 36501")
        self.assertEqual(self.alice.commands(), ["696", "696", "696", "696"])
        self.assertIsNone(self.server.chat.get_room("#lobby").history_days)

    def test_isupport_lists_it_as_a_mode_with_a_parameter_when_set(self) -> None:
        c = self.irc()
        c.send("NICK carol", "USER carol 0 * :Carol")
        tokens = " ".join(" ".join(m.params) for m in c.read() if m.command == "005")
        self.assertIn("CHANMODES=b,k,Hl,imnst", tokens)
