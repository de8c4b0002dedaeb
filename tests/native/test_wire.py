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

    def refused(self, line: bytes, code: str) -> wire.RefusedLine:
        with self.assertRaises(wire.RefusedLine) as caught:
            wire.parse_request(line)
        self.assertEqual(caught.exception.code, code, line)
        return caught.exception

    def test_an_invalid_op_keeps_the_valid_id(self) -> None:
        for line, request_id in [
            (b'{"id": 4, "op": null}', 4),
            (b'{"id": "x"}', "x"),
            (b'{"id": 1.5, "op": ["ping"]}', 1.5),
            (b'{"id": true, "op": 5}', True),
        ]:
            self.assertEqual(self.refused(line, "bad_request").request_id, request_id, line)

    def test_an_invalid_id_is_not_echoed(self) -> None:
        for line in [b'{"id": {"a": 1}, "op": "ping"}', b'{"id": [1], "op": "ping"}']:
            self.assertIsNone(self.refused(line, "bad_request").request_id, line)

    def test_nan_infinity_and_numbers_beyond_a_double_are_bad_json(self) -> None:
        for number in [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1" * 310 + b".0"]:
            for line in [
                b'{"id": ' + number + b', "op": "ping"}',
                b'{"id": 2, "op": "say", "room": "#a", "text": ' + number + b"}",
                b'{"id": 2, "op": "history", "x": {"y": [1, ' + number + b"]}}",
                b"[" + number + b"]",
            ]:
                refused = self.refused(line, "bad_json")
                # the id is echoed when it could be read
                self.assertEqual(refused.request_id, 2 if b'"id": 2' in line else None, line)

    def test_small_and_large_finite_numbers_are_fine(self) -> None:
        request = wire.parse_request(b'{"id": 1e308, "op": "ping", "x": [1e-400, -0.0, 123]}')
        self.assertEqual(request["id"], 1e308)
        self.assertEqual(request["x"], [0.0, 0.0, 123])

    def test_a_lone_surrogate_anywhere_is_bad_request_with_the_id(self) -> None:
        for line in [
            rb'{"id": 1, "op": "login", "user": "bob", "password": "\ud800x"}',
            rb'{"id": 1, "op": "say", "room": "#a", "text": "a\uDFFFb"}',
            rb'{"id": 1, "op": "ping", "\ud800": 1}',
            rb'{"id": 1, "op": "mode", "room": "#a", "x": ["ok", ["\udc00"]]}',
            rb'{"id": 1, "op": "mode", "room": "#a", "x": {"k": {"\udbff": "v"}}}',
            rb'{"id": 1, "op": "p\ud800ing"}',
            rb'{"id": 1, "op": "ping", "x": "\ude00\ud83d"}',  # low then high: two lone halves
        ]:
            self.assertEqual(self.refused(line, "bad_request").request_id, 1, line)

    def test_a_lone_surrogate_in_the_id_is_refused_without_an_id(self) -> None:
        self.assertIsNone(
            self.refused(rb'{"id": "\ud800", "op": "ping"}', "bad_request").request_id
        )

    def test_surrogate_pairs_and_escaped_backslashes_are_fine(self) -> None:
        request = wire.parse_request(rb'{"op": "say", "text": "\ud83d\ude00 \\ud800"}')
        self.assertEqual(request["text"], "\U0001f600 \\ud800")

    def test_json_as_deep_as_json_can_parse_is_answered_not_a_crash(self) -> None:
        def nested(depth: int) -> bytes:
            return (
                b'{"id": 1, "op": "ping", "x": ' + b"[" * depth + rb'"\ud800"' + b"]" * depth + b"}"
            )

        low, high = 1, 100_000  # the deepest nesting json.loads parses from here
        while low < high:
            mid = (low + high + 1) // 2
            try:
                json.loads(nested(mid))
                low = mid
            except RecursionError:
                high = mid - 1
        for depth in (low - 5, low, low + 1):
            with self.assertRaises(wire.RefusedLine) as caught:
                wire.parse_request(nested(depth))
            self.assertIn(caught.exception.code, ("bad_request", "bad_json"))

    def test_encode_is_one_compact_line(self) -> None:
        line = wire.encode({"event": "message", "text": "h\u00e9\nllo"})
        self.assertTrue(line.endswith(b"\n"))
        self.assertEqual(line.count(b"\n"), 1)
        self.assertEqual(json.loads(line)["text"], "h\u00e9\nllo")

    @given(
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(),
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
        for number in [float("nan"), float("inf"), float("-inf")]:
            self.assertRaises(ValueError, wire.dumps, {"id": 1, "x": [number]})

    def test_encode_refuses_a_lone_surrogate(self) -> None:
        self.assertRaises(ValueError, wire.encode, {"id": 1, "text": "a\ud800"})

    def test_error_shape(self) -> None:
        reply = wire.error(7, "rate_limited", "slow down", retry_after=1.5)
        self.assertEqual(reply["ok"], False)
        self.assertEqual(reply["error"]["code"], "rate_limited")
        self.assertEqual(reply["error"]["retry_after"], 1.5)
