"""A backup archive: what is in it, and the checks of one before it is restored.

A tar archive (gzip unless its name ends in ``.tar``), mode 0600, whose
first member ``manifest.json`` names every other member with its size and
SHA-256; the members are the database and the files of :data:`DATA_FILES`,
each a plain file name. :func:`unpack` checks all of it.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import re
import sqlite3
import tarfile
import zlib
from pathlib import Path

import attrs

from pingchat.admin.manhole import AUTHORIZED_KEYS_FILE, HOST_KEY_FILE
from pingchat.auth.sealing import KEY_FILE as SEALING_KEY_FILE
from pingchat.config import DATABASE_FILE
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
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or a restore that cannot go on; the message is one line for the user."""


def timestamp(now: datetime.datetime) -> str:
    """``20261121T224416Z``: for file names, sorting as time does."""
    return now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


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
    fsync_dir(into)
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
        while chunk := source.read(CHUNK):
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest()


def check_database(path: Path, schema_version: int) -> None:
    """The restored database must be whole and of a schema this pingchat can open."""
    known = max(number for number, _ in migrations.available())
    try:
        conn = sqlite3.connect(f"file:{uri_path(path)}?mode=ro", uri=True)
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


def uri_path(path: Path) -> str:
    """*path* for a ``file:`` URI (``?`` and ``#`` would end the path)."""
    return str(path.absolute()).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
