"""``pingchat store copy``: a community moves from SQLite to PostgreSQL, verified,
and the ``pingchat`` command works on either store."""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from pingchat.cli import main
from pingchat.config import DATABASE_FILE
from pingchat.startup import DataDirLock
from pingchat.store import Store, open_store
from pingchat.testing import NativeTestClient, make_server
from tests.backends import POSTGRESQL, StoreBackend
from tests.helpers import PASSWORD


class CommandTestCase(StoreBackend, TestCase):
    backend = POSTGRESQL

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-copy-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def run_cli(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdin", io.StringIO(stdin))
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        code = main(list(argv))
        return code, out.getvalue(), err.getvalue()


class StoreCopyTests(CommandTestCase):
    def community(self) -> Path:
        """A data dir whose SQLite database has some of everything, its server stopped."""
        server = make_server(self.dir)
        clock = server.extras["clock"]

        def client(name: str) -> NativeTestClient:
            c = NativeTestClient(server)
            self.assertTrue(c.request("register", user=name, password=PASSWORD)["ok"])
            self.assertTrue(c.request("login", user=name, password=PASSWORD)["ok"])
            clock.advance(0)
            return c

        alice, bob = client("alice"), client("Bob")
        alice.request("join", room="#lobby")
        bob.request("join", room="#lobby")
        alice.request("mode", room="#lobby", modes="+b", args=["eve"])
        for i in range(30):
            alice.request("say", room="#lobby", text=f"hello {i} ✓ 100%")
        alice.request("dm", to="bob", text="psst")
        alice.request("contact.add", user="bob")
        bob.request("logout")
        alice.request("dm", to="bob", text="while you were out")
        self.successResultOf(server.db.stop())
        return self.dir / DATABASE_FILE

    def test_a_community_is_copied_verified_and_served_from_postgresql(self) -> None:
        source = self.community()
        url = self.store_url()
        assert url is not None
        code, out, err = self.run_cli("store", "copy", str(source), url)
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertIn("checksum", lines[0])
        rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
        self.assertEqual(rows["messages"][:3], ["32", "32", "same"])
        self.assertEqual(rows["accounts"][:3], ["2", "2", "same"])
        self.assertTrue(all(r[2] == "same" for r in rows.values()), out)
        self.assertIn("--store postgresql://", err)
        self.assertNotIn("password", out + err)

        server = make_server(self.dir, store=url)
        self.addCleanup(server.db.stop)
        bob = NativeTestClient(server)
        reply = bob.request("login", user="bob", password=PASSWORD)
        self.assertTrue(reply["ok"], reply)
        server.extras["clock"].advance(0)
        history = bob.request("history", room="#lobby", limit=50)
        self.assertEqual(history["messages"][-1]["text"], "hello 29 ✓ 100%")
        offline = [e for e in bob.events if e.get("event") == "message"]
        self.assertEqual([m["text"] for m in offline], ["while you were out"])
        # New rows continue after the copied ids.
        said = bob.request("say", room="#lobby", text="first on postgresql")
        self.assertTrue(said["ok"], said)
        history = bob.request("history", room="#lobby", limit=2)
        ids = [m["msg_id"] for m in history["messages"]]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(history["messages"][-1]["text"], "first on postgresql")

    def test_a_database_with_rows_is_refused_and_left_alone(self) -> None:
        source = self.community()
        url = self.store_url()
        assert url is not None
        db = open_store(url, Path(), threaded=False).db
        self.addCleanup(db.stop)
        self.successResultOf(Store(db).create_account("zed", b"h", 0))
        code, _, err = self.run_cli("store", "copy", str(source), url)
        self.assertEqual(code, 1)
        self.assertIn("is not empty (rows in accounts)", err)
        names = [a.name for a in self.successResultOf(Store(db).list_accounts())]
        self.assertEqual(names, ["zed"])

    def test_the_copy_waits_for_the_server_to_be_stopped(self) -> None:
        source = self.community()
        lock = DataDirLock(self.dir)
        lock.acquire()  # as a running server holds it
        self.addCleanup(lock.release)
        url = self.store_url()
        assert url is not None
        code, _, err = self.run_cli("store", "copy", str(source), url)
        self.assertEqual(code, 1)
        self.assertIn("is in use by another pingchat server", err)
        self.assertIn("the copy is made with the server stopped", err)

    def test_a_row_that_does_not_arrive_is_reported_and_fails_the_command(self) -> None:
        source = self.community()
        url = self.store_url()
        assert url is not None
        db = open_store(url, Path(), threaded=False).db  # migrated, empty
        db._conn.execute(
            "CREATE FUNCTION drop_one() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN IF NEW.body = 'psst' THEN RETURN NULL; END IF; RETURN NEW; END $$"
        )
        db._conn.execute(
            "CREATE TRIGGER lose_a_row BEFORE INSERT ON messages"
            " FOR EACH ROW EXECUTE FUNCTION drop_one()"
        )
        self.successResultOf(db.stop())
        code, out, err = self.run_cli("store", "copy", str(source), url)
        self.assertEqual(code, 1)
        [messages] = [line for line in out.splitlines() if line.startswith("messages ")]
        self.assertEqual(messages.split()[1:4], ["32", "31", "DIFFERENT"])
        self.assertIn("differs from the original", err)


class CommandOnPostgreSQLTests(CommandTestCase):
    """``pingchat user``/``invite`` work on the server's PostgreSQL store."""

    def test_accounts_and_invites_on_postgresql(self) -> None:
        url = self.store_url()
        assert url is not None
        code, out, err = self.run_cli(
            "--store", url, "user", "add", "ada", "--admin", "--password-stdin",
            stdin="a long password\n",
        )
        self.assertEqual(code, 0, err)
        self.assertIn("created admin ada", out)
        code, out, _ = self.run_cli("--store", url, "user", "disable", "ADA")
        self.assertEqual((code, out.strip()), (0, "ada disabled"))
        code, out, _ = self.run_cli("--store", url, "user", "list")
        self.assertEqual(out.split("\t")[:2], ["ada", "admin,disabled"])
        code, out, _ = self.run_cli("--store", url, "invite", "create")
        self.assertEqual(code, 0)
        code, _, _ = self.run_cli("--store", url, "invite", "revoke", out.strip())
        self.assertEqual(code, 0)
        db = open_store(url, Path(), threaded=False).db
        self.addCleanup(db.stop)
        events = [e["event"] for e in self.successResultOf(Store(db).recent_audit())]
        self.assertEqual(events, ["invite_revoke", "invite_create", "disable", "register"])

    def test_the_store_comes_from_the_config_file(self) -> None:
        url = self.store_url()
        config = self.dir / "pingchat.toml"
        config.write_text(f'store = "{url}"\n')
        code, _, err = self.run_cli(
            "--config", str(config), "user", "add", "bob", "--password-stdin",
            stdin="a long password\n",
        )
        self.assertEqual(code, 0, err)
        self.assertFalse((self.dir / "pingchat-data").exists())
        db: Any = open_store(url, Path(), threaded=False).db
        self.addCleanup(db.stop)
        names = [a.name for a in self.successResultOf(Store(db).list_accounts())]
        self.assertEqual(names, ["bob"])

    def test_backup_and_restore_refuse_a_postgresql_store(self) -> None:
        # After store copy the SQLite file is still in the data dir: archiving
        # it would pass for a backup of a community that lives elsewhere now.
        url = self.store_url()
        assert url is not None
        self.dir.joinpath("data").mkdir()
        for argv in (("backup", str(self.dir / "b.tar.gz")), ("restore", "x.tar.gz")):
            code, _, err = self.run_cli("--store", url, "--data-dir", str(self.dir / "data"), *argv)
            self.assertEqual(code, 1)
            self.assertIn("the server's store is PostgreSQL", err)
