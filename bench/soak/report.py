"""What the soak measures and how it judges: samples, growth, the store, the log.

Pure functions over numbers and files, so each rule can be read (and tried)
on its own.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
from dataclasses import dataclass
from pathlib import Path

LOG_ALARMS = re.compile(r"Unhandled Error|Traceback \(most recent call last\)|#critical\]|CRITICAL")


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss: int  # bytes
    fds: int
    sessions: int | None  # online accounts, as the server counts them (LUSERS)
    expected: int  # online accounts, as the soak's clients count them
    cpu: float  # server CPU seconds since it started


# (share of the level, floor) above which a rise counts as growth
GROWTH = {"RSS": (0.10, 8.0), "fds": (0.25, 25.0), "sessions": (0.25, 10.0)}


@dataclass
class Growth:
    name: str
    grows: bool
    detail: str


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over t."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in points) / var


def growth(name: str, points: list[tuple[float, float]], warmup: float, rel: float,
           floor: float, unit: str = "") -> Growth:
    """Does *points* (t, value) grow without bound after *warmup* seconds?

    After warm-up, it grows when BOTH
    * the least-squares line rises by more than the threshold across the
      measured window (a trend, not noise), and
    * the median of the last quarter of the samples exceeds the median of the
      first quarter by more than the threshold (the rise is sustained: a
      single late spike moves the line, not the median);
    with threshold = max(rel x the window's median level, floor). A value
    that climbs and then levels off (a cache filling, the allocator settling)
    passes once the window starts after the climb; one that keeps climbing
    fails both tests.
    """
    window = [(t, y) for t, y in points if t >= warmup]
    if len(window) < 4:
        return Growth(name, False, f"{len(window)} samples after warm-up: not judged")
    quarter = max(1, len(window) // 4)
    first = statistics.median(y for _, y in window[:quarter])
    last = statistics.median(y for _, y in window[-quarter:])
    level = statistics.median(y for _, y in window)
    threshold = max(rel * level, floor)
    rise = slope(window) * (window[-1][0] - window[0][0])
    grows = rise > threshold and last - first > threshold
    detail = (f"fitted rise {rise:+.1f}{unit}, last-quarter median {last:.1f}{unit} vs "
              f"first-quarter {first:.1f}{unit}, threshold {threshold:.1f}{unit}")
    return Growth(name, grows, detail)


# -- the store ---------------------------------------------------------------------------


@dataclass
class StoreCheck:
    checked: int
    missing: list[int]
    wrong_text: list[int]
    duplicated: list[str]

    @property
    def lost(self) -> int:
        return len(self.missing) + len(self.wrong_text) + len(self.duplicated)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing (ids {self.missing[:10]})")
        if self.wrong_text:
            parts.append(f"{len(self.wrong_text)} with another text (ids {self.wrong_text[:10]})")
        if self.duplicated:
            parts.append(f"{len(self.duplicated)} stored more than once "
                         f"({[d[:40] for d in self.duplicated[:3]]})")
        return "; ".join(parts) or "none"


def open_read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def check_store(db: Path, acked: list[tuple[int, str]], whole: bool) -> StoreCheck:
    """Is every acknowledged (msg_id, text) in the ``messages`` table, with its text?

    With *whole*, also that each acknowledged text is stored exactly once
    (texts are unique by construction); that reads the whole table, so the
    soak does it once, after the server has stopped.
    """
    missing, wrong = [], []
    conn = open_read_only(db)
    try:
        stored: dict[int, str] = {}
        ids = [i for i, _ in acked]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            stored.update(conn.execute(
                f"SELECT id, body FROM messages WHERE id IN ({marks})", chunk).fetchall())
        for msg_id, text in acked:
            if msg_id not in stored:
                missing.append(msg_id)
            elif stored[msg_id] != text:
                wrong.append(msg_id)
        duplicated: list[str] = []
        if whole:
            wanted = {text for _, text in acked}
            counts: dict[str, int] = {}
            for (body,) in conn.execute("SELECT body FROM messages"):
                if body in wanted:
                    counts[body] = counts.get(body, 0) + 1
            duplicated = [t for t, n in counts.items() if n > 1]
    finally:
        conn.close()
    return StoreCheck(len(acked), missing, wrong, duplicated)


# -- the server's log ----------------------------------------------------------------------


class LogWatch:
    """Reads the server's log as it grows; keeps the alarming lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.alarms: list[str] = []  # each alarm (a line and its traceback), with context
        self.dropped = 0  # "disconnecting ... not reading" lines

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        lines = data[:cut].decode("utf-8", errors="replace").splitlines()
        quiet_until = -1  # a traceback under an alarm line is the same alarm
        for i, line in enumerate(lines):
            if LOG_ALARMS.search(line) and i > quiet_until:
                self.alarms.append("\n".join(lines[i:i + 12]))
                quiet_until = i + 1
            if line.startswith(("\t", " ")) and i == quiet_until:
                quiet_until += 1
            if "disconnecting" in line and "not reading" in line:
                self.dropped += 1


# -- the table -------------------------------------------------------------------------------

COLUMNS = [
    ("time", 5), ("RSS MiB", 8), ("fds", 5), ("sessions srv/cli", 16), ("CPU %", 6),
    ("acked", 7), ("lost", 5), ("unacked", 7), ("slow drop/stuck", 15), ("churn ok/fail", 13),
    ("bad ok/fail", 11), ("crash", 5), ("stall ms", 8), ("log!", 4),
]


def header() -> str:
    return "| " + " | ".join(name.rjust(w) for name, w in COLUMNS) + " |\n" + \
        "|" + "|".join("-" * (w + 1) + ":" for _, w in COLUMNS) + "|"


def row(cells: list[str]) -> str:
    return "| " + " | ".join(c.rjust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)) + " |"
