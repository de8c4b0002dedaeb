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

The package: :mod:`~pingchat.backup.archive` (the archive's format and its
checks), :mod:`~pingchat.backup.taking` (``pingchat backup``) and
:mod:`~pingchat.backup.restoring` (``pingchat restore``).
"""

from __future__ import annotations

from pingchat.backup.archive import DATA_FILES, MANIFEST, BackupError, Manifest, timestamp
from pingchat.backup.restoring import RestoreDone, check_archive, restore
from pingchat.backup.taking import BackupDone, backup, snapshot_database

__all__ = [
    "DATA_FILES", "MANIFEST", "BackupDone", "BackupError", "Manifest", "RestoreDone", "backup",
    "check_archive", "restore", "snapshot_database", "timestamp",
]  # fmt: skip
