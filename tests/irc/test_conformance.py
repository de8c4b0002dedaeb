"""Behaviour that the irctest conformance suite checks, found wanting in a run
against the gateway and fixed: guest nick changes, WHOWAS, real names, SASL
edge cases, +s, +i, multi-channel KICK and mode parameter errors."""

from __future__ import annotations

from tests.irc.helpers import PASSWORD, IRCTestCase, plain


class GuestNickTests(IRCTestCase):
    settings = {"guests": True}

    def test_a_guest_changes_nick_and_its_rooms_see_it(self) -> None:
        g = self.connect("visitor", password=None)
        h = self.connect("other", password=None)
        g.send("JOIN #lobby")
        h.send("JOIN #lobby")
        g.read()
        h.read()
        g.send("NICK wanderer")
        mine = g.read()
        self.assertEqual([(m.command, m.params, m.source) for m in mine],
                         [("NICK", ("wanderer",), "visitor!visitor@guest")])
        seen = h.read()
        self.assertEqual([(m.command, m.params) for m in seen], [("NICK", ("wanderer",))])
        h.send("PRIVMSG wanderer :still there?", "NAMES #lobby")
        self.assertIn("@wanderer", self.find(h.read(), "353").params[-1].split())
        self.assertEqual(g.read()[0].params, ("wanderer", "still there?"))

    def test_a_labelled_nick_change_is_the_labelled_answer(self) -> None:
        g = self.connect("visitor", password=None, caps=("labeled-response", "batch"))
        g.send("@label=n1 NICK visitor2")
        lines = g.read()
        self.assertEqual([(m.command, m.tags.get("label")) for m in lines], [("NICK", "n1")])

    def test_a_guest_cannot_take_an_account_name_or_an_online_nick(self) -> None:
        self.make_account("alice")
        g = self.connect("visitor", password=None)
        self.connect("other", password=None)
        g.send("NICK Alice", "NICK OTHER")
        lines = g.read()
        self.assertEqual([m.command for m in lines], ["433", "433"])
        self.assertIn("registered account", lines[0].params[-1])
        g.send("NICK Visitor")  # a change of case is fine
        self.assertEqual(g.read()[0].params, ("Visitor",))

    def test_whowas_remembers_nicks_that_left(self) -> None:
        g = self.connect("visitor", password=None)
        g.send("NICK wanderer")
        h = self.irc()
        h.send("NICK leaver", "USER ident 0 * :The Leaver")
        self.clock.advance(0)
        h.send("QUIT :bye")
        g.read()
        g.send("WHOWAS leaver", "WHOWAS visitor 1", "WHOWAS nobody", "WHOWAS")
        lines = [(m.command, m.params[1:]) for m in g.read()]
        self.assertEqual(lines[0], ("314", ("leaver", "ident", "guest", "*", "The Leaver")))
        self.assertEqual([c for c, _ in lines],
                         ["314", "312", "369", "314", "312", "369", "406", "369", "431"])

    def test_others_see_a_guest_quit_with_its_reason_and_user_name(self) -> None:
        g = self.connect("visitor", password=None)
        h = self.irc()
        h.send("NICK leaver", "USER ident 0 * :The Leaver", "JOIN #lobby")
        g.send("JOIN #lobby")
        g.read()
        h.send("QUIT :gone fishing")
        quit_ = self.find(g.read(), "QUIT")
        self.assertEqual((quit_.source, quit_.params),
                         ("leaver!ident@guest", ("Quit: gone fishing",)))


class GuestMessageTests(IRCTestCase):
    settings = {"guests": True}

    def test_live_dms_have_a_msgid_and_report_away(self) -> None:
        g = self.connect("visitor", password=None, caps=("message-tags", "echo-message"))
        h = self.connect("other", password=None, caps=("message-tags",))
        h.send("AWAY :lunch")
        h.read()
        g.send("PRIVMSG other :hi")
        echo, away = g.read()
        self.assertEqual((away.command, away.params[1:]), ("301", ("other", "lunch")))
        received = h.read()[0]
        self.assertEqual(received.tags["msgid"], echo.tags["msgid"])
        self.assertTrue(received.tags["msgid"].startswith("live"))

    def test_a_guest_dm_to_nobody_is_401_and_to_an_account_486(self) -> None:
        self.make_account("alice")
        g = self.connect("visitor", password=None)
        g.send("PRIVMSG nobody :hi", "PRIVMSG alice :hi", "NOTICE nobody :hi")
        self.assertEqual(g.commands(), ["401", "486"])


