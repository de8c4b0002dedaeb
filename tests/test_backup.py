"""``pingchat backup`` and ``pingchat restore``: the archive, its checks, the swap."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from pingchat.admin.manhole import ensure_host_key
from pingchat.auth.sealing import Sealer
from pingchat.backup import (
    DATA_FILES,
    MANIFEST,
    BackupError,
    backup,
    check_archive,
    restore,
    snapshot_database,
)
from pingchat.cli import main
from pingchat.config import DATABASE_FILE
from pingchat.startup import LOCK_FILE, DataDirLock
from pingchat.store import migrations
from pingchat.store.accounts import _create_account
from pingchat.store.database import Database
from pingchat.store.messages import _add_room_message
from pingchat.store.rooms import _create_room
from pingchat.tls import ensure_certificate

NOW = datetime.datetime(2026, 11, 21, 22, 44, 16, tzinfo=datetime.UTC)


def make_data_dir(path: Path, messages: int = 3) -> None:
    """A data dir as a server leaves it: database (WAL), keys, certificate, lock."""
    path.mkdir(mode=0o700, parents=True)
    db = Database(path / DATABASE_FILE, threaded=False)
    account = db.run_sync(_create_account, "alice", b"hash", 0, "user")
    room = db.run_sync(_create_room, "#lobby", 0)
    for i in range(messages):
        db.run_sync(
            _add_room_message, room.id, room.name, "alice", account.id, f"m{i}", "privmsg", i
        )
    db.stop()
    ensure_certificate(path, "localhost")
    Sealer.from_data_dir(path)
    ensure_host_key(path)
    (path / LOCK_FILE).write_text("12345\n")


def texts(database: Path) -> list[str]:
    conn = sqlite3.connect(database)
    try:
        return [row[0] for row in conn.execute("SELECT body FROM messages ORDER BY id")]
    finally:
        conn.close()


def tar_bytes(entries: list[tarfile.TarInfo | tuple[str, bytes]], compress: bool = True) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue()) if compress else raw.getvalue()


def manifest_of(files: dict[str, bytes], schema: int, **changes: Any) -> bytes:
    manifest = {
        "format": "pingchat-backup",
        "format_version": 1,
        "pingchat_version": "0.1.0",
        "schema_version": schema,
        "created_at": "2026-11-21T22:44:16Z",
        "files": [
            {"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for n, d in files.items()
        ],
    }
    manifest.update(changes)
    return json.dumps(manifest).encode()


class BackupCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="pingchat-backup-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.data = self.tmp / "data"
        make_data_dir(self.data)
        self.out = self.tmp / "backups"
        self.out.mkdir()

    def take(self) -> Path:
        done = backup(self.data, str(self.out))
        assert done.path is not None
        return done.path

    def members(self, archive: Path) -> dict[str, bytes]:
        with tarfile.open(archive) as tar:
            found = {}
            for m in tar.getmembers():
                f = tar.extractfile(m)
                assert f is not None
                found[m.name] = f.read()
        return found


class BackupTests(BackupCase):
    def test_archive_is_private_and_named_by_time_in_a_directory(self) -> None:
        archive = self.take()
        self.assertEqual(archive.parent, self.out)
        self.assertRegex(archive.name, r"^pingchat-backup-\d{8}T\d{6}Z\.tar\.gz$")
        self.assertEqual(stat.S_IMODE(archive.stat().st_mode), 0o600)
        self.assertEqual([p.name for p in self.out.iterdir()], [archive.name])  # no temp left

    def test_manifest_comes_first_and_describes_every_member(self) -> None:
        archive = self.take()
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            self.assertTrue(all(m.mode == 0o600 and m.isreg() for m in tar.getmembers()))
        self.assertEqual(names[0], MANIFEST)
        members = self.members(archive)
        manifest = json.loads(members.pop(MANIFEST))
        self.assertEqual(manifest["schema_version"], max(n for n, _ in migrations.available()))
        self.assertEqual(manifest["format"], "pingchat-backup")
        self.assertIn("pingchat_version", manifest)
        self.assertRegex(manifest["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        listed = {f["name"]: (f["size"], f["sha256"]) for f in manifest["files"]}
        self.assertEqual(
            listed, {n: (len(d), hashlib.sha256(d).hexdigest()) for n, d in members.items()}
        )
        self.assertEqual(set(members), {DATABASE_FILE, *DATA_FILES} - {"manhole_authorized_keys"})

    def test_the_lock_file_and_the_wal_stay_out(self) -> None:
        (self.data / "manhole_authorized_keys").write_text("alice ssh-ed25519 AAAA\n")
        names = set(self.members(self.take()))
        self.assertIn("manhole_authorized_keys", names)
        self.assertFalse({LOCK_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm"} & names)

    def test_keys_are_copied_byte_for_byte(self) -> None:
        members = self.members(self.take())
        for name in ("tls-key.pem", "tls-cert.pem", "secret.key", "ssh_host_key"):
            self.assertEqual(members[name], (self.data / name).read_bytes(), name)

    def test_an_existing_file_is_kept_without_force(self) -> None:
        target = self.out / "nightly.tar.gz"
        target.write_bytes(b"yesterday")
        with self.assertRaises(BackupError) as e:
            backup(self.data, str(target))
        self.assertIn("--force", str(e.exception))
        self.assertEqual(target.read_bytes(), b"yesterday")
        self.assertEqual([p.name for p in self.out.iterdir()], ["nightly.tar.gz"])

    def test_force_replaces_an_existing_file_with_a_private_one(self) -> None:
        target = self.out / "nightly.tar.gz"
        target.write_bytes(b"yesterday")
        target.chmod(0o644)
        backup(self.data, str(target), force=True)
        self.assertEqual(stat.S_IMODE(target.stat().st_mode), 0o600)
        self.assertEqual(
            check_archive(target).files.keys(), self.members(target).keys() - {MANIFEST}
        )

    def test_a_name_ending_in_tar_is_not_compressed(self) -> None:
        target = self.out / "b.tar"
        backup(self.data, str(target))
        self.assertTrue(tarfile.is_tarfile(target))
        with tarfile.open(target, "r:") as tar:  # plain tar, or this raises
            self.assertEqual(tar.getnames()[0], MANIFEST)

    def test_standard_output(self) -> None:
        out = io.BytesIO()
        done = backup(self.data, "-", stdout=out)
        self.assertIsNone(done.path)
        archive = self.tmp / "from-stdout.tar.gz"
        archive.write_bytes(out.getvalue())
        self.assertEqual(check_archive(archive).schema_version, done.manifest["schema_version"])
        self.assertEqual(list(self.out.iterdir()), [])

    def test_no_directory_to_write_into(self) -> None:
        with self.assertRaises(BackupError) as e:
            backup(self.data, str(self.tmp / "missing" / "b.tar.gz"))
        self.assertIn("no directory", str(e.exception))

    def test_no_database(self) -> None:
        (self.tmp / "empty").mkdir()
        with self.assertRaises(BackupError) as e:
            backup(self.tmp / "empty", str(self.out))
        self.assertIn("no pingchat database", str(e.exception))

    def test_the_copy_is_one_moment_and_lets_the_writer_commit_meanwhile(self) -> None:
        """A writer that will not wait at all commits in the middle of the copy.

        (busy_timeout 0: had the copy held the write lock, or a lock that
        keeps writers out, the INSERT would fail with "database is locked".)
        """
        data = self.tmp / "bigger"
        make_data_dir(data, messages=300)
        wrote = []

        def write_now(calls: int) -> None:
            if calls != 20:  # well into the copy (it begins reading at the 3rd call)
                return
            conn = sqlite3.connect(data / DATABASE_FILE, isolation_level=None, timeout=0)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "INSERT INTO messages (ts, conversation, sender, kind, body)"
                    " VALUES (9, 'r:1', 'bob', 'privmsg', 'during the copy')"
                )
                conn.execute("COMMIT")
                wrote.append(True)
            finally:
                conn.close()

        copy = self.tmp / "copy.sqlite3"
        snapshot_database(data / DATABASE_FILE, copy, progress=write_now)
        self.assertEqual(wrote, [True])
        self.assertEqual(texts(copy), [f"m{i}" for i in range(300)])
        self.assertEqual(texts(data / DATABASE_FILE)[-1], "during the copy")


class ArchiveCheckTests(BackupCase):
    """Every kind of bad archive is refused, and nothing is written anywhere."""

    def setUp(self) -> None:
        super().setUp()
        self.good = self.members(self.take())
        self.files = {n: d for n, d in self.good.items() if n != MANIFEST}
        self.schema = json.loads(self.good[MANIFEST])["schema_version"]
        self.target = self.tmp / "restored"

    def refused(self, data: bytes, expect: str) -> str:
        archive = self.tmp / "bad.tar.gz"
        archive.write_bytes(data)
        before = sorted(p.name for p in self.tmp.iterdir())
        with self.assertRaises(BackupError) as e:
            restore(archive, self.target)
        message = str(e.exception)
        self.assertIn(expect, message)
        self.assertNotIn("\n", message)
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), before)  # no temp dir left
        self.assertFalse(self.target.exists())
        return message

    def archive(self, files: dict[str, bytes] | None = None, **manifest: Any) -> bytes:
        files = self.files if files is None else files
        return tar_bytes([(MANIFEST, manifest_of(files, self.schema, **manifest)), *files.items()])

    def test_the_archive_made_by_backup_passes(self) -> None:
        archive = self.tmp / "good.tar.gz"
        archive.write_bytes(self.archive())
        restore(archive, self.target)
        self.assertEqual(texts(self.target / DATABASE_FILE), ["m0", "m1", "m2"])

    def test_not_an_archive(self) -> None:
        self.refused(b"just some text\n" * 20, "not a tar archive")

    def test_truncated(self) -> None:
        data = self.archive()
        self.refused(data[: len(data) // 2], "damaged")

    def test_no_manifest(self) -> None:
        self.refused(tar_bytes(list(self.files.items())), "first member is not manifest.json")

    def test_manifest_not_first(self) -> None:
        items = list(self.files.items())
        manifest = (MANIFEST, manifest_of(self.files, self.schema))
        self.refused(tar_bytes([items[0], manifest, *items[1:]]), "first member")

    def test_manifest_not_json(self) -> None:
        self.refused(tar_bytes([(MANIFEST, b"{nope"), *self.files.items()]), "not JSON")

    def test_manifest_of_something_else(self) -> None:
        self.refused(self.archive(format="other-backup"), "not a pingchat backup")

    def test_newer_backup_format(self) -> None:
        self.refused(self.archive(format_version=2), "newer than this pingchat")

    def test_missing_member(self) -> None:
        files = dict(self.files)
        members = {n: d for n, d in files.items() if n != "secret.key"}
        data = tar_bytes([(MANIFEST, manifest_of(files, self.schema)), *members.items()])
        self.refused(data, "lacks secret.key")

    def test_extra_member(self) -> None:
        listed = {n: d for n, d in self.files.items() if n != "secret.key"}
        data = tar_bytes([(MANIFEST, manifest_of(listed, self.schema)), *self.files.items()])
        self.refused(data, "holds secret.key, which its manifest does not list")

    def test_unknown_member(self) -> None:
        files = {**self.files, "notes.txt": b"hello"}
        self.refused(self.archive(files), "no file of a pingchat data dir")

    def test_changed_member(self) -> None:
        manifest = manifest_of(self.files, self.schema)
        key = self.files["secret.key"]
        changed = {**self.files, "secret.key": bytes([key[0] ^ 1]) + key[1:]}
        self.refused(
            tar_bytes([(MANIFEST, manifest), *changed.items()]),
            "secret.key does not match the manifest's SHA-256",
        )

    def test_member_of_another_size(self) -> None:
        manifest = manifest_of(self.files, self.schema)
        changed = {**self.files, "secret.key": self.files["secret.key"] + b"\n"}
        self.refused(tar_bytes([(MANIFEST, manifest), *changed.items()]), "the manifest says")

    def test_duplicate_member(self) -> None:
        manifest = manifest_of(self.files, self.schema)
        items = list(self.files.items())
        self.refused(tar_bytes([(MANIFEST, manifest), *items, items[-1]]), "twice")

    def test_path_traversal(self) -> None:
        manifest = manifest_of(self.files, self.schema)
        entries = [(MANIFEST, manifest), *self.files.items(), ("../secret.key", b"x")]
        self.refused(tar_bytes(entries), "names a path")

    def test_absolute_path(self) -> None:
        manifest = manifest_of(self.files, self.schema)
        entries = [(MANIFEST, manifest), ("/tmp/secret.key", b"x"), *self.files.items()]
        self.refused(tar_bytes(entries), "names a path")

    def test_path_in_the_manifest(self) -> None:
        files = {**self.files, "keys/secret.key": b"x"}
        self.refused(self.archive(files), "names a path")

    def test_symlink(self) -> None:
        link = tarfile.TarInfo("tls-key.pem")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        files = {n: d for n, d in self.files.items() if n != "tls-key.pem"}
        manifest = manifest_of({**files, "tls-key.pem": b""}, self.schema)
        self.refused(tar_bytes([(MANIFEST, manifest), *files.items(), link]), "is a link")

    def test_hard_link(self) -> None:
        link = tarfile.TarInfo("tls-key.pem")
        link.type = tarfile.LNKTYPE
        link.linkname = "secret.key"
        files = {n: d for n, d in self.files.items() if n != "tls-key.pem"}
        manifest = manifest_of({**files, "tls-key.pem": b""}, self.schema)
        self.refused(tar_bytes([(MANIFEST, manifest), *files.items(), link]), "is a link")

    def test_directory_member(self) -> None:
        folder = tarfile.TarInfo("ssh_host_key")
        folder.type = tarfile.DIRTYPE
        files = {n: d for n, d in self.files.items() if n != "ssh_host_key"}
        manifest = manifest_of({**files, "ssh_host_key": b""}, self.schema)
        self.refused(tar_bytes([(MANIFEST, manifest), *files.items(), folder]), "not a regular")

    def test_no_database(self) -> None:
        files = {n: d for n, d in self.files.items() if n != DATABASE_FILE}
        self.refused(self.archive(files), "holds no database")

    def with_database(self, *changes: str) -> dict[str, bytes]:
        path = self.tmp / "changed.sqlite3"
        path.write_bytes(self.files[DATABASE_FILE])
        conn = sqlite3.connect(path)
        for change in changes:
            conn.execute(change)
        conn.commit()
        conn.close()
        return {**self.files, DATABASE_FILE: path.read_bytes()}

    def test_newer_schema(self) -> None:
        newer = self.schema + 1
        files = self.with_database(f"PRAGMA user_version = {newer}")
        data = tar_bytes([(MANIFEST, manifest_of(files, newer)), *files.items()])
        self.refused(data, f"schema version {newer}, newer than this pingchat knows")

    def test_schema_other_than_the_manifest_says(self) -> None:
        files = self.with_database(f"PRAGMA user_version = {self.schema - 1}")
        self.refused(self.archive(files), "the manifest says")

    def test_database_that_fails_the_integrity_check(self) -> None:
        # An index that no longer matches its table: SQLite opens and reads
        # the file happily; only the integrity check finds it.
        files = self.with_database(
            "PRAGMA writable_schema = ON",
            "UPDATE sqlite_schema SET sql = 'CREATE INDEX messages_conversation ON messages"
            " (sender, id)' WHERE name = 'messages_conversation'",
        )
        self.refused(
            self.archive(files),
            "fails PRAGMA integrity_check: row 1 missing from index messages_conversation",
        )

    def test_damaged_database(self) -> None:
        data = bytearray(self.files[DATABASE_FILE])
        data[3 * 4096] = 0x01  # page 4's b-tree page type: no such type
        self.refused(self.archive({**self.files, DATABASE_FILE: bytes(data)}), "its database")

    def test_not_a_database(self) -> None:
        files = {**self.files, DATABASE_FILE: b"SQLite format 2\x00" + b"x" * 5000}
        self.refused(self.archive(files), "its database")


class RestoreTests(BackupCase):
    def setUp(self) -> None:
        super().setUp()
        self.archive = self.take()

    def test_restores_into_a_new_data_dir_with_private_modes(self) -> None:
        target = self.tmp / "new" / "data"
        done = restore(self.archive, target, now=NOW)
        self.assertIsNone(done.moved_aside)
        self.assertEqual(stat.S_IMODE(target.stat().st_mode), 0o700)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in target.iterdir()}
        self.assertEqual(
            modes,
            {
                DATABASE_FILE: 0o600,
                "tls-key.pem": 0o600,
                "tls-cert.pem": 0o644,
                "secret.key": 0o600,
                "ssh_host_key": 0o600,
            },
        )
        for name in ("tls-key.pem", "tls-cert.pem", "secret.key", "ssh_host_key"):
            self.assertEqual((target / name).read_bytes(), (self.data / name).read_bytes())
        self.assertEqual(texts(target / DATABASE_FILE), ["m0", "m1", "m2"])
        self.assertEqual(sorted(p.name for p in target.parent.iterdir()), ["data"])

    def test_an_empty_data_dir_is_simply_filled(self) -> None:
        target = self.tmp / "empty"
        target.mkdir()
        done = restore(self.archive, target, now=NOW)
        self.assertIsNone(done.moved_aside)
        self.assertEqual(texts(target / DATABASE_FILE), ["m0", "m1", "m2"])

    def test_a_data_dir_that_is_not_empty_needs_force(self) -> None:
        other = self.tmp / "other"
        make_data_dir(other, messages=1)
        before = {p.name: p.read_bytes() for p in other.iterdir()}
        with self.assertRaises(BackupError) as e:
            restore(self.archive, other, now=NOW)
        self.assertIn("not empty: --force", str(e.exception))
        self.assertEqual({p.name: p.read_bytes() for p in other.iterdir()}, before)

    def test_force_moves_the_old_data_dir_aside(self) -> None:
        other = self.tmp / "other"
        make_data_dir(other, messages=1)
        before = {p.name: p.read_bytes() for p in other.iterdir()}
        done = restore(self.archive, other, force=True, now=NOW)
        aside = self.tmp / "other.before-restore-20261121T224416Z"
        self.assertEqual(done.moved_aside, aside)
        self.assertEqual({p.name: p.read_bytes() for p in aside.iterdir()}, before)
        self.assertEqual(texts(other / DATABASE_FILE), ["m0", "m1", "m2"])
        self.assertNotIn(LOCK_FILE, {p.name for p in other.iterdir()})
        again = restore(self.archive, other, force=True, now=NOW)
        self.assertEqual(again.moved_aside, self.tmp / "other.before-restore-20261121T224416Z-2")

    def test_without_an_atomic_exchange_two_renames_do(self) -> None:
        from pingchat.backup import restoring

        def no_libc(*args: Any, **kwargs: Any) -> Any:
            raise OSError("no renameat2 here")

        self.patch(restoring.ctypes, "CDLL", no_libc)
        other = self.tmp / "other"
        make_data_dir(other, messages=1)
        done = restore(self.archive, other, force=True, now=NOW)
        self.assertEqual(texts(other / DATABASE_FILE), ["m0", "m1", "m2"])
        assert done.moved_aside is not None
        self.assertEqual(texts(done.moved_aside / DATABASE_FILE), ["m0"])
        self.assertEqual(
            sorted(p.name for p in self.tmp.iterdir()),
            ["backups", "data", "other", "other.before-restore-20261121T224416Z"],
        )

    def test_a_running_servers_data_dir_is_refused_even_with_force(self) -> None:
        other = self.tmp / "other"
        make_data_dir(other, messages=1)
        (other / LOCK_FILE).unlink()
        lock = DataDirLock(other)
        lock.acquire()
        self.addCleanup(lock.release)
        before = sorted(p.name for p in self.tmp.iterdir())
        with self.assertRaises(BackupError) as e:
            restore(self.archive, other, force=True, now=NOW)
        self.assertIn(f"in use by a running pingchat server (pid {os.getpid()})", str(e.exception))
        self.assertEqual(texts(other / DATABASE_FILE), ["m0"])
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), before)

    def test_root_restores_files_owned_by_the_data_dirs_owner(self) -> None:
        if os.geteuid() != 0:
            raise SkipTest("only root can give files to another user")
        other = self.tmp / "other"
        make_data_dir(other, messages=1)
        (other / LOCK_FILE).unlink()
        for path in (other, *other.iterdir()):
            os.chown(path, 4321, 4322)
        restore(self.archive, other, force=True, now=NOW)
        owners = {(p.stat().st_uid, p.stat().st_gid) for p in (other, *other.iterdir())}
        self.assertEqual(owners, {(4321, 4322)})

    def test_the_restored_data_dir_opens_and_migrates(self) -> None:
        target = self.tmp / "opened"
        restore(self.archive, target)
        db = Database(target / DATABASE_FILE, threaded=False)
        self.addCleanup(db.stop)
        self.assertEqual(db.version, max(n for n, _ in migrations.available()))


class CommandTests(BackupCase):
    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        code = main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_backup_then_restore_elsewhere(self) -> None:
        code, out, err = self.run_cli("--data-dir", str(self.data), "backup", str(self.out))
        self.assertEqual((code, err), (0, ""))
        archive = next(self.out.iterdir())
        self.assertIn(f"written to {archive}:", out)
        code, out, err = self.run_cli("restore", str(archive), "--data-dir", str(self.tmp / "d2"))
        self.assertEqual(code, 0, err)
        self.assertIn("restored the backup", out)
        self.assertEqual(texts(self.tmp / "d2" / DATABASE_FILE), ["m0", "m1", "m2"])

    def test_check_changes_nothing(self) -> None:
        archive = self.take()
        code, out, _ = self.run_cli(
            "--data-dir", str(self.tmp / "nowhere"), "restore", "--check", str(archive)
        )
        self.assertEqual(code, 0)
        self.assertIn("a good backup", out)
        self.assertFalse((self.tmp / "nowhere").exists())

    def test_refusals_are_one_line_and_exit_1(self) -> None:
        archive = self.take()
        for argv in (
            ["--data-dir", str(self.data), "backup", str(archive)],
            ["--data-dir", str(self.data), "restore", str(archive)],
            ["--data-dir", str(self.tmp / "x"), "restore", str(self.tmp / "missing.tar.gz")],
            ["--data-dir", str(self.tmp / "nothing"), "backup", str(self.out)],
        ):
            code, _, err = self.run_cli(*argv)
            self.assertEqual(code, 1, argv)
            self.assertEqual(err.count("\n"), 1, err)
            self.assertTrue(err.startswith("pingchat: error: "), err)
