"""The PostgreSQL store when the database goes away: refused, never falsely
acknowledged, and back by itself. A TCP proxy between the store and the
test server stands for the network: cut, it refuses and drops connections."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from pingchat.errors import StoreUnavailable
from pingchat.store import Store
from pingchat.store.postgresql import MAYBE_STORED, NOT_STORED, PostgreSQLDatabase
from tests.backends import POSTGRESQL, StoreBackend, temp_dir


class Proxy:
    """Relays 127.0.0.1:port to the PostgreSQL server, until cut."""

    def __init__(self, target: tuple[int, Any]) -> None:
        self.family, self.address = target
        self.port = 0
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.listen()

    def listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self.accept, args=(listener,), daemon=True).start()

    def accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(self.family)
            try:
                server.connect(self.address)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, server]
            threading.Thread(target=self.relay, args=(client, server), daemon=True).start()

    def relay(self, a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            while relaying(a, b):
                pass
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()

    def drop_connections(self) -> None:
        """Break every relayed connection (as a restarted server or a firewall does)."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def cut(self) -> None:
        """The database is gone: connections break, new ones are refused."""
        if self.listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept() and stops listening
                self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        self.drop_connections()

    def restore(self) -> None:
        self.listen()


def relaying(a: socket.socket, b: socket.socket) -> bool:
    """Pass on what either side sent; false at an end of file."""
    ready, _, _ = select.select([a, b], [], [], 0.5)
    for s in ready:
        data = s.recv(65536)
        if not data:
            return False
        (b if s is a else a).sendall(data)
    return True


