"""The native protocol's pure framing and encoding."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pingchat.errors import BadRequest
from pingchat.native import wire


class LineFramerTests(SynchronousTestCase):
    def test_splits_on_newline_and_strips_cr(self) -> None:
        framer = wire.LineFramer()
        self.assertEqual(list(framer.feed(b"a\r\nb\nc")), [b"a", b"b"])
        self.assertEqual(list(framer.feed(b"\n")), [b"c"])

    def test_oversized_line_is_reported_once_and_discarded(self) -> None:
        framer = wire.LineFramer(max_line=10)
        out = list(framer.feed(b"x" * 25 + b"\nok\n"))
        self.assertIsInstance(out[0], wire.LineTooLong)
        self.assertEqual(out[0].length, 25)
        self.assertEqual(out[1:], [b"ok"])

    def test_oversized_line_across_chunks_does_not_buffer(self) -> None:
        framer = wire.LineFramer(max_line=10)
        for _ in range(100):
            self.assertEqual(list(framer.feed(b"y" * 1000)), [])
        self.assertLessEqual(len(framer._buffer), 10)
        out = list(framer.feed(b"tail\nnext\n"))
        self.assertIsInstance(out[0], wire.LineTooLong)
        self.assertEqual(out[0].length, 100 * 1000 + 4)
        self.assertEqual(out[1:], [b"next"])

    def test_exactly_max_length_is_accepted(self) -> None:
        framer = wire.LineFramer(max_line=10)
        self.assertEqual(list(framer.feed(b"0123456789\n")), [b"0123456789"])

    @given(
        st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=20), st.data()
    )
    def test_any_chunking_yields_the_same_lines(
        self, lines: list[bytes], data: st.DataObject
    ) -> None:
        stream = b"".join(line + b"\n" for line in lines)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        framer = wire.LineFramer(max_line=1000)
        out: list[bytes | wire.LineTooLong] = []
        prev = 0
        for cut in [*cuts, len(stream)]:
            out.extend(framer.feed(stream[prev:cut]))
            prev = cut
        expected = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        self.assertEqual(out, expected)


class ParseTests(SynchronousTestCase):
    def test_valid_request(self) -> None:
        self.assertEqual(wire.parse_request(b'{"id": 3, "op": "ping"}'), {"id": 3, "op": "ping"})

    def test_invalid_utf8_is_bad_json(self) -> None:
        with self.assertRaises(wire.BadJSON) as e:
            wire.parse_request(b'{"op": "\xff"}')
        self.assertEqual(e.exception.code, "bad_json")

    def test_not_json_is_bad_json(self) -> None:
        self.assertRaises(wire.BadJSON, wire.parse_request, b"{op: ping}")

    def test_deeply_nested_json_is_bad_json_not_a_crash(self) -> None:
        self.assertRaises(wire.BadJSON, wire.parse_request, b"[" * 100000)

    def test_non_object_and_missing_op_are_bad_request(self) -> None:
        self.assertRaises(BadRequest, wire.parse_request, b"[1, 2]")
        self.assertRaises(BadRequest, wire.parse_request, b'{"id": 1}')
        self.assertRaises(BadRequest, wire.parse_request, b'{"op": 5}')

    def test_structured_id_is_refused(self) -> None:
        self.assertRaises(BadRequest, wire.parse_request, b'{"op": "ping", "id": {"a": 1}}')

    def test_encode_is_one_compact_line(self) -> None:
        line = wire.encode({"event": "message", "text": "h\u00e9\nllo"})
        self.assertTrue(line.endswith(b"\n"))
        self.assertEqual(line.count(b"\n"), 1)
        self.assertEqual(json.loads(line)["text"], "h\u00e9\nllo")

    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
            lambda inner: st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=20,
        )
    )
    def test_dumps_is_json_dumps_compact_and_unicode(self, value: object) -> None:
        # wire.dumps keeps CPython's C encoder instead of building it per call.
        obj = {"id": 1, "value": value}
        self.assertEqual(
            wire.dumps(obj), json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        )

    def test_dumps_refuses_what_json_cannot_hold(self) -> None:
        self.assertRaises(TypeError, wire.dumps, {"when": object()})

    def test_error_shape(self) -> None:
        reply = wire.error(7, "rate_limited", "slow down", retry_after=1.5)
        self.assertEqual(reply["ok"], False)
        self.assertEqual(reply["error"]["code"], "rate_limited")
        self.assertEqual(reply["error"]["retry_after"], 1.5)
