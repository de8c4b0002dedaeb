"""The ``pingchat`` command: offline administration of a data dir, and the client.

Works on the same database as a running server (SQLite: WAL lets both in;
or the server's PostgreSQL, ``--store`` or ``store`` in ``--config``),
through the store's methods; accounts changed here take effect at their
next login.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pingchat import __version__
from pingchat.auth.passwords import (
    bcrypt_rounds,
    check_password_policy,
    hash_password_blocking,
)
from pingchat.auth.sealing import KEY_FILE, Sealer
from pingchat.chat.accounts import (
    INVITE_DAYS,
    RECOVERY_CODES,
    check_invite_terms,
    invite_expiry,
    is_reserved_name,
    new_recovery_code,
    recovery_code_hash,
)
from pingchat.chat.erasure import DAY_MS, RESERVE_DAYS, name_digest
from pingchat.config import DATA_DIR_ENV, DATABASE_FILE, choose_data_dir, read_toml, store_url
from pingchat.errors import ChatError, InvalidName
from pingchat.model import check_account_name, iso_ms
from pingchat.store import Store, open_store
from pingchat.store.erasure import BATCH, MODES, Erased

T = TypeVar("T")


class CommandError(Exception):
    """A one-line error for the user; exit status 1."""


def _now() -> int:
    import time

    return int(time.time() * 1000)


def _settings_file(args: argparse.Namespace) -> dict[str, Any]:
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


def _data_dir(args: argparse.Namespace) -> tuple[Path, str]:
    """Where the data dir is, and where that came from (the server's precedence)."""
    try:
        return choose_data_dir(
            args.data_dir, os.environ, _settings_file(args).get("data_dir"), args.config
        )
    except ValueError as e:
        raise CommandError(f"--config: {e}") from e


def _min_password_length(args: argparse.Namespace) -> int:
    """The server's password policy: the option, else the config file's, else 8."""
    if args.min_password_length is not None:
        return int(args.min_password_length)
    value = _settings_file(args).get("min_password_length", 8)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CommandError(f"--config: min-password-length must be a positive number: {value!r}")
    return value


def _store_url(args: argparse.Namespace) -> str | None:
    """The server's store: ``--store``, else ``store`` in ``--config``, else SQLite."""
    value = args.store if args.store is not None else _settings_file(args).get("store")
    if value is None:
        return None
    try:
        return store_url(value)
    except ValueError as e:
        raise CommandError(f"--store: {e}") from e


def _open(args: argparse.Namespace) -> Store:
    """Open the server's store; create a new data dir only with ``--init``.

    Creating one silently is how an account ends up in a ``./pingchat-data``
    that no server reads: a data dir is made by the server's first start,
    or here on request. With PostgreSQL the data dir is not needed here.
    """
    url = _store_url(args)
    if url is not None:
        try:
            return open_store(url, Path(), threaded=False)
        except RuntimeError as e:
            raise CommandError(str(e)) from e
    data_dir, source = _data_dir(args)
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


def _sync(d: Deferred[T]) -> T:
    """The result of a store method run inline (it has fired already)."""
    result: list[Any] = []
    d.addBoth(result.append)
    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]  # type: ignore[no-any-return]


def _read_password(args: argparse.Namespace, prompt: str = "Password: ") -> str:
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


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _audit(store: Store, event: str, account: str | None, **detail: Any) -> None:
    _sync(store.add_audit(_now(), event, account, _actor(), None, **detail))


