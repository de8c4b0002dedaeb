"""Prometheus metrics at ``/metrics`` (``--metrics``), through ``prometheus_client``.

Two kinds of figure, chosen so that measuring costs nothing a fan-out would
notice (docs/performance.md has the before/after benchmark):

* **Read when scraped.** Connections and sessions per door, logins, messages
  stored and delivered, clients dropped, the bcrypt pool's queue: the server
  keeps these as plain numbers and sets anyway (the service's counters, the
  doors' connection sets, the portal's counts), and :class:`ServerCollector`
  reads them only when Prometheus asks. Nothing is updated per delivery.
* **Observed as it goes**, into histograms: once per committed database
  batch, once per read query, once a second for the reactor's lag.

Every server has a registry of its own (tests build several in one process),
with the process collector (RSS, open fds, CPU) and the platform collector.
The page is rendered on the reactor thread, the thread that owns what the
collectors read; ``prometheus_client.twisted.MetricsResource`` would render it
in a thread of the global reactor's pool, racing the reactor over the live
sets it walks.
"""

from __future__ import annotations

import gzip
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from twisted.application.service import Service
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from pingchat import __version__
from pingchat.server import Server
from pingchat.startup import Opened, on_all_interfaces

log = Logger()

# Every door, so that each has its series from the start (zero until used).
DOORS = ("native", "irc", "web", "web-irc", "manhole")
# The running server writes the URL of its first metrics listener here, for
# ``pingchat status`` (removed when it stops).
URL_FILE = "metrics-url"
# The reactor lag gauge is the largest stall of the last this many seconds.
LAG_WINDOW = 60

SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_SECONDS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics(Service):
    """One server's registry, the histograms it fills, and the URL file it keeps.

    It is the database's :class:`~pingchat.store.database.Timings` (called on
    the writer and reader threads; ``prometheus_client`` histograms lock) and
    the lag probe's report (:meth:`lag_report`, on the reactor thread).
    """

    name = "metrics"

    def __init__(self, server: Server) -> None:
        self.server = server
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        histogram = partial(Histogram, registry=self.registry)
        self.batch_size = histogram(
            "pingchat_db_batch_transactions",
            "Store transactions committed together in one batch by the writer.",
            buckets=BATCH_SIZES,
        )
        self.batch_seconds = histogram(
            "pingchat_db_batch_seconds",
            "Time the writer held one batch's transaction, BEGIN to COMMIT.",
            buckets=SECONDS,
        )
        self.commit_seconds = histogram(
            "pingchat_db_commit_seconds",
            "Time of one batch's COMMIT (with synchronous=FULL, its fsync).",
            buckets=SECONDS,
        )
        self.read_seconds = histogram(
            "pingchat_db_read_seconds",
            "Time of one read transaction on the reader thread, by store method.",
            ["query"],
            buckets=SECONDS,
        )
        self.lag_seconds = histogram(
            "pingchat_reactor_lag_seconds",
            "The reactor's largest stall in each second (how late a timed call ran).",
            buckets=LAG_SECONDS,
        )
        self.recent_lag: deque[float] = deque(maxlen=LAG_WINDOW)
        self.url_file: Path | None = None
        self.registry.register(ServerCollector(server, self))

    # -- what the database and the lag probe tell ----------------------------------------

    def batch(self, size: int, seconds: float, commit_seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.commit_seconds.observe(commit_seconds)

    def read(self, name: str, seconds: float) -> None:
        self.read_seconds.labels(name).observe(seconds)

    def lag_report(self, now: float, max_stall_ms: float, ticks: int) -> None:
        """A :data:`~pingchat.chat.lagprobe.Report`: one period's largest stall."""
        stall = max_stall_ms / 1000
        self.lag_seconds.observe(stall)
        self.recent_lag.append(stall)

    # -- the listeners -------------------------------------------------------------------

    def listening(self, opened: list[Opened]) -> None:
        """The metrics listeners are open: say where, and warn of any open to all."""
        if not opened:
            return
        for o in opened:
            if on_all_interfaces(o.port):
                log.warn(
                    "the metrics listen on all interfaces ({description}): anyone who can"
                    " reach them sees the server's counts and timings (no secrets)",
                    description=o.listener.description,
                )
        url = metrics_url(opened[0])
        path = self.server.settings.data_dir / URL_FILE
        try:
            path.write_text(url + "\n", encoding="ascii")
        except OSError as e:
            log.warn("could not write {path}: {error}", path=str(path), error=e.strerror)
        else:
            self.url_file = path
        log.info("metrics at {url}", url=url)

    def stopService(self) -> None:  # noqa: N802 - IService
        super().stopService()
        if self.url_file is not None:
            self.url_file.unlink(missing_ok=True)
            self.url_file = None


def metrics_url(opened: Opened) -> str:
    """The URL that reaches a metrics listener from this host."""
    port: IListeningPort = opened.port
    address: Any = port.getHost()
    host = str(getattr(address, "host", "127.0.0.1"))
    if on_all_interfaces(port):
        host = "::1" if ":" in host else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if opened.listener.description.startswith("ssl:") else "http"
    return f"{scheme}://{host}:{address.port}/metrics"


# -- read at scrape time -------------------------------------------------------------------


def _by_door(counts: Counter[str]) -> Iterator[tuple[str, int]]:
    for door in DOORS:
        yield door, counts.get(door, 0)
    for door in sorted(set(counts) - set(DOORS)):
        yield door, counts[door]


class ServerCollector(Collector):
    """The figures the server keeps anyway, read when Prometheus scrapes."""

    def __init__(self, server: Server, metrics: Metrics) -> None:
        self.server = server
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        # The registry learns the names (for ?name[]= and clashes) from one collect.
        return list(self.collect())

    def _factories(self) -> list[Any]:
        """Each door's factory once: native, IRC, manhole (the web's protocols are theirs)."""
        seen: dict[int, Any] = {id(self.server.native): self.server.native}
        for value in self.server.extras.values():
            if hasattr(value, "connections") or hasattr(value, "portal"):
                seen.setdefault(id(value), value)
        return list(seen.values())

    def collect(self) -> Iterator[Metric]:
        server, chat = self.server, self.server.chat
        factories = self._factories()
        yield InfoMetricFamily(
            "pingchat",
            "The server's version and name.",
            value={"version": __version__, "server_name": chat.server_name},
        )

        connections: Counter[str] = Counter()
        drops: Counter[str] = Counter()
        for factory in factories:
            for c in list(getattr(factory, "connections", ())):
                connections[str(getattr(c, "door", "other"))] += 1
            drops.update(getattr(factory, "backlog_drops", {}))
        gauge = GaugeMetricFamily(
            "pingchat_connections",
            "Open connections per door (web: WebSockets at /ws, web-irc: at /irc).",
            labels=["door"],
        )
        for door, n in _by_door(connections):
            gauge.add_metric([door], n)
        yield gauge

        sessions: Counter[str] = Counter(
            str(getattr(s.mind, "door", "other")) for s in chat.all_sessions()
        )
        manhole = server.extras.get("manhole")
        if manhole is not None:
            sessions["manhole"] += manhole.portal.realm.sessions
        gauge = GaugeMetricFamily(
            "pingchat_sessions",
            "Logged-in sessions per door (manhole: administrators at a prompt).",
            labels=["door"],
        )
        for door, n in _by_door(sessions):
            gauge.add_metric([door], n)
        yield gauge
        yield GaugeMetricFamily(
            "pingchat_users_online",
            "Accounts and guests with at least one session.",
            value=chat.online_count(),
        )
        yield GaugeMetricFamily("pingchat_rooms", "Rooms.", value=chat.room_count())
        yield from _cluster_metrics(chat)

        logins: Counter[str] = Counter()
        failures: Counter[tuple[str, str]] = Counter()
        portals = {id(server.portal): server.portal}
        for factory in factories:
            portal = getattr(factory, "portal", None)
            if portal is not None:
                portals.setdefault(id(portal), portal)
        for portal in portals.values():
            logins.update(getattr(portal, "logins", {}))
            failures.update(getattr(portal, "failures", {}))
        counter = CounterMetricFamily(
            "pingchat_logins", "Successful logins (password or token) per door.", labels=["door"]
        )
        for door, n in _by_door(logins):
            counter.add_metric([door], n)
        yield counter
        counter = CounterMetricFamily(
            "pingchat_login_failures",
            "Refused logins per door, by the error code the client was given.",
            labels=["door", "reason"],
        )
        for (door, reason), n in sorted(failures.items()):
            counter.add_metric([door, reason], n)
        yield counter

        counter = CounterMetricFamily(
            "pingchat_messages_stored", "Messages stored, by kind.", labels=["kind"]
        )
        counter.add_metric(["room"], chat.room_messages_stored)
        counter.add_metric(["dm"], chat.dm_messages_stored)
        yield counter
        yield CounterMetricFamily(
            "pingchat_messages_delivered",
            "Messages handed to sessions (a room message to 50 members counts 50).",
            value=chat.messages_delivered,
        )
        counter = CounterMetricFamily(
            "pingchat_backlog_drops",
            "Clients disconnected for leaving more than --max-backlog unread, per door.",
            labels=["door"],
        )
        for door, n in _by_door(drops):
            if door != "manhole":
                counter.add_metric([door], n)
        yield counter

        db = server.db
        yield CounterMetricFamily(
            "pingchat_db_transactions", "Store transactions run.", value=db.transactions
        )
        yield CounterMetricFamily(
            "pingchat_db_commits", "Commits (each of a batch of transactions).", value=db.commits
        )

        pool = server.extras.get("bcrypt_pool")
        if pool is not None:
            yield GaugeMetricFamily(
                "pingchat_bcrypt_queue",
                "Password hashes waiting for a thread of the bcrypt pool.",
                value=pool.q.qsize(),
            )
            yield GaugeMetricFamily(
                "pingchat_bcrypt_busy_threads",
                "Threads of the bcrypt pool hashing now.",
                value=len(pool.working),
            )
        yield GaugeMetricFamily(
            "pingchat_reactor_lag_max_seconds",
            f"The reactor's largest stall in the last {LAG_WINDOW} seconds.",
            value=max(self.metrics.recent_lag, default=0.0),
        )


# -- the HTTP side -------------------------------------------------------------------------


class MetricsPage(Resource):
    """``/metrics``: the registry in the format the scraper asks for (Accept)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 - twisted.web
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        registry: Any = self.registry
        names = request.args.get(b"name[]") if request.args else None
        if names:
            registry = registry.restricted_registry([n.decode("utf-8", "replace") for n in names])
        body = encoder(registry)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        encoding = request.getHeader(b"accept-encoding")
        if encoding and gzip_accepted(encoding.decode("latin-1")):
            body = gzip.compress(body)
            request.setHeader(b"content-encoding", b"gzip")
        return body


class MetricsRoot(Resource):
    """``/``: a pointer to ``/metrics``; nothing else is served."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.putChild(b"metrics", MetricsPage(registry))

    def getChild(self, path: bytes, request: Request) -> IResource:  # noqa: N802 - twisted.web
        if path == b"":
            return self
        return notFound(message="pingchat serves its metrics at /metrics")

    def render_GET(self, request: Request) -> bytes:  # noqa: N802 - twisted.web
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"pingchat: Prometheus metrics at /metrics\n"


class MetricsSite(Site):
    """The metrics listener's HTTP factory; scrapes are not logged."""

    displayTracebacks = False

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(MetricsRoot(registry))

    def log(self, request: Any) -> None:
        pass


def attach_metrics(server: Server, reactor: Any) -> Metrics | None:
    """Attach the ``--metrics`` listeners (None: ``--metrics none``)."""
    from pingchat.tls import server_endpoint

    settings = server.settings
    if not settings.metrics:
        return None
    metrics = Metrics(server)
    metrics.setServiceParent(server.top)
    server.db.timings = metrics
    server.extras["metrics"] = metrics
    site = MetricsSite(metrics.registry)
    for description in settings.metrics:
        server.listeners.add(
            "metrics", description, partial(server_endpoint, reactor, description, server.tls), site
        )
    return metrics


def _cluster_metrics(chat: Any) -> Iterator[Any]:
    """A node of a cluster (--bus): the nodes it sees and the bus's counts."""
    nodes = chat.cluster_nodes()
    if not nodes:
        return
    status = chat.cluster_status()
    yield GaugeMetricFamily(
        "pingchat_cluster_nodes",
        "Nodes of the cluster this node sees (itself too).",
        value=len(nodes),
    )
    gauge = GaugeMetricFamily(
        "pingchat_cluster_sessions",
        "Logged-in sessions on each node of the cluster (local: this node).",
        labels=["node", "local"],
    )
    for node, n in sorted(nodes.items()):
        gauge.add_metric([node, "yes" if node == status.get("node") else "no"], n)
    yield gauge
    yield GaugeMetricFamily(
        "pingchat_bus_up",
        "Whether this node has the bus (Redis): 1 or 0.",
        value=1 if status.get("bus_up") else 0,
    )
    counter = CounterMetricFamily(
        "pingchat_bus_events",
        "Events this node published, received and applied.",
        labels=["what"],
    )
    for what in ("published", "received", "not_published", "events_applied"):
        counter.add_metric([what], status.get(what, 0))
    yield counter
    counter = CounterMetricFamily(
        "pingchat_bus_messages",
        "Stored messages that came out of order (held back), twice (dropped), or"
        " only from the store (a gap the bus left).",
        labels=["what"],
    )
    for what in ("reordered", "duplicates", "read_from_store"):
        counter.add_metric([what], status.get(what, 0))
    yield counter
