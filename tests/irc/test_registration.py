"""Connection registration, capability negotiation and authentication."""

from __future__ import annotations

from tests.irc.helpers import PASSWORD, IRCTestCase, IRCTestClient, plain


class CapabilityTests(IRCTestCase):
    def test_cap_ls_302_lists_values_and_holds_registration(self) -> None:
        c = self.irc()
        c.send("CAP LS 302", "NICK x", "USER x 0 * :x")
        lines = c.read()
        ls = self.find(lines, "CAP")
        self.assertEqual(ls.params[:2], ("*", "LS"))
        self.assertIn("sasl=PLAIN", ls.params[-1].split())
        self.assertIn("draft/chathistory", ls.params[-1].split())
        self.assertNotIn("001", [m.command for m in lines])
        c.send("CAP END")
        self.assertIn("001", c.commands())

    def test_req_is_acked_or_naked_as_a_whole(self) -> None:
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :server-time bogus", "CAP REQ :server-time echo-message")
        replies = [m.params for m in c.read() if m.command == "CAP"][1:]
        self.assertEqual(replies, [("*", "NAK", "server-time bogus"),
                                   ("*", "ACK", "server-time echo-message")])
        c.send("CAP LIST")
        listed = c.read()[0].params[-1].split()
        self.assertEqual(sorted(listed), ["cap-notify", "echo-message", "server-time"])

    def test_cap_notify_cannot_be_disabled_by_302_clients(self) -> None:
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :-cap-notify")
        self.assertEqual(c.read()[-1].params[1], "NAK")

    def test_unknown_cap_subcommand(self) -> None:
        c = self.irc()
        c.send("CAP FROB")
        self.assertEqual(c.commands(), ["410"])


class WelcomeTests(IRCTestCase):
    def test_welcome_burst_has_001_to_005_lusers_and_motd(self) -> None:
        c = self.connect("alice")
        lines = c.received
        commands = [m.command for m in lines]
        for code in ("001", "002", "003", "004", "005", "251", "255", "375", "372", "376"):
            self.assertIn(code, commands)
        self.assertLess(commands.index("001"), commands.index("005"))
        self.assertLess(commands.index("005"), commands.index("376"))
        welcome = self.find(lines, "001")
        self.assertEqual(welcome.params[0], "alice")
        tokens = " ".join(" ".join(m.params[1:-1]) for m in lines if m.command == "005")
        for token in ("CASEMAPPING=ascii", "CHANTYPES=#", "PREFIX=(ov)@+", "CHANMODES=b,k,Hl,imnst",
                      "NICKLEN=32", "CHANNELLEN=50", "CHATHISTORY=200", "NETWORK=test.pingchat"):
            self.assertIn(token, tokens.split())
        self.assertTrue(all(len(m.params) <= 15 for m in lines if m.command == "005"))

    def test_isupport_numeric_is_truthful_about_the_core(self) -> None:
        from pingchat.model import HISTORY_MAX, ROOM_NAME_MAX, TOPIC_MAX

        tokens = dict(t.partition("=")[::2] for t in self.factory.isupport())
        self.assertEqual(int(tokens["CHANNELLEN"]), ROOM_NAME_MAX)
        self.assertEqual(int(tokens["TOPICLEN"]), TOPIC_MAX)
        self.assertEqual(int(tokens["CHATHISTORY"]), HISTORY_MAX)

    def test_commands_before_registration_get_451(self) -> None:
        c = self.irc()
        c.send("JOIN #a", "PRIVMSG x :y")
        self.assertEqual(c.commands(), ["451", "451"])

    def test_user_needs_four_parameters(self) -> None:
        c = self.irc()
        c.send("USER x 0")
        self.assertEqual(c.read()[0].command, "461")

    def test_nick_errors(self) -> None:
        c = self.irc()
        c.send("NICK", "NICK 9lives", "NICK a:b", "NICK nickserv", "NICK " + "x" * 33)
        self.assertEqual(c.commands(), ["431", "432", "432", "432", "432"])

    def test_reregistration_is_refused(self) -> None:
        c = self.connect("alice")
        c.send("USER a 0 * :b", "PASS x")
        self.assertEqual(c.commands(), ["462", "462"])


