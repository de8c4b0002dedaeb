"""``pingchat store``, ``fingerprint``, ``status``, ``backup``, ``restore``, and
``client``: the data dir, the server, and the terminal client."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pingchat.cli.common import (
    CommandError,
    data_dir_of,
    settings_file,
    store_url_of,
)
from pingchat.config import DATA_DIR_ENV, DATABASE_FILE, store_url


def cmd_store(args: argparse.Namespace) -> int:
    """``store copy SQLITE_FILE URL``: move a community to PostgreSQL, verified."""
    from pingchat.startup import DataDirLock, StartupFailed

    source = Path(args.sqlite_file)
    if not source.is_file():
        raise CommandError(f"no SQLite database at {source.absolute()}")
    try:
        url = store_url(args.url)
    except ValueError as e:
        raise CommandError(f"the target: {e}") from e
    if url is None:
        raise CommandError("the target must be a postgresql:// URL")
    try:
        from pingchat.store.copy import CopyRefused, copy
        from pingchat.store.postgresql import redact
    except ImportError as e:
        raise CommandError(
            f"PostgreSQL needs psycopg ({e}): pip install 'pingchat[postgresql]'"
        ) from e
    # Off-line: a server on this data dir would go on writing to the file.
    lock = DataDirLock(source.parent)
    try:
        lock.acquire()
    except StartupFailed as e:
        raise CommandError(f"{e.message}; the copy is made with the server stopped") from e
    try:
        ok = copy(source, url, sys.stdout)
    except CopyRefused as e:
        raise CommandError(str(e)) from e
    finally:
        lock.release()
    if not ok:
        print("pingchat: error: the copy differs from the original (see above)", file=sys.stderr)
        return 1
    print(
        f"copied {source} to {redact(url)}: start the server with --store {redact(url)}",
        file=sys.stderr,
    )
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """Print the SHA-256 fingerprint of the data dir's TLS certificate."""
    from pingchat.tls import CERT_FILE, certificate_fingerprint

    data_dir, source = data_dir_of(args)
    path = data_dir / CERT_FILE
    if not path.exists():
        raise CommandError(
            f"no certificate at {path.absolute()} ({source}); the server makes it at its"
            f" first start: point --data-dir or {DATA_DIR_ENV} at the server's data dir"
        )
    print(certificate_fingerprint(path))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print a running server's essentials, from its metrics (``--metrics``)."""
    from pingchat.admin import status

    data_dir, _ = data_dir_of(args)
    try:
        url, source = status.choose_url(
            args.metrics_url, data_dir, settings_file(args), args.config
        )
        scraped = status.scrape(url, source, args.timeout, data_dir / "tls-cert.pem")
    except status.StatusError as e:
        raise CommandError(str(e)) from e
    print(status.render(scraped, url))
    return 0


def _sqlite_only(args: argparse.Namespace, command: str) -> None:
    """Refuse a command that archives the SQLite data dir when the store is elsewhere:
    after ``store copy`` an old SQLite file may still be there, and archiving it
    would look like a backup of the community."""
    if store_url_of(args) is not None:
        raise CommandError(
            f"the server's store is PostgreSQL: pingchat {command} handles an SQLite data"
            " dir; back the database up with PostgreSQL's tools (pg_dump) and the data dir's"
            " keys with it (docs/deployment.md)"
        )


def cmd_backup(args: argparse.Namespace) -> int:
    """Archive the data dir (database, keys, certificate) while the server runs."""
    from pingchat.backup import BackupError, backup

    _sqlite_only(args, "backup")
    data_dir, source = data_dir_of(args)
    if not (data_dir / DATABASE_FILE).exists():
        raise CommandError(f"no pingchat database in {data_dir.absolute()} ({source})")
    try:
        done = backup(data_dir, args.dest, force=args.force)
    except BackupError as e:
        raise CommandError(str(e)) from e
    files = ", ".join(f["name"] for f in done.manifest["files"])
    where = done.path.absolute() if done.path is not None else "standard output"
    # On standard output, unless the archive is there (cron mails only errors
    # when it goes to /dev/null).
    print(
        f"backup of {data_dir.absolute()} written to {where}: {files}",
        file=sys.stdout if done.path is not None else sys.stderr,
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Check a backup, and restore it into the data dir (which no server may hold)."""
    from pingchat.backup import BackupError, check_archive, restore

    if not args.check:
        _sqlite_only(args, "restore")

    try:
        if args.check:
            found = check_archive(Path(args.archive))
            print(
                f"{args.archive}: a good backup of {found.created_at} (pingchat"
                f" {found.pingchat_version}, schema {found.schema_version}):"
                f" {', '.join(found.files)}"
            )
            return 0
        data_dir, _ = data_dir_of(args)
        done = restore(Path(args.archive), data_dir, force=args.force)
    except BackupError as e:
        raise CommandError(f"{args.archive}: {e}") from e
    print(
        f"restored the backup of {done.manifest.created_at} into {done.data_dir}"
        f" ({', '.join(done.manifest.files)})"
    )
    if done.moved_aside is not None:
        print(f"the data dir that was there is now {done.moved_aside}")
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    from pingchat.client.main import run

    return run(args)
