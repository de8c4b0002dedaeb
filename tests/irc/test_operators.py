"""IRC operators (OPER, auto-oper, KILL, WALLOPS, overrides, WHO/WHOIS) and
message redaction (``draft/message-redaction``), over StringTransport."""

from __future__ import annotations

from pingchat.model import iso_ms
from tests.irc.helpers import PASSWORD, IRCTestCase, IRCTestClient, plain

REDACTION = ("message-tags", "echo-message", "draft/message-redaction")


def lines(c: IRCTestClient) -> list[tuple[str, tuple[str, ...]]]:
    return [(m.command, m.params) for m in c.read()]


class OperTests(IRCTestCase):
    settings = {"guests": True}

    def setUp(self) -> None:
        super().setUp()
        self.make_account("operuser", "operpassword")
        self.successResultOf(self.server.store.set_role("operuser", "admin"))
        self.make_account("plainuser", "plainpassword")

    def test_oper_with_an_admins_password_makes_a_guest_an_operator(self) -> None:
        c = self.connect("baz", password=None)
        c.send("OPER operuser operpassword")
        got = c.read()
        self.assertEqual([m.command for m in got], ["381", "MODE"])
        self.assertEqual(got[0].params[0], "baz")
        self.assertEqual(got[1].params, ("baz", "+o"))
        c.send("MODE baz")
        self.assertEqual(lines(c), [("221", ("baz", "+o"))])
        rows = self.successResultOf(self.server.store.recent_audit(5))
        self.assertIn(("oper", "operuser", "baz"),
                      [(r["event"], r["account"], r["actor"]) for r in rows])

    def test_wrong_unknown_or_unprivileged_credentials_are_one_refusal(self) -> None:
        c = self.connect("baz", password=None)
        for line in ("OPER operuser wrong", "OPER nobody somepassword",
                     "OPER plainuser plainpassword"):
            c.send(line)
            self.assertEqual(lines(c), [("491", ("baz", "Invalid oper credentials"))], line)
        c.send("OPER operuser")
        self.assertEqual([cmd for cmd, _ in lines(c)], ["461"])
        c.send("MODE baz")
        self.assertEqual(lines(c), [("221", ("baz", "+"))])

    def test_an_admin_is_an_operator_from_login_and_can_give_it_up(self) -> None:
        c = self.irc()
        c.send("CAP LS 302", "NICK operuser", "USER o 0 * :Op", "CAP REQ :sasl",
               "AUTHENTICATE PLAIN")
        c.send("AUTHENTICATE " + plain("operuser", "operpassword"), "CAP END")
        got = lines(c)
        self.assertIn(("381", ("operuser", "You are now an IRC operator")), got)
        self.assertIn(("MODE", ("operuser", "+o")), got)
        other = self.connect("watcher", password=None)
        other.send("WHOIS operuser", "WHO operuser", "LUSERS")
        got = lines(other)
        self.assertIn(("313", ("watcher", "operuser", "is an IRC operator")), got)
        who = [p for cmd, p in got if cmd == "352"]
        self.assertEqual(who[0][6], "H*")
        self.assertIn(("252", ("watcher", "1", "operator(s) online")), got)
        c.send("MODE operuser -o")
        self.assertEqual(lines(c), [("MODE", ("operuser", "-o"))])
        c.send("KILL watcher :bye")
        self.assertEqual([cmd for cmd, _ in lines(c)], ["481"])
        other.send("WHOIS operuser")
        self.assertNotIn("313", [cmd for cmd, _ in lines(other)])

    def test_a_role_change_from_the_manhole_shows_at_once(self) -> None:
        c = self.connect("plainuser", "plainpassword", register=False)
        promoted = self.successResultOf(self.server.store.set_role("plainuser", "admin"))
        self.server.chat.moderation.role_changed(promoted)
        self.assertEqual([cmd for cmd, _ in lines(c)], ["381", "MODE"])
        demoted = self.successResultOf(self.server.store.set_role("plainuser", "user"))
        self.server.chat.moderation.role_changed(demoted)
        self.assertEqual(lines(c), [("MODE", ("plainuser", "-o"))])
        c.send("KILL plainuser")
        self.assertEqual([cmd for cmd, _ in lines(c)], ["481"])

    def test_info_lists_lines_and_ends(self) -> None:
        c = self.connect("curious", password=None)
        c.send("INFO", "INFO My.Little.Server")
        got = [m.command for m in c.read()]
        self.assertEqual(got, ["371", "371", "371", "374"] * 2)

    def test_kill_needs_operator_status_and_closes_the_target(self) -> None:
        ircop, alice, bob = (self.connect(n, password=None) for n in ("ircop", "alice", "bob"))
        alice.send("KILL bob :some arbitrary reason")
        self.assertEqual([cmd for cmd, _ in lines(alice)], ["481"])
        self.assertFalse(bob.closed)
        ircop.send("OPER operuser operpassword")
        ircop.read()
        ircop.send("KILL nobody :x")
        self.assertEqual([cmd for cmd, _ in lines(ircop)], ["401"])
        ircop.send("KILL bob :some arbitrary reason")
        self.assertTrue(bob.closed)
        (error,) = [m for m in bob.read() if m.command == "ERROR"]
        self.assertIn("(Killed by ircop: some arbitrary reason)", error.params[0])
        ircop.send("KILL alice")  # one argument, as Ergo takes it
        self.assertTrue(alice.closed)

    def test_kill_reaches_native_sessions_too(self) -> None:
        self.make_account("dora")
        native = self.native("dora")
        ircop = self.connect("ircop", password=None)
        ircop.send("OPER operuser operpassword", "KILL dora :bye")
        self.assertEqual(native.take_events("disconnect"),
                         [{"event": "disconnect", "reason": "Killed by ircop: bye"}])

    def test_wallops_go_to_operators_and_plus_w_only(self) -> None:
        op, quiet, loud = (self.connect(n, password=None) for n in ("nick1", "nick2", "nick3"))
        quiet.send("MODE nick2 -w")
        loud.send("MODE nick3 +w")
        self.assertEqual(lines(loud), [("MODE", ("nick3", "+w"))])
        quiet.read()
        op.send("WALLOPS :not yet")
        self.assertEqual([cmd for cmd, _ in lines(op)], ["481"])
        op.send("OPER operuser operpassword")
        op.read()
        op.send("WALLOPS :hi everyone")
        for c in (op, loud):
            (m,) = c.read()
            self.assertEqual((m.command, m.params, m.source.split("!")[0]),
                             ("WALLOPS", ("hi everyone",), "nick1"))
        self.assertEqual(quiet.read(), [])

    def test_an_operator_overrides_channel_rules(self) -> None:
        owner, victim, op = (self.connect(n, password=None) for n in ("owner", "victim", "ircop"))
        owner.send("JOIN #room")
        victim.send("JOIN #room")
        op.send("TOPIC #room :no", "KICK #room victim", "MODE #room +m")
        self.assertEqual([cmd for cmd, _ in lines(op)], ["442", "442", "482"])
        op.send("OPER operuser operpassword")
        op.read()
        owner.read()
        op.send("TOPIC #room :calm", "MODE #room +b victim", "KICK #room victim :out")
        seen = lines(owner)
        self.assertIn(("TOPIC", ("#room", "calm")), seen)
        self.assertIn(("MODE", ("#room", "+b", "victim!*@*")), seen)
        self.assertIn(("KICK", ("#room", "victim", "out")), seen)
        rows = self.successResultOf(self.server.store.recent_audit(20))
        self.assertEqual(
            sorted(r["event"] for r in rows if r["event"] == "oper_override"),
            ["oper_override"] * 3,
        )