class SASLTests(IRCTestCase):
    def test_sasl_plain_logs_in_and_registers_as_the_account(self) -> None:
        self.make_account("Alice")
        c = self.irc()
        c.send("CAP LS 302", "NICK whatever", "USER u 0 * :r", "CAP REQ :sasl",
               "AUTHENTICATE PLAIN")
        self.assertEqual(c.read()[-1].command, "AUTHENTICATE")
        c.send("AUTHENTICATE " + plain("alice", PASSWORD))
        lines = c.read()
        self.assertEqual([m.command for m in lines], ["900", "903"])
        self.assertEqual(lines[0].params[2], "Alice")
        c.send("CAP END")
        welcome = self.find(c.read(), "001")
        self.assertEqual(welcome.params[0], "Alice")

    def test_sasl_before_nick_and_user_as_irssi_does(self) -> None:
        self.make_account("alice")
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN",
               "AUTHENTICATE " + plain("alice", PASSWORD), "CAP END")
        self.assertNotIn("001", c.commands())
        c.send("NICK alice", "USER alice alice 127.0.0.1 :alice in irssi")
        self.assertIn("001", c.commands())

    def test_traffic_between_sasl_and_the_welcome_waits_for_001(self) -> None:
        self.make_account("alice")
        self.make_account("bob")
        bob = self.native("bob")
        self.native("alice").request("join", room="#r")
        bob.request("join", room="#r")
        c = self.irc()
        c.send("CAP LS 302", "NICK alice", "USER a 0 * :b", "CAP REQ :sasl",
               "AUTHENTICATE PLAIN", "AUTHENTICATE " + plain("alice", PASSWORD))
        bob.request("say", room="#r", text="early")
        self.assertNotIn("PRIVMSG", c.commands())
        c.send("CAP END")
        commands = c.commands()
        self.assertLess(commands.index("001"), commands.index("PRIVMSG"))
        self.assertLess(commands.index("JOIN"), commands.index("PRIVMSG"))

    def test_wrong_password_is_904_and_the_client_may_retry(self) -> None:
        self.make_account("alice")
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN",
               "AUTHENTICATE " + plain("alice", "wrong password"))
        self.assertEqual(c.read()[-1].command, "904")
        c.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + plain("alice", PASSWORD))
        self.assertEqual([m.command for m in c.read()][-2:], ["900", "903"])

    def test_unknown_mechanism_lists_plain(self) -> None:
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE SCRAM-SHA-256")
        lines = c.read()[-2:]
        self.assertEqual([m.command for m in lines], ["908", "904"])
        self.assertEqual(lines[0].params[1], "PLAIN")

    def test_abort_and_malformed_payload(self) -> None:
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN", "AUTHENTICATE *")
        self.assertEqual(c.read()[-1].command, "906")
        c.send("AUTHENTICATE PLAIN", "AUTHENTICATE !!!notbase64")
        self.assertEqual(c.read()[-1].command, "904")
        c.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + "A" * 401)
        self.assertEqual(c.read()[-1].command, "905")

    def test_an_exchange_longer_than_the_server_keeps_fails_with_904(self) -> None:
        # Each line is within 400 bytes (905 is for a line over it), but
        # together they pass what the server keeps: the exchange fails, as
        # other servers answer it, and nothing more is buffered.
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
        c.read()
        c.send(*["AUTHENTICATE " + "A" * 400] * 11)
        replies = [m.command for m in c.read()]
        self.assertEqual(replies[0], "904")
        self.assertNotIn("905", replies)

    def test_payload_in_400_byte_chunks(self) -> None:
        password = "p" * 500
        self.make_account("alice", password)
        payload = plain("alice", password)
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN")
        for i in range(0, len(payload), 400):
            c.send("AUTHENTICATE " + payload[i : i + 400])
        if len(payload) % 400 == 0:
            c.send("AUTHENTICATE +")
        self.assertEqual([m.command for m in c.read()][-2:], ["900", "903"])

    def test_a_session_token_works_as_the_password(self) -> None:
        self.make_account("alice")
        native = self.native("alice")
        reply = native.request("login", user="alice", password=PASSWORD)
        token = reply.get("token")
        if token is None:  # the first login already issued one
            token = self.native_token("alice")
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN",
               "AUTHENTICATE " + plain("alice", token))
        self.assertEqual([m.command for m in c.read()][-2:], ["900", "903"])

    def native_token(self, name: str) -> str:
        from pingchat.testing import NativeTestClient

        c = NativeTestClient(self.server)
        return str(c.request("login", user=name, password=PASSWORD)["token"])

    def sasl_with_token(self, token: str, address: str = "127.0.0.1") -> list[str]:
        c = self.irc(address)
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN",
               "AUTHENTICATE " + plain("alice", token))
        return [m.command for m in c.read()]

    def test_a_token_as_the_password_is_not_a_failed_password(self) -> None:
        # Behaviour change: each token login used to count as a wrong
        # password first, so the sixth reconnect within the hour was refused.
        self.make_account("alice")
        token = self.native_token("alice")
        for _ in range(8):
            self.assertEqual(self.sasl_with_token(token)[-2:], ["900", "903"])
        self.assertNotIn("login_failed", self.audit_events())

    def test_a_token_logs_in_during_password_guessing_from_the_same_address(self) -> None:
        # Behaviour change: the guesser's back-off on the account used to
        # refuse the owner's token too (it was tried only after the password).
        self.make_account("alice")
        token = self.native_token("alice")
        guesser = self.irc()
        guesser.send("CAP LS 302", "CAP REQ :sasl")
        for i in range(8):
            guesser.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + plain("alice", f"guess {i}"))
        self.assertIn("login_throttled", self.audit_events())
        self.assertEqual(self.sasl_with_token(token)[-2:], ["900", "903"])

    def audit_events(self) -> list[str]:
        rows = self.successResultOf(self.server.store.recent_audit(200))
        return [r["event"] for r in rows]

    def test_a_token_of_another_account_is_refused(self) -> None:
        self.make_account("alice")
        self.make_account("bob")
        token = self.native_token("bob")
        c = self.irc()
        c.send("CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN",
               "AUTHENTICATE " + plain("alice", token))
        self.assertEqual(c.read()[-1].command, "904")

    def test_authenticate_twice_is_907(self) -> None:
        c = self.connect("alice")
        c.send("AUTHENTICATE PLAIN")
        self.assertEqual(c.commands(), ["907"])


