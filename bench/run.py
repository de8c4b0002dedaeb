"""Run the benchmark: pingchat against ``twistd words``, in the same run.

    python -m bench.run [--quick] [--only fanout,dm] [--targets pingchat-native,words-irc]

For every scenario and every target a fresh server is started on core 0 and
the load generator (``bench/loadgen.py``) runs on core 1. Each scenario's
measured phase is repeated; the table shows medians. Results go to
``bench/results/<name>.json`` and ``<name>.png`` (``latest`` for a full run,
``quick`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.servers import PINGCHAT_LIMITS, Pingchat, Server, Words, pin

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE, GENERATOR_CORE = 0, 1
TARGETS = ("pingchat-native", "pingchat-irc", "words-irc")


def sizes(quick: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, scenario, parameters) of every case; --quick shrinks them."""
    deliveries = 100_000 if quick else 400_000
    repeats = 3 if quick else 5
    cases = []
    for clients in (50, 200, 1000):
        senders = 4
        cases.append((f"fanout-{clients}", "fanout", {
            "clients": clients, "senders": senders, "window": 16, "observers": 8,
            "messages": max(10, deliveries // (senders * (clients - 1))),
            "repeats": repeats,
        }))
    cases += [
        ("paced-200", "paced", {
            "clients": 200, "senders": 4, "rate": 100, "observers": 8,
            "duration": 3 if quick else 10, "repeats": 2 if quick else 3,
        }),
        ("dm-200", "dm", {
            "clients": 200, "messages": 25 if quick else 100, "window": 8,
            "repeats": repeats,
        }),
        ("connect", "connect", {
            "connections": 1000 if quick else 10_000, "concurrency": 100,
            "register_concurrency": 32,
        }),
        ("storm", "storm", {
            "logins": 100 if quick else 500, "resumes": 1000 if quick else 5000,
            "concurrency": 100,
        }),
        ("history", "history", {
            "messages": 200_000 if quick else 1_000_000, "room": "#history",
            "requests": 300 if quick else 1000, "limit": 100,
            "repeats": repeats,
        }),
    ]
    return cases


def machine() -> dict[str, Any]:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    import twisted

    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "kernel": platform.release(),
        "generator_loop": loop,
    }


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run_generator(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
        preexec_fn=lambda: pin(GENERATOR_CORE),  # noqa: PLW1509
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def start_server(target: str, scenario: str, p: dict[str, Any], rounds: int) -> Server:
    server: Server
    if target.startswith("pingchat"):
        server = Pingchat(SERVER_CORE, rounds, p["messages"] if scenario == "history" else 0)
    else:
        accounts = max(p.get("clients", 0), p.get("connections", 0),
                       p.get("logins", 0) + p.get("resumes", 0), 1)
        server = Words(SERVER_CORE, rounds, accounts)
    server.start()
    return server


def run_case(
    label: str, scenario: str, p: dict[str, Any], target: str, rounds: int
) -> dict[str, Any]:
    kind = target.split("-")[1]
    if scenario == "history" and target != "pingchat-native":
        return {"skipped": "twistd words keeps no history; IRC history is not measured"}
    server = start_server(target, scenario, p, rounds)
    try:
        if target == "pingchat-irc" and not server.irc_available:
            return {"skipped": "pingchat's IRC gateway is not available in this build"}
        spec = {"target": server.target(kind), "scenario": scenario, "params": p}
        return run_generator(spec, timeout=1800)
    except Exception as e:  # one broken case must not lose the others
        return {"error": f"{type(e).__name__}: {e}"[-2000:], "server_log": server.log_tail()}
    finally:
        server.cleanup()


# -- summarising ----------------------------------------------------------------------

# (scenario, metric, label, higher is better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("fanout", "deliveries_per_s", "deliveries/s", True),
    ("fanout", "server_us_per_delivery", "server CPU µs/delivery", False),
    ("fanout", "p50_ms", "latency p50 ms", False),
    ("fanout", "p99_ms", "latency p99 ms", False),
    ("fanout", "lost", "lost messages", False),
    ("fanout", "generator_busy", "generator busy", False),
    ("paced", "deliveries_per_s", "deliveries/s (offered 80,000)", True),
    ("paced", "p50_ms", "latency p50 ms", False),
    ("paced", "p99_ms", "latency p99 ms", False),
    ("paced", "lost", "lost messages", False),
    ("dm", "messages_per_s", "messages/s", True),
    ("dm", "server_us_per_delivery", "server CPU µs/message", False),
    ("dm", "p99_ms", "latency p99 ms", False),
    ("dm", "lost", "lost messages", False),
    ("connect", "held", "connections held", True),
    ("connect", "registrations_per_s", "registrations/s", True),
    ("connect", "logins_per_s", "connect+login/s", True),
    ("connect", "rss_per_connection_kib", "RSS KiB/connection", False),
    ("storm", "completion_rate", "completed", True),
    ("storm", "logins_per_s", "password logins/s", True),
    ("storm", "resumes_per_s", "token resumes/s", True),
    ("storm", "max_stall_ms", "largest reactor stall ms", False),
    ("history", "p50_ms", "latency p50 ms", False),
    ("history", "p99_ms", "latency p99 ms", False),
]


