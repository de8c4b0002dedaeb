"""The reactor lag probe, on a task.Clock."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pingchat.chat.lagprobe import LagProbe, jsonl_report, reports


class LagProbeTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.reports: list[tuple[float, float, int]] = []
        self.probe = LagProbe(
            self.clock, lambda *r: self.reports.append(r), interval=0.01, period=1.0
        )
        self.probe.startService()
        self.addCleanup(self.probe.stopService)

    def test_a_reactor_on_time_reports_no_stall(self) -> None:
        for _ in range(100):
            self.clock.advance(0.01)
        self.assertEqual(len(self.reports), 1)
        self.assertAlmostEqual(self.reports[0][1], 0.0, places=6)
        self.assertEqual(self.reports[0][2], 100)

    def test_a_late_call_is_reported_as_the_period_stall(self) -> None:
        for _ in range(10):
            self.clock.advance(0.01)
        self.clock.advance(0.257)  # the reactor was busy: the call due at 0.11 runs at 0.357
        for _ in range(80):
            self.clock.advance(0.01)
        self.assertEqual(len(self.reports), 1)
        self.assertAlmostEqual(self.reports[0][1], 247.0, places=3)
        self.assertAlmostEqual(self.probe.largest, 0.247, places=6)

    def test_each_period_reports_its_own_largest_stall(self) -> None:
        self.clock.advance(0.01)
        self.clock.advance(0.05)  # 40 ms late
        for _ in range(200):
            self.clock.advance(0.01)
        self.assertEqual(len(self.reports), 2)
        self.assertAlmostEqual(self.reports[0][1], 40.0, places=3)
        self.assertLess(self.reports[1][1], 10.0)

    def test_stopping_stops_the_calls(self) -> None:
        self.probe.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class JSONLReportTests(TestCase):
    def test_appends_one_json_line_per_report(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="pingchat-lag-"))
        self.addCleanup(shutil.rmtree, directory, True)
        path = directory / "lag.jsonl"
        report = jsonl_report(path)
        report(100.0, 1.5, 200)
        report(101.0, 30.25, 190)
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        self.assertEqual(
            lines,
            [{"t": 100.0, "max_stall_ms": 1.5, "ticks": 200},
             {"t": 101.0, "max_stall_ms": 30.25, "ticks": 190}],
        )


class ReportsTests(TestCase):
    def test_each_period_goes_to_every_report(self) -> None:
        first: list[tuple[float, float, int]] = []
        second: list[tuple[float, float, int]] = []
        both = reports(lambda *r: first.append(r), lambda *r: second.append(r))
        both(1.0, 2.5, 10)
        self.assertEqual(first, [(1.0, 2.5, 10)])
        self.assertEqual(second, first)
