"""``pingchat user`` (add, list, passwd, disable, enable, promote, demote, delete)
and ``pingchat invite``."""

from __future__ import annotations

import argparse
import sys

from pingchat.auth.passwords import (
    bcrypt_rounds,
    check_password_policy,
    hash_password_blocking,
)
from pingchat.auth.sealing import KEY_FILE, Sealer
from pingchat.chat.accounts import (
    RECOVERY_CODES,
    check_invite_terms,
    invite_expiry,
    is_reserved_name,
    new_recovery_code,
    recovery_code_hash,
)
from pingchat.chat.erasure import DAY_MS, RESERVE_DAYS, name_digest
from pingchat.cli.common import (
    CommandError,
    actor,
    audit,
    data_dir_of,
    min_password_length,
    now_ms,
    open_data_store,
    read_password,
    settings_file,
    store_url_of,
    sync,
)
from pingchat.errors import InvalidName
from pingchat.model import check_account_name, iso_ms
from pingchat.store import Store
from pingchat.store.erasure import BATCH, MODES, Erased


def cmd_user(args: argparse.Namespace) -> int:
    store = open_data_store(args)
    action = args.action
    if action == "list":
        accounts = sync(store.list_accounts())
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
        password = check_password_policy(read_password(args), min_password_length(args))
        hashed = hash_password_blocking(password.encode("utf-8"), bcrypt_rounds())
        role = "admin" if args.admin else "user"
        account = sync(store.create_account(name, hashed, now_ms(), role))
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        sync(store.set_recovery_codes(account.id, [recovery_code_hash(c) for c in codes]))
        audit(store, "register", account.name)
        print(f"created {role} {account.name}")
        print("recovery codes (shown once; each resets the password once):")
        for code in codes:
            print(f"  {code}")
        return 0
    if action == "passwd":
        password = check_password_policy(read_password(args), min_password_length(args))
        hashed = hash_password_blocking(password.encode("utf-8"), bcrypt_rounds())
        account = sync(store.set_password(name, hashed, None))
        audit(store, "passwd_reset", account.name)
        print(f"password of {account.name} changed; all its sessions were logged out")
        return 0
    if action in ("disable", "enable"):
        account = sync(store.set_disabled(name, action == "disable"))
        audit(store, action, account.name)
        print(f"{account.name} {action}d")
        return 0
    if action == "delete":
        return _delete_user(args, store, name)
    if action in ("promote", "demote"):
        role = "admin" if action == "promote" else "user"
        account = sync(store.set_role(name, role))
        audit(store, action, account.name)
        print(f"{account.name} is now {role}")
        return 0
    raise CommandError(f"unknown action: {action}")


def _deleted_messages(args: argparse.Namespace) -> str:
    """What deleting does to room messages: the option, else the config file's, else remove."""
    value = args.deleted_messages or settings_file(args).get("deleted_messages", "remove")
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
    data_dir, source = data_dir_of(args)
    if store_url_of(args) is not None and not (data_dir / KEY_FILE).exists():
        raise CommandError(
            f"no {KEY_FILE} in {data_dir.absolute()} ({source}): deleting an account needs"
            " the server's data dir (--data-dir), whose key the server recognises names by"
        )
    return Sealer.from_data_dir(data_dir)


def _delete_user(args: argparse.Namespace, store: Store, name: str) -> int:
    """Delete an account, in short transactions that a running server's writes
    go between; the server ends its sessions within two seconds (DeletionWatcher)."""
    mode = _deleted_messages(args)
    account = sync(store.get_account(name))
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
    now = now_ms()
    deletion = sync(
        store.begin_account_deletion(name, digest, now, now + RESERVE_DAYS * DAY_MS)
    )
    erased = Erased()
    while (batch := sync(store.erase_messages(deletion, mode, BATCH))).total:
        erased += batch
    erased += sync(store.finish_account_deletion(deletion, mode, now_ms()))
    audit(
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
            sync(store.db.checkpoint())
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
    store = open_data_store(args)
    now = now_ms()
    if args.action == "create":
        uses, days = check_invite_terms(args.uses, args.expires_days)
        code = new_recovery_code()
        expires = invite_expiry(now, days)
        invite_id = sync(
            store.add_invite_code(recovery_code_hash(code), now, actor(), expires, uses)
        )
        audit(store, "invite_create", None, invite=invite_id, uses=uses, expires_at=expires)
        print(code)
        until = f"until {iso_ms(expires)}" if expires is not None else "with no expiry"
        print(
            f"invite {invite_id}: {uses} use(s), {until}; the code is shown only now",
            file=sys.stderr,
        )
        return 0
    if args.action == "list":
        invites = sync(store.list_invite_codes())
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
        found = sync(store.find_invite_code(recovery_code_hash(which)))
    if found is None or not sync(store.revoke_invite_code(found, now)):
        raise CommandError("no such invite to revoke, or revoked already (see 'invite list')")
    audit(store, "invite_revoke", None, invite=found)
    print(f"invite {found} revoked")
    return 0