class RealNameTests(IRCTestCase):
    settings = {"guests": True}

    def test_who_whois_and_extended_join_show_user_and_real_name(self) -> None:
        g = self.irc()
        g.send("CAP LS 302", "CAP REQ :extended-join", "NICK visitor",
               "USER myuser 0 * :My Real Name", "CAP END")
        self.clock.advance(0)
        h = self.connect("other", password=None, caps=("extended-join",))
        h.send("JOIN #lobby")
        h.read()
        g.send("JOIN #lobby")
        join = self.find(h.read(), "JOIN")
        self.assertEqual((join.source, join.params),
                         ("visitor!myuser@guest", ("#lobby", "*", "My Real Name")))
        h.send("WHO visitor", "WHOIS visitor", "WHO visitor %nr")
        lines = h.read()
        self.assertEqual(self.find(lines, "352").params[2:],
                         ("myuser", "guest", self.factory.server_name, "visitor", "H",
                          "0 My Real Name"))
        self.assertEqual(self.find(lines, "311").params[2:],
                         ("myuser", "guest", "*", "My Real Name"))
        self.assertEqual(self.find(lines, "354").params[1:], ("visitor", "My Real Name"))

    def test_who_mask_skips_invisible_users_who_share_no_room(self) -> None:
        g = self.connect("visitor", password=None)
        g.send("MODE visitor +i", "MODE visitor")
        lines = g.read()
        self.assertEqual([(m.command, m.params[-1]) for m in lines],
                         [("MODE", "+i"), ("221", "+i")])
        h = self.connect("other", password=None)
        h.send("WHO visi*", "WHO visitor")
        self.assertEqual(h.commands(), ["315", "352", "315"])
        g.send("JOIN #lobby")
        h.send("JOIN #lobby")
        h.read()
        h.send("WHO visi*")
        self.assertEqual(h.commands(), ["352", "315"])


class SaslEdgeTests(IRCTestCase):
    def test_cap_end_aborts_an_unfinished_sasl_exchange(self) -> None:
        self.make_account("alice")
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
        c.read()
        c.send("NICK alice", "USER a 0 * :A", "CAP END")
        self.clock.advance(0)
        commands = c.commands()
        self.assertEqual(commands[:2], ["906", "001"])

    def test_authenticate_without_the_capability_fails_and_registration_goes_on(self) -> None:
        c = self.irc()
        c.send("CAP LS 302", "AUTHENTICATE PLAIN", "NICK alice", "USER a 0 * :A", "CAP END")
        self.clock.advance(0)
        self.assertEqual(c.commands()[1:3], ["904", "001"])

    def test_sasl_after_registration_answers_903_before_the_nick_change(self) -> None:
        self.make_account("alice")
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "NICK someone", "USER a 0 * :A", "CAP END")
        self.clock.advance(0)
        c.read()
        c.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + plain("alice", PASSWORD))
        self.clock.advance(0)
        self.assertEqual(c.commands()[:4], ["AUTHENTICATE", "900", "903", "NICK"])


class ChannelConformanceTests(IRCTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice")
        self.bob = self.connect("bob")
        self.carol = self.connect("carol")

    def test_secret_rooms_are_hidden_from_outsiders(self) -> None:
        self.alice.send("JOIN #hide", "MODE #hide +s", "JOIN #open")
        self.alice.read()
        self.alice.send("NAMES #hide")
        self.assertEqual(self.find(self.alice.read(), "353").params[1], "@")
        self.bob.send("LIST", "WHOIS alice")
        lines = self.bob.read()
        self.assertEqual([m.params[1] for m in lines if m.command == "322"], ["#open"])
        self.assertEqual(self.find(lines, "319").params[-1], "@#open")
        self.alice.send("LIST")
        self.assertEqual([m.params[1] for m in self.alice.read() if m.command == "322"],
                         ["#hide", "#open"])

    def test_an_invite_carries_the_inviters_account(self) -> None:
        dave = self.connect("dave", caps=("account-tag",))
        self.alice.send("JOIN #inv", "INVITE dave #inv")
        invite = self.find(dave.read(), "INVITE")
        self.assertEqual((invite.params, invite.tags.get("account")), (("dave", "#inv"), "alice"))

    def test_kick_pairs_rooms_with_users(self) -> None:
        for c in (self.alice, self.bob, self.carol):
            c.send("JOIN #a,#b")
            c.read()
        self.alice.send("KICK #a,#b bob,carol :out", "KICK #a,#b bob")
        lines = self.alice.read()
        kicks = [m.params[:2] for m in lines if m.command == "KICK"]
        self.assertEqual(kicks, [("#a", "bob"), ("#b", "carol")])
        self.assertEqual(lines[-1].command, "461")

    def test_bad_key_and_limit_parameters_are_696_naming_the_mode(self) -> None:
        self.alice.send("JOIN #m")
        self.alice.read()
        self.alice.send("MODE #m +k :with spaces", "MODE #m +k :", "MODE #m +l :")
        lines = self.alice.read()
        self.assertEqual([(m.command, m.params[2:4]) for m in lines],
                         [("696", ("k", "*")), ("696", ("k", "*")), ("696", ("l", "*"))])
