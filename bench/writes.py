"""Sustained durable writes: how many messages the store commits and acknowledges per second.

    python -m bench.writes [--messages 200000] [--per-turn 200] [--repeats 3]
                           [--store postgresql://USER@HOST:PORT/DB]

The issue's target ("sustained durable writes >= 20,000 messages/s, batched
commits, a message acknowledged only once stored") is about the store, so this
measures the store alone, in one process pinned to the server's core: the real
``Database`` with its writer thread and ``synchronous=FULL`` WAL, fed by the
reactor thread as a door would feed it (``--per-turn`` ``add_room_message``
calls per reactor turn, each acknowledged by its Deferred after the commit).
No network and no protocol: the end-to-end figure for stored messages is the
dm case of ``bench.run``, where the reactor's per-request work is the limit.

With ``--store`` the same runs go to a PostgreSQL database instead (a new
schema each run, dropped after it): the same writer, its group commit and
the same SQL, over a connection (``bash .ci/postgresql start DIR`` starts a
throwaway server, docs/performance.md has both figures side by side). CPU
per message then counts pingchat's process only, not PostgreSQL's.

Prints messages/s, commits, messages per commit and CPU per message (both
threads), and writes nothing to ``bench/results``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import SERVER_CORE
from bench.servers import pin

TEXT = "a chat line of an ordinary length, about sixty bytes long ....."


def measure(messages: int, per_turn: int, url: str | None = None) -> dict[str, float]:
    from twisted.internet import defer, reactor

    from pingchat.store import open_store

    where = Path(tempfile.mkdtemp(prefix="pingchat-writes-"))
    schema = None
    if url is not None:
        url, schema = _new_schema(url)
    store = open_store(url, where / "db.sqlite3", reactor)
    db = store.db
    result: dict[str, float] = {}

    @defer.inlineCallbacks
    def main() -> Any:
        account = yield store.create_account("alice", b"h", 0)
        room = yield store.create_room("#writes", 0)
        done: defer.Deferred[None] = defer.Deferred()
        sent = acked = 0

        def ack(_: object) -> None:
            nonlocal acked
            acked += 1
            if acked == messages:
                done.callback(None)

        def turn() -> None:
            nonlocal sent
            for _ in range(min(per_turn, messages - sent)):
                store.add_room_message(
                    room.id, room.name, "alice", account.id, TEXT, int(time.time() * 1000)
                ).addCallback(ack)
                sent += 1
            if sent < messages:
                reactor.callLater(0, turn)  # type: ignore[attr-defined]

        commits = db.commits
        cpu, wall = time.process_time(), time.perf_counter()
        turn()
        yield done
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        result.update(
            messages_per_s=messages / wall,
            commits=db.commits - commits,
            per_commit=messages / max(1, db.commits - commits),
            cpu_us_per_message=cpu * 1e6 / messages,
        )

    def run() -> None:
        d = main()
        d.addErrback(lambda f: f.printTraceback())
        d.addBoth(lambda _: db.stop())
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(run)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    shutil.rmtree(where, ignore_errors=True)
    if schema is not None:
        _drop_schema(*schema)
    return result


def _new_schema(url: str) -> tuple[str, tuple[str, str]]:
    """A URL whose connections use a new schema, and what _drop_schema needs."""
    import uuid

    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return make_conninfo(url, options=f"-c search_path={name}"), (url, name)


def _drop_schema(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--per-turn", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--store", default=None, metavar="URL", help="a PostgreSQL database (default: SQLite)"
    )
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeats):
        # A fresh process per run: Twisted's reactor does not restart.
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            pin(SERVER_CORE)
            out = measure(args.messages, args.per_turn, args.store)
            os.write(write, json.dumps(out).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as f:
            text = f.read()
        os.waitpid(pid, 0)
        run = json.loads(text)
        runs.append(run)
        print(
            f"{run['messages_per_s']:10,.0f} messages/s  {run['commits']:6.0f} commits"
            f" ({run['per_commit']:.0f} per commit)  {run['cpu_us_per_message']:.1f} us CPU"
            " per message"
        )
    print(f"median: {statistics.median(r['messages_per_s'] for r in runs):,.0f} messages/s")


if __name__ == "__main__":
    main()
