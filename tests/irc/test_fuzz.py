"""Property tests for the IRC door: random lines never crash the gateway or close a
well-behaved connection; any bytes get well-formed replies and inject nothing; the
wire format frames, parses and encodes within its limits."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from pingchat.irc import wire
from pingchat.model import clean_text
from tests.irc.helpers import IRCTestCase, IRCTestClient

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


# -- the wire format -------------------------------------------------------------

NICK_MASK = re.compile(
    r"[A-Za-z_\[\]\\^{}|`][A-Za-z0-9_\-\[\]\\^{}|`]*"
    r"![A-Za-z0-9_\-\[\]\\^{}|`*]+@(guest|unregistered|services|user/[^ ]+)"
)
SERVER_COMMANDS = frozenset({
    "PRIVMSG", "NOTICE", "TAGMSG", "JOIN", "PART", "QUIT", "NICK", "TOPIC", "MODE",
    "KICK", "INVITE", "AWAY", "PING", "PONG", "ERROR", "CAP", "AUTHENTICATE", "BATCH",
    "FAIL", "ACK", "CHATHISTORY",
})


def wire_lines(test: TestCase, data: bytes, server: str) -> list[wire.Message]:
    """Check that *data* is well-formed IRC from *server*; return its messages.

    Every line ends in CR LF and holds no other CR, LF or NUL; it is UTF-8; its
    tags fit MAX_TAGS and the rest 512 bytes; it parses; its source is the
    server or a well-formed mask (never something a client wrote), and its
    command is a numeric or one the server sends.
    """
    pieces = data.split(b"\r\n")
    test.assertEqual(pieces[-1], b"", data[-80:])  # nothing after the last CR LF
    out = []
    for raw in pieces[:-1]:
        for c in (b"\r", b"\n", b"\x00"):
            test.assertNotIn(c, raw, raw)
        text = raw.decode("utf-8")  # UTF8ONLY: never anything else
        body = raw
        if raw.startswith(b"@"):
            tags, _, body = raw.partition(b" ")
            test.assertLessEqual(len(tags) + 1, wire.MAX_TAGS, raw[:80])
        test.assertLessEqual(len(body) + 2, wire.MAX_LINE, raw[:80])
        m = wire.parse(text)
        test.assertIsNotNone(m.source, raw)
        test.assertTrue(m.source == server or NICK_MASK.fullmatch(m.source or ""), raw)
        test.assertTrue((m.command.isdigit() and len(m.command) == 3)
                        or m.command in SERVER_COMMANDS, raw)
        out.append(m)
    return out


tag_keys = st.one_of(
    st.sampled_from(["label", "+draft/reply", "+typing", "batch", "time", "msgid", "+a"]),
    st.text(alphabet=st.characters(blacklist_characters=" ;=", codec="utf-8"),
            min_size=1, max_size=10),
    st.builds(lambda k: "+" + k, st.text(alphabet="ab\r\n\x00/-.", min_size=1, max_size=6)),
)
tag_values = st.one_of(
    st.text(max_size=20, alphabet=st.characters(codec="utf-8")),
    st.text(alphabet="x\\;: \r\n", max_size=5000),  # escapes, and huge
)


def raw_tag_section(tags: dict[str, str]) -> bytes:
    """A tag section as a careless client writes it (not with wire.format_tags).

    Only what would end the section (space, ';') is escaped: keys go as they
    are, and CR, LF and NUL in values go raw.
    """
    if not tags:
        return b""
    parts = [
        k + "=" + v.replace("\\", "\\\\").replace(";", "\\:").replace(" ", "\\s")
        for k, v in tags.items()
    ]
    return ("@" + ";".join(parts) + " ").encode("utf-8")


tag_sections = st.dictionaries(tag_keys, tag_values, max_size=4).map(raw_tag_section)
messages = st.builds(
    lambda cmd, target, text: f"{cmd} {target} :{text}",
    st.sampled_from(["PRIVMSG", "NOTICE", "TAGMSG", "TOPIC"]),
    st.sampled_from(["#lobby", "alice", "fuzz1", "NickServ"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
)
# Lines as a client might send them, then bytes no client should.
raw_lines = st.one_of(
    st.builds(lambda tags, line: tags + line.encode("utf-8"), tag_sections, lines),
    st.builds(lambda tags, line: tags + line.encode("utf-8"), tag_sections, messages),
    st.builds(lambda tags, line, junk: tags + line.encode("utf-8") + junk,
              tag_sections, lines, st.binary(max_size=40)),
    st.binary(max_size=600),
)
inputs = st.lists(raw_lines, min_size=1, max_size=5).map(lambda ls: b"\r\n".join(ls) + b"\r\n")


class WireFormatPropertyTests(TestCase):
    @hypothesis_settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=300), max_size=8))
    def test_framing_does_not_depend_on_how_the_bytes_arrive(self, chunks: list[bytes]) -> None:
        whole, pieces = wire.LineFramer(max_line=256), wire.LineFramer(max_line=256)
        at_once = list(whole.feed(b"".join(chunks)))
        in_chunks = [item for chunk in chunks for item in pieces.feed(chunk)]
        self.assertEqual(at_once, in_chunks)
        for item in at_once:
            if isinstance(item, bytes):
                self.assertNotIn(b"\n", item)
                self.assertLessEqual(len(item), 256)
                self.assertFalse(item.endswith(b"\r"))

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(st.text(max_size=700))
    def test_any_text_parses_or_is_a_parse_error(self, text: str) -> None:
        try:
            m = wire.parse(text)
        except wire.ParseError:
            return
        self.assertTrue(m.command)
        self.assertNotIn(" ", m.command)
        for p in m.params[:-1]:
            self.assertTrue(p and " " not in p and not p.startswith(":"))

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(
        st.sampled_from(["PRIVMSG", "NOTICE", "TOPIC", "001", "KICK"]),
        st.lists(st.text(alphabet=st.characters(blacklist_characters=" \r\n\x00:",
                                                codec="utf-8"), min_size=1, max_size=15),
                 max_size=3),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=700),
        st.dictionaries(tag_keys, tag_values, max_size=4),
    )
    def test_encoded_lines_are_one_line_within_limits_and_read_back(
        self, command: str, middle: list[str], trailing: str, tags: dict[str, str]
    ) -> None:
        # Whatever the text, one well-formed line (CR, LF and NUL never pass).
        data = wire.encode(wire.format_line(command, [*middle, trailing], "irc.test"), tags)
        wire_lines(self, data, "irc.test")
        # Text as the gateway passes it (cleaned): it reads back, cut to fit.
        clean = clean_text(trailing)
        data = wire.encode(wire.format_line(command, [*middle, clean], "irc.test"), tags)
        (m,) = wire_lines(self, data, "irc.test")
        self.assertEqual((m.command, m.params[: len(middle)]), (command, tuple(middle)))
        self.assertTrue(clean.encode("utf-8").startswith(m.params[-1].encode("utf-8")))
        if data.startswith(b"@"):  # tags come back as they went (but NUL), or not at all
            self.assertEqual(dict(m.tags), {k: v.replace("\x00", "") for k, v in tags.items()
                                            if wire.TAG_KEY.fullmatch(k)})


# -- the commands, through the protocol ----------------------------------------------


class ProtocolPropertyTests(IRCTestCase):
    """Any bytes from a client: well-formed replies, nothing injected, nothing logged."""

    settings = {"rate": 0, "guests": True}

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect(
            "alice", caps=("message-tags", "echo-message", "server-time", "labeled-response",
                           "batch", "account-tag", "away-notify", "extended-join"))
        self.alice.send("JOIN #lobby")
        self.alice.raw()
        self.errors: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("isError") or "log_failure" in event:
                self.errors.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.guests = 0

    def guest(self) -> IRCTestClient:
        self.guests += 1
        g = self.connect(f"fuzz{self.guests}", password=None,
                         caps=("message-tags", "labeled-response", "batch", "echo-message"))
        g.send("JOIN #lobby")
        g.raw()
        self.alice.raw()
        return g

    @hypothesis_settings(
        max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(inputs, st.integers(min_value=1, max_value=64))
    def test_any_bytes_get_well_formed_replies_and_inject_nothing(
        self, data: bytes, chunk: int
    ) -> None:
        g = self.guest()
        for i in range(0, len(data), chunk):  # however the bytes arrive
            g.send_raw(data[i : i + chunk])
        self.clock.advance(0)
        wire_lines(self, g.raw(), self.factory.server_name)
        seen = wire_lines(self, self.alice.raw(), self.factory.server_name)
        for m in seen:  # alice hears of the guest (under any nick), never a line it wrote
            if m.source != self.factory.server_name:
                user = (m.source or "").split("!")[1].split("@")[0]
                self.assertIn(user, ("alice", f"fuzz{self.guests}"), m)
        self.assertEqual(self.errors, [])
        g.disconnect()
        self.alice.raw()

    @hypothesis_settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=600))
    def test_native_text_reaches_irc_as_well_formed_lines(self, text: str) -> None:
        if not hasattr(self, "bob"):
            self.make_account("bob")
            self.bob = self.native("bob")
            self.bob.request("join", room="#lobby")
            self.alice.raw()
        self.bob.request("say", room="#lobby", text=text + "\r\n:evil!x@y KICK #lobby alice")
        self.clock.advance(0)
        for m in wire_lines(self, self.alice.raw(), self.factory.server_name):
            self.assertEqual(m.source, "bob!bob@user/bob")
            self.assertEqual(m.command, "PRIVMSG")
        self.assertEqual(self.errors, [])
