"""Pure IRC parsing and formatting, tested with plain bytes (and hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import TestCase

from pingchat.irc import wire
from pingchat.irc.caps import chunk, ls_tokens, parse_request


class ParseTests(TestCase):
    def test_full_message_with_tags_source_and_trailing(self) -> None:
        m = wire.parse("@time=2026-01-01T00:00:00.000Z;+x=a\\sb :nick!u@h PRIVMSG #a :hi there")
        self.assertEqual(m.command, "PRIVMSG")
        self.assertEqual(m.params, ("#a", "hi there"))
        self.assertEqual(m.source, "nick!u@h")
        self.assertEqual(m.tags, {"time": "2026-01-01T00:00:00.000Z", "+x": "a b"})

    def test_command_is_upper_cased_and_extra_spaces_are_ignored(self) -> None:
        m = wire.parse("join   #a    key")
        self.assertEqual((m.command, m.params), ("JOIN", ("#a", "key")))

    def test_trailing_may_be_empty_or_contain_colons(self) -> None:
        self.assertEqual(wire.parse("TOPIC #a :").params, ("#a", ""))
        self.assertEqual(wire.parse("PRIVMSG #a ::-) a:b").params, ("#a", ":-) a:b"))

    def test_tag_without_value_and_escapes(self) -> None:
        m = wire.parse("@a;b=;c=x\\:y\\\\z\\r\\n\\q\\ PING :t")
        self.assertEqual(m.tags, {"a": "", "b": "", "c": "x;y\\z\r\nq"})

    def test_a_line_without_a_command_is_an_error(self) -> None:
        for line in ("", "   ", "@a=b", ":source"):
            self.assertRaises(wire.ParseError, wire.parse, line)


class FormatTests(TestCase):
    def test_last_parameter_gets_a_colon_only_when_needed(self) -> None:
        self.assertEqual(wire.format_line("JOIN", ["#a"], "n!u@h"), ":n!u@h JOIN #a")
        self.assertEqual(wire.format_line("PRIVMSG", ["#a", "hi you"]), "PRIVMSG #a :hi you")
        self.assertEqual(wire.format_line("TOPIC", ["#a", ""]), "TOPIC #a :")
        self.assertEqual(wire.format_line("PRIVMSG", ["#a", ":)"]), "PRIVMSG #a ::)")

    def test_encode_puts_tags_first_and_escapes_them(self) -> None:
        data = wire.encode("PING x", {"label": "a b;c", "flag": ""})
        self.assertEqual(data, b"@label=a\\sb\\:c;flag PING x\r\n")

    def test_encode_never_lets_cr_lf_or_nul_through(self) -> None:
        data = wire.encode("PRIVMSG #a :x\r\nQUIT :pwned\x00")
        self.assertEqual(data.count(b"\r\n"), 1)
        self.assertTrue(data.endswith(b"\r\n"))
        self.assertNotIn(b"\x00", data)

    def test_encode_cuts_the_line_to_512_bytes_without_breaking_utf8(self) -> None:
        data = wire.encode("PRIVMSG #a :" + "é" * 600)
        self.assertLessEqual(len(data), 512)
        data[:-2].decode("utf-8")


class TextTests(TestCase):
    def test_decode_takes_utf8_only(self) -> None:
        self.assertEqual(wire.decode(b"caf\xc3\xa9"), "café")
        for raw in (b"caf\xe9", b"\xff", b"\xed\xa0\x80", b"\xc0\xaf"):  # latin-1, junk,
            with self.assertRaises(ValueError):  # a surrogate, an overlong "/"
                wire.decode(raw)

    def test_split_prefers_spaces_and_respects_the_byte_limit(self) -> None:
        pieces = wire.split_text("word " * 100, 50)
        self.assertTrue(all(len(p.encode()) <= 50 for p in pieces))
        self.assertTrue(all(not p.startswith(" ") for p in pieces))
        self.assertEqual(" ".join(pieces).split(), ["word"] * 100)

    @given(st.text(min_size=1, max_size=2000), st.integers(min_value=4, max_value=400))
    def test_split_loses_nothing_and_fits(self, text: str, limit: int) -> None:
        pieces = wire.split_text(text, limit)
        self.assertTrue(all(len(p.encode("utf-8")) <= limit for p in pieces))
        joined = "".join(pieces)
        # only the spaces that were break points are dropped
        self.assertEqual(joined.replace(" ", ""), text.replace(" ", ""))

    @given(st.dictionaries(st.from_regex(r"\+?[a-z][a-z0-9-]{0,10}", fullmatch=True),
                           st.text(max_size=30), max_size=5))
    def test_tags_round_trip_but_nul(self, tags: dict[str, str]) -> None:
        data = wire.encode("PING :x", tags)
        self.assertNotIn(b"\x00", data)  # a tag value cannot hold NUL: it is dropped
        line = data.decode("utf-8")[:-2]
        self.assertEqual(dict(wire.parse(line).tags),
                         {k: v.replace("\x00", "") for k, v in tags.items()})

    def test_malformed_tag_keys_are_neither_read_nor_written(self) -> None:
        self.assertEqual(wire.parse("@a\rb=1;+c\x00=2;+d=3;x/y=4;e.f/+g=5 PING").tags,
                         {"+d": "3", "x/y": "4"})
        self.assertEqual(wire.encode("PING", {"a\rQUIT": "1", "+ok": "2", "": "3"}),
                         b"@+ok=2 PING\r\n")
        self.assertEqual(wire.encode("PING", {"bad key": "1"}), b"PING\r\n")

    @given(st.lists(st.text(alphabet=st.characters(blacklist_characters=" \r\n\x00:"),
                            min_size=1, max_size=20), max_size=10),
           st.text(alphabet=st.characters(blacklist_characters="\r\n\x00"), max_size=50))
    def test_params_round_trip(self, middle: list[str], last: str) -> None:
        m = wire.parse(wire.format_line("CMD", [*middle, last]))
        self.assertEqual(m.params, (*middle, last))


class FramerTests(TestCase):
    def test_lines_end_with_lf_or_crlf_across_chunks(self) -> None:
        framer = wire.LineFramer(100)
        out = list(framer.feed(b"PING a\r\nPI")) + list(framer.feed(b"NG b\nPING c\r"))
        out += list(framer.feed(b"\n"))
        self.assertEqual(out, [b"PING a", b"PING b", b"PING c"])

    def test_oversized_line_is_reported_once_and_skipped(self) -> None:
        framer = wire.LineFramer(10)
        out = list(framer.feed(b"x" * 30)) + list(framer.feed(b"y" * 30 + b"\nPING ok\n"))
        self.assertEqual(len(out), 2)
        self.assertIsInstance(out[0], wire.LineTooLong)
        self.assertEqual(out[1], b"PING ok")


class CapsTests(TestCase):
    def test_302_shows_values_301_does_not(self) -> None:
        self.assertIn("sasl=PLAIN", ls_tokens(302))
        self.assertIn("sasl", ls_tokens(301))

    def test_request_is_all_or_nothing(self) -> None:
        self.assertEqual(parse_request("sasl -echo-message"),
                         [("sasl", True), ("echo-message", False)])
        self.assertIsNone(parse_request("sasl bogus"))

    def test_chunks_fit(self) -> None:
        lines = chunk(["x" * 50] * 30, 400)
        self.assertTrue(all(len(line) <= 400 for line in lines))
        self.assertEqual(sum(len(line.split()) for line in lines), 30)