def cmd_user(args: argparse.Namespace) -> int:
    store = _open(args)
    action = args.action
    if action == "list":
        accounts = _sync(store.list_accounts())
        for a in accounts:
            flags = [a.role]
            if a.disabled:
                flags.append("disabled")
            seen = iso_ms(a.last_seen) if a.last_seen else "never"
            print(f"{a.name}\t{','.join(flags)}\tlast seen {seen}")
        if not accounts:
            print("(no accounts)", file=sys.stderr)
        return 0
    name = args.name
    if not name:
        raise CommandError(f"'user {action}' needs a user name")
    check_account_name(name)
    if action == "add":
        if is_reserved_name(name):
            raise InvalidName(f"the name {name} is reserved")
        password = check_password_policy(_read_password(args), _min_password_length(args))
        hashed = hash_password_blocking(password.encode("utf-8"), bcrypt_rounds())
        role = "admin" if args.admin else "user"
        account = _sync(store.create_account(name, hashed, _now(), role))
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        _sync(store.set_recovery_codes(account.id, [recovery_code_hash(c) for c in codes]))
        _audit(store, "register", account.name)
        print(f"created {role} {account.name}")
        print("recovery codes (shown once; each resets the password once):")
        for code in codes:
            print(f"  {code}")
        return 0
    if action == "passwd":
        password = check_password_policy(_read_password(args), _min_password_length(args))
        hashed = hash_password_blocking(password.encode("utf-8"), bcrypt_rounds())
        account = _sync(store.set_password(name, hashed, None))
        _audit(store, "passwd_reset", account.name)
        print(f"password of {account.name} changed; all its sessions were logged out")
        return 0
    if action in ("disable", "enable"):
        account = _sync(store.set_disabled(name, action == "disable"))
        _audit(store, action, account.name)
        print(f"{account.name} {action}d")
        return 0
    if action == "delete":
        return _delete_user(args, store, name)
    if action in ("promote", "demote"):
        role = "admin" if action == "promote" else "user"
        account = _sync(store.set_role(name, role))
        _audit(store, action, account.name)
        print(f"{account.name} is now {role}")
        return 0
    raise CommandError(f"unknown action: {action}")


def _deleted_messages(args: argparse.Namespace) -> str:
    """What deleting does to room messages: the option, else the config file's, else remove."""
    value = args.deleted_messages or _settings_file(args).get("deleted_messages", "remove")
    value = str(value).lower().replace("anonymize", "anonymise")
    if value not in MODES:
        raise CommandError(f"--deleted-messages must be remove or anonymise, not {value!r}")
    return value


def _server_key(args: argparse.Namespace) -> Sealer:
    """The data dir's secret.key, which the deleted name's digest is made with.

    The server must recognise the digest, so it is the server's key or none:
    with SQLite a data dir without one gets it (the server then reads it);
    with PostgreSQL the data dir must be the server's.
    """
    data_dir, source = _data_dir(args)
    if _store_url(args) is not None and not (data_dir / KEY_FILE).exists():
        raise CommandError(
            f"no {KEY_FILE} in {data_dir.absolute()} ({source}): deleting an account needs"
            " the server's data dir (--data-dir), whose key the server recognises names by"
        )
    return Sealer.from_data_dir(data_dir)


