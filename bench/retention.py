"""Deleting an account, expiring history: how long, and how long the writer is held.

    python -m bench.retention account [--messages 1000000] [--mine 10000]
    python -m bench.retention expiry [--messages 1000000] [--rate 2000]

``account``: a database of ``--messages`` messages (two rooms, DMs, 1,000
accounts) in which one account wrote ``--mine``; deletes that account the
way ``pingchat user delete`` does (short transactions) and also the way a
single ``DELETE FROM accounts`` would, once on the schema as it was before
migration 008 (its indexes dropped) and once as it is.

``expiry``: ``--messages`` messages two days old, ``--history-days 1``; the
real threaded ``Database`` takes ``--rate`` new messages per second from
the reactor (as doors would) while :class:`pingchat.chat.retention.Retention`
expires the old ones. Reports every writer batch's time in the writer thread
(the longest with an expiry job in it is the stall the expiry causes), the
acknowledgement latency of the new messages during the expiry and after it,
and how long the expiry took. A benchmark, not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import SERVER_CORE
from bench.servers import pin

TEXT = "a chat line of an ordinary length, about sixty bytes long ....."
INDEXES_008 = (
    "messages_sender",
    "messages_recipient",
    "messages_room",
    "offline_queue_message",
    "room_invites_account",
    "audit_log_account_folded",
    "audit_log_actor_folded",
)


def seed(path: Path, messages: int, mine: int, age_ms: int) -> tuple[int, int]:
    """Fill a new database; returns (the account that wrote *mine* messages, first ts)."""
    from pingchat.store import migrations
    from pingchat.store.database import connect

    conn = connect(path, "NORMAL")
    migrations.migrate(conn)
    now = int(time.time() * 1000)
    start = now - age_ms
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO accounts (name, name_folded, password_hash, created_at)"
        " VALUES (?, ?, x'00', 0)",
        [(f"user{i}", f"user{i}") for i in range(1000)],
    )
    for room in ("#one", "#two"):
        conn.execute(
            "INSERT INTO rooms (name, name_folded, created_at) VALUES (?, ?, 0)", (room, room)
        )
    me = 1
    every = max(1, messages // mine) if mine else 0
    rows: list[tuple[Any, ...]] = []
    for i in range(messages):
        sender = me if every and i % every == 0 and i // every < mine else 2 + i % 999
        ts = start + i * age_ms // (2 * messages)  # spread over the first half of the age
        if i % 10 == 0:
            peer = 2 + (i * 7) % 999
            rows.append((ts, f"d:{min(sender, peer)}:{max(sender, peer)}", sender, None, peer))
        else:
            rows.append((ts, f"r:{1 + i % 2}", sender, 1 + i % 2, None))
        if len(rows) == 50_000:
            _insert(conn, rows)
            rows = []
    _insert(conn, rows)
    conn.execute("COMMIT")
    conn.close()
    return me, start


def _insert(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO messages (ts, conversation, sender, sender_id, room_id, recipient_id, body)"
        " VALUES (?, ?, 'someone', ?, ?, ?, ?)",
        [(*r, TEXT) for r in rows],
    )


def account(messages: int, mine: int) -> None:
    from pingchat.store import Database
    from pingchat.store import erasure as txns

    where = Path(tempfile.mkdtemp(prefix="pingchat-bench-erasure-"))
    try:
        template = where / "template.sqlite3"
        print(f"seeding {messages:,} messages ({mine:,} by one account)...", flush=True)
        me, _ = seed(template, messages, mine, 0)
        for label, drop in (("before (no 008 indexes)", True), ("after", False)):
            for how in ("one DELETE FROM accounts", "pingchat user delete"):
                path = where / "db.sqlite3"
                for suffix in ("", "-wal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)
                shutil.copy(template, path)
                db = Database(path, threaded=False, synchronous="FULL")
                if drop:
                    for index in INDEXES_008:
                        db._conn.execute(f"DROP INDEX {index}")
                work: list[float] = []

                def timed(fn: Any, *args: Any, db: Any = db, work: list[float] = work) -> Any:
                    def run(conn: Any) -> Any:
                        t = time.perf_counter()
                        try:
                            return fn(conn, *args)
                        finally:
                            work.append(time.perf_counter() - t)

                    return db.run_sync(run)

                started = time.perf_counter()
                if how.startswith("one"):
                    timed(lambda c: c.execute("DELETE FROM accounts WHERE id = ?", (me,)))
                else:
                    d = timed(txns._begin_account_deletion, "user0", b"x", 0, 1)
                    while timed(
                        txns._erase_messages, d.account_id, "remove", d.placeholder, txns.BATCH
                    ).total:
                        pass
                    timed(txns._finish_account_deletion, d, "remove", 0)
                longest = max(work)
                total = time.perf_counter() - started
                db.stop()
                print(
                    f"{label:24} {how:22} {total * 1000:8.1f} ms in all (commits included),"
                    f" {len(work)} transaction(s), the longest {longest * 1000:6.1f} ms of work"
                )
    finally:
        shutil.rmtree(where, ignore_errors=True)


def expiry(messages: int, rate: int) -> dict[str, Any]:
    from twisted.internet import defer, reactor, task

    from pingchat.chat.retention import Retention
    from pingchat.store import Database, SQLiteStore
    from pingchat.store import database as database_module

    where = Path(tempfile.mkdtemp(prefix="pingchat-bench-expiry-"))
    day = 24 * 3600 * 1000
    print(f"seeding {messages:,} messages two days old...", flush=True)
    seed(where / "db.sqlite3", messages, 0, 2 * day)
    db = Database(where / "db.sqlite3", reactor)  # type: ignore[arg-type]
    store = SQLiteStore(db)
    batches: list[tuple[float, bool, float]] = []  # (seconds, with an expiry job, commit)
    original = Database._run_batch

    def timed(self: Any, conn: Any, jobs: list[Any]) -> Any:
        started = time.perf_counter()
        self._commit_seconds = 0.0
        result = original(self, conn, jobs)
        expiring = any(job[0] in ("expire_messages", "expire_offline") for job in jobs)
        batches.append((time.perf_counter() - started, expiring, self._commit_seconds))
        return result

    database_module.Database._run_batch = timed  # type: ignore[method-assign]
    jobs: list[float] = []  # each expiry job's own time in the writer, commit aside
    expire_messages = store.expire_messages

    def expire_job(*args: Any) -> Any:
        def note(result: Any) -> Any:
            jobs.append(result.seconds)
            return result

        return expire_messages(*args).addCallback(note)

    store.expire_messages = expire_job  # type: ignore[method-assign,assignment]
    # The same jobs' CPU time on the writer thread: what the work costs,
    # whatever else the machine runs (the wall time above includes waiting
    # for a core).
    cpu: list[float] = []
    from pingchat.store import retention as retention_module

    work = retention_module._expire_messages

    def cpu_timed(*args: Any) -> Any:
        started = time.thread_time()
        try:
            return work(*args)
        finally:
            cpu.append(time.thread_time() - started)

    retention_module._expire_messages = cpu_timed  # type: ignore[assignment]

    class NoRooms:
        def all_rooms(self) -> list[Any]:
            return []

    retention = Retention(store, NoRooms(), reactor, history_days=1)  # type: ignore[arg-type]
    latencies: dict[str, list[float]] = {"during": [], "after": []}
    phase = ["before"]
    result: dict[str, Any] = {}

    @defer.inlineCallbacks
    def main() -> Any:
        sending = [True]
        per_tick, tick = max(1, rate // 200), 0.005

        def acked(_: object, sent: float, which: str) -> None:
            latencies.setdefault(which, []).append(time.perf_counter() - sent)

        def send() -> None:
            if not sending[0]:
                return
            for _ in range(per_tick):
                d = store.add_room_message(1, "#one", "user1", 2, TEXT, int(time.time() * 1000))
                d.addCallback(acked, time.perf_counter(), phase[0])
            reactor.callLater(tick, send)  # type: ignore[attr-defined]

        send()
        yield task.deferLater(reactor, 1.0, lambda: None)  # steady writes first
        wall = time.perf_counter()
        phase[0] = "during"
        counts = yield retention.expire()
        result["expiry_s"] = time.perf_counter() - wall
        result["expired"] = counts["messages"]
        phase[0] = "after"
        yield task.deferLater(reactor, 5.0, lambda: None)
        sending[0] = False

    def run() -> None:
        d = main()
        d.addErrback(lambda f: f.printTraceback())
        d.addBoth(lambda _: db.stop())
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(run)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    shutil.rmtree(where, ignore_errors=True)
    with_expiry = [b[0] for b in batches if b[1]]
    without = [b[0] for b in batches if not b[1]]
    result["longest_job_cpu_ms"] = max(cpu) * 1000 if cpu else 0
    result["p99_job_cpu_ms"] = _pct(cpu, 99) * 1000
    result["longest_job_ms"] = max(jobs) * 1000 if jobs else 0
    result["p99_job_ms"] = _pct(jobs, 99) * 1000
    commits_with = [b[2] for b in batches if b[1]]
    commits_without = [b[2] for b in batches if not b[1]]
    result["p99_commit_with_ms"] = _pct(commits_with, 99) * 1000
    result["p99_commit_without_ms"] = _pct(commits_without, 99) * 1000
    result["median_commit_with_ms"] = _pct(commits_with, 50) * 1000
    result["median_commit_without_ms"] = _pct(commits_without, 50) * 1000
    result["batches_with_expiry"] = len(with_expiry)
    result["longest_batch_with_expiry_ms"] = max(with_expiry) * 1000 if with_expiry else 0
    result["p99_batch_with_expiry_ms"] = _pct(with_expiry, 99) * 1000
    result["longest_batch_without_ms"] = max(without) * 1000 if without else 0
    result["p99_batch_without_ms"] = _pct(without, 99) * 1000
    for which in ("during", "after"):
        got = latencies.get(which, [])
        result[f"ack_{which}_p50_ms"] = _pct(got, 50) * 1000
        result[f"ack_{which}_p99_ms"] = _pct(got, 99) * 1000
        result[f"ack_{which}_max_ms"] = max(got) * 1000 if got else 0
        result[f"ack_{which}_count"] = len(got)
    return result


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["account", "expiry"])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--mine", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=2000, help="new messages per second")
    args = parser.parse_args()
    pin(SERVER_CORE)
    if args.what == "account":
        account(args.messages, args.mine)
        return
    result = expiry(args.messages, args.rate)
    print(
        f"expired {result['expired']:,} messages in {result['expiry_s']:.1f} s"
        f" ({result['expired'] / result['expiry_s']:,.0f}/s) while {args.rate}/s were written"
    )
    print(
        f"expiry jobs (work in the writer, commit aside): longest {result['longest_job_ms']:.1f}"
        f" ms, p99 {result['p99_job_ms']:.1f} ms; their CPU time: longest"
        f" {result['longest_job_cpu_ms']:.1f} ms, p99 {result['p99_job_cpu_ms']:.1f} ms"
    )
    print(
        f"writer batches with an expiry job: {result['batches_with_expiry']:,}, longest"
        f" {result['longest_batch_with_expiry_ms']:.1f} ms, p99"
        f" {result['p99_batch_with_expiry_ms']:.1f} ms; without: longest"
        f" {result['longest_batch_without_ms']:.1f} ms, p99 {result['p99_batch_without_ms']:.1f} ms"
    )
    print(
        f"their COMMITs (fsync, and a checkpoint now and then): median"
        f" {result['median_commit_with_ms']:.1f} ms, p99 {result['p99_commit_with_ms']:.1f} ms;"
        f" without: median {result['median_commit_without_ms']:.1f} ms, p99"
        f" {result['p99_commit_without_ms']:.1f} ms"
    )
    for which in ("during", "after"):
        print(
            f"new messages acknowledged {which} the expiry: {result[f'ack_{which}_count']:,},"
            f" p50 {result[f'ack_{which}_p50_ms']:.1f} ms, p99 {result[f'ack_{which}_p99_ms']:.1f}"
            f" ms, max {result[f'ack_{which}_max_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