class PassTests(IRCTestCase):
    def test_pass_account_colon_password(self) -> None:
        c = self.connect("alice", how="pass")
        self.assertEqual(self.find(c.received, "900").params[2], "alice")

    def test_pass_with_the_nick_as_account(self) -> None:
        self.make_account("alice")
        c = self.irc()
        c.send(f"PASS :{PASSWORD}", "NICK alice", "USER a 0 * :b")
        self.assertIn("001", c.commands())

    def test_wrong_pass_is_464_and_error(self) -> None:
        self.make_account("alice")
        c = self.irc()
        c.send("PASS alice:nope", "NICK alice", "USER a 0 * :b")
        self.assertEqual(c.commands(), ["464", "ERROR"])
        self.assertTrue(c.closed)


class NoGuestsTests(IRCTestCase):
    def test_unauthenticated_client_is_told_how_to_log_in_and_can_do_nothing_else(self) -> None:
        c = self.irc()
        c.send("NICK alice", "USER a 0 * :b")
        lines = c.read()
        self.assertIn("001", [m.command for m in lines])
        notice = lines[-1]
        self.assertEqual(notice.command, "NOTICE")
        self.assertIn("NickServ IDENTIFY", notice.params[1])
        self.assertIn("SASL", notice.params[1])
        c.send("JOIN #a", "PRIVMSG bob :hi", "LIST")
        lines = c.read()
        self.assertEqual([m.command for m in lines], ["451", "451", "451"])
        self.assertIn("REGISTER", lines[0].params[-1])
        self.assertEqual(self.server.chat.online_count(), 0)

    def test_nickserv_identify_logs_in_after_registration(self) -> None:
        self.make_account("alice")
        c = self.irc()
        c.send("NICK somebody", "USER a 0 * :b")
        c.read()
        c.send(f"PRIVMSG NickServ :IDENTIFY alice {PASSWORD}")
        lines = c.read()
        self.assertEqual([m.command for m in lines], ["900", "NICK", "NOTICE"])
        self.assertEqual(lines[1].params, ("alice",))
        self.assertEqual(lines[1].source.split("!")[0], "somebody")
        c.send("JOIN #a")
        self.assertEqual(c.commands()[0], "JOIN")

    def test_nickserv_identify_with_the_current_nick(self) -> None:
        self.make_account("alice", "one-word-password")
        c = self.irc()
        c.send("NICK alice", "USER a 0 * :b")
        c.read()
        c.send("NS IDENTIFY one-word-password")
        self.assertEqual(c.commands(), ["900", "NOTICE"])

    def test_nickserv_identify_failure(self) -> None:
        self.make_account("alice")
        c = self.irc()
        c.send("NICK alice", "USER a 0 * :b")
        c.read()
        c.send("PRIVMSG NickServ :IDENTIFY wrong-password")
        notice = c.read()[0]
        self.assertEqual(notice.source, "NickServ!NickServ@services")
        self.assertIn("failed", notice.params[1])

    def test_nickserv_register_creates_an_account_shows_codes_and_logs_in(self) -> None:
        c = self.irc()
        c.send("NICK carol", "USER a 0 * :b")
        c.read()
        c.send("PRIVMSG NickServ :REGISTER a-good-password")
        lines = c.read()
        texts = [m.params[-1] for m in lines if m.command == "NOTICE"]
        self.assertIn("Account carol created.", texts)
        self.assertEqual(sum(1 for t in texts if t.startswith("  ")), 10)
        self.assertIn("900", [m.command for m in lines])
        self.assertEqual(self.server.chat.sessions_of("carol")[0].mind, c.protocol)

    def test_nickserv_register_weak_password(self) -> None:
        c = self.irc()
        c.send("NICK carol", "USER a 0 * :b")
        c.read()
        c.send("PRIVMSG NickServ :REGISTER short")
        self.assertIn("Registration failed", c.read()[0].params[1])

    def test_nickserv_set_password_info_and_help(self) -> None:
        c = self.connect("alice", password="old-password-1")
        c.send("PRIVMSG NickServ :SET PASSWORD wrong-one new-password-1")
        self.assertIn("not changed", c.read()[0].params[1])
        c.send("PRIVMSG NickServ :SET PASSWORD old-password-1 new-password-1")
        self.assertIn("Password changed", c.read()[0].params[1])
        c.send("PRIVMSG NickServ :INFO alice", "PRIVMSG NickServ :INFO nobody")
        texts = [m.params[1] for m in c.read()]
        self.assertIn("Account: alice", texts)
        self.assertIn("nobody is not registered.", texts)
        c.send("PRIVMSG NickServ :HELP")
        self.assertTrue(any("IDENTIFY" in m.params[1] for m in c.read()))
        d = self.client_login("alice", "new-password-1")
        self.assertIn("900", d)

    def client_login(self, name: str, password: str) -> list[str]:
        c = self.irc()
        c.send(f"PASS :{name}:{password}", f"NICK {name}", "USER a 0 * :b")
        return c.commands()

    def test_nick_change_of_a_logged_in_user_is_refused(self) -> None:
        c = self.connect("alice")
        c.send("NICK alice", "NICK bob")
        lines = c.read()
        self.assertEqual([m.command for m in lines], ["433"])
        self.assertIn("account", lines[0].params[-1])

    def test_login_timeout_for_unauthenticated_clients(self) -> None:
        c = self.irc()
        c.send("NICK x", "USER a 0 * :b")
        c.read()
        self.clock.advance(self.factory.login_timeout + 1)
        self.assertEqual(c.commands(), ["ERROR"])
        self.assertTrue(c.closed)


