"""The ``pingchat`` command: offline administration of a data dir, and the client.

Works on the same SQLite database as a running server (WAL lets both in);
accounts changed here take effect at their next login.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pingchat import __version__
from pingchat.auth.passwords import (
    bcrypt_rounds,
    check_password_policy,
    hash_password_blocking,
)
from pingchat.chat.accounts import (
    RECOVERY_CODES,
    RESERVED_NAMES,
    new_recovery_code,
    recovery_code_hash,
)
from pingchat.chat.model import check_account_name, iso_ms
from pingchat.errors import ChatError, InvalidName
from pingchat.store import accounts as account_txns
from pingchat.store.audit import _add_audit
from pingchat.store.database import Database
from pingchat.store.security import _set_recovery_codes


class CommandError(Exception):
    """A one-line error for the user; exit status 1."""


def _now() -> int:
    import time

    return int(time.time() * 1000)


def _open(args: argparse.Namespace) -> Database:
    data_dir = Path(args.data_dir)
    path = data_dir / "pingchat.sqlite3"
    if not path.exists():
        if args.command == "user" and args.action == "add":
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            raise CommandError(
                f"no pingchat database in {data_dir}"
                " (run 'pingchat user add' or start the server first)"
            )
    return Database(path, threaded=False)


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


def _audit(db: Database, event: str, account: str) -> None:
    actor = f"cli:{getpass.getuser()}"
    db.run_sync(_add_audit, _now(), event, account, actor, None, None)


def cmd_user(args: argparse.Namespace) -> int:
    db = _open(args)
    action = args.action
    if action == "list":
        accounts = db.run_sync(account_txns._list_accounts)
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
        if name.lower() in RESERVED_NAMES:
            raise InvalidName(f"the name {name} is reserved")
        password = check_password_policy(_read_password(args), args.min_password_length)
        hashed = hash_password_blocking(password.encode("utf-8"), bcrypt_rounds())
        role = "admin" if args.admin else "user"
        account = db.run_sync(account_txns._create_account, name, hashed, _now(), role)
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        db.run_sync(_set_recovery_codes, account.id, [recovery_code_hash(c) for c in codes])
        _audit(db, "register", account.name)
        print(f"created {role} {account.name}")
        print("recovery codes (shown once; each resets the password once):")
        for code in codes:
            print(f"  {code}")
        return 0
    if action == "passwd":
        password = check_password_policy(_read_password(args), args.min_password_length)
        hashed = hash_password_blocking(password.encode("utf-8"), bcrypt_rounds())
        account = db.run_sync(account_txns._set_password, name, hashed, None)
        _audit(db, "passwd_reset", account.name)
        print(f"password of {account.name} changed; all its sessions were logged out")
        return 0
    if action in ("disable", "enable"):
        account = db.run_sync(account_txns._set_flag, name, "disabled", int(action == "disable"))
        _audit(db, action, account.name)
        print(f"{account.name} {action}d")
        return 0
    if action in ("promote", "demote"):
        role = "admin" if action == "promote" else "user"
        account = db.run_sync(account_txns._set_flag, name, "role", role)
        _audit(db, action, account.name)
        print(f"{account.name} is now {role}")
        return 0
    raise CommandError(f"unknown action: {action}")


def cmd_fingerprint(args: argparse.Namespace) -> int:
    """Print the SHA-256 fingerprint of the data dir's TLS certificate."""
    from pingchat.tls import CERT_FILE, certificate_fingerprint

    path = Path(args.data_dir) / CERT_FILE
    if not path.exists():
        raise CommandError(f"no certificate at {path} (it is made when the server first starts)")
    print(certificate_fingerprint(path))
    return 0


def cmd_client(args: argparse.Namespace) -> int:
    from pingchat.client.main import run

    return run(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pingchat", description="Administer a pingchat data dir, or chat."
    )
    p.add_argument("--version", action="version", version=f"pingchat {__version__}")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("PINGCHAT_DATA_DIR", "pingchat-data"),
        help="the server's data directory (default: ./pingchat-data)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    user = sub.add_parser("user", help="manage accounts")
    user.add_argument(
        "action",
        choices=["add", "list", "passwd", "disable", "enable", "promote", "demote"],
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
        default=8,
        metavar="N",
        help="password policy (default: 8)",
    )
    user.add_argument("--admin", action="store_true", help="with add: create an admin")
    user.set_defaults(func=cmd_user)
    fingerprint = sub.add_parser(
        "fingerprint",
        help="print the SHA-256 fingerprint of the server's TLS certificate,"
        " for users to compare when their client first connects",
    )
    fingerprint.set_defaults(func=cmd_fingerprint)
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
