"""Random IRC lines never crash the gateway or close a well-behaved connection."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.irc.helpers import IRCTestCase

COMMANDS = [
    "JOIN",
    "PART",
    "PRIVMSG",
    "NOTICE",
    "TOPIC",
    "NAMES",
    "LIST",
    "WHO",
    "WHOIS",
    "WHOWAS",
    "MODE",
    "KICK",
    "INVITE",
    "AWAY",
    "ISON",
    "USERHOST",
    "MOTD",
    "LUSERS",
    "CHATHISTORY",
    "TAGMSG",
    "NICKSERV",
    "CAP",
    "PING",
    "VERSION",
    "TIME",
    "HELP",
    "AUTHENTICATE",
    "NICK",
    "USER",
    "PASS",
    "FROB",
]
words = st.one_of(
    st.sampled_from(
        [
            "#lobby",
            "#x",
            "alice",
            "bob",
            "*",
            "+o",
            "-b",
            "+k",
            "LATEST",
            "BEFORE",
            "msgid=1",
            "timestamp=2026-01-01T00:00:00.000Z",
            "0",
            "-1",
            "NickServ",
            "IDENTIFY",
            "+imnst",
            ",",
            "#a,#b",
        ]
    ),
    st.text(
        alphabet=st.characters(blacklist_characters="\r\n\x00 ", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=12,
    ),
)
lines = st.builds(
    lambda cmd, params, trailing: " ".join([cmd, *params]) + (f" :{trailing}" if trailing else ""),
    st.sampled_from(COMMANDS),
    st.lists(words, max_size=4),
    st.one_of(
        st.none(),
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)),
            max_size=30,
        ),
    ),
)


class IRCFuzzTests(IRCTestCase):
    settings = {"rate": 0, "guests": True}

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect(
            "alice",
            caps=("message-tags", "batch", "labeled-response", "draft/chathistory", "server-time"),
        )
        self.alice.send("JOIN #lobby")
        self.guest = self.connect("visitor", password=None)
        self.alice.read()
        self.guest.read()

    @hypothesis_settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.lists(lines, min_size=1, max_size=6), st.booleans())
    def test_random_commands_are_answered_not_crashed(self, batch: list[str], guest: bool) -> None:
        client = self.guest if guest else self.alice
        for line in batch:
            if line.split(" ", 1)[0] in ("NICK", "QUIT"):
                continue  # renaming or leaving would change the fixture
            client.send(line)
            self.clock.advance(0)
            for m in client.read():
                self.assertNotEqual(m.command, "ERROR", line)
                if m.command == "FAIL":
                    self.assertNotIn("INTERNAL_ERROR", m.params, line)
        self.assertFalse(client.closed)
        client.send("PING :alive")
        self.assertIn("PONG", [m.command for m in client.read()])
