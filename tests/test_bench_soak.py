"""The soak's judging rules (``bench/soak/report.py``), on numbers and files made here.

The soak itself is not run in CI; these check that each of its failure rules
can fail, and does not fail on what it should let through.
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench.soak.clients import split_privmsg, strict_json
from bench.soak.report import GROWTH, LogWatch, check_store, growth


def series(f: Callable[[float], float], minutes: float = 30,
           step: float = 10) -> list[tuple[float, float]]:
    rng = random.Random(7)
    return [(t, f(t) + rng.uniform(-1, 1)) for t in range(0, int(minutes * 60), int(step))]


class GrowthTests(SynchronousTestCase):
    def test_a_steady_climb_grows_without_bound(self) -> None:
        # 65 MiB climbing half a MiB a minute: a leak
        g = growth("RSS", series(lambda t: 65 + t / 120), 360, *GROWTH["RSS"])
        self.assertTrue(g.grows, g.detail)

    def test_a_flat_noisy_level_does_not_grow(self) -> None:
        g = growth("RSS", series(lambda t: 65.0), 360, *GROWTH["RSS"])
        self.assertFalse(g.grows, g.detail)

    def test_a_climb_that_levels_off_during_warm_up_does_not_grow(self) -> None:
        g = growth("RSS", series(lambda t: 65 + min(t, 300) / 10), 360, *GROWTH["RSS"])
        self.assertFalse(g.grows, g.detail)

    def test_one_late_spike_does_not_grow(self) -> None:
        points = series(lambda t: 65.0)
        points[-1] = (points[-1][0], 200.0)
        g = growth("RSS", points, 360, *GROWTH["RSS"])
        self.assertFalse(g.grows, g.detail)

    def test_a_small_climb_under_the_floor_does_not_grow(self) -> None:
        # fds from 40 to 50 over the run: under the 25-fd floor
        g = growth("fds", series(lambda t: 40 + t / 180), 360, *GROWTH["fds"])
        self.assertFalse(g.grows, g.detail)

    def test_too_few_samples_are_not_judged(self) -> None:
        g = growth("fds", [(0, 1.0), (70, 500.0), (80, 900.0)], 60, 0.25, 25)
        self.assertFalse(g.grows)
        self.assertIn("not judged", g.detail)


class StoreCheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.db = Path(directory.name) / "pingchat.sqlite3"
        conn = sqlite3.connect(self.db)
        conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO messages VALUES (?, ?)",
                         [(1, "one"), (2, "two"), (3, "three"), (4, "three")])
        conn.commit()
        conn.close()

    def test_every_acknowledged_message_present_loses_nothing(self) -> None:
        result = check_store(self.db, [(1, "one"), (2, "two")], True)
        self.assertEqual(result.lost, 0)
        self.assertEqual(result.checked, 2)

    def test_a_missing_id_is_lost(self) -> None:
        result = check_store(self.db, [(1, "one"), (9, "nine")], True)
        self.assertEqual(result.missing, [9])

    def test_another_text_under_the_id_is_lost(self) -> None:
        result = check_store(self.db, [(2, "deux")], True)
        self.assertEqual(result.wrong_text, [2])

    def test_a_text_stored_twice_is_reported(self) -> None:
        result = check_store(self.db, [(3, "three")], True)
        self.assertEqual(result.duplicated, ["three"])
        self.assertEqual(check_store(self.db, [(3, "three")], False).lost, 0)


class LogWatchTests(SynchronousTestCase):
    def test_a_critical_line_and_its_traceback_are_one_alarm(self) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as f:
            self.addCleanup(Path(f.name).unlink)
            f.write(
                "2026 [x#info] fine\n"
                "2026 [pingchat.native.protocol#critical] internal error in a request\n"
                "\tTraceback (most recent call last):\n"
                "\t  File \"x\", line 1\n"
                "2026 [x#warn] disconnecting bob at 1: more than 5 bytes of output pending"
                " (the client is not reading)\n"
                "2026 [-] Unhandled Error\n"
                "\tTraceback (most recent call last):\n"
                "2026 [half a line"
            )
        watch = LogWatch(Path(f.name))
        watch.read()
        self.assertEqual(len(watch.alarms), 2)
        self.assertIn("#critical", watch.alarms[0])
        self.assertEqual(watch.dropped, 1)


class WireTests(SynchronousTestCase):
    def test_nan_and_infinity_are_not_json(self) -> None:
        for line in (b'{"id":NaN}', b'{"id":Infinity}', b'{"id":-Infinity}', b'{"id":1e400}'):
            with self.assertRaises(ValueError):
                strict_json(line)
        self.assertEqual(strict_json(b'{"id":1.5}'), {"id": 1.5})

    def test_privmsg_tags_prefix_and_text(self) -> None:
        tags, prefix, text = split_privmsg(b"@msgid=42;time=x :a!a@h PRIVMSG #r :hi :) there")
        self.assertEqual((tags["msgid"], prefix, text), ("42", "a!a@h", "hi :) there"))
