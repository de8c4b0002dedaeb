"""What the ``pingchat`` commands share: the data dir and the store, found as the
server finds them, the store's Deferreds run to their end, passwords, audit."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pingchat.config import DATA_DIR_ENV, DATABASE_FILE, choose_data_dir, read_toml, store_url
from pingchat.store import Store, open_store

T = TypeVar("T")


class CommandError(Exception):
    """A one-line error for the user; exit status 1."""


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


def settings_file(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--config`` file's settings (the server's TOML), or nothing."""
    if not args.config:
        return {}
    path = Path(args.config)
    try:
        return read_toml(path)
    except OSError as e:
        raise CommandError(f"--config: cannot read {path}: {e.strerror}") from e
    except ValueError as e:
        raise CommandError(f"--config: {path} is not valid TOML: {e}") from e


def data_dir_of(args: argparse.Namespace) -> tuple[Path, str]:
    """Where the data dir is, and where that came from (the server's precedence)."""
    try:
        return choose_data_dir(
            args.data_dir, os.environ, settings_file(args).get("data_dir"), args.config
        )
    except ValueError as e:
        raise CommandError(f"--config: {e}") from e


def min_password_length(args: argparse.Namespace) -> int:
    """The server's password policy: the option, else the config file's, else 8."""
    if args.min_password_length is not None:
        return int(args.min_password_length)
    value = settings_file(args).get("min_password_length", 8)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CommandError(f"--config: min-password-length must be a positive number: {value!r}")
    return value


def store_url_of(args: argparse.Namespace) -> str | None:
    """The server's store: ``--store``, else ``store`` in ``--config``, else SQLite."""
    value = args.store if args.store is not None else settings_file(args).get("store")
    if value is None:
        return None
    try:
        return store_url(value)
    except ValueError as e:
        raise CommandError(f"--store: {e}") from e


def open_data_store(args: argparse.Namespace) -> Store:
    """Open the server's store; create a new data dir only with ``--init``.

    Creating one silently is how an account ends up in a ``./pingchat-data``
    that no server reads: a data dir is made by the server's first start,
    or here on request. With PostgreSQL the data dir is not needed here.
    """
    url = store_url_of(args)
    if url is not None:
        try:
            return open_store(url, Path(), threaded=False)
        except RuntimeError as e:
            raise CommandError(str(e)) from e
    data_dir, source = data_dir_of(args)
    path = data_dir / DATABASE_FILE
    if not path.exists():
        if not args.init:
            what = "no pingchat database in" if data_dir.is_dir() else "no data dir at"
            raise CommandError(
                f"{what} {data_dir.absolute()} ({source}): point --data-dir or"
                f" {DATA_DIR_ENV} at the server's data dir, or pass --init to create a new one"
            )
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        print(f"pingchat: new data dir {data_dir.absolute()}", file=sys.stderr)
    return open_store(None, path, threaded=False)


def sync(d: Deferred[T]) -> T:
    """The result of a store method run inline (it has fired already)."""
    result: list[Any] = []
    d.addBoth(result.append)
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]  # type: ignore[no-any-return]


def read_password(args: argparse.Namespace, prompt: str = "Password: ") -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CommandError("no password on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for a password; use --password-stdin")
    first = getpass.getpass(prompt)
    second = getpass.getpass("Again: ")
    if first != second:
        raise CommandError("the passwords do not match")
    return first


def actor() -> str:
    return f"cli:{getpass.getuser()}"


def audit(store: Store, event: str, account: str | None, **detail: Any) -> None:
    sync(store.add_audit(now_ms(), event, account, actor(), None, **detail))
