"""Typed settings, built from ``twistd pingchat`` options and a TOML file.

No I/O happens here except reading the TOML file named by ``--config``.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

DATA_DIR_ENV = "PINGCHAT_DATA_DIR"
DEFAULT_DATA_DIR = Path("pingchat-data")
DATABASE_FILE = "pingchat.sqlite3"
REGISTRATION_POLICIES = ("open", "closed", "invite")
DELETED_MESSAGES = ("remove", "anonymise")

DEFAULT_CHAT = "ssl:7464"
DEFAULT_IRC = "tcp:6667:interface=127.0.0.1"
DEFAULT_IRCS = "ssl:6697"
DEFAULT_MANHOLE = "tcp:2222:interface=127.0.0.1"
# The web door: plain HTTP on loopback (http://localhost is a secure context
# for browsers) and HTTPS with the data dir's certificate everywhere.
DEFAULT_WEB = ("tcp:8080:interface=127.0.0.1", "ssl:8443")
# Prometheus metrics at /metrics: counts and timings, no secrets, but
# nothing the world needs either (docs/admin.md).
DEFAULT_METRICS = "tcp:9464:interface=127.0.0.1"


@attrs.frozen
class Settings:
    """Everything the running server needs to know, already validated."""

    data_dir: Path = DEFAULT_DATA_DIR
    chat: tuple[str, ...] = (DEFAULT_CHAT,)
    irc: tuple[str, ...] = (DEFAULT_IRC,)
    ircs: tuple[str, ...] = (DEFAULT_IRCS,)
    manhole: tuple[str, ...] = (DEFAULT_MANHOLE,)
    web: tuple[str, ...] = DEFAULT_WEB
    metrics: tuple[str, ...] = (DEFAULT_METRICS,)
    # Pages from these origins may open WebSockets too (besides our own).
    web_origin: tuple[str, ...] = ()
    # Peers whose X-Forwarded-For / Forwarded headers are believed (addresses or networks).
    trusted_proxy: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    server_name: str = attrs.field(factory=socket.gethostname)
    guests: bool = False
    # Who may create accounts: "open" (anyone), "closed" (admins only) or
    # "invite" (with a code an admin issued).
    registration: str = "open"
    min_password_length: int = 8
    # Per-connection request rate (requests/s) and burst; 0 disables.
    rate: float = 20.0
    rate_burst: float = 60.0
    # Failed logins allowed per (account, address) before back-off starts (the
    # next attempt waits); per address: max(20, this). docs/login-throttling.md
    login_free_attempts: int = 5
    login_backoff_max: float = 300.0
    # Registrations allowed per address per hour.
    registrations_per_hour: float = 20.0
    # Output a client may leave unread before it is disconnected (bytes).
    max_backlog: int = 1024 * 1024
    token_ttl_days: float = 30.0
    # SQLite synchronous mode: FULL (default: fsync every commit) or NORMAL.
    sqlite_synchronous: str = "FULL"
    # Where accounts, rooms and history live: None for SQLite in the data
    # dir, or a postgresql:// URL (docs/deployment.md).
    store: str | None = None
    # Retention (docs/admin.md): days of history kept (0: forever; a room's
    # +H may keep less), and days an undelivered DM waits in the offline
    # queue (0: until delivered).
    history_days: float = 0.0
    offline_days: float = 30.0
    # What deleting an account does to its room messages: remove or anonymise.
    deleted_messages: str = "remove"
    # The bus between the nodes of a cluster: None (one server), or a
    # redis:// (rediss://, unix://) URL; and this node's name on it.
    bus: str | None = None
    node_name: str | None = None

    @property
    def database_path(self) -> Path:
        return self.data_dir / DATABASE_FILE


LISTENERS = ("chat", "irc", "ircs", "manhole", "web", "metrics")
# Options that may be given several times (and are lists in the TOML file).
REPEATED = ("web_origin", "trusted_proxy")


def listeners(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Normalise listener strings: ``none`` disables the door."""
    cleaned = tuple(v.strip() for v in values if v.strip())
    if any(v.lower() == "none" for v in cleaned):
        if len(cleaned) > 1:
            raise ValueError("'none' cannot be combined with other endpoints")
        return ()
    return cleaned


def store_url(value: Any) -> str | None:
    """A ``--store`` value: ``sqlite`` (the default, in the data dir) or a
    ``postgresql://`` URL (``postgres://`` too, as libpq takes it)."""
    text = str(value).strip()
    if text.lower() in ("", "sqlite"):
        return None
    if text.startswith(("postgresql://", "postgres://")):
        return text
    raise ValueError("must be sqlite or a postgresql:// URL")


def bus_url(value: Any) -> str | None:
    """A ``--bus`` value: ``none`` (one server, the default) or a Redis URL."""
    text = str(value).strip()
    if text.lower() in ("", "none"):
        return None
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must be none or a redis://, rediss:// or unix:// URL")
    return text


def read_toml(path: Path) -> dict[str, Any]:
    """Read a config file; keys may use dashes or underscores."""
    with path.open("rb") as f:
        raw = tomllib.load(f)
    return {key.replace("-", "_"): value for key, value in raw.items()}


def choose_data_dir(
    command_line: str | None,
    environ: Mapping[str, str],
    from_file: Any = None,
    config_file: str | Path | None = None,
) -> tuple[Path, str]:
    """The data dir and where it came from, for the server and the command alike.

    The command line wins, then ``PINGCHAT_DATA_DIR``, then the config
    file's ``data_dir``, then ``./pingchat-data``; the second value names
    the source, for messages ("from PINGCHAT_DATA_DIR", ...).
    """
    if command_line:
        return _expand(command_line), "from --data-dir"
    if environ.get(DATA_DIR_ENV):
        return _expand(environ[DATA_DIR_ENV]), f"from {DATA_DIR_ENV}"
    if from_file is not None:
        if not isinstance(from_file, str) or not from_file.strip():
            raise ValueError(f"data_dir in {config_file} must be a path")
        return _expand(from_file), f"from data_dir in {config_file}"
    return DEFAULT_DATA_DIR, "the default: ./pingchat-data"


def _expand(path: str) -> Path:
    return Path(os.path.expanduser(path))
