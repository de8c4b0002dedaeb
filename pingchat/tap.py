"""``twistd pingchat``: options and the wiring of the service tree.

Validation happens in :meth:`Options.postOptions`; :func:`makeService` only
builds objects and attaches them to a ``MultiService``.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import attrs
from twisted.application import internet, service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from pingchat import config, runtime, twisted_internals
from pingchat.admin.manhole import attach_manhole
from pingchat.admin.metrics import attach_metrics
from pingchat.auth.audit import Auditor
from pingchat.auth.checkers import PasswordChecker, TokenChecker
from pingchat.auth.otp import OTPVerifier
from pingchat.auth.passwords import PasswordHasher, in_background
from pingchat.auth.portal import CountingPortal
from pingchat.auth.sealing import Sealer
from pingchat.auth.throttle import AddressLimiter, LoginThrottle
from pingchat.chat.accounts import AccountManager
from pingchat.chat.erasure import AccountEraser, DeletionWatcher
from pingchat.chat.lagprobe import BENCHMARK_INTERVAL, INTERVAL, LagProbe, jsonl_report, reports
from pingchat.chat.realm import ChatRealm
from pingchat.chat.retention import Retention
from pingchat.chat.service import ChatService
from pingchat.errors import StoreUnavailable
from pingchat.irc.factory import attach_irc
from pingchat.native.factory import NativeFactory
from pingchat.proxy import behind_proxy
from pingchat.reload import Reloader, ReloadOnSignal
from pingchat.server import Server
from pingchat.startup import (
    DataDirLock,
    ListenerService,
    Opened,
    StartupFailed,
    create_data_dir,
    exposure_line,
)
from pingchat.store import Database, open_store
from pingchat.store.erasure import last_deletion
from pingchat.store.rooms import load_rooms
from pingchat.tls import (
    CertificateRefused,
    Certificates,
    ServerCertificate,
    ensure_certificate,
    is_tls,
    server_endpoint,
)
from pingchat.web.door import attach_web, client_urls
from pingchat.web.policy import OriginPolicy, TrustedProxies, parse_network

log = Logger()


def _listeners(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("must be an endpoint string or a list of them")
    return config.listeners(list(value))


def _strings(check: Callable[[str], Any]) -> Callable[[Any], tuple[str, ...]]:
    """A repeatable option: each value must pass *check* (which raises ValueError)."""

    def convert(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a string or a list of them")
        for v in value:
            check(v)
        return tuple(v.strip() for v in value)

    return convert


def _positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        number = kind(value)
        if number < 0:
            raise ValueError("must not be negative")
        return number

    return convert


def _synchronous(value: Any) -> str:
    value = str(value).upper()
    if value not in ("FULL", "NORMAL"):
        raise ValueError("must be FULL or NORMAL")
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


def _registration(value: Any) -> str:
    value = str(value).strip().lower()
    if value not in config.REGISTRATION_POLICIES:
        raise ValueError("must be open, closed or invite")
    return value


def _deleted_messages(value: Any) -> str:
    value = str(value).strip().lower()
    if value == "anonymize":
        value = "anonymise"
    if value not in config.DELETED_MESSAGES:
        raise ValueError("must be remove or anonymise")
    return value


def _name(value: Any) -> str:
    value = str(value).strip()
    if not value or " " in value:
        raise ValueError("must be a non-empty word")
    return value


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "data_dir": lambda v: Path(os.path.expanduser(str(v))),
    "chat": _listeners,
    "irc": _listeners,
    "ircs": _listeners,
    "manhole": _listeners,
    "web": _listeners,
    "metrics": _listeners,
    "web_origin": _strings(lambda v: OriginPolicy.parse([v])),
    "trusted_proxy": _strings(parse_network),
    "tls_cert": lambda v: Path(os.path.expanduser(str(v))),
    "tls_key": lambda v: Path(os.path.expanduser(str(v))),
    "server_name": _name,
    "guests": _bool,
    "registration": _registration,
    "min_password_length": _positive(int),
    "rate": _positive(float),
    "rate_burst": _positive(float),
    "login_free_attempts": _positive(int),
    "login_backoff_max": _positive(float),
    "registrations_per_hour": _positive(float),
    "max_backlog": _positive(int),
    "token_ttl_days": _positive(float),
    "sqlite_synchronous": _synchronous,
    "store": config.store_url,
    "history_days": _positive(float),
    "offline_days": _positive(float),
    "deleted_messages": _deleted_messages,
    "bus": config.bus_url,
    "node_name": _name,
}


class Options(usage.Options):
    """Command-line options of ``twistd pingchat`` (each also valid in ``--config``)."""

    synopsis = "[options]"
    longdesc = (
        "Runs the pingchat server. Listener options take a Twisted endpoint "
        "string, or 'none' to disable that door, and may be repeated. Every "
        "option may also be set in the TOML file named by --config; the "
        "command line wins."
    )
    optFlags = [["guests", None, "Let IRC clients chat without an account."]]
    optParameters = [
        ["config", "c", None, "TOML file with any of these options."],
        [
            "data-dir",
            "d",
            None,
            f"Data directory (or ${config.DATA_DIR_ENV}). [default: ./pingchat-data]",
        ],
        ["tls-cert", None, None, "PEM certificate (chain) for TLS listeners."],
        ["tls-key", None, None, "PEM private key for TLS listeners."],
        ["server-name", None, None, "Name shown to clients. [default: host name]"],
        [
            "registration",
            None,
            None,
            "Who may create accounts: open (anyone), closed (admins only) or"
            " invite (with an admin-issued code). [default: open]",
        ],
        ["min-password-length", None, None, "Minimum password length. [default: 8]"],
        ["rate", None, None, "Requests per second per connection. [default: 20]"],
        ["rate-burst", None, None, "Request burst per connection. [default: 60]"],
        ["login-free-attempts", None, None, "Failed logins before back-off. [default: 5]"],
        ["login-backoff-max", None, None, "Longest login back-off, s. [default: 300]"],
        ["registrations-per-hour", None, None, "Registrations per address per hour. [default: 20]"],
        [
            "max-backlog",
            None,
            None,
            "Unread output (bytes) before a client is dropped. [default: 1048576]",
        ],
        ["token-ttl-days", None, None, "Idle days before a session token expires. [default: 30]"],
        [
            "sqlite-synchronous",
            None,
            None,
            "SQLite synchronous mode, FULL or NORMAL. [default: FULL]",
        ],
        [
            "store",
            None,
            None,
            "Where accounts, rooms and history live: sqlite (a file in the data dir)"
            " or postgresql://USER@HOST/DB. [default: sqlite]",
        ],
        ["history-days", None, None, "Days of history kept; 0 keeps it forever. [default: 0]"],
        [
            "offline-days",
            None,
            None,
            "Days an undelivered DM waits for its recipient; 0: until delivered. [default: 30]",
        ],
        [
            "deleted-messages",
            None,
            None,
            "A deleted account's room messages: remove or anonymise. [default: remove]",
        ],
        [
            "bus",
            None,
            None,
            "The bus between the nodes of a cluster: none, or redis://HOST[:PORT][/DB]"
            " (rediss:// for TLS, unix:///PATH/redis.sock); needs a postgresql:// --store."
            " [default: none]",
        ],
        [
            "node-name",
            None,
            None,
            "This node's name in the cluster. [default: host name and a random suffix]",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listener_args: dict[str, list[str]] = {
            name: [] for name in config.LISTENERS + config.REPEATED
        }
        self.settings = config.Settings()

    def opt_chat(self, value: str) -> None:
        """Native protocol endpoint (TLS only). [default: ssl:7464]"""
        self.listener_args["chat"].append(value)

    def opt_irc(self, value: str) -> None:
        """Plaintext IRC endpoint. [default: tcp:6667:interface=127.0.0.1]"""
        self.listener_args["irc"].append(value)

    def opt_ircs(self, value: str) -> None:
        """IRC-over-TLS endpoint. [default: ssl:6697]"""
        self.listener_args["ircs"].append(value)

    def opt_manhole(self, value: str) -> None:
        """SSH manhole endpoint. [default: tcp:2222:interface=127.0.0.1]"""
        self.listener_args["manhole"].append(value)

    def opt_web(self, value: str) -> None:
        """Web door endpoint (HTTP, or HTTPS with ssl:).
        [default: tcp:8080:interface=127.0.0.1 and ssl:8443]"""
        self.listener_args["web"].append(value)

    def opt_metrics(self, value: str) -> None:
        """Prometheus metrics endpoint, at /metrics. [default: tcp:9464:interface=127.0.0.1]"""
        self.listener_args["metrics"].append(value)

    def opt_web_origin(self, value: str) -> None:
        """Another origin (scheme://host[:port]) whose pages may use the WebSockets."""
        self.listener_args["web_origin"].append(value)

    def opt_trusted_proxy(self, value: str) -> None:
        """A reverse proxy (address or network) whose X-Forwarded-For is believed."""
        self.listener_args["trusted_proxy"].append(value)

    def postOptions(self) -> None:
        given: dict[str, Any] = {}
        if self["config"]:
            path = Path(self["config"])
            try:
                given.update(config.read_toml(path))
            except OSError as e:
                raise usage.UsageError(f"--config: cannot read {path}: {e.strerror}") from e
            except ValueError as e:
                raise usage.UsageError(f"--config: {path} is not valid TOML: {e}") from e
            given.pop("config", None)
            unknown = sorted(set(given) - set(CONVERTERS))
            if unknown:
                raise usage.UsageError(f"--config: unknown option(s): {', '.join(unknown)}")
        try:
            given["data_dir"], _ = config.choose_data_dir(
                self["data-dir"], os.environ, given.pop("data_dir", None), self["config"]
            )
        except ValueError as e:
            raise usage.UsageError(f"--config: {e}") from e
        for key in CONVERTERS:
            if key == "data_dir":
                continue
            if key in config.LISTENERS or key in config.REPEATED:
                if self.listener_args[key]:
                    given[key] = self.listener_args[key]
            elif key == "guests":
                if self["guests"]:
                    given[key] = True
            elif self.get(key.replace("_", "-")) is not None:
                given[key] = self[key.replace("_", "-")]
        values = {}
        for key, value in given.items():
            try:
                values[key] = CONVERTERS[key](value)
            except (TypeError, ValueError) as e:
                raise usage.UsageError(f"--{key.replace('_', '-')}: {value!r}: {e}") from e
        for key, what in (("chat", "the native protocol is TLS only"), ("ircs", "IRC over TLS")):
            for description in values.get(key, ()):
                if not is_tls(description):
                    raise usage.UsageError(f"--{key} {description}: {what}: use ssl:PORT")
        _check_proxy_listeners(values)
        if ("tls_cert" in values) != ("tls_key" in values):
            raise usage.UsageError("--tls-cert and --tls-key go together")
        if values.get("min_password_length", 8) < 1:
            raise usage.UsageError("--min-password-length must be at least 1")
        if values.get("bus") is not None:
            import importlib.util

            from pingchat.cluster.bus import parse_url

            if importlib.util.find_spec("txredisapi") is None:
                raise usage.UsageError(
                    "--bus needs the Redis client: pip install 'pingchat[cluster]'"
                )
            try:
                parse_url(values["bus"])
            except ValueError as e:
                raise usage.UsageError(f"--bus: {e}") from e
            if values.get("store") is None:
                raise usage.UsageError(
                    "--bus needs --store postgresql://…: the nodes of a cluster share one"
                    " database (an SQLite file belongs to one server)"
                )
        self.settings = attrs.evolve(config.Settings(), **values)


def _check_proxy_listeners(values: dict[str, Any]) -> None:
    """``haproxy:`` listeners: on the doors clients reach, and believed only from
    ``--trusted-proxy`` (pingchat.proxy)."""
    proxied = [
        (key, d)
        for key in config.LISTENERS
        for d in values.get(key, ())
        if behind_proxy(d)[0]
    ]
    for key, description in proxied:
        if key in ("manhole", "metrics"):
            raise usage.UsageError(
                f"--{key} {description}: the PROXY protocol is for the doors clients reach"
                " through a balancer (--chat, --irc, --ircs, --web)"
            )
        if not values.get("trusted_proxy"):
            raise usage.UsageError(
                f"--{key} {description}: a PROXY listener believes the address its peer"
                " claims: name the balancer with --trusted-proxy"
            )


class DatabaseService(service.Service):
    """Starts the writer thread with the server and drains it on shutdown.

    It also holds the data dir's lock, if given: released once the last
    write is on disk, so a server started next never shares the database.
    """

    name = "database"

    def __init__(self, db: Database, lock: DataDirLock | None = None) -> None:
        self.db = db
        self.lock = lock

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self.lock is not None:
            self.lock.note_pid()  # twistd has forked by now if it daemonizes

    def startService(self) -> None:
        super().startService()
        self.db.start()

    def stopService(self) -> Any:
        super().stopService()
        return self.db.stop().addBoth(self._release)

    def release(self) -> Deferred[None]:
        """Close the database and release the lock without having started."""
        return self.db.stop().addBoth(self._release)

    def _release(self, result: Any) -> Any:
        if self.lock is not None:
            self.lock.release()
        return result


class ThreadPoolService(service.Service):
    """Owns the thread pool that runs bcrypt, off the reactor thread."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()


def _run_inline(fn: Callable[..., Any], *args: Any) -> Any:
    return maybeDeferred(fn, *args)


def build(
    settings: config.Settings,
    reactor: Any = None,
    *,
    inline: bool = False,
    lock: DataDirLock | None = None,
    bus: Any = None,
) -> Server:
    """Create every component; listeners are attached but not yet started.

    With *inline*, database transactions and bcrypt run at once on the calling
    thread: unit tests use this with a ``task.Clock`` or ``MemoryReactor`` and
    get synchronous Deferreds. The server itself never runs inline. *lock*
    (the data dir's, already held) is released when the database closes.
    *bus* replaces the Redis bus of ``--bus`` (tests: pingchat.cluster.testing).
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    data_dir = settings.data_dir
    create_data_dir(data_dir)
    try:
        store = open_store(
            settings.store,
            settings.database_path,
            reactor,
            threaded=not inline,
            synchronous=settings.sqlite_synchronous,
        )
    except (StoreUnavailable, RuntimeError) as e:
        raise StartupFailed(f"--store: {e}") from e
    db = store.db
    audit = Auditor(store, reactor)
    # Deletions the rooms already reflect: read before them (DeletionWatcher).
    last_deleted = db.run_sync(last_deletion)
    chat = ChatService(
        store, reactor, settings.server_name, db.run_sync(load_rooms), audit=audit
    )
    pool = ThreadPool(minthreads=1, maxthreads=2, name="pingchat-bcrypt")

    def run_hash(fn: Callable[..., Any], *args: Any) -> Any:
        # bcrypt runs in the pool's threads, at a lower priority than the reactor's
        return deferToThreadPool(reactor, pool, in_background, fn, *args)

    hasher = PasswordHasher(_run_inline if inline else run_hash)
    sealer = Sealer.from_data_dir(data_dir)
    clustered = settings.bus is not None or bus is not None
    if clustered:
        from pingchat.cluster.throttle import SharedAddressLimiter, SharedLoginThrottle

        throttle_class: type[LoginThrottle] = SharedLoginThrottle
        limiter_class: type[AddressLimiter] = SharedAddressLimiter
    else:
        throttle_class, limiter_class = LoginThrottle, AddressLimiter
    throttle = throttle_class(
        reactor.seconds,
        free=settings.login_free_attempts,
        cap=settings.login_backoff_max,
        audit=audit,
    )
    ttl_ms = int(settings.token_ttl_days * 24 * 3600 * 1000)
    portal = CountingPortal(
        ChatRealm(chat, store),
        [
            PasswordChecker(
                store, hasher, reactor, throttle, OTPVerifier(store, reactor, audit, sealer), audit
            ),
            TokenChecker(store, reactor, ttl_ms, throttle, audit),
        ],
    )
    accounts = AccountManager(
        store,
        hasher,
        reactor,
        audit,
        chat,
        min_password_length=settings.min_password_length,
        token_ttl_ms=ttl_ms,
        login_throttle=throttle,
        sealer=sealer,
        registration=settings.registration,
        register_limiter=limiter_class(
            reactor.seconds,
            settings.registrations_per_hour / 3600.0,
            max(1.0, settings.registrations_per_hour),
        ),
    )
    native = NativeFactory(
        chat,
        portal,
        accounts,
        reactor,
        rate=settings.rate,
        burst=settings.rate_burst,
        max_backlog=settings.max_backlog,
    )
    top = service.MultiService()
    database = DatabaseService(db, lock)
    database.setServiceParent(top)
    ThreadPoolService(pool).setServiceParent(top)
    chat.setServiceParent(top)
    cluster = None
    if clustered:
        from pingchat.cluster.node import join_cluster

        cluster = join_cluster(
            settings, reactor, store, chat, bus, [throttle, accounts.register_limiter]
        )
        cluster.setServiceParent(top)
    internet.TimerService(3600, lambda: store.purge_expired_tokens(chat.now())).setServiceParent(
        top
    )
    eraser = AccountEraser(store, chat, reactor, audit, sealer, settings.deleted_messages)
    accounts.eraser = eraser
    DeletionWatcher(eraser, reactor, last_deleted).setServiceParent(top)
    Retention(
        store, chat, reactor, settings.history_days, settings.offline_days
    ).setServiceParent(top)
    listeners = ListenerService(reactor, database.release, lambda opened: _ready(server, opened))
    server = Server(
        settings, db, store, chat, portal, accounts, audit, hasher, native, top, listeners
    )
    server.extras["bcrypt_pool"] = pool
    if cluster is not None:
        server.extras["cluster"] = cluster
    certificate = None
    try:
        if settings.tls_cert and settings.tls_key:
            certificate = ServerCertificate(settings.tls_key, settings.tls_cert)
        elif any(
            is_tls(d)
            for d in settings.chat + settings.ircs + settings.web + settings.metrics
        ):
            certificate = ServerCertificate(*ensure_certificate(data_dir, settings.server_name))
    except CertificateRefused as e:
        raise StartupFailed(f"TLS certificate: {e}") from None
    if certificate is not None:
        # What clients that trust on first use should compare with.
        log.info(
            "TLS certificate {path}, SHA-256 fingerprint {fingerprint}, valid until {not_after}",
            path=str(certificate.cert_path),
            fingerprint=certificate.current.fingerprint,
            not_after=certificate.current.not_after.strftime("%Y-%m-%d %H:%M UTC"),
        )
        for problem in certificate.current.problems:
            log.warn(
                "TLS certificate {path}: {problem}",
                path=str(certificate.cert_path),
                problem=problem,
            )
    server.tls = Certificates(certificate)
    server.proxies = TrustedProxies.parse(settings.trusted_proxy)
    server.extras["reloader"] = Reloader(server, server.tls)
    for description in settings.chat:
        listeners.add(
            "chat",
            description,
            partial(server_endpoint, reactor, description, server.tls, server.proxies),
            native,
            registers=True,
        )
    attach_irc(server, reactor)
    attach_manhole(server, reactor)
    attach_web(server, reactor)
    metrics = attach_metrics(server, reactor)
    # The reactor's lag, for the metrics and (PINGCHAT_LAG_PROBE) the benchmark.
    lag_file = os.environ.get("PINGCHAT_LAG_PROBE")
    lag_reports = [jsonl_report(Path(lag_file))] if lag_file else []
    if metrics is not None:
        lag_reports.append(metrics.lag_report)
    if lag_reports:
        interval = BENCHMARK_INTERVAL if lag_file else INTERVAL
        LagProbe(reactor, reports(*lag_reports), interval).setServiceParent(top)
    # Last: it opens the listeners, and says "ready" once all the rest has started.
    listeners.setServiceParent(top)
    return server


def _ready(server: Server, opened: list[Opened]) -> None:
    settings = server.settings
    warning = exposure_line(opened, settings.registration)
    if warning is not None:
        log.warn("{warning}", warning=warning)
    if "metrics" in server.extras:
        server.extras["metrics"].listening([o for o in opened if o.listener.option == "metrics"])
    urls = client_urls(opened, settings.server_name)
    if urls:
        log.info("web client: open {urls} in a browser", urls=" or ".join(urls))
    log.info(
        "pingchat ready: data dir {data_dir}, server name {name}, registration {registration}",
        data_dir=str(settings.data_dir.resolve()),
        name=settings.server_name,
        registration=settings.registration,
    )


def makeService(options: Options) -> service.MultiService:
    """The server for twistd: the data dir made and locked first, then the rest.

    The lock is taken before the database is opened and before a certificate
    is generated, so a second server on the same data dir changes nothing;
    it exits with one line (:class:`~pingchat.startup.StartupFailed`).
    """
    from twisted.internet import reactor

    settings = options.settings
    if create_data_dir(settings.data_dir):
        log.info(
            "new data dir {path}: the pingchat command finds it with --data-dir or"
            " PINGCHAT_DATA_DIR={path}",
            path=str(settings.data_dir.absolute()),
        )
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    # Probe Twisted's internals once, now: a shortcut whose assumptions do
    # not hold is left out with one warning line (pingchat.twisted_internals).
    twisted_internals.check_all()
    try:
        server = build(settings, lock=lock)
    except BaseException:
        lock.release()
        raise
    top = server.top
    # Only for the real server: tests build on their own reactor and clock.
    runtime.bound_reactor_turns(reactor)
    runtime.tune_gc()
    runtime.FullCollector(reactor).setServiceParent(top)
    reloader: Reloader = server.extras["reloader"]
    if options["config"]:
        reloader.config = options["config"]
        reloader.reread = partial(_reread, options)
    ReloadOnSignal(reactor, reloader.reload).setServiceParent(top)
    atexit.register(_exit_status, server.listeners)
    return top


def _reread(options: Options) -> config.Settings:
    """The settings as the command line and the config file give them now (for a reload)."""
    options.postOptions()
    return options.settings


def _exit_status(listeners: ListenerService) -> None:
    """Exit with status 1 if a listener that answered late could not open.

    (A listener that fails at once ends the start with StartupFailed; twistd
    offers no other way to set the status once its reactor has run.)
    """
    if listeners.failed is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
