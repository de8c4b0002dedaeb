"""The ``pingchat`` command (run in-process through ``main``)."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import stat
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from pingchat.auth.passwords import check_password_blocking
from pingchat.cli import main


class CLITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp()) / "data"
        self.addCleanup(shutil.rmtree, self.dir.parent, True)

    def run_cli(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdin", io.StringIO(stdin))
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        try:
            code = main(["--data-dir", str(self.dir), *argv])
        except SystemExit as e:
            code = int(e.code or 0)
        return code, out.getvalue(), err.getvalue()

    def run_elsewhere(
        self, *argv: str, env: dict[str, str] | None = None, stdin: str = ""
    ) -> tuple[int, str, str, Path]:
        """Run the command in a new, empty working directory without --data-dir."""
        cwd = Path(tempfile.mkdtemp(prefix="pingchat-cwd-"))
        self.addCleanup(shutil.rmtree, cwd, True)
        here = os.getcwd()
        environ = {k: v for k, v in os.environ.items() if k != "PINGCHAT_DATA_DIR"}
        self.patch(os, "environ", {**environ, **(env or {})})
        os.chdir(cwd)
        try:
            out, err = io.StringIO(), io.StringIO()
            self.patch(sys, "stdin", io.StringIO(stdin))
            self.patch(sys, "stdout", out)
            self.patch(sys, "stderr", err)
            try:
                code = main(list(argv))
            except SystemExit as e:
                code = int(e.code or 0)
        finally:
            os.chdir(here)
        return code, out.getvalue(), err.getvalue(), cwd

    def hash_of(self, name: str) -> bytes:
        conn = sqlite3.connect(self.dir / "pingchat.sqlite3")
        row = conn.execute("SELECT password_hash FROM accounts WHERE name = ?", (name,)).fetchone()
        conn.close()
        return bytes(row[0])

    def test_add_list_and_passwd(self) -> None:
        code, out, _ = self.run_cli(
            "user", "add", "alice", "--init", "--password-stdin", stdin="first password\n"
        )
        self.assertEqual(code, 0)
        self.assertIn("created user alice", out)
        self.assertEqual(out.count("-"), 30)  # ten codes shown once
        self.assertTrue(check_password_blocking(b"first password", self.hash_of("alice")))
        code, out, _ = self.run_cli("user", "list")
        self.assertIn("alice\tuser", out)
        code, _, _ = self.run_cli(
            "user", "passwd", "alice", "--password-stdin", stdin="second password\n"
        )
        self.assertEqual(code, 0)
        self.assertTrue(check_password_blocking(b"second password", self.hash_of("alice")))

    def test_disable_enable_promote(self) -> None:
        self.run_cli("--init", "user", "add", "bob", "--password-stdin", stdin="bob password\n")
        self.assertEqual(self.run_cli("user", "disable", "bob")[0], 0)
        self.assertIn("disabled", self.run_cli("user", "list")[1])
        self.run_cli("user", "enable", "bob")
        self.assertNotIn("disabled", self.run_cli("user", "list")[1])
        self.run_cli("user", "promote", "bob")
        self.assertIn("bob\tadmin", self.run_cli("user", "list")[1])

    def test_errors_are_one_line_and_non_zero(self) -> None:
        code, _, err = self.run_cli("user", "list")  # no data dir yet
        self.assertEqual((code, len(err.strip().splitlines())), (1, 1), err)
        self.assertEqual(self.run_cli("--init", "user", "list")[0], 0)
        cases = [
            (("user", "add", "1bad", "--password-stdin"), "long enough pw\n"),
            (("user", "add", "carol", "--password-stdin"), "short\n"),
            (
                ("user", "add", "carol", "--password-stdin", "--min-password-length", "20"),
                "not twenty chars\n",
            ),
        ]
        for argv, stdin in cases:
            code, out, err = self.run_cli(*argv, stdin=stdin)
            self.assertEqual(code, 1, (argv, out, err))
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertTrue(err.startswith("pingchat: error: "), err)
        self.run_cli("user", "add", "carol", "--password-stdin", stdin="long enough pw\n")
        for argv, stdin in [
            (("user", "add", "CAROL", "--password-stdin"), "long enough pw\n"),
            (("user", "disable", "nobody"), ""),
        ]:
            code, _, err = self.run_cli(*argv, stdin=stdin)
            self.assertEqual(code, 1)
            self.assertEqual(len(err.strip().splitlines()), 1)

    def test_no_terminal_and_no_stdin_flag_is_an_error(self) -> None:
        code, _, err = self.run_cli("--init", "user", "add", "dave")
        self.assertEqual(code, 1)
        self.assertIn("--password-stdin", err)

    def test_help_exists_for_every_command(self) -> None:
        for argv in [("--help",), ("user", "--help")]:
            code, out, _ = self.run_cli(*argv)
            self.assertEqual(code, 0)
            self.assertIn("usage:", out)

    def test_fingerprint_of_the_data_dirs_certificate(self) -> None:
        code, _, err = self.run_cli("fingerprint")
        self.assertEqual(code, 1)
        self.assertIn("no certificate", err)
        from pingchat.tls import certificate_fingerprint, ensure_certificate

        self.dir.mkdir(parents=True)
        _, cert = ensure_certificate(self.dir, "localhost")
        code, out, _ = self.run_cli("fingerprint")
        self.assertEqual((code, out.strip()), (0, certificate_fingerprint(cert)))

    def test_a_command_run_elsewhere_creates_no_data_dir_and_says_where_it_looked(self) -> None:
        for argv in [
            ("user", "add", "zed", "--password-stdin"),
            ("user", "list"),
            ("fingerprint",),
        ]:
            code, out, err, cwd = self.run_elsewhere(*argv, stdin="long enough pw\n")
            self.assertEqual(code, 1, (argv, out, err))
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertIn(str(cwd / "pingchat-data"), err)
            self.assertIn("PINGCHAT_DATA_DIR", err)
            self.assertEqual(list(cwd.iterdir()), [], argv)

    def test_init_creates_a_private_data_dir(self) -> None:
        code, _, err, cwd = self.run_elsewhere(
            "user", "add", "zed", "--init", "--password-stdin", stdin="long enough pw\n"
        )
        self.assertEqual(code, 0, err)
        self.assertIn(str(cwd / "pingchat-data"), err)
        made = cwd / "pingchat-data"
        self.assertEqual(stat.S_IMODE(made.stat().st_mode), 0o700)
        self.assertTrue((made / "pingchat.sqlite3").exists())

    def test_the_data_dir_comes_from_the_environment_as_for_the_server(self) -> None:
        self.assertEqual(self.run_cli("--init", "user", "list")[0], 0)
        code, _, err, cwd = self.run_elsewhere(
            "user", "add", "zed", "--password-stdin",
            env={"PINGCHAT_DATA_DIR": str(self.dir)},
            stdin="long enough pw\n",
        )
        self.assertEqual(code, 0, err)
        self.assertTrue(check_password_blocking(b"long enough pw", self.hash_of("zed")))
        self.assertEqual(list(cwd.iterdir()), [])

    def test_the_config_file_gives_the_data_dir_and_the_password_policy(self) -> None:
        self.assertEqual(self.run_cli("--init", "user", "list")[0], 0)
        conf = self.dir.parent / "pingchat.toml"
        conf.write_text(f'data-dir = "{self.dir}"\nmin-password-length = 20\n')
        code, _, err, _ = self.run_elsewhere(
            "--config", str(conf), "user", "add", "zed", "--password-stdin",
            stdin="not twenty chars\n",
        )
        self.assertEqual(code, 1)
        self.assertIn("20", err)
        code, _, err, _ = self.run_elsewhere(
            "user", "add", "zed", "--config", str(conf), "--password-stdin",
            stdin="twenty characters or more\n",
        )
        self.assertEqual(code, 0, err)
        self.hash_of("zed")

    def test_command_line_beats_environment_beats_config_file(self) -> None:
        dirs = {}
        for name in ("line", "env", "file"):
            dirs[name] = self.dir.parent / name
            code, _, err = self.run_cli("--data-dir", str(dirs[name]), "--init", "user", "list")
            self.assertEqual(code, 0, err)
        conf = self.dir.parent / "pingchat.toml"
        conf.write_text(f'data_dir = "{dirs["file"]}"\n')
        env = {"PINGCHAT_DATA_DIR": str(dirs["env"])}
        for argv, environ, chosen in [
            (("--data-dir", str(dirs["line"])), env, "line"),
            ((), env, "env"),
            ((), {}, "file"),
        ]:
            code, _, err, _ = self.run_elsewhere(
                "--config", str(conf), *argv, "user", "add", chosen, "--password-stdin",
                env=environ, stdin="long enough pw\n",
            )
            self.assertEqual(code, 0, err)
            conn = sqlite3.connect(dirs[chosen] / "pingchat.sqlite3")
            names = [r[0] for r in conn.execute("SELECT name FROM accounts")]
            conn.close()
            self.assertEqual(names, [chosen])

    def test_invite_create_list_and_revoke(self) -> None:
        code, out, err = self.run_cli("--init", "invite", "create", "--uses", "2")
        self.assertEqual(code, 0, err)
        invite = out.strip()
        self.assertRegex(invite, r"^[a-z2-9]{4}(-[a-z2-9]{4}){3}$")
        self.assertIn("invite 1: 2 use(s), until ", err)
        code, out, err = self.run_cli("invite", "create", "--expires-days", "0")
        self.assertIn("with no expiry", err)
        code, out, _ = self.run_cli("invite", "list")
        rows = [line.split("\t") for line in out.splitlines()]
        self.assertEqual([r[:3] for r in rows], [["1", "usable", "2 left, 0 used"],
                                                  ["2", "usable", "1 left, 0 used"]])
        self.assertEqual(rows[1][3], "expires never")
        self.assertEqual(self.run_cli("invite", "revoke", invite.upper())[1], "invite 1 revoked\n")
        self.assertEqual(self.run_cli("invite", "revoke", "2")[0], 0)
        self.assertEqual(
            [line.split("\t")[1] for line in self.run_cli("invite", "list")[1].splitlines()],
            ["revoked", "revoked"],
        )
        for argv in [("invite", "revoke", "1"), ("invite", "revoke", invite), ("invite", "revoke"),
                     ("invite", "create", "--uses", "0"),
                     ("invite", "create", "--expires-days", "-1")]:
            code, _, err = self.run_cli(*argv)
            self.assertEqual((code, len(err.strip().splitlines())), (1, 1), (argv, err))
            self.assertNotIn(invite, err)
        conn = sqlite3.connect(self.dir / "pingchat.sqlite3")
        audit = [r[0] for r in conn.execute("SELECT event FROM audit_log ORDER BY id")]
        stored = repr(conn.execute("SELECT * FROM invite_codes").fetchall())
        conn.close()
        self.assertEqual(audit, ["invite_create", "invite_create", "invite_revoke",
                                 "invite_revoke"])
        self.assertNotIn(invite.replace("-", ""), stored)

    def test_an_invite_from_the_command_registers_on_the_server(self) -> None:
        from pingchat.testing import NativeTestClient, make_server

        _, out, _ = self.run_cli("--init", "invite", "create")
        server = make_server(self.dir, registration="invite")
        self.addCleanup(server.db.stop)
        c = NativeTestClient(server)
        reply = c.request("register", user="ann", password="long enough pw", invite=out.strip())
        self.assertTrue(reply["ok"], reply)