def median(runs: list[dict[str, Any]], metric: str) -> float | None:
    values = [r[metric] for r in runs if isinstance(r.get(metric), (int, float))]
    return statistics.median(values) if values else None


def summarise(cases: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{case label: {metric: {target: median, ...}}} plus lower-bound flags."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for label, case in cases.items():
        rows: dict[str, dict[str, Any]] = {}
        for scenario, metric, _name, _ in METRICS:
            if scenario != case["scenario"]:
                continue
            row = {}
            for target, result in case["results"].items():
                runs = result.get("runs") or []
                value = median(runs, metric)
                if value is not None:
                    row[target] = value
                    if any(r.get("lower_bound") for r in runs):
                        row[target + ":lower_bound"] = True
            rows[metric] = row
        summary[label] = rows
    return summary


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(summary: dict[str, dict[str, dict[str, Any]]], targets: list[str]) -> str:
    """A Markdown table: one row per case and metric, one column per target."""
    ratios = [t for t in ("pingchat-native", "pingchat-irc") if t in targets]
    head = ["case", "metric", *targets, *(f"{t.split('-')[1]} / words" for t in ratios)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = {(s, m): (n, up) for s, m, n, up in METRICS}
    for label, rows in summary.items():
        scenario = label.split("-")[0]
        for metric, row in rows.items():
            name, _up = names[(scenario, metric)]
            cells = []
            for t in targets:
                text = fmt(row.get(t))
                if row.get(t + ":lower_bound") and text != "-":
                    text += " (lower bound)"
                cells.append(text)
            base = row.get("words-irc")
            for t in ratios:
                ours = row.get(t)
                ok = base and ours is not None and metric not in ("lost", "generator_busy")
                cells.append(f"{ours / base:.2f}x" if ok else "-")
            lines.append("| " + " | ".join([label, name, *cells]) + " |")
    return "\n".join(lines)


def chart(summary: dict[str, dict[str, dict[str, Any]]], targets: list[str], path: Path,
          title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("fan-out: server CPU µs per delivery (lower is better)",
         [(f"{n} clients", f"fanout-{n}", "server_us_per_delivery") for n in (50, 200, 1000)]),
        ("fan-out: deliveries per second (higher is better)",
         [(f"{n} clients", f"fanout-{n}", "deliveries_per_s") for n in (50, 200, 1000)]),
        ("latency ms (lower is better)",
         [("fan-out 200 p99", "fanout-200", "p99_ms"), ("paced p50", "paced-200", "p50_ms"),
          ("paced p99", "paced-200", "p99_ms"), ("history p99", "history", "p99_ms")]),
        ("dm messages/s, logins/s (higher is better)",
         [("dm msgs/s", "dm-200", "messages_per_s"),
          ("password logins/s", "storm", "logins_per_s"),
          ("token resumes/s", "storm", "resumes_per_s")]),
        ("idle connection: RSS KiB (lower is better)",
         [("per connection", "connect", "rss_per_connection_kib")]),
        ("login storm: largest reactor stall ms (lower is better)",
         [("storm", "storm", "max_stall_ms")]),
    ]
    colours = {"pingchat-native": "#2b7bba", "pingchat-irc": "#7fb8e6", "words-irc": "#d9822b"}
    fig, axes = plt.subplots(3, 2, figsize=(13, 12))
    for ax, (panel_title, bars) in zip(axes.flat, panels, strict=True):
        width = 0.8 / len(targets)
        plotted = False
        for i, t in enumerate(targets):
            xs, ys = [], []
            for j, (_label, case, metric) in enumerate(bars):
                value = summary.get(case, {}).get(metric, {}).get(t)
                if value is not None:
                    xs.append(j + (i - (len(targets) - 1) / 2) * width)
                    ys.append(value)
            rects = ax.bar(xs, ys, width, label=t, color=colours.get(t))
            ax.bar_label(rects, labels=[fmt(y) for y in ys], fontsize=7)
            plotted = plotted or any(y > 0 for y in ys)
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        if "ms" in panel_title and plotted:  # a partial run may leave a panel empty
            ax.set_yscale("log")
        ax.set_title(panel_title, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a couple of minutes")
    parser.add_argument("--only", default="", help="comma-separated case labels or scenarios")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--bcrypt-rounds", type=int, default=4,
                        help="bcrypt cost for accounts the benchmark creates [4]")
    parser.add_argument("--name", default=None, help="results file name [latest | quick]")
    parser.add_argument("--replot", action="store_true",
                        help="only rebuild the table and chart from <name>.json")
    args = parser.parse_args(argv)
    name = args.name or ("quick" if args.quick else "latest")
    if args.replot:
        report = json.loads((RESULTS / f"{name}.json").read_text())
        shown = [t for t in TARGETS if any(
            c["results"].get(t, {}).get("runs") for c in report["cases"].values())]
        report["summary"] = summarise(report["cases"])
        report["table"] = table(report["summary"], shown)
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1))
        info = report["machine"]
        chart(report["summary"], shown, RESULTS / f"{name}.png",
              f"pingchat vs twistd words — {info['cpu']}, {info['nproc']} cores, "
              f"Python {info['python']} ({'quick' if report['quick'] else 'full'} run)")
        print(report["table"])
        return 0
    if (os.cpu_count() or 1) < 2:
        print("warning: one core only; server and generator will share it", file=sys.stderr)
    pin(GENERATOR_CORE % (os.cpu_count() or 1))
    fd_limit = raise_fd_limit()
    targets = [t for t in args.targets.split(",") if t]
    only = {o for o in args.only.split(",") if o}
    started = time.time()
    cases: dict[str, dict[str, Any]] = {}
    for label, scenario, params in sizes(args.quick):
        if only and label not in only and scenario not in only:
            continue
        case: dict[str, Any] = {"scenario": scenario, "params": params, "results": {}}
        for target in targets:
            t0 = time.time()
            result = run_case(label, scenario, params, target, args.bcrypt_rounds)
            case["results"][target] = result
            status = result.get("error") or result.get("skipped") or "ok"
            print(f"{label:14} {target:16} {time.time() - t0:6.1f}s  {status[:200]}",
                  file=sys.stderr, flush=True)
        cases[label] = case
    shown = [t for t in targets if any(
        c["results"].get(t, {}).get("runs") for c in cases.values())]
    summary = summarise(cases)
    text = table(summary, shown)
    print(text)
    info = machine()
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "duration_s": round(time.time() - started),
        "quick": args.quick,
        "machine": info,
        "settings": {
            "server_core": SERVER_CORE,
            "generator_core": GENERATOR_CORE,
            "pingchat_flags": PINGCHAT_LIMITS,
            "bcrypt_rounds": args.bcrypt_rounds,
            "fd_limit": fd_limit,
        },
        "summary": summary,
        "table": text,
        "cases": cases,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1))
    chart(summary, shown, RESULTS / f"{name}.png",
          f"pingchat vs twistd words — {info['cpu']}, {info['nproc']} cores, "
          f"Python {info['python']} ({'quick' if args.quick else 'full'} run)")
    print(f"\nwrote {RESULTS / name}.json and .png in {time.time() - started:.0f}s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
