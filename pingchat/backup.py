"""Backups of a data dir, taken while the server runs, and their restore.

A backup is one tar archive (gzip unless its name ends in ``.tar``), mode
0600, whose first member ``manifest.json`` names every other member with its
size and SHA-256. The database is copied with SQLite's ``VACUUM INTO`` from a
read-only connection: one read transaction, which in WAL mode never takes
the write lock, so the running server's writer commits on as usual (the
backup is the database as it was when that transaction began). SQLite's
backup API was the other candidate: in steps it starts again from the first
page whenever another connection writes, which under a server's steady
writes is for ever; in one step it copies free pages too, and with them
text that was deleted. ``VACUUM INTO`` copies live rows only.

Besides the database, a restore needs the data dir's secrets and
certificate (:data:`DATA_FILES`); the lock file, the WAL and anything else
in the data dir are left out.

A restore checks the whole archive before it touches the data dir: it
unpacks it into a new directory beside the data dir, member by member
against the manifest (plain file names only: no paths, no links), checks
the database (``PRAGMA integrity_check``, a schema this pingchat knows), and
only then swaps the new directory in. A data dir that a running server holds
(its ``server.lock``) is refused; one that is not empty needs ``force`` and is
moved aside, never deleted.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs

from pingchat import __version__
from pingchat.admin.manhole import AUTHORIZED_KEYS_FILE, HOST_KEY_FILE
from pingchat.auth.sealing import KEY_FILE as SEALING_KEY_FILE
from pingchat.config import DATABASE_FILE
from pingchat.startup import LOCK_FILE
from pingchat.store import migrations
from pingchat.tls import CERT_FILE, KEY_FILE

FORMAT = "pingchat-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST = 1 << 20
MAX_SMALL_FILE = 1 << 20  # a key, a certificate chain or a list of SSH keys

# What a restore needs besides the database, and the mode each is restored
# with. A file that the data dir lacks (no manhole, no TLS door) is left out.
DATA_FILES: dict[str, int] = {
    KEY_FILE: 0o600,
    CERT_FILE: 0o644,
    SEALING_KEY_FILE: 0o600,
    HOST_KEY_FILE: 0o600,
    AUTHORIZED_KEYS_FILE: 0o600,
}
MODES: dict[str, int] = {DATABASE_FILE: 0o600, **DATA_FILES}

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or a restore that cannot go on; the message is one line for the user."""


