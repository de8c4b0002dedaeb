"""Soak one pingchat server with mixed load and fail if anything leaks or is lost.

    python -m bench.soak [--minutes 30] [--twistd PATH] [--pythonpath DIR] [rates...]

Starts one ``twistd -n pingchat`` itself (a temporary data dir, free loopback
ports for the native, IRC and IRC-over-TLS doors, no manhole,
``PINGCHAT_BCRYPT_ROUNDS=4`` unless ``--bcrypt-rounds``, default limits except
``--registrations-per-hour 0`` so that the soak can create its accounts; add
server options with ``--server-arg=--opt=value``). The server is the
``pingchat`` importable by the ``twistd`` given (default: the one beside this
Python); ``--pythonpath`` puts another checkout first. Then, all at once, for
``--minutes``:

* steady chatters: ``--native-chatters`` (TLS) and ``--irc-chatters`` (plain)
  in ``--rooms`` rooms, ``--say-rate`` room messages and ``--dm-rate`` DMs per
  second in total, ``--offline-share`` of the DMs to accounts that are offline
  or churning (the offline queue); every acknowledged message is recorded
  (native: the reply's ``msg_id``; IRC: the echo-message copy's ``msgid``);
* a loud native sender in the busiest room (``--loud-rate`` messages of
  ``--loud-bytes``), which is what the slow readers fall behind on;
* churn: ``--churn-rate`` cycles per second of connect, log in (password; on
  the native door then again with the session token; on IRC with the token
  half of the time), join, part, quit;
* slow readers: every ``--slow-every`` seconds a client of the next door
  (native, IRC, IRC over TLS) with a ``--slow-rcvbuf`` receive buffer joins
  the busiest room and stops reading (it still sends a ping every 30 s, so
  that only the backlog bound can drop it);
* bad input: every ``--bad-every`` seconds a round of probes from other
  loopback addresses (``bench/soak/probes.py`` lists each and what must come
  back).

Every ``--row-seconds`` (60) it prints a table row: the server's RSS, open
fds (``/proc/PID/fd``), sessions as the server counts them (online accounts,
from the IRC ``LUSERS`` reply of a monitor connection: pingchat counts there
what its chat service holds, and nothing was added to the server for the
soak) next to what the soak's own clients hold (an approximate figure under
churn), the server's CPU over the minute, messages acknowledged, lost
(checked every row against the SQLite file, opened read-only beside the
running server), unacknowledged, slow readers dropped/stuck, churn and probe
results, crash-looking replies, the largest reactor stall (the server's lag
probe) and alarming log lines.

It fails (exit status 1, one ``FAIL:`` line per reason) when

1. an acknowledged message is not in the ``messages`` table with its text, or
   is there more than once (checked after the server has stopped);
2. RSS, fds or sessions grow without bound: sampled every
   ``--sample-seconds`` (10); after a warm-up (``--warmup``, default 20 % of
   the run, at least 60 s, at most half) both the least-squares line through
   the samples rises by more than the threshold across the window, and the
   median of the last quarter of the samples exceeds that of the first
   quarter by more than it; threshold = max(10 % of the window's median
   RSS, 8 MiB), max(25 % of the median, 25) fds, max(25 %, 10) sessions
   (``GROWTH``). A climb that levels off passes; a steady climb fails both
   tests (with 65 MiB of RSS and a 24-minute window, a leak of 1/3 MiB a
   minute fails); a lone spike moves only the line;
3. after every client has left, the server still counts sessions other than
   the monitor's, or holds more than 10 fds above what it held before the
   load started;
4. a slow reader is not dropped: what the server must hold for it (what the
   busy room carried since it stopped reading, as a member on the same
   protocol received it, less what the two kernels hold for its connection,
   from ``/proc/net/tcp``) stays above 1.5 x ``--max-backlog`` + 512 KiB for
   15 s;
5. any reply looks like a crash (``internal_error``, ``INTERNAL_ERROR``) or a
   native line is not JSON;
6. a bad-input probe did not get the answer its rule says;
7. the server's log has ``Unhandled Error``, a traceback or a critical line
   (the first is printed);
8. a well-behaved chatter was disconnected, more than 1 % of the messages
   sent were not acknowledged, or more than 1 % of churn cycles failed;
9. the server exits before the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.loadgen import own_cpu, server_cpu, server_rss
from bench.servers import Pingchat, wait_listening
from bench.soak.clients import Door, SoakClient, Tally, connect, login
from bench.soak.load import PASSWORD, Load, Settings, accounts
from bench.soak.probes import Probes
from bench.soak.report import (
    GROWTH,
    Growth,
    LogWatch,
    Sample,
    check_store,
    growth,
    header,
    row,
)

MiB = 1024 * 1024
LUSERS = re.compile(rb" 251 \S+ :There are (\d+) users")


def fds_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def which_pingchat(server: Pingchat) -> str:
    """Where the server's ``pingchat`` comes from, and its git commit."""
    first = Path(server.twistd).read_text(errors="replace").splitlines()[0]
    python = first[2:].strip() if first.startswith("#!") else sys.executable
    env = {**os.environ, **server.env}
    try:
        where = subprocess.run(
            [python, "-c", "import pingchat, os; print(os.path.dirname(pingchat.__file__))"],
            capture_output=True, text=True, env=env, timeout=60, check=True,
            cwd=server.dir,  # as the server runs: not this checkout's directory
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"? ({e})"
    root = str(Path(where).parent)
    git = subprocess.run(["git", "-C", root, "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False).stdout.strip()
    return f"{root} ({git or 'not a git checkout'})"


class Monitor:
    """An IRC connection that asks the server how many accounts are online."""

    def __init__(self, client: SoakClient) -> None:
        self.client = client

    async def sessions(self) -> int | None:
        if self.client.closed.done():
            return None
        answer = self.client.wait_line(lambda line: LUSERS.search(line) is not None)
        self.client.write(b"LUSERS\r\n")
        try:
            line = await asyncio.wait_for(answer, 30)
        except (TimeoutError, ConnectionError):
            return None
        match = LUSERS.search(line)
        return int(match.group(1)) if match else None


class LagWatch:
    """The largest reactor stall the server's lag probe saw since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def take(self) -> float | None:
        if not self.path.exists():
            return None
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        stalls = [json.loads(line)["max_stall_ms"] for line in data[:cut].splitlines() if line]
        return max(stalls) if stalls else None


async def register(doors: dict[str, Door], tally: Tally, names: list[str]) -> None:
    queue = list(reversed(names))

    async def worker() -> None:
        c = await connect(doors["native"], tally)
        try:
            while queue:
                name = queue.pop()
                await c.request("register", user=name, password=PASSWORD)
        finally:
            c.close()

    await asyncio.gather(*(worker() for _ in range(8)))


class Soak:
    def __init__(self, server: Pingchat, settings: Settings, args: argparse.Namespace) -> None:
        assert server.proc is not None and server.ircs_port is not None
        self.server = server
        self.pid = server.proc.pid
        self.settings = settings
        self.args = args
        self.duration = args.minutes * 60
        self.tally = Tally()
        self.doors = {
            "native": Door("native", server.chat_port or 0, True),
            "irc": Door("irc", server.port, False),
            "ircs": Door("ircs", server.ircs_port, True),
        }
        self.load = Load(settings, self.doors, self.tally)
        self.probes = Probes(self.doors, self.tally, settings.paste_lines, settings.flood_lines)
        self.samples: list[Sample] = []
        self.log = LogWatch(server.dir / "server.log")
        self.lag = LagWatch(server.lag_file)
        self.db = server.data_dir / "pingchat.sqlite3"
        self.checked = 0  # acked messages checked against the store so far
        self.lost_live = 0
        self.failures: list[str] = []
        self.notes: list[str] = []

    def alive(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    async def run(self) -> int:
        s = self.settings
        names = accounts(s)
        t0 = time.monotonic()
        await register(self.doors, self.tally, names)
        print(f"registered {len(names)} accounts in {time.monotonic() - t0:.1f}s", flush=True)
        monitor_client = await connect(self.doors["irc"], self.tally)
        await login(monitor_client, "soakmon", PASSWORD)
        monitor = Monitor(monitor_client)
        await asyncio.sleep(1)
        base_fds = fds_of(self.pid)
        t0 = time.monotonic()
        await self.load.start_chatters()
        print(f"{len(self.load.chatters)} chatters in "
              f"{time.monotonic() - t0:.1f}s; load starts", flush=True)
        self.load.spawn(self.load.run_chatters())
        self.load.spawn(self.load.run_loud())
        self.load.spawn(self.load.run_churn())
        self.load.spawn(self.load.run_slow_readers())
        self.load.spawn(self.run_probes())
        print(header(), flush=True)
        start = time.monotonic()
        cpu_mark, t_mark = server_cpu(self.pid), 0.0
        next_row = self.args.row_seconds
        while (t := time.monotonic() - start) < self.duration:
            await asyncio.sleep(min(self.args.sample_seconds, self.duration - t))
            if not self.alive():
                self.failures.append(f"the server exited ({self.server.proc.returncode}) "
                                     f"after {t:.0f}s")  # type: ignore[union-attr]
                break
            t = time.monotonic() - start
            self.samples.append(Sample(t, server_rss(self.pid), fds_of(self.pid),
                                       await monitor.sessions(), self.tally.online_accounts(),
                                       server_cpu(self.pid)))
            if t >= next_row - 1 or t >= self.duration - 1:
                cpu = self.samples[-1].cpu
                await self.print_row(t, (cpu - cpu_mark) / max(1e-9, t - t_mark))
                cpu_mark, t_mark = cpu, t
                next_row += self.args.row_seconds
        await self.load.close_all()
        if self.alive():
            await self.drain(monitor, base_fds)
        monitor_client.close()
        return self.verdict()

    async def run_probes(self) -> None:
        while await self.load.pace(1.0 / self.settings.bad_every, jitter=False):
            await self.probes.round()

    async def print_row(self, t: float, cpu: float) -> None:
        new = self.tally.acked[self.checked:]
        self.checked += len(new)
        result = await asyncio.to_thread(check_store, self.db, new, False)
        self.lost_live += result.lost
        self.log.read()
        last = self.samples[-1]
        slow = self.load.slow
        ok, failed = self.probes.totals()
        stall = self.lag.take()
        print(row([
            f"{int(t) // 60}:{int(t) % 60:02d}", f"{last.rss / MiB:.1f}", str(last.fds),
            f"{'?' if last.sessions is None else last.sessions}/{last.expected}",
            f"{100 * cpu:.0f}", str(len(self.tally.acked)), str(self.lost_live),
            str(self.tally.unacked),
            f"{sum(r.state == 'dropped' for r in slow)}/"
            f"{sum(r.state == 'stuck' or r.late for r in slow)}",
            f"{self.load.churn.ok}/{self.load.churn.failed}", f"{ok}/{failed}",
            str(len(self.tally.crashes)), "-" if stall is None else f"{stall:.0f}",
            str(len(self.log.alarms)),
        ]), flush=True)

    async def drain(self, monitor: Monitor, base_fds: int) -> None:
        """Once every client has left, the server must hold no more than before."""
        deadline = time.monotonic() + 30
        sessions: int | None = None
        fds = fds_of(self.pid)
        while time.monotonic() < deadline:
            sessions, fds = await monitor.sessions(), fds_of(self.pid)
            if sessions == 1 and fds <= base_fds + 10:
                break
            await asyncio.sleep(1)
        self.notes.append(f"after every client left: {sessions} session(s) (the monitor's: 1), "
                          f"{fds} fds (before the load: {base_fds})")
        if sessions != 1:
            self.failures.append(f"sessions left behind: the server counts {sessions} online "
                                 "accounts after every client but the monitor left")
        if fds > base_fds + 10:
            self.failures.append(f"fds left behind: {fds} open after every client left, "
                                 f"{base_fds} before the load")

    def growth_checks(self) -> list[Growth]:
        warmup = self.args.warmup
        if warmup is None:
            warmup = min(max(60.0, 0.2 * self.duration), 0.5 * self.duration)
        rss = [(x.t, x.rss / MiB) for x in self.samples]
        fds = [(x.t, float(x.fds)) for x in self.samples]
        sessions = [(x.t, float(x.sessions)) for x in self.samples if x.sessions is not None]
        return [
            growth("RSS", rss, warmup, *GROWTH["RSS"], " MiB"),
            growth("fds", fds, warmup, *GROWTH["fds"]),
            growth("sessions", sessions, warmup, *GROWTH["sessions"]),
        ]

    def slow_summary(self) -> list[str]:
        lines = []
        for door in ("native", "irc", "ircs"):
            readers = [r for r in self.load.slow if r.door == door]
            dropped = [r for r in readers if r.state == "dropped"]
            stuck = [r for r in readers if r.state == "stuck" or r.late]
            text = f"slow readers, {door}: {len(readers)} started, {len(dropped)} dropped"
            if dropped:
                secs = statistics.median(r.seconds or 0 for r in dropped)
                held = statistics.median(r.held for r in dropped) / MiB
                text += f" (median {secs:.0f}s, holding about {held:.2f} MiB)"
            text += f", {len(stuck)} stuck"
            if any(r.late for r in stuck):
                text += f" ({sum(r.late for r in stuck)} of them dropped late)"
            pending = [r for r in readers if r.state == "pending"]
            if pending:
                held = max(r.held for r in pending) / MiB
                kernel = max(r.kernel for r in pending) / MiB
                text += (f", {len(pending)} not yet due at the end (the server held up to "
                         f"about {held:.2f} MiB, the kernels {kernel:.2f} MiB)")
            lines.append(text)
            if stuck:
                held = max(r.held for r in stuck) / MiB
                self.failures.append(
                    f"slow readers not dropped on the {door} door: {len(stuck)} (the server "
                    f"held about {held:.2f} MiB for one, --max-backlog is "
                    f"{self.settings.max_backlog / MiB:.2f} MiB)")
        return lines

    def verdict(self) -> int:
        t = self.tally
        print()
        for line in self.slow_summary():
            print(line)
        print(f"churn: {self.load.churn.ok} cycles ok, {self.load.churn.failed} failed")
        for line in self.load.churn.describe():
            print(f"  {line}")
        if self.load.slow_errors.failed:
            print(f"slow readers that could not start: {self.load.slow_errors.failed} "
                  f"(first: {self.load.slow_errors.first_error})")
        print(f"messages: {t.sent} sent by chatters, {len(t.acked)} acknowledged in all "
              f"(with the loud sender's, churn's and pastes), {t.unacked} not "
              f"({dict(t.refusals)}); {t.delivered} deliveries seen, "
              f"{t.offline_delivered} of them offline")
        ok, failed = self.probes.totals()
        print(f"bad input: {self.probes.rounds} rounds, {ok} probes answered as required, "
              f"{failed} not")
        for line in self.probes.failures():
            print(f"  {line}")
            self.failures.append(f"bad input: {line}")
        if t.crashes:
            self.failures.append(f"{len(t.crashes)} crash-looking replies, first: {t.crashes[0]}")
        if t.malformed:
            self.failures.append(f"{len(t.malformed)} server lines that are not JSON, first: "
                                 f"{t.malformed[0]}")
        if self.load.dropped_chatters:
            self.failures.append(f"{len(self.load.dropped_chatters)} well-behaved chatters "
                                 f"disconnected, first: {self.load.dropped_chatters[0]}")
        if t.sent and t.unacked > 0.01 * t.sent:
            self.failures.append(f"{t.unacked} of {t.sent} messages not acknowledged "
                                 f"({dict(t.refusals)})")
        cycles = self.load.churn.ok + self.load.churn.failed
        if cycles and self.load.churn.failed > 0.01 * cycles:
            self.failures.append(f"{self.load.churn.failed} of {cycles} churn cycles failed: "
                                 + "; ".join(self.load.churn.describe()))
        for g in self.growth_checks():
            print(f"growth of {g.name}: {g.detail}")
            if g.grows:
                self.failures.append(f"{g.name} grows without bound: {g.detail}")
        for note in self.notes:
            print(note)
        if self.samples:
            last = self.samples[-1]
            print(f"CPU over the run: server {last.cpu:.0f}s, the soak itself {own_cpu():.0f}s, "
                  f"in {last.t:.0f}s")
        return 0

    def final(self) -> int:
        """After the server stopped: the whole store check and the whole log."""
        result = check_store(self.db, self.tally.acked, True)
        print(f"store: {result.checked} acknowledged messages checked, lost: "
              f"{result.describe()}")
        if result.lost:
            self.failures.append(f"acknowledged messages lost: {result.describe()}")
        self.log.read()
        print(f"server log: {self.log.dropped} 'not reading' disconnections, "
              f"{len(self.log.alarms)} alarming lines")
        if self.log.alarms:
            self.failures.append(f"{len(self.log.alarms)} alarming lines in the server's log, "
                                 f"first:\n{self.log.alarms[0]}")
        print()
        for failure in self.failures:
            print(f"FAIL: {failure}")
        print("soak FAILED" if self.failures else "soak passed")
        return 1 if self.failures else 0


def options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="See docs/soak.md.")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--twistd", help="the twistd to run [the one beside this Python]")
    parser.add_argument("--pythonpath", help="put this checkout first on the server's path")
    parser.add_argument("--bcrypt-rounds", type=int, default=4)
    parser.add_argument("--server-arg", action="append", default=[],
                        help="an extra server option, e.g. --server-arg=--rate=30 (repeatable)")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--row-seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds not judged for growth [20%% of the run, 60-50%%]")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data dir and log")
    for f in dataclasses.fields(Settings):
        default = getattr(Settings(), f.name)
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(default),
                            default=default, help=f"[{default}]")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = options().parse_args(argv)
    random.seed(args.seed)
    settings = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
    server = Pingchat(
        None, args.bcrypt_rounds, twistd=args.twistd, pythonpath=args.pythonpath, ircs=True,
        options=["--registrations-per-hour", "0", "--max-backlog", str(settings.max_backlog),
                 *args.server_arg],
    )
    print(f"soak: {args.minutes:g} minutes against pingchat from {which_pingchat(server)}",
          flush=True)
    print(f"mix: {settings}", flush=True)
    soak: Soak | None = None
    try:
        server.start()
        assert server.proc is not None and server.ircs_port is not None
        wait_listening(server.ircs_port, server.proc)
        print(f"server pid {server.proc.pid}, data dir {server.data_dir}", flush=True)
        soak = Soak(server, settings, args)
        status = asyncio.run(soak.run())
        server.stop()
        return max(status, soak.final())
    except Exception:
        print(server.log_tail(30), file=sys.stderr)
        raise
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        if args.keep:
            print(f"kept {server.dir}")
        else:
            server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
