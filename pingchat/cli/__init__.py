"""The ``pingchat`` command: offline administration of a data dir, and the client.

Works on the same database as a running server (SQLite: WAL lets both in;
or the server's PostgreSQL, ``--store`` or ``store`` in ``--config``),
through the store's methods; accounts changed here take effect at their
next login.

The package: :mod:`~pingchat.cli.common` (finding the data dir and the
store, as the server does), :mod:`~pingchat.cli.accounts` (``user``,
``invite``) and :mod:`~pingchat.cli.datadir` (``store``, ``fingerprint``,
``status``, ``backup``, ``restore``, and ``client``); here, the command
line itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pingchat import __version__
from pingchat.chat.accounts import INVITE_DAYS
from pingchat.cli.accounts import cmd_invite, cmd_user
from pingchat.cli.common import CommandError
from pingchat.cli.datadir import (
    cmd_backup,
    cmd_client,
    cmd_fingerprint,
    cmd_restore,
    cmd_status,
    cmd_store,
)
from pingchat.config import DATA_DIR_ENV
from pingchat.errors import ChatError

__all__ = ["main", "parser"]

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