def timestamp(now: datetime.datetime) -> str:
    """``20261121T224416Z``: for file names, sorting as time does."""
    return now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _iso(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- taking a backup -----------------------------------------------------------------


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
    conn = sqlite3.connect(f"file:{_uri_path(database)}?mode=ro", uri=True, isolation_level=None)
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
    copy = sqlite3.connect(f"file:{_uri_path(into)}?mode=ro", uri=True)
    try:
        return int(copy.execute("PRAGMA user_version").fetchone()[0])
    finally:
        copy.close()


def _uri_path(path: Path) -> str:
    """*path* for a ``file:`` URI (``?`` and ``#`` would end the path)."""
    return str(path.absolute()).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


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
        while chunk := f.read(_CHUNK):
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
    _fsync_dir(path.parent)
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# -- checking an archive ---------------------------------------------------------------


@attrs.frozen
class Manifest:
    pingchat_version: str
    schema_version: int
    created_at: str
    files: dict[str, tuple[int, str]]  # name -> (size, sha256)


def parse_manifest(data: bytes) -> Manifest:
    """The manifest of an archive, or :class:`BackupError` saying what is wrong with it."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BackupError("its manifest.json is not JSON") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BackupError("its manifest.json is not a pingchat backup's")
    version = raw.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BackupError("its manifest.json has no format_version")
    if version > FORMAT_VERSION:
        raise BackupError(
            f"it is in backup format {version}, newer than this pingchat's"
            f" ({FORMAT_VERSION}): restore it with pingchat {raw.get('pingchat_version')}"
            " or later"
        )
    schema = raw.get("schema_version")
    files = raw.get("files")
    if not isinstance(schema, int) or isinstance(schema, bool) or not isinstance(files, list):
        raise BackupError("its manifest.json lacks schema_version or files")
    listed: dict[str, tuple[int, str]] = {}
    for entry in files:
        if not isinstance(entry, dict):
            raise BackupError("its manifest.json lists a file without name, size and sha256")
        name, size, digest = entry.get("name"), entry.get("size"), entry.get("sha256")
        if (
            not isinstance(name, str)
            or not isinstance(size, int)
            or isinstance(size, bool)
            or size < 0
            or not isinstance(digest, str)
            or not _SHA256.fullmatch(digest)
        ):
            raise BackupError("its manifest.json lists a file without name, size and sha256")
        _check_name(name)
        if name in listed:
            raise BackupError(f"its manifest.json lists {name} twice")
        listed[name] = (size, digest)
    if DATABASE_FILE not in listed:
        raise BackupError(f"it holds no database ({DATABASE_FILE})")
    return Manifest(
        str(raw.get("pingchat_version", "?")), schema, str(raw.get("created_at", "?")), listed
    )


def _check_name(name: str) -> None:
    """A member's name must be one of the data dir's files: no path, nothing unknown."""
    if name.startswith("/") or "/" in name or "\\" in name or name in ("", ".", ".."):
        raise BackupError(f"it names a path, not a file of the data dir: {name!r}")
    if name not in MODES:
        raise BackupError(f"it holds {name!r}, which is no file of a pingchat data dir")


def unpack(archive: Path, into: Path) -> Manifest:
    """Unpack *archive* into the empty directory *into*, checking every member.

    Refuses (:class:`BackupError`) an archive without a manifest first, a
    member that is not a plain regular file named in the manifest, a member
    whose size or SHA-256 differs, a member listed and absent, and a
    database that fails ``PRAGMA integrity_check`` or has a schema newer
    than this pingchat's. Nothing is written outside *into*.
    """
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed below, errors told apart
    except FileNotFoundError:
        raise BackupError(f"no such file: {archive}") from None
    except IsADirectoryError:
        raise BackupError(f"{archive} is a directory, not a backup") from None
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as e:
        raise BackupError(f"{archive} is not a tar archive: {_first_line(e)}") from None
    try:
        with tar:
            manifest = _unpack_members(tar, into)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise BackupError(f"{archive} is damaged: {_first_line(e)}") from None
    check_database(into / DATABASE_FILE, manifest.schema_version)
    _fsync_dir(into)
    return manifest


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0].rstrip(":")


def _unpack_members(tar: tarfile.TarFile, into: Path) -> Manifest:
    first = tar.next()
    if first is None or first.name != MANIFEST:
        raise BackupError(f"its first member is not {MANIFEST}: not a pingchat backup")
    if not first.isreg() or first.size > MAX_MANIFEST:
        raise BackupError(f"its {MANIFEST} is not a small regular file")
    data = _read_member(tar, first)
    manifest = parse_manifest(data)
    seen: set[str] = set()
    while (member := tar.next()) is not None:
        name = member.name
        _check_name(name)
        if member.issym() or member.islnk():
            raise BackupError(f"its member {name} is a link")
        if not member.isreg():
            raise BackupError(f"its member {name} is not a regular file")
        if name in seen:
            raise BackupError(f"it holds {name} twice")
        if name not in manifest.files:
            raise BackupError(f"it holds {name}, which its manifest does not list")
        size, digest = manifest.files[name]
        if member.size != size:
            raise BackupError(f"its {name} is {member.size} bytes, the manifest says {size}")
        if _extract(tar, member, into / name, MODES[name]) != digest:
            raise BackupError(f"its {name} does not match the manifest's SHA-256")
        seen.add(name)
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise BackupError(f"it lacks {', '.join(missing)}, which its manifest lists")
    return manifest


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None  # a regular file
    with f:
        return f.read()


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path, mode: int) -> str:
    """Write *member* to the new file *path* with *mode*, synced; its SHA-256."""
    source = tar.extractfile(member)
    assert source is not None
    h = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with source, os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)  # whatever the umask
        while chunk := source.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest()


def check_database(path: Path, schema_version: int) -> None:
    """The restored database must be whole and of a schema this pingchat can open."""
    known = max(number for number, _ in migrations.available())
    try:
        conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise BackupError(f"its database cannot be opened: {e}") from None
    try:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as e:
        raise BackupError(f"its database is damaged: {e}") from None
    finally:
        conn.close()
    if result != ["ok"]:
        raise BackupError(f"its database fails PRAGMA integrity_check: {result[0]}")
    if version != schema_version:
        raise BackupError(
            f"its database has schema version {version}, the manifest says {schema_version}"
        )
    if version < 1:
        raise BackupError("its database is not a pingchat database (schema version 0)")
    if version > known:
        raise BackupError(
            f"its database has schema version {version}, newer than this pingchat knows"
            f" ({known}): upgrade pingchat, then restore"
        )


# -- restoring -------------------------------------------------------------------------


@attrs.frozen
class RestoreDone:
    data_dir: Path
    manifest: Manifest
    moved_aside: Path | None


def check_archive(archive: Path) -> Manifest:
    """Check *archive* as a restore would, touching no data dir."""
    with tempfile.TemporaryDirectory(prefix="pingchat-check-") as work:
        return unpack(archive, Path(work))


def restore(
    archive: Path,
    data_dir: Path,
    *,
    force: bool = False,
    now: datetime.datetime | None = None,
) -> RestoreDone:
    """Restore *archive* into *data_dir*, all of it or nothing.

    Refused, before anything changes, if a server holds the data dir's lock
    or if the data dir is not empty and *force* is not given, or if the
    archive fails any check of :func:`unpack`. The archive is unpacked into
    a new directory beside the data dir, which then takes its place; an old
    data dir goes to ``DATA_DIR.before-restore-TIMESTAMP``. Run by root, the
    restored files get the owner of the data dir they replace.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    data_dir = Path(os.path.abspath(data_dir))
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a directory")
    data_dir = data_dir.resolve()
    with _server_lock(data_dir, create=False):
        occupied = data_dir.is_dir() and any(data_dir.iterdir())
        if occupied and not force:
            raise BackupError(
                f"data dir {data_dir} is not empty: --force moves it aside"
                f" (to {data_dir.name}.before-restore-{timestamp(now)}) and restores"
            )
    owner = _owner(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=data_dir.parent))
    try:
        os.chmod(work, 0o700)
        manifest = unpack(archive, work)
        if owner is not None:
            for path in (work, *work.iterdir()):
                os.chown(path, *owner)
        moved = _swap_in(work, data_dir, now)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return RestoreDone(data_dir, manifest, moved)


