"""``pingchat restore``: a checked archive swapped in for the data dir, all or nothing."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

from pingchat.backup.archive import BackupError, Manifest, fsync_dir, timestamp, unpack
from pingchat.startup import LOCK_FILE


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
        fsync_dir(data_dir.parent)
        return None
    with _server_lock(data_dir, create=True):
        if not any(p.name != LOCK_FILE for p in data_dir.iterdir()):
            # Empty (but for the lock taken just now): nothing worth keeping.
            _exchange(work, data_dir)
            shutil.rmtree(work)
            fsync_dir(data_dir.parent)
            return None
        aside = _free_name(data_dir.parent, f"{data_dir.name}.before-restore-{timestamp(now)}")
        _exchange(work, data_dir)
        os.rename(work, aside)  # work now holds the old data dir
        fsync_dir(data_dir.parent)
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
