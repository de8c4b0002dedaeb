"""``pingchat backup``: the database as one read transaction saw it, and the data
files, into an archive that appears whole or not at all."""

from __future__ import annotations

import datetime
import errno
import gzip
import hashlib
import io
import json
import os
import sqlite3
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import attrs

from pingchat import __version__
from pingchat.backup.archive import (
    CHUNK,
    DATA_FILES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MAX_SMALL_FILE,
    BackupError,
    fsync_dir,
    timestamp,
    uri_path,
)
from pingchat.config import DATABASE_FILE


def _iso(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def snapshot_database(
    database: Path,
    into: Path,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Copy *database* to the new file *into* as of one moment; its schema version.

    ``VACUUM INTO`` from a read-only connection, in WAL mode a reader like
    any other: writers go on committing while it runs, and what it copies
    is the database as of the moment its read transaction began (as it
    starts). *progress*, for tests, is called while the copy runs (from
    SQLite's progress handler, every 100 virtual machine instructions) with
    the number of calls so far.
    """
    if not database.is_file():
        raise BackupError(f"no pingchat database at {database}")
    conn = sqlite3.connect(f"file:{uri_path(database)}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        if progress is not None:
            calls = 0

            def handler() -> int:
                nonlocal calls
                calls += 1
                progress(calls)
                return 0

            conn.set_progress_handler(handler, 100)
        try:
            conn.execute("VACUUM INTO ?", (str(into),))
        except sqlite3.DatabaseError as e:
            raise BackupError(f"cannot copy the database {database}: {e}") from e
        finally:
            conn.set_progress_handler(None, 0)
    finally:
        conn.close()
    copy = sqlite3.connect(f"file:{uri_path(into)}?mode=ro", uri=True)
    try:
        return int(copy.execute("PRAGMA user_version").fetchone()[0])
    finally:
        copy.close()


@attrs.frozen
class Member:
    """One file of a backup: its name in the archive, where its bytes are, their digest."""

    name: str
    source: Path
    size: int
    sha256: str


def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def collect(data_dir: Path, workdir: Path) -> tuple[dict[str, Any], list[Member]]:
    """Snapshot the database into *workdir*, copy the data files; the manifest and members.

    The small files are copied too, so that what is hashed is what is
    archived even if one is replaced meanwhile (a certificate renewal).
    """
    snapshot = workdir / DATABASE_FILE
    schema = snapshot_database(data_dir / DATABASE_FILE, snapshot)
    members = [Member(DATABASE_FILE, snapshot, *_digest(snapshot))]
    for name in DATA_FILES:
        try:
            data = _read_small(data_dir / name)
        except FileNotFoundError:
            continue
        copy = workdir / name
        _write_new(copy, data, 0o600)
        members.append(Member(name, copy, len(data), hashlib.sha256(data).hexdigest()))
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pingchat_version": __version__,
        "schema_version": schema,
        "created_at": _iso(datetime.datetime.now(datetime.UTC)),
        "data_dir": str(data_dir.absolute()),
        "files": [{"name": m.name, "size": m.size, "sha256": m.sha256} for m in members],
    }
    return manifest, members


def _read_small(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_SMALL_FILE + 1)
    if len(data) > MAX_SMALL_FILE:
        raise BackupError(f"{path} is larger than {MAX_SMALL_FILE} bytes: not a pingchat file")
    return data


def write_archive(
    out: IO[bytes], manifest: dict[str, Any], members: list[Member], *, compress: bool
) -> None:
    """The archive: the manifest first, then every member, all of them mode 0600."""
    mtime = int(datetime.datetime.now(datetime.UTC).timestamp())
    stream: IO[bytes] = (
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=mtime)  # type: ignore[assignment]
        if compress
        else out
    )
    try:
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            text = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8") + b"\n"
            tar.addfile(_info(MANIFEST, len(text), mtime), io.BytesIO(text))
            for m in members:
                with m.source.open("rb") as f:
                    tar.addfile(_info(m.name, m.size, mtime), f)
    finally:
        if compress:
            stream.close()


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o600
    info.type = tarfile.REGTYPE
    return info


@attrs.frozen
class BackupDone:
    path: Path | None  # None: written to standard output
    manifest: dict[str, Any]


def backup_path(dest: str, now: datetime.datetime) -> Path:
    """The archive's path: *dest* itself, or a timestamped name if it is a directory."""
    path = Path(dest)
    if path.is_dir():
        return path / f"pingchat-backup-{timestamp(now)}.tar.gz"
    if dest.endswith(os.sep) or not path.parent.is_dir():
        where = path if dest.endswith(os.sep) else path.parent
        raise BackupError(f"no directory {where} to write the backup into")
    return path


def backup(
    data_dir: Path,
    dest: str,
    *,
    force: bool = False,
    stdout: IO[bytes] | None = None,
) -> BackupDone:
    """Back up *data_dir* into the archive *dest* (a file, a directory, or ``-``).

    The archive is written under a temporary name in its own directory,
    synced, then linked to its name: it appears whole or not at all, and an
    existing file is replaced only with *force*.
    """
    if not (data_dir / DATABASE_FILE).is_file():
        raise BackupError(f"no pingchat database in {data_dir.absolute()}")
    if dest == "-":
        out = stdout if stdout is not None else sys.stdout.buffer
        if out.isatty():
            raise BackupError("standard output is a terminal: give a file or a directory")
        with tempfile.TemporaryDirectory(prefix="pingchat-backup-") as work:
            manifest, members = collect(data_dir, Path(work))
            write_archive(out, manifest, members, compress=True)
            out.flush()
        return BackupDone(None, manifest)
    path = backup_path(dest, datetime.datetime.now(datetime.UTC))
    if path.exists() and not force:
        raise BackupError(f"{path} exists: choose another name, or --force to replace it")
    with tempfile.TemporaryDirectory(prefix=".pingchat-backup-", dir=path.parent) as work:
        manifest, members = collect(data_dir, Path(work))
        partial = Path(work) / "archive.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            write_archive(f, manifest, members, compress=not path.name.endswith(".tar"))
            f.flush()
            os.fsync(f.fileno())
        _publish(partial, path, force)
    fsync_dir(path.parent)
    return BackupDone(path, manifest)


def _publish(partial: Path, path: Path, force: bool) -> None:
    """Give the finished archive its name: never over a file unless *force*."""
    if force:
        os.replace(partial, path)
        return
    try:
        os.link(partial, path)  # fails if the name is taken, whatever happened meanwhile
    except FileExistsError:
        raise BackupError(f"{path} exists: choose another name, or --force to replace it") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if path.exists():  # a file system without hard links
            raise BackupError(
                f"{path} exists: choose another name, or --force to replace it"
            ) from None
        os.rename(partial, path)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
