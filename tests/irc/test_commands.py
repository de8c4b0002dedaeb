"""Every command of SPEC §4 with its numerics and error replies."""

from __future__ import annotations

from tests.irc.helpers import IRCTestCase


class RoomCommandTests(IRCTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice")
        self.bob = self.connect("bob")

    def join(self, *clients: object, room: str = "#lobby") -> None:
        for c in clients:
            c.send(f"JOIN {room}")  # type: ignore[attr-defined]
            c.read()  # type: ignore[attr-defined]

    def test_join_sends_join_topic_and_names_to_the_joiner_and_join_to_others(self) -> None:
        self.join(self.alice)
        self.alice.send("TOPIC #lobby :Welcome all")
        self.alice.read()
        self.bob.send("JOIN #lobby")
        lines = self.bob.read()
        self.assertEqual([m.command for m in lines], ["JOIN", "332", "333", "353", "366"])
        self.assertEqual(lines[0].source, "bob!bob@user/bob")
        self.assertEqual(lines[1].params[-1], "Welcome all")
        self.assertEqual(lines[3].params[-1].split(), ["@alice", "bob"])
        joined = self.alice.read()
        self.assertEqual((joined[0].command, joined[0].params), ("JOIN", ("#lobby",)))

    def test_join_errors(self) -> None:
        self.join(self.alice)
        self.alice.send("MODE #lobby +i")
        self.bob.send("JOIN lobby", "JOIN #bad:name", "JOIN #lobby", "JOIN #x\x07y")
        self.assertEqual(self.bob.commands(), ["403", "476", "473", "476"])
        self.alice.send("MODE #lobby -i+k sesame", "MODE #lobby +l 1")
        self.bob.send("JOIN #lobby", "JOIN #lobby wrong", "JOIN #lobby sesame")
        self.assertEqual(self.bob.commands(), ["475", "475", "471"])
        self.alice.send("MODE #lobby -l+b bob")
        self.bob.send("JOIN #lobby sesame")
        self.assertEqual(self.bob.commands(), ["474"])

    def test_join_several_with_keys_and_join_zero(self) -> None:
        self.alice.send("JOIN #a,#b")
        self.assertEqual([m.params[0] for m in self.alice.read() if m.command == "JOIN"],
                         ["#a", "#b"])
        self.alice.send("JOIN 0")
        self.assertEqual(sorted(m.params[0] for m in self.alice.read() if m.command == "PART"),
                         ["#a", "#b"])

    def test_part(self) -> None:
        self.join(self.alice, self.bob)
        self.alice.read()
        self.bob.send("PART #lobby :bye now", "PART #lobby", "PART #nowhere")
        lines = self.bob.read()
        self.assertEqual([m.command for m in lines], ["PART", "442", "403"])
        self.assertEqual(lines[0].params, ("#lobby", "bye now"))
        self.assertEqual(self.alice.read()[0].params, ("#lobby", "bye now"))

    def test_topic_query_set_and_errors(self) -> None:
        self.join(self.alice, self.bob)
        self.alice.read()
        self.bob.send("TOPIC #lobby", "TOPIC #lobby :mine now", "TOPIC #nowhere")
        self.assertEqual(self.bob.commands(), ["331", "482", "403"])
        self.alice.send("TOPIC #lobby :a topic")
        self.assertEqual(self.bob.read()[0].params, ("#lobby", "a topic"))
        self.bob.send("TOPIC #lobby")
        lines = self.bob.read()
        self.assertEqual([m.command for m in lines], ["332", "333"])
        self.assertEqual(lines[1].params[2], "alice")
        self.bob.send("PART #lobby", "TOPIC #lobby :x")
        self.assertEqual(self.bob.commands(), ["PART", "442"])

    def test_names_and_its_prefixes(self) -> None:
        self.join(self.alice, self.bob)
        self.alice.send("MODE #lobby +v alice")
        self.alice.read()
        self.bob.read()
        self.bob.send("NAMES #lobby", "NAMES #nowhere", "NAMES")
        lines = self.bob.read()
        self.assertEqual([m.command for m in lines], ["353", "366", "366", "366"])
        self.assertEqual(sorted(lines[0].params[-1].split()), ["@alice", "bob"])
        c = self.connect("carol", caps=("multi-prefix", "userhost-in-names"))
        c.send("NAMES #lobby")
        names = c.read()[0].params[-1].split()
        self.assertIn("@+alice!alice@user/alice", names)

    def test_list(self) -> None:
        self.join(self.alice)
        self.alice.send("TOPIC #lobby :hi", "JOIN #other")
        self.bob.send("LIST", "LIST #lob*")
        lines = self.bob.read()
        self.assertEqual([m.command for m in lines],
                         ["321", "322", "322", "323", "321", "322", "323"])
        self.assertEqual(lines[1].params[1:], ("#lobby", "1", "hi"))

    def test_kick(self) -> None:
        self.join(self.alice, self.bob)
        self.alice.read()
        self.bob.send("KICK #lobby alice")
        self.assertEqual(self.bob.commands(), ["482"])
        self.alice.send("KICK #lobby nobody", "KICK #lobby bob :behave")
        lines = self.alice.read()
        self.assertEqual([m.command for m in lines], ["441", "KICK"])
        kick = self.bob.read()[0]
        self.assertEqual((kick.command, kick.params, kick.source.split("!")[0]),
                         ("KICK", ("#lobby", "bob", "behave"), "alice"))
        self.bob.send("KICK #lobby alice", "KICK #nowhere alice", "KICK #lobby")
        self.assertEqual(self.bob.commands(), ["442", "403", "461"])

    def test_invite(self) -> None:
        self.join(self.alice)
        self.alice.send("MODE #lobby +i", "INVITE bob #lobby")
        lines = self.alice.read()
        self.assertEqual(lines[-1].command, "341")
        self.assertEqual(lines[-1].params[1:], ("bob", "#lobby"))
        invite = self.bob.read()[0]
        self.assertEqual((invite.command, invite.params), ("INVITE", ("bob", "#lobby")))
        self.bob.send("JOIN #lobby")
        self.assertEqual(self.bob.commands()[0], "JOIN")
        self.alice.read()
        self.alice.send("INVITE bob #lobby", "INVITE nobody #lobby", "INVITE bob #nowhere",
                        "INVITE")
        self.assertEqual(self.alice.commands(), ["443", "401", "403", "337"])

    def test_modes(self) -> None:
        self.join(self.alice, self.bob)
        self.alice.read()
        self.alice.send("MODE #lobby")
        lines = self.alice.read()
        self.assertEqual([m.command for m in lines], ["324", "329"])
        self.assertEqual(lines[0].params[2], "+nt")
        self.alice.send("MODE #lobby +kl-t sesame 10")
        change = self.alice.read()[0]
        self.assertEqual(change.params, ("#lobby", "+kl-t", "sesame", "10"))
        self.assertEqual(self.bob.read()[0].params, change.params)
        self.bob.send("MODE #lobby", "MODE #lobby +m")
        lines = self.bob.read()
        self.assertEqual(lines[0].params[2:], ("+nkl", "sesame", "10"))
        self.assertEqual(lines[-1].command, "482")
        self.alice.send("MODE #lobby +b evil!*@*", "MODE #lobby b", "MODE #lobby +z",
                        "MODE #lobby +o nobody", "MODE #nowhere", "MODE #lobby +l x")
        self.assertEqual(self.alice.commands(),
                         ["MODE", "367", "368", "472", "401", "403", "696"])

    def test_user_modes(self) -> None:
        self.alice.send("MODE alice", "MODE bob", "MODE nobody", "MODE alice +x")
        lines = self.alice.read()
        self.assertEqual([m.command for m in lines], ["221", "502", "401", "501"])
        self.assertEqual(lines[0].params[1], "+r")


class UserCommandTests(IRCTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice")
        self.bob = self.connect("bob")

    def test_privmsg_errors(self) -> None:
        self.alice.send("PRIVMSG", "PRIVMSG bob", "PRIVMSG bob :", "PRIVMSG nobody :x",
                        "PRIVMSG #nowhere :x", "PRIVMSG bad:nick :x")
        self.assertEqual(self.alice.commands(), ["411", "412", "412", "401", "403", "401"])

    def test_notice_errors_are_silent(self) -> None:
        self.alice.send("NOTICE nobody :x", "NOTICE #nowhere :x", "NOTICE bob")
        self.assertEqual(self.alice.commands(), [])

    def test_cannot_send_to_a_room_one_is_not_in_or_that_is_moderated(self) -> None:
        self.bob.send("JOIN #lobby")
        self.alice.send("PRIVMSG #lobby :hi")
        self.assertEqual(self.alice.commands(), ["404"])
        self.bob.send("MODE #lobby -n+m")
        self.alice.send("JOIN #lobby", "PRIVMSG #lobby :hi")
        self.assertEqual(self.alice.commands()[-1], "404")

    def test_dm_and_away(self) -> None:
        self.bob.send("AWAY :lunch")
        self.assertEqual(self.bob.commands(), ["306"])
        self.alice.send("PRIVMSG bob :hello")
        away = self.alice.read()[0]
        self.assertEqual((away.command, away.params[1:]), ("301", ("bob", "lunch")))
        dm = self.bob.read()[0]
        self.assertEqual((dm.command, dm.params), ("PRIVMSG", ("bob", "hello")))
        self.bob.send("AWAY")
        self.assertEqual(self.bob.commands(), ["305"])

    def test_notice_dm(self) -> None:
        self.alice.send("NOTICE bob :psst")
        m = self.bob.read()[0]
        self.assertEqual((m.command, m.params), ("NOTICE", ("bob", "psst")))

    def test_several_targets(self) -> None:
        self.bob.send("JOIN #lobby")
        self.bob.read()
        self.alice.send("JOIN #lobby", "PRIVMSG #lobby,bob :both")
        self.alice.read()
        self.assertEqual([m.params[0] for m in self.bob.read() if m.command == "PRIVMSG"],
                         ["#lobby", "bob"])

    def test_whois(self) -> None:
        self.bob.send("JOIN #lobby", "AWAY :out")
        self.alice.send("WHOIS bob")
        lines = self.alice.read()
        self.assertEqual([m.command for m in lines], ["311", "319", "312", "301", "330", "318"])
        self.assertEqual(lines[1].params[-1], "@#lobby")
        self.assertEqual(lines[4].params[1:3], ("bob", "bob"))
        self.alice.send("WHOIS nobody", "WHOIS NickServ", "WHOIS")
        self.assertEqual(self.alice.commands(), ["401", "318", "311", "312", "318", "461"])

    def test_whois_of_an_offline_account(self) -> None:
        self.bob.disconnect()
        self.alice.send("WHOIS bob")
        lines = self.alice.read()
        self.assertIn("301", [m.command for m in lines])
        self.assertIn("Offline", self.find(lines, "301").params[-1])

    def test_who(self) -> None:
        self.bob.send("JOIN #lobby", "AWAY :gone")
        self.alice.send("JOIN #lobby")
        self.alice.read()
        self.alice.send("WHO #lobby")
        lines = self.alice.read()
        self.assertEqual([m.command for m in lines], ["352", "352", "315"])
        by_nick = {m.params[5]: m for m in lines[:2]}
        self.assertEqual(by_nick["bob"].params[1:7],
                         ("#lobby", "bob", "user/bob", "test.pingchat", "bob", "G@"))
        self.assertEqual(by_nick["alice"].params[6], "H")
        self.alice.send("WHO b*", "WHO #lobby %tcnfa,7")
        lines = self.alice.read()
        self.assertEqual([m.command for m in lines][:2], ["352", "315"])
        whox = [m.params for m in lines if m.command == "354"]
        self.assertIn(("alice", "7", "#lobby", "bob", "G@", "bob"), whox)

    def test_ison_and_userhost(self) -> None:
        self.bob.send("AWAY :x")
        self.alice.send("ISON BOB nobody alice", "USERHOST bob alice nobody")
        lines = self.alice.read()
        self.assertEqual(lines[0].params[-1], "bob alice")
        self.assertEqual(lines[1].params[-1], "bob=-bob@user/bob alice=+alice@user/alice")

    def test_motd_lusers_version_time_help(self) -> None:
        self.alice.send("MOTD", "LUSERS", "VERSION", "TIME", "HELP")
        commands = self.alice.commands()
        for code in ("375", "372", "376", "251", "254", "255", "265", "266", "351", "005",
                     "391", "704", "706"):
            self.assertIn(code, commands)

    def test_lusers_counts_connections_that_have_not_logged_in(self) -> None:
        def unknown() -> list[str]:
            self.alice.send("LUSERS")
            return [m.params[1] for m in self.alice.read() if m.command == "253"]

        self.assertEqual(unknown(), [])
        waiting = [self.irc(), self.irc()]
        self.assertEqual(unknown(), ["2"])
        waiting[0].disconnect()
        self.assertEqual(unknown(), ["1"])
        self.bob.disconnect()  # a logged-in connection leaving changes nothing here
        self.assertEqual(unknown(), ["1"])
        carol = self.connect("carol")
        self.assertEqual(unknown(), ["1"])
        carol.disconnect()
        waiting[1].disconnect()
        self.assertEqual(unknown(), [])

    def test_empty_motd_is_422(self) -> None:
        self.factory.motd = []
        self.alice.send("MOTD")
        self.assertEqual(self.alice.commands(), ["422"])

    def test_ping_pong_quit_unknown_and_missing_params(self) -> None:
        self.alice.send("PING :abc", "PING", "FROBNICATE x", "PONG :x")
        lines = self.alice.read()
        self.assertEqual([m.command for m in lines], ["PONG", "461", "421"])
        self.assertEqual(lines[0].params, ("test.pingchat", "abc"))
        self.alice.send("QUIT :see you")
        error = self.alice.read()[0]
        self.assertEqual(error.command, "ERROR")
        self.assertIn("see you", error.params[0])
        self.assertTrue(self.alice.closed)

    def test_missing_parameters_are_461(self) -> None:
        for command in ("JOIN", "PART", "TOPIC", "KICK #a", "MODE", "USERHOST", "ISON",
                        "WHOIS", "PING", "AUTHENTICATE"):
            self.alice.send(command)
            got = self.alice.read()
            self.assertEqual([m.command for m in got], ["461"], command)
            self.assertEqual(got[0].params[1], command.split()[0])