class GuestTests(IRCTestCase):
    settings = {"guests": True}

    def test_guests_chat_under_free_nicks(self) -> None:
        g = self.connect("visitor", password=None)
        g.send("JOIN #lobby", "PRIVMSG #lobby :hello")
        self.assertEqual(g.commands()[0], "JOIN")
        self.assertTrue(self.server.chat.sessions_of("visitor")[0].guest)
        self.assertEqual(self.find(g.received, "001").params[0], "visitor")

    def test_registered_account_names_are_reserved(self) -> None:
        self.make_account("alice")
        c = self.irc()
        c.send("NICK ALICE", "USER a 0 * :b")
        lines = c.read()
        self.assertEqual([m.command for m in lines], ["433"])
        self.assertIn("registered account", lines[0].params[-1])
        c.send("NICK alice_")
        self.assertIn("001", c.commands())

    def test_nick_in_use(self) -> None:
        self.connect("visitor", password=None)
        c = self.irc()
        c.send("NICK Visitor", "USER a 0 * :b")
        self.assertEqual(c.commands(), ["433"])

    def test_guest_who_identifies_leaves_guest_rooms(self) -> None:
        self.make_account("alice")
        g = self.connect("visitor", password=None)
        g.send("JOIN #lobby")
        g.read()
        g.send(f"PRIVMSG NickServ :IDENTIFY alice {PASSWORD}")
        lines = g.read()
        self.assertEqual([m.command for m in lines][:3], ["PART", "900", "NICK"])
        self.assertFalse(self.server.chat.is_online("visitor"))
        self.assertEqual(self.server.chat.get_room("#lobby").members, {})

    def test_guest_cannot_dm_an_account_but_guests_can_dm_each_other(self) -> None:
        self.make_account("alice")
        self.native("alice")
        g = self.connect("visitor", password=None)
        h = self.connect("other", password=None)
        g.send("PRIVMSG alice :hi", "PRIVMSG other :psst")
        self.assertEqual(g.commands(), ["486"])
        m = h.read()[0]
        self.assertEqual((m.command, m.params, m.source),
                         ("PRIVMSG", ("other", "psst"), "visitor!visitor@guest"))


