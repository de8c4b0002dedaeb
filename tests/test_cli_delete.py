"""``pingchat user delete``: against a data dir, in-process."""

from __future__ import annotations

import io
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from pingchat.auth.sealing import Sealer
from pingchat.cli import main
from pingchat.store import Database, SQLiteStore
from tests.backends import StoreBackend, on_postgresql


class UserDeleteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp()) / "data"
        self.addCleanup(shutil.rmtree, self.dir.parent, True)
        for name in ("alice", "bob"):
            code, _, err = self.run_cli(
                "user", "add", name, "--init", "--password-stdin", stdin="a long password\n"
            )
            self.assertEqual(code, 0, err)
        db = Database(self.dir / "pingchat.sqlite3", threaded=False)
        store = SQLiteStore(db)
        alice = self.successResultOf(store.get_account("alice"))
        bob = self.successResultOf(store.get_account("bob"))
        assert alice is not None and bob is not None
        room = self.successResultOf(store.create_room("#lobby", 0))
        for account, text in ((alice, "alice wrote 5d41402a"), (bob, "bob wrote 7d793037")):
            self.successResultOf(store.add_member(room.id, account.name, False, 0))
            self.successResultOf(
                store.add_room_message(room.id, room.name, account.name, account.id, text, 1)
            )
        self.successResultOf(store.add_dm(alice.id, "alice", "bob", 2, text="dm 9e107d9d"))
        db.stop()

    def run_cli(self, *argv: str, stdin: str = "", tty: bool = False) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        stream = io.StringIO(stdin)
        stream.isatty = lambda: tty  # type: ignore[method-assign]
        self.patch(sys, "stdin", stream)
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        try:
            code = main(["--data-dir", str(self.dir), *argv])
        except SystemExit as e:
            code = int(e.code or 0)
        return code, out.getvalue(), err.getvalue()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.dir / "pingchat.sqlite3")
        try:
            return [tuple(r) for r in conn.execute(sql)]
        finally:
            conn.close()

    def file_bytes(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.dir.glob("pingchat.sqlite3*"))

    def test_without_yes_and_without_a_terminal_nothing_is_deleted(self) -> None:
        code, _, err = self.run_cli("user", "delete", "alice")
        self.assertEqual(code, 1)
        self.assertIn("add --yes to confirm", err)
        self.assertEqual(len(self.rows("SELECT * FROM accounts")), 2)

    def test_at_a_terminal_the_name_must_be_typed_back(self) -> None:
        code, _, err = self.run_cli("user", "delete", "alice", stdin="alicia\n", tty=True)
        self.assertEqual(code, 1)
        self.assertIn("not confirmed", err)
        code, out, _ = self.run_cli("user", "delete", "alice", stdin="alice\n", tty=True)
        self.assertEqual(code, 0)
        self.assertIn("deleted alice", out)

    def test_remove_leaves_nothing_of_the_account_in_the_files(self) -> None:
        code, out, err = self.run_cli("user", "delete", "ALICE", "--yes")
        self.assertEqual(code, 0, err)
        self.assertIn("deleted alice (now deleted-1 in the audit log): 2 message(s) removed", out)
        self.assertEqual(self.rows("SELECT name FROM accounts"), [("bob",)])
        data = self.file_bytes()
        for secret in (b"alice wrote 5d41402a", b"dm 9e107d9d", b"alice"):
            self.assertFalse(secret in data, secret)
        self.assertTrue(b"bob wrote 7d793037" in data)
        wal = self.dir / "pingchat.sqlite3-wal"
        self.assertEqual(wal.stat().st_size if wal.exists() else 0, 0)
        audit = self.rows("SELECT event, account, actor FROM audit_log ORDER BY id")
        self.assertEqual(audit[-1][:2], ("account_deleted", "deleted-1"))
        self.assertEqual(audit[0][:2], ("register", "deleted-1"))

    def test_anonymise_keeps_room_text_under_the_placeholder(self) -> None:
        code, out, _ = self.run_cli(
            "user", "delete", "alice", "--yes", "--deleted-messages", "anonymise"
        )
        self.assertEqual(code, 0)
        self.assertIn("1 message(s) removed, 1 anonymised", out)
        self.assertEqual(
            self.rows("SELECT sender, sender_id, body FROM messages ORDER BY id"),
            [("deleted-1", None, "alice wrote 5d41402a"), ("bob", 2, "bob wrote 7d793037")],
        )
        data = self.file_bytes()
        self.assertFalse(b"dm 9e107d9d" in data)
        self.assertEqual(data.count(b"alice"), 1)  # in the kept text, nowhere else

    def test_the_config_file_chooses_anonymise(self) -> None:
        config = self.dir.parent / "pingchat.toml"
        config.write_text('deleted-messages = "anonymise"\n')
        code, out, _ = self.run_cli("user", "delete", "alice", "--yes", "--config", str(config))
        self.assertEqual(code, 0)
        self.assertIn("1 anonymised", out)

    def test_an_unknown_account_is_one_line_and_status_1(self) -> None:
        code, out, err = self.run_cli("user", "delete", "nobody", "--yes")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "pingchat: error: no such user: nobody\n")

    def test_the_name_is_reserved_but_an_administrator_may_reuse_it(self) -> None:
        self.run_cli("user", "delete", "alice", "--yes")
        code, _, err = self.run_cli("user", "add", "deleted-1", "--password-stdin",
                                    stdin="a long password\n")
        self.assertEqual(code, 1)
        self.assertIn("reserved", err)
        code, out, _ = self.run_cli("user", "add", "alice", "--password-stdin",
                                    stdin="a long password\n")
        self.assertEqual(code, 0)
        self.assertIn("created user alice", out)


class BothStoresTests(StoreBackend, SynchronousTestCase):
    """The command deletes through whichever store the server uses (``--store``)."""

    def run_cli(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdin", io.StringIO(stdin))
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        try:
            code = main([*self.where, *argv])
        except SystemExit as e:
            code = int(e.code or 0)
        return code, out.getvalue(), err.getvalue()

    def test_deleting_needs_the_server_s_key_and_then_deletes(self) -> None:
        data_dir = Path(tempfile.mkdtemp()) / "data"
        self.addCleanup(shutil.rmtree, data_dir.parent, True)
        url = self.store_url()
        self.where = ["--data-dir", str(data_dir), *(["--store", url] if url else [])]
        code, _, err = self.run_cli(
            "user", "add", "alice", "--init", "--password-stdin", stdin="a long password\n"
        )
        self.assertEqual(code, 0, err)
        if url is not None:  # no data dir of the server's here: no key to make the digest
            code, _, err = self.run_cli("user", "delete", "alice", "--yes")
            self.assertEqual(code, 1)
            self.assertIn("secret.key", err)
            data_dir.mkdir(parents=True, exist_ok=True)
            Sealer.from_data_dir(data_dir)  # as the server's first start makes it
        code, out, err = self.run_cli("user", "delete", "alice", "--yes")
        self.assertEqual(code, 0, err)
        self.assertIn("deleted alice", out)
        code, out, _ = self.run_cli("user", "list")
        self.assertEqual((code, out), (0, ""))


BothStoresTestsOnPostgreSQL = on_postgresql(BothStoresTests)
