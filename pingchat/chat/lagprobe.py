"""A reactor lag probe: how late does a timed call run?

A ``LoopingCall`` asks to run every few milliseconds. While the reactor is
busy elsewhere (a long callback, a burst of work, anything blocking) the call
runs late, and that delay is a stall every connection suffered too. The probe
keeps the largest stall of each period and hands it to a report function.

``twistd pingchat`` runs one for its metrics (``--metrics``): a call every
:data:`INTERVAL`, so that every stall longer than that is seen, at ten
timer calls a second. When the environment variable ``PINGCHAT_LAG_PROBE``
names a file, the probe runs every :data:`BENCHMARK_INTERVAL` instead and
one JSON line per period is also appended to the file
(``{"t": <epoch seconds>, "max_stall_ms": ..., "ticks": ...}``). The benchmark
reads that file to find the largest stall during a login storm.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()

Report = Callable[[float, float, int], None]

# A stall longer than the interval always delays a call; a shorter one only
# if a call falls due during it. 100 ms is the stall worth an alert
# (docs/admin.md); the benchmark wants the small ones too.
INTERVAL = 0.1
BENCHMARK_INTERVAL = 0.005


class LagProbe(Service):
    """Measure reactor stalls; report the largest of each *period* seconds."""

    name = "lag-probe"

    def __init__(
        self,
        clock: IReactorTime,
        report: Report,
        interval: float = BENCHMARK_INTERVAL,
        period: float = 1.0,
        warn_after: float = 0.1,
    ) -> None:
        self.clock = clock
        self.report = report
        self.interval = interval
        self.period = period
        self.warn_after = warn_after
        self.largest = 0.0  # the largest stall since the service started
        self._call = LoopingCall(self._tick)
        self._call.clock = clock
        self._due = 0.0
        self._period_max = 0.0
        self._period_ticks = 0
        self._period_end = 0.0

    def startService(self) -> None:  # noqa: N802
        super().startService()
        now = self.clock.seconds()
        self._period_end = now + self.period
        self._call.start(self.interval, now=False)
        self._due = now + self.interval

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self._call.running:
            self._call.stop()

    def _tick(self) -> None:
        now = self.clock.seconds()
        stall = max(0.0, now - self._due)
        # LoopingCall schedules the next call on the next multiple of the
        # interval after this one; that is when it is due.
        start = self._call.starttime
        assert start is not None
        # (1 µs of slack for float rounding, so an on-time call is not one interval late)
        self._due = start + (int((now - start) / self.interval + 1e-6) + 1) * self.interval
        self._period_max = max(self._period_max, stall)
        self._period_ticks += 1
        self.largest = max(self.largest, stall)
        if now >= self._period_end:
            if self._period_max >= self.warn_after:
                log.warn(
                    "the reactor stalled for {ms:.0f} ms", ms=self._period_max * 1000
                )
            self.report(now, self._period_max * 1000, self._period_ticks)
            self._period_max = 0.0
            self._period_ticks = 0
            self._period_end = now + self.period


def reports(*each: Report) -> Report:
    """One report function that hands every period to each of *each*."""

    def report(now: float, max_stall_ms: float, ticks: int) -> None:
        for r in each:
            r(now, max_stall_ms, ticks)

    return report


def jsonl_report(path: Path) -> Report:
    """A report function that appends one JSON line per period to *path*."""

    def report(now: float, max_stall_ms: float, ticks: int) -> None:
        line: dict[str, Any] = {
            "t": round(now, 3),
            "max_stall_ms": round(max_stall_ms, 3),
            "ticks": ticks,
        }
        with path.open("a") as f:
            f.write(json.dumps(line) + "\n")

    return report