def _owner(data_dir: Path) -> tuple[int, int] | None:
    """Whose files to restore, when root restores: those of the data dir replaced.

    Root can write where the server's user cannot (``/var/lib``, where the
    data dir is made aside and swapped), and the server must own what it
    finds there.
    """
    if os.geteuid() != 0 or not data_dir.is_dir():
        return None
    st = data_dir.stat()
    return (st.st_uid, st.st_gid) if (st.st_uid, st.st_gid) != (0, 0) else None


def _swap_in(work: Path, data_dir: Path, now: datetime.datetime) -> Path | None:
    """Put *work* at *data_dir*, holding the old one's lock; where the old one went."""
    if not data_dir.exists():
        os.rename(work, data_dir)
        _fsync_dir(data_dir.parent)
        return None
    with _server_lock(data_dir, create=True):
        if not any(p.name != LOCK_FILE for p in data_dir.iterdir()):
            # Empty (but for the lock taken just now): nothing worth keeping.
            _exchange(work, data_dir)
            shutil.rmtree(work)
            _fsync_dir(data_dir.parent)
            return None
        aside = _free_name(data_dir.parent, f"{data_dir.name}.before-restore-{timestamp(now)}")
        _exchange(work, data_dir)
        os.rename(work, aside)  # work now holds the old data dir
        _fsync_dir(data_dir.parent)
        return aside


def _free_name(parent: Path, name: str) -> Path:
    path = parent / name
    n = 1
    while path.exists():
        n += 1
        path = parent / f"{name}-{n}"
    return path


@contextlib.contextmanager
def _server_lock(data_dir: Path, *, create: bool) -> Iterator[None]:
    """Hold the data dir's server lock, or refuse: a server is running on it.

    Without *create*, a data dir with no lock file has never had a server
    (the server makes the file before it opens anything) and nothing is held.
    """
    path = data_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            by = f" (pid {text})" if text.isdigit() else ""
            raise BackupError(
                f"data dir {data_dir} is in use by a running pingchat server{by}:"
                " stop it before restoring into it"
            ) from None
        yield
    finally:
        os.close(fd)


RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories in one step (Linux ``renameat2``), else in two renames."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        renameat2.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
        if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(b))
    # No atomic exchange here: for a moment the data dir's name is free.
    middle = _free_name(b.parent, f".{b.name}.swap")
    os.rename(b, middle)
    os.rename(a, b)
    os.rename(middle, a)
