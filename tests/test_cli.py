"""The ``pingchat`` command (run in-process through ``main``)."""

from __future__ import annotations

import io
import shutil
import sqlite3
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

    def hash_of(self, name: str) -> bytes:
        conn = sqlite3.connect(self.dir / "pingchat.sqlite3")
        row = conn.execute("SELECT password_hash FROM accounts WHERE name = ?", (name,)).fetchone()
        conn.close()
        return bytes(row[0])

    def test_add_list_and_passwd(self) -> None:
        code, out, _ = self.run_cli(
            "user", "add", "alice", "--password-stdin", stdin="first password\n"
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
        self.run_cli("user", "add", "bob", "--password-stdin", stdin="bob password\n")
        self.assertEqual(self.run_cli("user", "disable", "bob")[0], 0)
        self.assertIn("disabled", self.run_cli("user", "list")[1])
        self.run_cli("user", "enable", "bob")
        self.assertNotIn("disabled", self.run_cli("user", "list")[1])
        self.run_cli("user", "promote", "bob")
        self.assertIn("bob\tadmin", self.run_cli("user", "list")[1])

    def test_errors_are_one_line_and_non_zero(self) -> None:
        cases = [
            (("user", "list"), ""),  # no database yet
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
        code, _, err = self.run_cli("user", "add", "dave")
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
