"""The store's tests on both backends: SQLite, and PostgreSQL when there is one.

A test class written against :meth:`StoreBackend.open_database` (or, for a
:class:`~tests.helpers.ServerTestCase`, against the server it builds) runs on
SQLite as it is; ``on_postgresql(cls)`` makes its PostgreSQL twin, which the
module binds to a name of its own so that pytest collects both::

    class MessageTests(StoreBackend, SynchronousTestCase): ...
    MessageTestsOnPostgreSQL = on_postgresql(MessageTests)

Each PostgreSQL test gets a fresh schema of its own in the database named by
``PINGCHAT_TEST_POSTGRESQL`` (``postgresql://USER@HOST:PORT/DB``; ``bash
.ci/postgresql start DIR`` starts a throwaway server and prints one), dropped
afterwards. Without that variable the PostgreSQL twins are skipped, with a
reason that says how to run them, except under CI (``CI`` set, as ``.ci/run``
has it), where they fail: CI must never pass without having tested both.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, TypeVar
from unittest import SkipTest

import attrs
from twisted.trial.unittest import SynchronousTestCase

from pingchat.store import Database

ENV = "PINGCHAT_TEST_POSTGRESQL"
SQLITE = "sqlite"
POSTGRESQL = "postgresql"

C = TypeVar("C", bound=type)


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def postgresql_server(case: SynchronousTestCase) -> str:
    """The test PostgreSQL server's URL; skips (fails under CI) if there is none."""
    url = os.environ.get(ENV, "").strip()
    if url:
        return url
    if under_ci():
        case.fail(f"{ENV} is not set: CI must test the PostgreSQL store (.ci/run starts one)")
    raise SkipTest(
        f"no PostgreSQL to test against: set {ENV}=postgresql://USER@HOST:PORT/DB"
        " (bash .ci/postgresql start DIR starts a throwaway one and prints its URL)"
    )


def with_search_path(url: str, schema: str) -> str:
    """*url* with its connections' ``search_path`` set to *schema*."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query.append(("options", f"-csearch_path={schema}"))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def fresh_postgresql(case: SynchronousTestCase) -> str:
    """A URL whose connections see only a new, empty schema, dropped after the test."""
    import psycopg

    server = postgresql_server(case)
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as admin:
            # A connection the test left inside a transaction fails this, not hangs it.
            admin.execute("SET lock_timeout = '10s'")
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')

    case.addCleanup(drop)
    return with_search_path(server, schema)


def temp_dir(case: SynchronousTestCase, prefix: str = "pingchat-test-") -> Path:
    """A new directory, removed when *case* ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    case.addCleanup(shutil.rmtree, path, True)
    return path


class StoreBackend:
    """Mixin for a TestCase: the backend under test (SQLite unless made a twin)."""

    backend = SQLITE

    def store_url(self) -> str | None:
        """The ``--store`` value for this test: None (SQLite) or a fresh schema's URL."""
        if self.backend == POSTGRESQL:
            return fresh_postgresql(self)  # type: ignore[arg-type]
        return None

    def store_settings(self) -> dict[str, Any]:
        """Settings for ``make_server``: the backend's ``store``."""
        url = self.store_url()
        return {} if url is None else {"store": url}

    def new_location(self) -> Location:
        """Where a new database of this backend goes: a fresh schema, or a new file."""
        return Location(self.store_url(), temp_dir(self) / "db.sqlite3")  # type: ignore[arg-type]

    def open_database(
        self, reactor: Any = None, *, threaded: bool = False, at: Location | None = None
    ) -> Database:
        """A migrated database of this backend, new unless *at* (stopped after the test)."""
        from pingchat.store import open_store

        at = at or self.new_location()
        db = open_store(at.url, at.path, reactor, threaded=threaded).db
        self.addCleanup(db.stop)  # type: ignore[attr-defined]
        return db

    def raw_connection(self, at: Location, target: int | None = None) -> Any:
        """A connection of the kind store functions get, migrated to *target*
        (to set up an old database), closed after the test."""
        from pingchat.store import migrations

        conn: Any
        if at.url is None:
            from pingchat.store.database import connect

            conn = connect(at.path)
            migrations.migrate(conn, target)
        else:
            from pingchat.store.postgresql import connect as pg_connect

            conn = pg_connect(at.url, "test")
            migrations.migrate_postgresql(conn, target)
        self.addCleanup(conn.close)  # type: ignore[attr-defined]
        return conn


@attrs.frozen
class Location:
    """A database: a PostgreSQL URL (a schema of its own), else an SQLite file."""

    url: str | None
    path: Path


def on_postgresql(cls: C) -> C:
    """The PostgreSQL twin of a StoreBackend test class."""
    twin = type(f"{cls.__name__}OnPostgreSQL", (cls,), {"backend": POSTGRESQL})
    twin.__module__ = cls.__module__
    twin.__qualname__ = twin.__name__
    return twin  # type: ignore[return-value]
