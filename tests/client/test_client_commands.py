"""The slash-command parser of the terminal client: pure, no I/O.

(``tests/client/`` has no ``__init__.py``: a package there would shadow the
``tests/client.py`` module other tests import, so these test modules carry
unique names instead.)
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from pingchat.client.commands import SPECS, Command, CommandError, help_lines, parse


class ParseTests(TestCase):
    def assertParses(self, line: str, name: str, **args: str) -> None:  # noqa: N802
        self.assertEqual(parse(line), Command(name, args))

    def assertRefused(self, line: str, fragment: str) -> None:  # noqa: N802
        with self.assertRaises(CommandError) as caught:
            parse(line)
        self.assertIn(fragment, str(caught.exception))

    def test_text_without_slash_is_said_in_the_current_window(self) -> None:
        self.assertParses("hello there", "say", text="hello there")

    def test_double_slash_sends_a_line_starting_with_slash(self) -> None:
        self.assertParses("//shrug", "say", text="/shrug")

    def test_join_adds_the_hash_and_takes_an_optional_key(self) -> None:
        self.assertParses("/join #lobby", "join", room="#lobby")
        self.assertParses("/join lobby", "join", room="#lobby")
        self.assertParses("/j #den s3cret", "join", room="#den", key="s3cret")
        self.assertRefused("/join", "usage: /join #room [key]")
        self.assertRefused("/join #a b c", "usage")

    def test_part_room_and_reason_are_both_optional(self) -> None:
        self.assertParses("/part", "part")
        self.assertParses("/part #lobby", "part", room="#lobby")
        self.assertParses("/part #lobby gone fishing", "part", room="#lobby",
                          reason="gone fishing")
        self.assertParses("/part gone fishing", "part", reason="gone fishing")

    def test_msg_needs_a_target_and_text_and_keeps_the_spacing_of_the_text(self) -> None:
        self.assertParses("/msg bob hi  there ", "msg", to="bob", text="hi  there")
        self.assertParses("/msg #lobby hello", "msg", to="#lobby", text="hello")
        self.assertParses("/m bob x", "msg", to="bob", text="x")
        self.assertRefused("/msg bob", "usage: /msg")
        self.assertRefused("/msg", "usage: /msg")

    def test_topic_reads_or_sets_with_an_optional_room(self) -> None:
        self.assertParses("/topic", "topic")
        self.assertParses("/topic #lobby", "topic", room="#lobby")
        self.assertParses("/topic #lobby Fresh news", "topic", room="#lobby", topic="Fresh news")
        self.assertParses("/topic Fresh news", "topic", topic="Fresh news")

    def test_history_takes_a_target_and_a_count_in_any_order(self) -> None:
        self.assertParses("/history", "history")
        self.assertParses("/history 50", "history", limit="50")
        self.assertParses("/history bob 5", "history", target="bob", limit="5")
        self.assertParses("/history 5 #lobby", "history", target="#lobby", limit="5")
        self.assertRefused("/history 500", "1 to 200")
        self.assertRefused("/history a b", "usage")

    def test_people_commands_take_exactly_one_user(self) -> None:
        for word, name in (("whois", "whois"), ("add", "add"), ("remove", "remove")):
            self.assertParses(f"/{word} bob", name, user="bob")
            self.assertRefused(f"/{word}", "usage")
            self.assertRefused(f"/{word} bob carol", "usage")

    def test_away_with_text_sets_away_and_without_comes_back(self) -> None:
        self.assertParses("/away lunch, back at 2", "away", text="lunch, back at 2")
        self.assertParses("/away", "away")

    def test_commands_without_arguments_refuse_extra_words(self) -> None:
        for name in ("rooms", "who", "contacts", "passwd", "logout", "recovery"):
            self.assertParses(f"/{name}", name)
            self.assertRefused(f"/{name} extra", "usage")

    def test_otp_needs_enable_or_disable(self) -> None:
        self.assertParses("/otp enable", "otp", action="enable")
        self.assertParses("/2fa off", "otp", action="disable")
        self.assertRefused("/otp", "usage: /otp enable|disable")
        self.assertRefused("/otp maybe", "usage")

    def test_query_switches_by_name_or_number(self) -> None:
        self.assertParses("/query bob", "query", target="bob")
        self.assertParses("/win 2", "query", target="2")

    def test_kick_and_invite(self) -> None:
        self.assertParses("/kick bob", "kick", user="bob")
        self.assertParses("/kick #den bob spamming links", "kick", room="#den", user="bob",
                          reason="spamming links")
        self.assertRefused("/kick", "usage")
        self.assertParses("/invite bob den", "invite", user="bob", room="#den")

    def test_dmpolicy_accepts_only_the_two_policies(self) -> None:
        self.assertParses("/dmpolicy", "dmpolicy")
        self.assertParses("/dmpolicy Contacts", "dmpolicy", policy="contacts")
        self.assertRefused("/dmpolicy friends", "usage")

    def test_command_names_are_case_insensitive(self) -> None:
        self.assertParses("/JOIN #x", "join", room="#x")

    def test_unknown_commands_and_a_lone_slash_are_explained(self) -> None:
        self.assertRefused("/frobnicate", "unknown command /frobnicate; /help")
        self.assertRefused("/", "/help")

    def test_me_needs_an_action(self) -> None:
        self.assertParses("/me waves  hello", "me", text="waves  hello")
        self.assertRefused("/me", "usage: /me")

    def test_quit_and_its_aliases(self) -> None:
        self.assertParses("/quit", "quit")
        self.assertParses("/exit", "quit")


class HelpTests(TestCase):
    def test_help_lists_every_command_of_the_issue(self) -> None:
        text = "\n".join(help_lines())
        for name in ("join", "part", "rooms", "msg", "who", "whois", "away", "topic",
                     "history", "contacts", "add", "remove", "help", "quit", "passwd",
                     "otp", "recover", "logout", "register"):
            self.assertIn(f"/{name}", text)

    def test_help_on_one_command_gives_usage_and_aliases(self) -> None:
        self.assertEqual(help_lines("/j")[0].split("  ")[0], "/join #room [key]")
        self.assertIn("also: /j", help_lines("join")[1])

    def test_help_on_an_unknown_command_is_an_error(self) -> None:
        self.assertRaises(CommandError, help_lines, "nope")

    def test_every_spec_parses_from_its_usage_name(self) -> None:
        for s in SPECS:
            try:
                parse("/" + s.name)
            except CommandError as e:
                self.assertIn("usage", str(e))
