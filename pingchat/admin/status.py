"""``pingchat status``: a running server's essentials, read from its metrics.

The command scrapes the server's ``/metrics`` (``--metrics``), parses it
with ``prometheus_client``'s parser and prints a table: nothing here reads
the data dir's database, so it works beside a running server, as any
Prometheus would. Percentiles come from the server's histograms, over its
whole run, interpolated within buckets as PromQL's ``histogram_quantile``.
"""

from __future__ import annotations

import ipaddress
import math
import re
import ssl
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
from prometheus_client.parser import text_string_to_metric_families

from pingchat.config import DEFAULT_METRICS

# Written by the running server (pingchat.admin.metrics.URL_FILE).
URL_FILE = "metrics-url"
DOORS = ("native", "irc", "web", "web-irc", "manhole")


class StatusError(Exception):
    """The one line to print when there is no status to show."""


# -- where the metrics are ---------------------------------------------------------------


def choose_url(
    given: str | None, data_dir: Path, config: Mapping[str, Any], config_file: str | None
) -> tuple[str, str]:
    """The metrics URL and where it came from.

    ``--metrics-url``, else the URL the server running on the data dir wrote
    there, else the config file's first ``metrics`` listener, else the default
    listener's.
    """
    if given:
        return given, "from --metrics-url"
    written = data_dir / URL_FILE
    try:
        url = written.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        url = ""
    if url:
        return url, f"from {written}, written by the server"
    listeners = config.get("metrics")
    if listeners is not None:
        if isinstance(listeners, str):
            listeners = [listeners]
        if not isinstance(listeners, list) or not all(isinstance(v, str) for v in listeners):
            raise StatusError(f"--config: metrics in {config_file} must be endpoint strings")
        if not listeners or listeners[0].strip().lower() == "none":
            raise StatusError(
                f"the metrics are turned off in {config_file} (metrics = none); turn them on"
                " to use pingchat status, or give --metrics-url"
            )
        return endpoint_url(listeners[0]), f"from metrics in {config_file}"
    return endpoint_url(DEFAULT_METRICS), "the default listener"


def endpoint_url(description: str) -> str:
    """The URL of a ``tcp:``/``tcp6:``/``ssl:`` listener's ``/metrics``, seen from this host."""
    parts = [p.replace("\\", "") for p in re.split(r"(?<!\\):", description.strip())]
    kind, positional, named = parts[0], [], {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep:
            named[key] = value
        else:
            positional.append(part)
    port = named.get("port") or (positional[0] if positional else "")
    if kind not in ("tcp", "tcp6", "ssl") or not port.isdigit():
        raise StatusError(
            f"cannot tell the URL of the metrics listener {description!r}; give --metrics-url"
        )
    host = named.get("interface", "")
    if not host or _unspecified(host):  # listening everywhere: ask loopback
        host = "::1" if kind == "tcp6" or ":" in host else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if kind == "ssl" else "http"
    return f"{scheme}://{host}:{port}/metrics"


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


# -- scraping ------------------------------------------------------------------------------


@attrs.frozen
class Sample:
    labels: Mapping[str, str]
    value: float


@attrs.define
class Scrape:
    """The samples of one scrape, by sample name (``pingchat_logins_total``, ...)."""

    samples: dict[str, list[Sample]] = attrs.Factory(lambda: defaultdict(list))

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls()
        try:
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    scrape.samples[s.name].append(Sample(dict(s.labels), float(s.value)))
        except ValueError as e:
            raise StatusError(f"the answer is not in the Prometheus text format: {e}") from e
        return scrape

    def value(self, name: str, **labels: str) -> float | None:
        """The sum of *name*'s samples with *labels* (None: no such sample)."""
        found = [
            s.value
            for s in self.samples.get(name, ())
            if all(s.labels.get(k) == v for k, v in labels.items())
        ]
        return sum(found) if found else None

    def by(self, name: str, label: str) -> dict[str, float]:
        """*name*'s samples summed by the value of one label."""
        out: dict[str, float] = defaultdict(float)
        for s in self.samples.get(name, ()):
            out[s.labels.get(label, "")] += s.value
        return dict(out)

    def quantile(self, q: float, name: str, **labels: str) -> float | None:
        """The *q* quantile of histogram *name* (as ``histogram_quantile``); None if empty."""
        buckets: dict[float, float] = defaultdict(float)
        for s in self.samples.get(f"{name}_bucket", ()):
            if all(s.labels.get(k) == v for k, v in labels.items()):
                buckets[float(s.labels["le"])] += s.value
        return histogram_quantile(q, sorted(buckets.items()))


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """*q* from cumulative ``(upper bound, count)`` buckets, the last one ``+Inf``."""
    ordered = list(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower  # past the last finite bucket: its bound, as Prometheus says
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def scrape(url: str, source: str, timeout: float = 5.0, ca_file: Path | None = None) -> Scrape:
    """Fetch and parse the metrics at *url*, or raise :class:`StatusError` saying why not."""
    where = f"the server's metrics at {url} ({source})"
    if not url.startswith(("http://", "https://")):
        raise StatusError(f"{url} ({source}) is not an http:// or https:// URL")
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        if ca_file is not None and ca_file.exists():
            context.load_verify_locations(cafile=str(ca_file))
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})  # noqa: S310 - checked
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:  # noqa: S310
            body = answer.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        raise StatusError(
            f"{where} answered {e.code} {e.reason}: is that pingchat's --metrics listener?"
        ) from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        why = getattr(reason, "strerror", None) or str(reason)
        raise StatusError(
            f"cannot reach {where}: {why}; is the server running, with --metrics?"
            " (--metrics-url says where to look)"
        ) from e
    except (UnicodeDecodeError, ValueError) as e:
        raise StatusError(f"cannot read {where}: {e}") from e
    result = Scrape.parse(body)
    if "pingchat_info" not in result.samples:
        raise StatusError(f"{where} are not a pingchat server's (no pingchat_info)")
    return result