def proxied(case: StoreBackend) -> tuple[str, Proxy]:
    """A fresh schema's URL through a new proxy."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    url = case.store_url()
    assert url is not None
    params = conninfo_to_dict(url)
    host, port = params.get("host") or "127.0.0.1", int(params.get("port") or 5432)
    if host.startswith("/"):
        target: tuple[int, Any] = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
    else:
        target = (socket.AF_INET, (host, port))
    proxy = Proxy(target)
    case.addCleanup(proxy.cut)  # type: ignore[attr-defined]
    params.update(host="127.0.0.1", port=str(proxy.port))
    return make_conninfo("", **params), proxy


class ConnectionLossTests(StoreBackend, TestCase):
    backend = POSTGRESQL

    def setUp(self) -> None:
        url, self.proxy = proxied(self)
        self.db = PostgreSQLDatabase(url, reactor)
        self.addCleanup(self.db.stop)
        self.store = Store(self.db)

    @inlineCallbacks
    def setup_room(self) -> Any:
        account = yield self.store.create_account("alice", b"h", 0)
        room = yield self.store.create_room("#r", 0)
        return account.id, room.id

    @inlineCallbacks
    def history(self, room_id: int) -> Any:
        messages = yield self.store.room_history(room_id)
        return [m.text for m in messages]

    @inlineCallbacks
    def wait_until_available(self) -> Any:
        for _ in range(200):
            if self.db.available:
                return
            yield deferLater(reactor, 0.05, lambda: None)
        self.fail("the store did not reconnect by itself")

    @inlineCallbacks
    def test_writes_are_refused_while_the_database_is_gone_and_succeed_once_it_is_back(
        self,
    ) -> Any:
        alice, room = yield self.setup_room()
        self.proxy.cut()
        failure = yield self.assertFailure(
            self.store.add_room_message(room, "#r", "alice", alice, "lost?", 1), StoreUnavailable
        )
        self.assertEqual((failure.code, failure.message), ("store_unavailable", NOT_STORED))
        self.assertFalse(self.db.available)
        # Refused at once while it is gone, not queued behind a connect.
        yield self.assertFailure(
            self.store.add_room_message(room, "#r", "alice", alice, "again?", 2),
            StoreUnavailable,
        )
        yield self.assertFailure(self.store.room_history(room), StoreUnavailable)
        self.proxy.restore()
        yield self.wait_until_available()  # with no client write to prompt it
        message = yield self.store.add_room_message(room, "#r", "alice", alice, "back", 3)
        self.assertEqual(message.text, "back")
        texts = yield self.history(room)
        self.assertEqual(texts, ["back"])

    @inlineCallbacks
    def test_a_dropped_idle_connection_is_replaced_without_an_error(self) -> Any:
        alice, room = yield self.setup_room()
        yield self.history(room)  # the reader has its connection too
        self.proxy.drop_connections()
        message = yield self.store.add_room_message(room, "#r", "alice", alice, "hello", 1)
        self.assertEqual(message.text, "hello")
        texts = yield self.history(room)
        self.assertEqual(texts, ["hello"])
        self.assertTrue(self.db.available)

    @inlineCallbacks
    def test_a_batch_that_loses_its_connection_twice_is_refused_and_not_stored(self) -> Any:
        alice, room = yield self.setup_room()

        def store_then_lose_the_connection(conn: Any) -> None:
            conn.execute(
                "INSERT INTO messages (ts, conversation, sender, room_id, body)"
                " VALUES (1, ?, 'alice', ?, 'doomed')",
                (f"r:{room}", room),
            )
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        doomed = self.db.run("doomed", store_then_lose_the_connection)
        mate = self.store.add_room_message(room, "#r", "alice", alice, "batch mate", 2)
        failure = yield self.assertFailure(doomed, StoreUnavailable)
        self.assertEqual(failure.message, NOT_STORED)
        yield self.assertFailure(mate, StoreUnavailable)  # the same transaction
        yield self.wait_until_available()
        message = yield self.store.add_room_message(room, "#r", "alice", alice, "later", 3)
        self.assertEqual(message.text, "later")
        texts = yield self.history(room)
        self.assertEqual(texts, ["later"])

    @inlineCallbacks
    def test_a_commit_whose_answer_never_comes_is_not_acknowledged(self) -> Any:
        _, room = yield self.setup_room()
        proxy = self.proxy

        def store_then_cut_before_commit(conn: Any) -> None:
            conn.execute(
                "INSERT INTO messages (ts, conversation, sender, room_id, body)"
                " VALUES (1, ?, 'alice', ?, 'unconfirmed')",
                (f"r:{room}", room),
            )
            proxy.drop_connections()  # the COMMIT goes out into nothing

        failure = yield self.assertFailure(
            self.db.run("unconfirmed", store_then_cut_before_commit), StoreUnavailable
        )
        self.assertEqual(failure.message, MAYBE_STORED)
        yield self.wait_until_available()
        texts = yield self.history(room)
        self.assertEqual(texts, [])  # here the server never saw the COMMIT

    def test_a_node_turns_synchronous_commit_back_on(self) -> None:
        """A message is acknowledged once committed: a server (or role, or URL)
        that has ``synchronous_commit = off`` would acknowledge what a crash loses."""
        from psycopg.conninfo import make_conninfo

        from pingchat.store.postgresql import connect

        conn = connect(make_conninfo(self.db.url, options="-c synchronous_commit=off"), "test")
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("SHOW synchronous_commit").fetchone()[0], "on")


class StartupTests(StoreBackend, TestCase):
    backend = POSTGRESQL

    def test_an_unreachable_database_fails_the_start_with_a_clear_error(self) -> None:
        url, proxy = proxied(self)
        proxy.cut()
        with self.assertRaises(StoreUnavailable) as caught:
            PostgreSQLDatabase(url, threaded=False)
        self.assertIn("cannot connect to postgresql://", caught.exception.message)

    def test_the_server_start_ends_with_one_line_and_no_password(self) -> None:
        from psycopg.conninfo import make_conninfo

        from pingchat.startup import StartupFailed
        from pingchat.testing import make_server

        url, proxy = proxied(self)
        proxy.cut()
        with self.assertRaises(StartupFailed) as caught:
            make_server(temp_dir(self), store=make_conninfo(url, password="s3cret"))
        message = caught.exception.message
        self.assertTrue(message.startswith("--store: cannot connect to postgresql://"), message)
        self.assertNotIn("s3cret", message)