class GuestMaskTests(IRCTestCase):
    """A guest has one mask, ``nick!user@guest`` (user from USER), wherever it shows."""

    settings = {"guests": True}
    MASK = "visitor!vuser@guest"

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice", caps=("echo-message",))
        self.alice.send("JOIN #lobby")
        self.guest = self.irc()
        self.guest.send("CAP LS 302", "CAP REQ :echo-message sasl", "CAP END",
                        "NICK visitor", "USER vuser 0 * :A visitor")
        self.clock.advance(0)
        self.other = self.connect("other", password=None)  # a second guest
        self.alice.read()
        self.other.read()

    def sources(self, c: IRCTestClient, command: str) -> list[str | None]:
        return [m.source for m in c.read() if m.command == command]

    def test_the_session_has_the_mask(self) -> None:
        self.assertEqual(self.server.chat.sessions_of("visitor")[0].hostmask, self.MASK)

    def test_welcome_shows_the_mask(self) -> None:
        welcome = self.find(self.guest.read(), "001")
        self.assertTrue(welcome.params[-1].endswith(" " + self.MASK), welcome.params)

    def test_join_shows_one_mask_to_the_guest_and_to_others(self) -> None:
        self.guest.read()
        self.guest.send("JOIN #lobby")
        self.assertEqual(self.sources(self.guest, "JOIN"), [self.MASK])
        self.assertEqual(self.sources(self.alice, "JOIN"), [self.MASK])

    def test_room_message_echo_and_delivery_show_one_mask(self) -> None:
        self.guest.send("JOIN #lobby")
        self.guest.read()
        self.alice.read()
        self.guest.send("PRIVMSG #lobby :hello")
        self.assertEqual(self.sources(self.guest, "PRIVMSG"), [self.MASK])
        self.assertEqual(self.sources(self.alice, "PRIVMSG"), [self.MASK])

    def test_direct_message_echo_and_delivery_show_one_mask(self) -> None:
        self.guest.read()
        self.guest.send("PRIVMSG other :psst")
        self.assertEqual(self.sources(self.guest, "PRIVMSG"), [self.MASK])
        self.assertEqual(self.sources(self.other, "PRIVMSG"), [self.MASK])

    def test_who_and_whois_show_the_mask(self) -> None:
        self.guest.send("JOIN #lobby")
        self.alice.read()
        self.alice.send("WHO #lobby", "WHOIS visitor")
        lines = self.alice.read()
        who = [m for m in lines if m.command == "352" and m.params[5] == "visitor"]
        self.assertEqual((who[0].params[2], who[0].params[3]), ("vuser", "guest"))
        whois = self.find(lines, "311")
        self.assertEqual((whois.params[2], whois.params[3]), ("vuser", "guest"))

    def test_nick_change_after_sasl_comes_from_the_guest_mask(self) -> None:
        self.make_account("member")
        self.guest.send("JOIN #lobby")
        self.guest.read()
        self.alice.read()
        self.guest.send("AUTHENTICATE PLAIN", "AUTHENTICATE " + plain("member", PASSWORD))
        lines = self.guest.read()
        part, nick = self.find(lines, "PART"), self.find(lines, "NICK")
        self.assertEqual((part.source, part.params), (self.MASK, ("#lobby", "Logged in")))
        self.assertEqual((nick.source, nick.params), (self.MASK, ("member",)))
        quit_ = self.find(self.alice.read(), "QUIT")  # the guest left the room
        self.assertEqual((quit_.source, quit_.params), (self.MASK, ("Logged in",)))

    def test_quit_shows_the_mask(self) -> None:
        self.guest.send("JOIN #lobby")
        self.alice.read()
        self.guest.send("QUIT :bye")
        self.assertEqual(self.sources(self.alice, "QUIT"), [self.MASK])

    def test_history_shows_a_guest_message_from_a_guest_mask(self) -> None:
        carol = self.connect("carol", caps=("draft/chathistory", "batch"))
        carol.send("JOIN #lobby")
        self.guest.send("JOIN #lobby", "PRIVMSG #lobby :hello")
        carol.read()
        carol.send("CHATHISTORY LATEST #lobby * 10")
        self.assertEqual(self.sources(carol, "PRIVMSG"), [self.MASK])
        self.guest.disconnect()
        carol.read()
        # Gone, its user name with it: still a guest, never an account's user/ host.
        carol.send("CHATHISTORY LATEST #lobby * 10")
        self.assertEqual(self.sources(carol, "PRIVMSG"), ["visitor!visitor@guest"])

    def test_a_dropped_connection_quits_with_the_mask(self) -> None:
        self.guest.send("JOIN #lobby")
        self.alice.read()
        self.guest.disconnect()
        self.assertEqual(self.sources(self.alice, "QUIT"), [self.MASK])