# -- the table -----------------------------------------------------------------------------


def _count(value: float | None) -> str:
    return "-" if value is None else f"{int(value):,}"


def _whole(value: float | None) -> str:
    """A quantile of a count: the whole number it falls within (0.5 of a 1 is 1)."""
    return "-" if value is None else f"{math.ceil(value):,}"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:,.0f} ms"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f} MiB"


def render(s: Scrape, url: str, now: float | None = None) -> str:
    """The status table of one scrape."""
    now = time.time() if now is None else now
    info = s.samples["pingchat_info"][0].labels
    started = s.value("process_start_time_seconds")
    up = f", up {_duration(now - started)}" if started else ""
    lines = [f"pingchat {info.get('version', '?')} on {info.get('server_name', '?')}{up}", url, ""]

    connections = s.by("pingchat_connections", "door")
    sessions = s.by("pingchat_sessions", "door")
    logins = s.by("pingchat_logins_total", "door")
    failed = s.by("pingchat_login_failures_total", "door")
    dropped = s.by("pingchat_backlog_drops_total", "door")
    doors = [*DOORS, *sorted((set(connections) | set(sessions)) - set(DOORS))]
    columns = ("door", "connections", "sessions", "logins", "failed", "dropped")
    rows: list[tuple[str, ...]] = [
        (
            door,
            _count(connections.get(door)),
            _count(sessions.get(door)),
            _count(logins.get(door)),
            _count(failed.get(door, 0)),
            _count(dropped.get(door)),  # the manhole drops nobody: "-"
        )
        for door in doors
    ]
    every = (connections, sessions, logins, failed, dropped)
    rows.append(("total", *(_count(sum(v.values())) for v in every)))
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    for row in [columns, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.append("")

    reasons = s.by("pingchat_login_failures_total", "reason")
    facts: list[tuple[str, str]] = []
    online, rooms = s.value("pingchat_users_online"), s.value("pingchat_rooms")
    facts.append(("online", f"{_count(online)} users in {_count(rooms)} rooms"))
    if reasons:
        facts.append(
            ("login failures", ", ".join(f"{_count(n)} {r}" for r, n in sorted(reasons.items())))
        )
    stored = s.by("pingchat_messages_stored_total", "kind")
    facts.append(
        (
            "messages",
            f"{_count(sum(stored.values()))} stored ({_count(stored.get('room'))} room,"
            f" {_count(stored.get('dm'))} DM), "
            f"{_count(s.value('pingchat_messages_delivered_total'))} delivered",
        )
    )
    batch = "pingchat_db_batch_transactions"
    facts.append(
        (
            "writer",
            f"{_count(s.value(batch + '_count'))} commits of"
            f" p50 {_whole(s.quantile(0.5, batch))} / p99 {_whole(s.quantile(0.99, batch))}"
            f" transactions; commit p50 {_ms(s.quantile(0.5, 'pingchat_db_commit_seconds'))},"
            f" p99 {_ms(s.quantile(0.99, 'pingchat_db_commit_seconds'))}",
        )
    )
    facts.append(
        (
            "reads",
            f"{_count(s.value('pingchat_db_read_seconds_count') or 0)} queries,"
            f" p50 {_ms(s.quantile(0.5, 'pingchat_db_read_seconds'))},"
            f" p99 {_ms(s.quantile(0.99, 'pingchat_db_read_seconds'))}",
        )
    )
    facts.append(
        (
            "reactor lag",
            f"worst stall per second p50 {_ms(s.quantile(0.5, 'pingchat_reactor_lag_seconds'))},"
            f" p99 {_ms(s.quantile(0.99, 'pingchat_reactor_lag_seconds'))};"
            f" {_ms(s.value('pingchat_reactor_lag_max_seconds'))} at most in the last minute",
        )
    )
    facts.append(
        (
            "bcrypt",
            f"{_count(s.value('pingchat_bcrypt_queue'))} waiting,"
            f" {_count(s.value('pingchat_bcrypt_busy_threads'))} hashing",
        )
    )
    nodes = s.by("pingchat_cluster_sessions", "node")
    if nodes:
        here = {
            x.labels.get("node")
            for x in s.samples.get("pingchat_cluster_sessions", ())
            if x.labels.get("local") == "yes"
        }
        bus = "bus up" if s.value("pingchat_bus_up") else "BUS DOWN (serving this node's sessions)"
        gaps = s.by("pingchat_bus_messages", "what")
        each = ", ".join(
            f"{n}{' (this one)' if n in here else ''} {_count(c)}" for n, c in sorted(nodes.items())
        )
        facts.append(
            (
                "cluster",
                f"{len(nodes)} nodes, {_count(sum(nodes.values()))} sessions: {each}; {bus};"
                f" {_count(gaps.get('reordered'))} messages held back for order,"
                f" {_count(gaps.get('read_from_store'))} read from the store",
            )
        )
    cpu = s.value("process_cpu_seconds_total")
    facts.append(
        (
            "process",
            f"RSS {_mib(s.value('process_resident_memory_bytes'))},"
            f" {_count(s.value('process_open_fds'))} open fds"
            f" (limit {_count(s.value('process_max_fds'))}),"
            f" CPU {'-' if cpu is None else f'{cpu:,.1f} s'}",
        )
    )
    width = max(len(k) for k, _ in facts)
    lines += [f"{k.ljust(width)}  {v}" for k, v in facts]
    lines.append("(percentiles over the server's whole run)")
    return "\n".join(lines)
