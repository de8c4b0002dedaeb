"""How long the server's writer stalls while ``pingchat backup`` runs under write load.

    python -m bench.backup_stall [--history 500000] [--before 3] [--after 3] [--nice]

Seeds a data dir with ``--history`` messages (so that the copy takes a
while), then runs the real ``Database`` writer (its thread, group commit,
``synchronous=FULL`` WAL) fed by the reactor thread with a steady stream of
``add_room_message`` calls, as a door feeds it. After ``--before`` seconds
``pingchat backup`` runs as a separate process, as an administrator's cron
job would; the load goes on for ``--after`` seconds after it ends.

Prints, before / during / after the backup: the writer's batches (each is
``BEGIN IMMEDIATE`` ... ``COMMIT``, the time the writer is busy with one
batch, lock waits included) as max and p99, the longest gap between two
commits, and the longest time from a write's request to its
acknowledgement. A backup that took the write lock would show as a batch
(or a gap) as long as the copy. ``--nice`` runs the backup as the cron
example in docs/admin.md does (``nice -n 19 ionice -c 3``).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.seed import seed_history

TEXT = "a chat line of an ordinary length, about sixty bytes long ....."
PER_TURN = 50


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def measure(history: int, before: float, after: float, nice: bool = False) -> dict[str, Any]:
    from twisted.internet import defer, reactor

    from pingchat.store import Database, SQLiteStore

    where = Path(tempfile.mkdtemp(prefix="pingchat-backup-stall-"))
    data = where / "data"
    print(f"seeding {history:,} messages ...", file=sys.stderr)
    seed_history(data, "#history", history)
    size = (data / "pingchat.sqlite3").stat().st_size
    db = Database(data / "pingchat.sqlite3", reactor)  # type: ignore[arg-type]
    store = SQLiteStore(db)
    batches: list[tuple[float, float]] = []  # (start, duration) on the writer thread
    acks: list[tuple[float, float]] = []  # (asked, acknowledged)
    run_batch = db._run_batch

    def timed_batch(conn: Any, jobs: list[Any]) -> Any:
        start = time.perf_counter()
        try:
            return run_batch(conn, jobs)
        finally:
            batches.append((start, time.perf_counter() - start))

    db._run_batch = timed_batch  # type: ignore[method-assign]
    window: dict[str, float] = {}
    result: dict[str, Any] = {"database_bytes": size}

    def backup() -> None:
        window["start"] = time.perf_counter()
        command = [str(Path(sys.executable).with_name("pingchat")), "--data-dir", str(data)]
        prefix = ["nice", "-n", "19", "ionice", "-c", "3"] if nice else []
        done = subprocess.run(
            [*prefix, *command, "backup", str(where)],
            capture_output=True,
            text=True,
        )
        window["end"] = time.perf_counter()
        result["backup_ok"] = done.returncode == 0
        result["backup_stderr"] = done.stderr.strip()
        archives = list(where.glob("pingchat-backup-*"))
        result["archive_bytes"] = archives[0].stat().st_size if archives else 0

    @defer.inlineCallbacks
    def main() -> Any:
        account = yield store.create_account("alice", b"h", 0)
        room = yield store.create_room("#writes", 0)
        running = True

        def ack(_: object, asked: float) -> None:
            acks.append((asked, time.perf_counter()))

        def turn() -> None:
            now = time.perf_counter()
            for _ in range(PER_TURN):
                store.add_room_message(
                    room.id, room.name, "alice", account.id, TEXT, int(time.time() * 1000)
                ).addCallback(ack, now)
            if running:
                reactor.callLater(0.001, turn)  # type: ignore[attr-defined]

        turn()
        yield deferLater(before)
        thread = threading.Thread(target=backup)
        thread.start()
        while thread.is_alive():
            yield deferLater(0.05)
        yield deferLater(after)
        running = False
        yield deferLater(0.5)

    def deferLater(seconds: float) -> Any:  # noqa: N802
        from twisted.internet.task import deferLater as later

        return later(reactor, seconds, lambda: None)

    def run() -> None:
        d = main()
        d.addErrback(lambda f: f.printTraceback())
        d.addBoth(lambda _: db.stop())
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(run)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    shutil.rmtree(where, ignore_errors=True)
    start, end = window["start"], window["end"]
    result["backup_seconds"] = end - start
    for phase, keep in (
        ("before", lambda t: t < start),
        ("during", lambda t: start <= t <= end),
        ("after", lambda t: t > end),
    ):
        durations = [d for s, d in batches if keep(s)]
        ends = sorted(s + d for s, d in batches if keep(s))
        gaps = [b - a for a, b in itertools.pairwise(ends)]
        latencies = [done - asked for asked, done in acks if keep(asked)]
        result[phase] = {
            "batches": len(durations),
            "batch_max_ms": max(durations, default=0) * 1000,
            "batch_p99_ms": percentile(durations, 0.99) * 1000,
            "commit_gap_max_ms": max(gaps, default=0) * 1000,
            "ack_max_ms": max(latencies, default=0) * 1000,
            "ack_p99_ms": percentile(latencies, 0.99) * 1000,
            "acks": len(latencies),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=500_000)
    parser.add_argument("--before", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=3.0)
    parser.add_argument("--nice", action="store_true", help="nice -n 19 ionice -c 3 the backup")
    args = parser.parse_args()
    r = measure(args.history, args.before, args.after, args.nice)
    print(
        f"database {r['database_bytes'] / 2**20:.0f} MiB; backup {r['backup_seconds']:.2f} s"
        f" ({'ok' if r['backup_ok'] else 'FAILED: ' + r['backup_stderr']}),"
        f" archive {r['archive_bytes'] / 2**20:.1f} MiB"
    )
    print(
        f"{'':8} {'batches':>8} {'batch max':>10} {'batch p99':>10} {'gap max':>9}"
        f" {'ack max':>9} {'ack p99':>9} {'acks':>8}"
    )
    for phase in ("before", "during", "after"):
        p = r[phase]
        print(
            f"{phase:8} {p['batches']:8d} {p['batch_max_ms']:8.1f}ms {p['batch_p99_ms']:8.1f}ms"
            f" {p['commit_gap_max_ms']:7.1f}ms {p['ack_max_ms']:7.1f}ms {p['ack_p99_ms']:7.1f}ms"
            f" {p['acks']:8d}"
        )


if __name__ == "__main__":
    main()