class RedactTests(IRCTestCase):
    settings = {"guests": True}

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice", caps=REDACTION)
        self.bob = self.connect("bob", caps=REDACTION)
        self.old = self.connect("oldclient", caps=("message-tags",))
        for c in (self.alice, self.bob, self.old):
            c.send("JOIN #chan")
        for c in (self.alice, self.bob, self.old):
            c.read()

    def say(self, c: IRCTestClient, text: str, target: str = "#chan") -> str:
        c.send(f"PRIVMSG {target} :{text}")
        echo = [m for m in c.read() if m.command == "PRIVMSG"][-1]
        return echo.tags["msgid"]

    def test_the_cap_is_offered(self) -> None:
        c = self.irc()
        c.send("CAP LS 302")
        (ls,) = c.read()
        self.assertIn("draft/message-redaction", ls.params[-1].split())

    def test_the_author_redacts_and_clients_with_the_cap_see_redact(self) -> None:
        msgid = self.say(self.bob, "oops")
        for c in (self.alice, self.old):
            c.read()
        self.bob.send(f"REDACT #chan {msgid} :typo")
        for c in (self.bob, self.alice):
            (m,) = c.read()
            self.assertEqual((m.command, m.params), ("REDACT", ("#chan", msgid, "typo")))
            self.assertTrue(m.source.startswith("bob!"))
        (notice,) = self.old.read()
        self.assertEqual(notice.command, "NOTICE")
        self.assertEqual(notice.params[0], "#chan")
        self.assertIn("bob deleted their own message", notice.params[1])
        self.assertTrue(notice.params[1].endswith(": typo"))

    def test_without_a_reason_redact_has_two_parameters(self) -> None:
        msgid = self.say(self.bob, "oops")
        self.alice.read()
        self.bob.send(f"REDACT #chan {msgid}")
        self.assertEqual(lines(self.alice), [("REDACT", ("#chan", msgid))])

    def test_a_non_operator_cannot_redact_anothers_message(self) -> None:
        msgid = self.say(self.alice, "mine")  # alice joined first: the room's operator
        self.bob.read()
        self.bob.send(f"REDACT #chan {msgid}")
        self.assertEqual(
            lines(self.bob),
            [("FAIL", ("REDACT", "REDACT_FORBIDDEN", "#chan", msgid,
                       "You are not authorised to delete this message"))],
        )
        self.assertEqual(self.alice.read(), [])
        self.alice.send(f"REDACT #chan {self.say(self.bob, 'spam')} :spam")
        self.assertEqual(lines(self.bob)[-1][0], "REDACT")

    def test_unknown_msgids_and_targets_fail_as_the_spec_says(self) -> None:
        msgid = self.say(self.alice, "in #chan")
        self.alice.send("JOIN #other")
        self.alice.read()
        for line, code in (
            ("REDACT #chan nonexistent123", "UNKNOWN_MSGID"),
            ("REDACT #chan 999999", "UNKNOWN_MSGID"),
            ("REDACT #chan live3", "UNKNOWN_MSGID"),
            (f"REDACT #other {msgid}", "UNKNOWN_MSGID"),  # not that room's
            (f"REDACT #nowhere {msgid}", "INVALID_TARGET"),
            (f"REDACT bad,nick {msgid}", "INVALID_TARGET"),
        ):
            self.alice.send(line)
            got = self.alice.read()
            self.assertEqual([(m.command, m.params[:2]) for m in got],
                             [("FAIL", ("REDACT", code))], line)
        self.alice.send("REDACT #chan")
        self.assertEqual([cmd for cmd, _ in lines(self.alice)], ["461"])

    def test_a_redacted_message_is_left_out_of_chathistory(self) -> None:
        c = self.connect("historian", caps=("batch", "message-tags", "draft/chathistory"))
        c.send("JOIN #chan")
        keep = self.say(self.alice, "keep me")
        drop = self.say(self.alice, "drop me")
        self.alice.send(f"REDACT #chan {drop}")
        c.read()
        c.send("CHATHISTORY LATEST #chan * 10")
        ids = [m.tags.get("msgid") for m in c.read() if m.command == "PRIVMSG"]
        self.assertEqual(ids, [keep])

    def test_a_dm_redaction_shows_the_dm_target_to_both(self) -> None:
        msgid = self.say(self.alice, "private", target="bob")
        self.bob.read()
        self.alice.send(f"REDACT bob {msgid}")
        for c in (self.alice, self.bob):
            self.assertEqual(lines(c), [("REDACT", ("bob", msgid))])
        msgid = self.say(self.alice, "again", target="bob")
        self.bob.read()
        self.bob.send(f"REDACT alice {msgid}")
        self.assertEqual(lines(self.bob)[0][1][:2], ("REDACT", "REDACT_FORBIDDEN"))

    def test_a_labelled_redact_is_answered_with_its_label(self) -> None:
        c = self.connect("labeller", caps=(*REDACTION, "labeled-response", "batch"))
        c.send("JOIN #chan")
        msgid = self.say(c, "labelled")
        c.send(f"@label=r1 REDACT #chan {msgid}")
        (m,) = c.read()
        self.assertEqual((m.command, m.tags.get("label")), ("REDACT", "r1"))

    def test_native_and_irc_see_each_others_deletions(self) -> None:
        self.make_account("nat")
        native = self.native("nat")
        native.request("join", room="#chan")
        for c in (self.alice, self.bob, self.old):
            c.read()
        msgid = self.say(self.alice, "from irc")
        native.take_events()
        self.alice.send(f"REDACT #chan {msgid} :gone")
        (event,) = native.take_events("deleted")
        self.assertEqual((event["msg_id"], event["by"], event["reason"]), (int(msgid), "alice",
                                                                           "gone"))
        sent = native.request("say", room="#chan", text="from native")
        self.bob.read()
        self.assertTrue(native.request("message.delete", msg_id=sent["msg_id"])["ok"])
        self.assertEqual(lines(self.bob), [("REDACT", ("#chan", str(sent["msg_id"])))])

    def test_redact_lines_carry_the_time_of_the_deletion(self) -> None:
        c = self.connect("timely", caps=(*REDACTION, "server-time"))
        c.send("JOIN #chan")
        msgid = self.say(self.alice, "when")
        c.read()
        self.clock.advance(5)
        self.alice.send(f"REDACT #chan {msgid}")
        (m,) = c.read()
        self.assertEqual(m.tags["time"], iso_ms(self.server.chat.now()))


class RedactAccountTests(IRCTestCase):
    """Accounts (no guests): the admin's redaction of a DM it is not party to."""

    def test_an_admin_redacts_a_dm_between_others(self) -> None:
        alice = self.connect("alice", caps=REDACTION)
        bob = self.connect("bob", caps=REDACTION)
        self.make_account("moddy", PASSWORD)
        self.successResultOf(self.server.store.set_role("moddy", "admin"))
        admin = self.connect("moddy", caps=REDACTION, register=False)
        alice.send("PRIVMSG bob :psst")
        msgid = next(m for m in bob.read() if m.command == "PRIVMSG").tags["msgid"]
        admin.read()
        admin.send(f"REDACT bob {msgid} :harassment")
        self.assertEqual(lines(admin), [("REDACT", ("bob", msgid, "harassment"))])
        self.assertEqual(lines(bob), [("REDACT", ("bob", msgid, "harassment"))])
        alice.read()