def _delete_user(args: argparse.Namespace, store: Store, name: str) -> int:
    """Delete an account, in short transactions that a running server's writes
    go between; the server ends its sessions within two seconds (DeletionWatcher)."""
    mode = _deleted_messages(args)
    account = _sync(store.get_account(name))
    if account is None:
        raise CommandError(f"no such user: {name}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("deleting an account cannot be undone: add --yes to confirm")
        what = "removed" if mode == "remove" else "anonymised (room messages; DMs removed)"
        print(f"Delete {account.name} for good? Its messages will be {what}.", file=sys.stderr)
        if input(f"Type {account.name} to confirm: ").strip() != account.name:
            raise CommandError("not confirmed; nothing was deleted")
    digest = name_digest(_server_key(args), name)
    now = _now()
    deletion = _sync(
        store.begin_account_deletion(name, digest, now, now + RESERVE_DAYS * DAY_MS)
    )
    erased = Erased()
    while (batch := _sync(store.erase_messages(deletion, mode, BATCH))).total:
        erased += batch
    erased += _sync(store.finish_account_deletion(deletion, mode, _now()))
    _audit(
        store,
        "account_deleted",
        deletion.placeholder,
        messages=mode,
        removed=erased.removed,
        anonymised=erased.anonymised,
    )
    _empty_wal(store)
    print(
        f"deleted {deletion.name} (now {deletion.placeholder} in the audit log):"
        f" {erased.removed} message(s) removed, {erased.anonymised} anonymised;"
        f" the name is free again from {iso_ms(deletion.reserved_until)}."
        " A running server ends its sessions within two seconds."
    )
    return 0


def _empty_wal(store: Store, tries: int = 5) -> None:
    """Truncate the WAL, which may hold deleted rows' old pages; readers may delay it."""
    import time

    for _ in range(tries):
        try:
            _sync(store.db.checkpoint())
            return
        except store.db.Error:
            time.sleep(0.5)
    print(
        "pingchat: the WAL could not be emptied yet (a reader held it); the server's next"
        " checkpoint overwrites it",
        file=sys.stderr,
    )


def cmd_invite(args: argparse.Namespace) -> int:
    """Invite codes for ``--registration invite``: create, list, revoke."""
    store = _open(args)
    now = _now()
    if args.action == "create":
        uses, days = check_invite_terms(args.uses, args.expires_days)
        code = new_recovery_code()
        expires = invite_expiry(now, days)
        invite_id = _sync(
            store.add_invite_code(recovery_code_hash(code), now, _actor(), expires, uses)
        )
        _audit(store, "invite_create", None, invite=invite_id, uses=uses, expires_at=expires)
        print(code)
        until = f"until {iso_ms(expires)}" if expires is not None else "with no expiry"
        print(
            f"invite {invite_id}: {uses} use(s), {until}; the code is shown only now",
            file=sys.stderr,
        )
        return 0
    if args.action == "list":
        invites = _sync(store.list_invite_codes())
        for i in invites:
            expiry = iso_ms(i.expires_at) if i.expires_at is not None else "never"
            print(
                f"{i.id}\t{i.state(now)}\t{i.uses_left} left, {i.used} used\t"
                f"expires {expiry}\tby {i.created_by} at {iso_ms(i.created_at)}"
            )
        if not invites:
            print("(no invite codes)", file=sys.stderr)
        return 0
    which = args.invite
    if not which:
        raise CommandError("'invite revoke' needs an invite id (see 'invite list') or the code")
    found: int | None = int(which) if which.isdigit() else None
    if found is None:
        found = _sync(store.find_invite_code(recovery_code_hash(which)))
    if found is None or not _sync(store.revoke_invite_code(found, now)):
        raise CommandError("no such invite to revoke, or revoked already (see 'invite list')")
    _audit(store, "invite_revoke", None, invite=found)
    print(f"invite {found} revoked")
    return 0


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

    data_dir, source = _data_dir(args)
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

    data_dir, _ = _data_dir(args)
    try:
        url, source = status.choose_url(
            args.metrics_url, data_dir, _settings_file(args), args.config
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
    if _store_url(args) is not None:
        raise CommandError(
            f"the server's store is PostgreSQL: pingchat {command} handles an SQLite data"
            " dir; back the database up with PostgreSQL's tools (pg_dump) and the data dir's"
            " keys with it (docs/deployment.md)"
        )


def cmd_backup(args: argparse.Namespace) -> int:
    """Archive the data dir (database, keys, certificate) while the server runs."""
    from pingchat.backup import BackupError, backup

    _sqlite_only(args, "backup")
    data_dir, source = _data_dir(args)
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
        data_dir, _ = _data_dir(args)
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


def _common_options(p: argparse.ArgumentParser, default: Any) -> None:
    """Options valid before the command and after it (``pingchat user list --init``)."""
    p.add_argument(
        "--data-dir",
        default=default,
        metavar="DIR",
        help=f"the server's data directory (default: ${DATA_DIR_ENV}, else data_dir in"
        " --config, else ./pingchat-data)",
    )
    p.add_argument(
        "--config",
        default=default,
        metavar="FILE",
        help="the server's TOML config file, for its data_dir and min-password-length",
    )
    p.add_argument(
        "--store",
        default=default,
        metavar="URL",
        help="the server's store: sqlite (in the data dir) or postgresql://USER@HOST/DB"
        " (default: store in --config, else sqlite)",
    )
    p.add_argument(
        "--init",
        action="store_true",
        default=default,
        help="create the data dir if there is none (otherwise that is an error)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pingchat",
        description="Administer a pingchat data dir, or chat. The data dir is found as the"
        f" server finds it: --data-dir, else ${DATA_DIR_ENV}, else data_dir in --config,"
        " else ./pingchat-data.",
    )
    p.add_argument("--version", action="version", version=f"pingchat {__version__}")
    _common_options(p, None)
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    user = sub.add_parser("user", help="manage accounts", parents=[common])
    user.add_argument(
        "action",
        choices=["add", "list", "passwd", "disable", "enable", "promote", "demote", "delete"],
    )
    user.add_argument("name", nargs="?", help="account name")
    user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    user.add_argument(
        "--min-password-length",
        type=int,
        default=None,
        metavar="N",
        help="password policy (default: min-password-length in --config, else 8)",
    )
    user.add_argument("--admin", action="store_true", help="with add: create an admin")
    user.add_argument(
        "--deleted-messages",
        choices=["remove", "anonymise"],
        default=None,
        help="with delete: remove the account's messages, or keep its room messages under"
        " a placeholder name (default: deleted-messages in --config, else remove)",
    )
    user.add_argument(
        "--yes", action="store_true", help="with delete: do not ask for confirmation"
    )
    user.set_defaults(func=cmd_user)
    fingerprint = sub.add_parser(
        "fingerprint",
        parents=[common],
        help="print the SHA-256 fingerprint of the server's TLS certificate,"
        " for users to compare when their client first connects",
    )
    fingerprint.set_defaults(func=cmd_fingerprint)
    invite = sub.add_parser(
        "invite",
        parents=[common],
        help="invite codes, for a server started with --registration invite",
        description="create prints a new code once (on standard output); list shows"
        " every code's state (the codes themselves are not kept); revoke takes an id"
        " from list, or the code.",
    )
    invite.add_argument("action", choices=["create", "list", "revoke"])
    invite.add_argument("invite", nargs="?", help="with revoke: the invite's id, or its code")
    invite.add_argument(
        "--uses",
        type=int,
        default=1,
        metavar="N",
        help="with create: how many accounts it may create (default: 1)",
    )
    invite.add_argument(
        "--expires-days",
        type=float,
        default=INVITE_DAYS,
        metavar="D",
        help=f"with create: days it stays valid, 0 for ever (default: {INVITE_DAYS:g})",
    )
    invite.set_defaults(func=cmd_invite)
    status = sub.add_parser(
        "status",
        parents=[common],
        help="show a running server's connections, sessions, messages and timings",
        description="Reads the running server's Prometheus metrics (its --metrics"
        " listener) and prints its essentials. The URL is --metrics-url, else the one"
        " the server running on the data dir wrote there, else the first metrics"
        " listener in --config, else http://127.0.0.1:9464/metrics.",
    )
    status.add_argument("--metrics-url", default=None, metavar="URL", help="where to scrape")
    status.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="seconds to wait (default: 5)"
    )
    status.set_defaults(func=cmd_status)
    backup = sub.add_parser(
        "backup",
        parents=[common],
        help="archive the data dir (database, keys, certificate), also while the server runs",
        description="Writes one archive (mode 0600; gzip unless DEST ends in .tar) with a"
        " consistent copy of the database and the data dir's keys and certificate.",
    )
    backup.add_argument(
        "dest", metavar="DEST", help="a file, a directory (a timestamped name inside), or -"
    )
    backup.add_argument("--force", action="store_true", help="replace DEST if it exists")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser(
        "restore",
        parents=[common],
        help="check a backup and restore it into the data dir (the server must be stopped)",
        description="Checks the whole archive, then puts it in place of the data dir in one"
        " step. A data dir that is not empty needs --force and is moved aside, not deleted.",
    )
    restore.add_argument("archive", metavar="ARCHIVE", help="a file written by pingchat backup")
    restore.add_argument(
        "--force",
        action="store_true",
        help="restore over a data dir that is not empty (moved to DIR.before-restore-TIME)",
    )
    restore.add_argument(
        "--check", action="store_true", help="only check the archive; change nothing"
    )
    restore.set_defaults(func=cmd_restore)
    store_cmd = sub.add_parser(
        "store",
        help="move a community's SQLite database to PostgreSQL",
        description="copy SQLITE_FILE URL copies every table of a server's SQLite database"
        " (DATA_DIR/pingchat.sqlite3) into an empty PostgreSQL database, then compares each"
        " table's row count and checksum on both sides; exit status 1 if any differs."
        " The server must be stopped.",
    )
    store_cmd.add_argument("action", choices=["copy"])
    store_cmd.add_argument("sqlite_file", metavar="SQLITE_FILE")
    store_cmd.add_argument("url", metavar="URL", help="postgresql://USER@HOST/DB")
    store_cmd.set_defaults(func=cmd_store)
    client = sub.add_parser("client", help="the terminal chat client")
    client.add_argument("server", help="HOST[:PORT] (default port 7464)")
    try:
        from pingchat.client.main import add_arguments
    except ImportError:
        pass
    else:
        add_arguments(client)
    client.set_defaults(func=cmd_client)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args: Any = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CommandError, ChatError) as e:
        print(f"pingchat: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pingchat: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"pingchat: error: {e.strerror or e}", file=sys.stderr)
        return 1
