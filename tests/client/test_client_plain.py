"""``pingchat client --plain`` through pipes, against ``twistd pingchat`` in a subprocess."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pyotp
from twisted.trial.unittest import TestCase

from pingchat.tls import certificate_fingerprint
from tests.e2e.harness import PINGCHAT, ServerProcess, wait_until

PASSWORD = "correct horse battery"


class PlainClient:
    """``pingchat client --plain`` with its stdin and stdout on pipes."""

    def __init__(self, case: TestCase, port: int, config: Path, *extra: str,
                 server: str | None = None) -> None:
        self.proc = subprocess.Popen(
            [PINGCHAT, "client", "--plain", "--config-dir", str(config), *extra,
             server or f"127.0.0.1:{port}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            bufsize=1, env={**os.environ, "PINGCHAT_BCRYPT_ROUNDS": "4"},
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines),
                                          daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.errors),
                                          daemon=True)]
        for thread in self._threads:
            thread.start()
        case.addCleanup(self.close)

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def send(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        for line in lines:
            self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def end_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            return None

        try:
            return wait_until(found, timeout, what=repr(pattern))  # type: ignore[no-any-return]
        except AssertionError as e:
            raise AssertionError(f"{e}; output so far:\n" + "\n".join(self.lines)
                                 + "\nstderr:\n" + "\n".join(self.errors)) from None

    def wait_exit(self, timeout: float = 20) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        return code

    def output(self) -> str:
        return "\n".join(self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class PlainModeTests(TestCase):
    def setUp(self) -> None:
        self.server = ServerProcess().start()
        self.addCleanup(self.server.cleanup)
        self.port = self.server.port()
        self.dirs: list[Path] = []
        self.addCleanup(lambda: [shutil.rmtree(d, ignore_errors=True) for d in self.dirs])

    def config_dir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="pingchat-client-"))
        self.dirs.append(path)
        return path

    def add_user(self, name: str) -> None:
        result = self.server.pingchat("user", "add", name, "--password-stdin",
                                      stdin=PASSWORD + "\n")
        self.assertEqual(result.returncode, 0, result.stderr)

    def registered(self, name: str) -> tuple[PlainClient, Path]:
        config = self.config_dir()
        c = PlainClient(self, self.port, config)
        c.send("yes", "register", name, PASSWORD, PASSWORD, "stored")
        c.wait_for(f"Logged in as {name}")
        c.wait_for("Published your encryption key")
        return c, config

    def test_two_users_chat_and_the_encrypted_dm_is_only_ciphertext_on_the_server(self) -> None:
        alice, _ = self.registered("alice")
        bob, _ = self.registered("bob")
        self.assertEqual(len(re.findall(r"^\*     \w{4}-\w{4}-\w{4}-\w{4}$", alice.output(),
                                        re.M)), 10)
        alice.send("/join #lobby")
        alice.wait_for(r"^#lobby \* you joined #lobby$")
        bob.send("/join #lobby", "hi everyone")
        alice.wait_for(r"^#lobby \* bob joined #lobby$")
        alice.wait_for(r"^#lobby <bob> hi everyone$")
        alice.send("/msg bob meet me at the old mill")
        bob.wait_for(r"^@alice <alice> \[e2e\] meet me at the old mill$")
        bob.send("/query alice", "on my way")
        alice.wait_for(r"^@bob <bob> \[e2e\] on my way$")
        db = sqlite3.connect(self.server.data_dir / "pingchat.sqlite3")
        self.addCleanup(db.close)
        dms = db.execute("SELECT body, envelopes FROM messages WHERE recipient_id IS NOT NULL"
                         ).fetchall()
        self.assertEqual([body for body, _ in dms], [None, None])
        self.assertTrue(all(envelopes for _, envelopes in dms))  # sealed per device
        dump = repr(db.execute("SELECT * FROM messages").fetchall())
        self.assertNotIn("old mill", dump)
        self.assertNotIn("on my way", dump)

    def test_a_script_logs_in_runs_its_commands_and_exits_at_end_of_input(self) -> None:
        self.add_user("alice")
        config = self.config_dir()
        c = PlainClient(self, self.port, config, "--insecure", "--user", "alice")
        c.send(PASSWORD, "/join #news", "first post", "/who")
        c.end_input()
        self.assertEqual(c.wait_exit(), 0, c.output())
        out = c.output()
        self.assertIn("#news <alice> first post", out)
        self.assertIn("* online (1): alice", out)
        self.assertIn("for tests only", "\n".join(c.errors))
        self.assertNotIn(PASSWORD, out)
        session = config / "servers" / f"127.0.0.1_{self.port}" / "session.json"
        self.assertEqual(stat.S_IMODE(os.stat(session).st_mode), 0o600)
        key = config / "servers" / f"127.0.0.1_{self.port}" / "keys" / "alice.key"
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)

        # The next run resumes the saved session: no password is asked for.
        # With --fingerprint, the certificate is trusted without a question.
        fingerprint = certificate_fingerprint(self.server.data_dir / "tls-cert.pem")
        again = PlainClient(self, self.port, config, "--fingerprint", fingerprint)
        again.send("/history #news")
        again.end_input()
        self.assertEqual(again.wait_exit(), 0, again.output())
        self.assertNotIn("Password", again.output())
        self.assertNotIn("Trust", again.output())
        self.assertRegex(again.output(), r"#news <alice> \[[\d:]+\] first post")

        # /logout revokes the token and forgets it. (The certificate is known now.)
        third = PlainClient(self, self.port, config)
        third.send("/logout")
        third.wait_for(r"logged out alice")
        third.end_input()
        self.assertEqual(third.wait_exit(), 0)
        self.assertNotIn("token", session.read_text())

    def test_totp_is_enabled_with_a_code_and_then_asked_for_at_login(self) -> None:
        self.add_user("alice")
        config = self.config_dir()
        c = PlainClient(self, self.port, config, "--insecure", "--user", "alice")
        c.send(PASSWORD, "/otp enable")
        secret = c.wait_for(r"secret ([A-Z2-7]{16,})").group(1)
        uri = c.wait_for(r"\((otpauth://totp/\S+)\)").group(1)
        self.assertIn(f"secret={secret}", uri)
        self.assertTrue(any(set(line[2:]) <= set("█▀▄ ") and len(line) > 20
                            for line in c.lines), "no QR code in the output")
        c.wait_for(r"^\? Type the 6-digit code")
        totp = pyotp.TOTP(secret)
        c.send(totp.now())
        c.wait_for("two-factor authentication is on")
        c.send("/logout")
        c.wait_for("logged out alice")
        c.end_input()
        c.wait_exit()

        login = PlainClient(self, self.port, config, "--insecure", "--user", "alice")
        login.send(PASSWORD)
        login.wait_for(r"^\? This account has two-factor authentication")
        # The code used to enable it cannot be replayed: use the next one.
        login.send(totp.at(time.time() + 30))
        login.wait_for("Logged in as alice")

    def test_wrong_password_is_reported_and_asked_again(self) -> None:
        self.add_user("alice")
        c = PlainClient(self, self.port, self.config_dir(), "--insecure", "--user", "alice")
        c.send("not the password")
        c.wait_for(r"^! wrong user name or password$")
        c.send(PASSWORD)
        c.wait_for("Logged in as alice")

    def test_end_of_input_before_logging_in_is_an_error(self) -> None:
        c = PlainClient(self, self.port, self.config_dir(), "--insecure")
        c.wait_for(r"^\? Type  login")
        c.end_input()
        self.assertEqual(c.wait_exit(), 1)
        self.assertIn("standard input ended before the client logged in", "\n".join(c.errors))

    def test_refusing_to_trust_sends_nothing_and_exits(self) -> None:
        config = self.config_dir()
        c = PlainClient(self, self.port, config)
        c.wait_for(r"^\? Trust this server\? \(yes/no\)$")
        c.send("maybe", "no")
        c.wait_for(r"^! please answer yes or no$")
        self.assertEqual(c.wait_exit(), 1)
        self.assertIn("not trusting", "\n".join(c.errors))
        self.assertFalse((config / "known_hosts").exists())


class PlainErrorTests(TestCase):
    """Errors that need no server: one clear line and a non-zero exit."""

    def run_client(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        config = tempfile.mkdtemp(prefix="pingchat-client-")
        self.addCleanup(shutil.rmtree, config, True)
        return subprocess.run([PINGCHAT, "client", "--config-dir", config, *args],
                              input=stdin, capture_output=True, text=True, timeout=30)

    def test_a_bad_address_is_one_clear_line(self) -> None:
        result = self.run_client("--plain", "localhost:http")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(),
                         ["pingchat: error: bad server address: bad port number in"
                          " 'localhost:http'"])

    def test_nothing_listening_is_reported(self) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        result = self.run_client("--plain", f"127.0.0.1:{port}")
        self.assertEqual(result.returncode, 1)
        self.assertIn("connection refused", result.stderr)

    def test_the_full_screen_client_needs_a_terminal(self) -> None:
        result = self.run_client("localhost")
        self.assertEqual(result.returncode, 1)
        self.assertIn("use --plain", result.stderr)

    def test_ca_and_insecure_do_not_go_together(self) -> None:
        result = self.run_client("--plain", "--insecure", "--ca", "x.pem", "localhost")
        self.assertEqual(result.returncode, 2)
        self.assertIn("not allowed with", result.stderr)
