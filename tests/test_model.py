"""Pure rules of the chat world: names, text cleaning, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pingchat.errors import InvalidName
from pingchat.model import check_room_name, clean_text, fold, iso_ms, parse_iso_ms


class TimestampTests(SynchronousTestCase):
    @given(st.integers(min_value=0, max_value=253402300799999))
    def test_iso_ms_matches_datetime_and_round_trips(self, ms: int) -> None:
        expected = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        self.assertEqual(iso_ms(ms), f"{expected}.{ms % 1000:03d}Z")
        self.assertEqual(parse_iso_ms(iso_ms(ms)), ms)

    def test_example(self) -> None:
        self.assertEqual(iso_ms(1795308703992), "2026-11-22T00:51:43.992Z")

    def test_the_remembered_stamp_and_minute_never_leak_into_the_next(self) -> None:
        # iso_ms keeps the last value and the last minute: walk across minute,
        # hour, day and year boundaries, back again, and repeat values.
        start = 1798761540000  # 2026-12-31T23:59:00Z
        steps = [0, 0, 1, 59_999, 60_000, 60_001, 59_999, 0, -1, -60_000, 3_600_000, 1]
        for step in steps:
            ms = start + step
            expected = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self.assertEqual(iso_ms(ms), f"{expected}.{ms % 1000:03d}Z", step)


class TextTests(SynchronousTestCase):
    @given(st.text())
    def test_clean_text_never_leaves_cr_lf_or_nul(self, text: str) -> None:
        cleaned = clean_text(text)
        for bad in "\r\n\x00":
            self.assertNotIn(bad, cleaned)

    def test_names(self) -> None:
        self.assertEqual(fold("Alice[]"), "alice[]")
        self.assertEqual(check_room_name("#Lobby"), "#Lobby")
        for bad in ["#a b", "#a,b", "#a:b", "#\x07", "lobby"]:
            self.assertRaises(InvalidName, check_room_name, bad)