class TimeoutTests(IRCTestCase):
    def test_registration_timeout(self) -> None:
        c = self.irc()
        c.send("NICK x")
        self.clock.advance(self.factory.registration_timeout + 1)
        lines = c.read()
        self.assertEqual(lines[0].command, "ERROR")
        self.assertIn("Registration timeout", lines[0].params[0])
        self.assertTrue(c.closed)

    def test_ping_keepalive_then_idle_timeout(self) -> None:
        c = self.connect("alice")
        self.clock.advance(self.factory.ping_interval + 1)
        self.assertEqual(c.commands(), ["PING"])
        c.send("PONG :test.pingchat")
        self.clock.advance(self.factory.ping_interval + 1)
        self.assertEqual(c.commands(), ["PING"])
        self.clock.advance(self.factory.ping_timeout + 1)
        self.assertEqual(c.commands(), ["ERROR"])
        self.assertTrue(c.closed)

    def test_a_talking_client_is_not_pinged(self) -> None:
        c = self.connect("alice")
        for _ in range(5):
            self.clock.advance(self.factory.ping_interval / 2)
            c.send("PING :x")
        self.assertEqual(set(c.commands()), {"PONG"})


class ClosedRegistrationTests(IRCTestCase):
    settings = {"registration": "closed"}

    def test_nickserv_register_is_refused_with_a_notice_and_a_standard_reply(self) -> None:
        c = self.irc()
        c.send("NICK carol", "USER a 0 * :b")
        hint = c.read()[-1].params[-1]
        self.assertIn("created by an administrator", hint)
        self.assertNotIn("REGISTER", hint)
        c.send("PRIVMSG NickServ :REGISTER a-good-password")
        lines = c.read()
        notice = self.find(lines, "NOTICE")
        self.assertEqual(notice.source, "NickServ!NickServ@services")
        self.assertIn("Registration failed: this server does not take registrations",
                      notice.params[1])
        fail = self.find(lines, "FAIL")
        self.assertEqual(fail.params[:3], ("REGISTER", "REGISTRATION_CLOSED", "carol"))
        self.assertEqual(self.successResultOf(self.server.store.list_accounts()), [])


class InviteRegistrationTests(IRCTestCase):
    settings = {"registration": "invite"}

    def test_nickserv_register_takes_the_invite_code_as_its_last_word(self) -> None:
        made = self.successResultOf(self.server.accounts.create_invite("root"))
        c = self.irc()
        c.send("NICK carol", "USER a 0 * :b")
        self.assertIn("REGISTER <password> <invite-code>", c.read()[-1].params[-1])
        for attempt in ("a-good-password", "a-good-password aaaa-bbbb-cccc-dddd"):
            c.send(f"PRIVMSG NickServ :REGISTER {attempt}")
            fail = self.find(c.read(), "FAIL")
            self.assertEqual(fail.params[:3], ("REGISTER", "INVITE_INVALID", "carol"))
        c.send(f"PRIVMSG NickServ :REGISTER a-good-password carol@example.org {made['code']}")
        lines = c.read()
        texts = [m.params[-1] for m in lines if m.command == "NOTICE"]
        self.assertIn("Account carol created.", texts)
        self.assertIn("900", [m.command for m in lines])
        self.assertNotIn("FAIL", [m.command for m in lines])
        self.client_login_works("carol", "a-good-password")

    def client_login_works(self, name: str, password: str) -> None:
        c = self.irc()
        c.send(f"PASS :{name}:{password}", f"NICK {name}", "USER a 0 * :b")
        self.clock.advance(0)
        self.assertIn("001", [m.command for m in c.read()])

    def test_the_motd_says_how_to_register_with_a_code(self) -> None:
        motd = "\n".join(self.factory.motd)
        self.assertIn("/msg NickServ REGISTER <password> <invite-code>", motd)
