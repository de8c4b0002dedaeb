"""Profile the server with py-spy while the load generator drives one scenario.

    python -m bench.profile [--target pingchat-native] [--case fanout-200] [--seconds 10]

Starts the server (core 0) and the generator (core 1) as ``bench.run`` does,
waits until the generator has set up and is measuring, samples the server
with ``py-spy record`` and prints the functions with the most samples: by
their own time (self) and including what they call (total). The raw
collapsed stacks are kept in ``bench/results/profile-<target>-<case>.txt``.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.run import GENERATOR_CORE, RESULTS, ROOT, raise_fd_limit, sizes, start_server
from bench.servers import VENV_BIN, pin


def summarise(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    out = [f"{samples} samples"]
    for title, counter in (("self", own), ("total", total)):
        out.append(f"\n-- top {top} by {title} time --")
        for frame, n in counter.most_common(top):
            out.append(f"{100 * n / samples:5.1f}%  {frame}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="pingchat-native")
    parser.add_argument("--case", default="fanout-200")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true",
                        help="also sample C frames (OpenSSL, SQLite, the interpreter)")
    args = parser.parse_args()
    raise_fd_limit()
    pin(GENERATOR_CORE)
    _label, scenario, params = next(c for c in sizes(False) if c[0] == args.case)
    params = {**params, "repeats": 1000}  # keep the load on; the generator is killed
    server = start_server(args.target, scenario, params, 4)
    out = RESULTS / f"profile-{args.target}-{args.case}.txt"
    RESULTS.mkdir(exist_ok=True)
    generator = None
    try:
        kind = args.target.split("-")[1]
        spec = {"target": server.target(kind), "scenario": scenario, "params": params}
        generator = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
            cwd=ROOT, stdout=subprocess.DEVNULL, preexec_fn=lambda: pin(GENERATOR_CORE),
        )
        # Setup (registration, logins, joins) first; then the measured loop.
        time.sleep(max(5.0, params.get("clients", 100) / 25))
        assert server.proc is not None
        subprocess.run(
            [str(VENV_BIN / "py-spy"), "record", "--pid", str(server.proc.pid),
             "--duration", str(int(args.seconds)), "--rate", str(args.rate),
             "--format", "raw", "--output", str(out),
             # py-spy cannot unwind C stacks without pausing the process
             *(["--native"] if args.native else ["--nonblocking"])],
            check=True, capture_output=True,
        )
        print(summarise(out, args.top))
    finally:
        if generator is not None:
            generator.kill()
            generator.wait()
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
