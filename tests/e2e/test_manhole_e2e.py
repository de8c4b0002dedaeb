"""End to end: ``twistd -n pingchat`` with a manhole, administered with OpenSSH.

An administrator logs in with the real ``ssh`` client, sees the banner, looks
at ``who()`` and ``stats()``, broadcasts a notice that connected users receive,
kicks and disables users; a non-admin is refused; the host key survives a
restart.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sqlite3
import time
from pathlib import Path

import pyotp
from twisted.trial.unittest import SkipTest, TestCase

from pingchat.admin.manhole import HOST_KEY_FILE
from tests.client import LineClient
from tests.e2e.harness import ServerProcess, wait_until
from tests.e2e.ssh import SSH, SSHClient, workdir

ADMIN, ADMIN_PASSWORD = "root1", "admin password 1"
PASSWORD = "correct horse"
HAVE_IRC = importlib.util.find_spec("pingchat.irc.protocol") is not None


class IRCLineClient:
    """A bare IRC client on a socket: enough to log in and watch what arrives."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""
        self.lines: list[str] = []
        self.send(f"PASS :{user}:{password}", f"NICK {user}", f"USER {user} 0 * :{user}")
        self.wait_for(" 001 ")

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def read_line(self) -> str | None:
        """The next line, or None once the server has closed the connection.

        Silence for the socket's timeout raises ``TimeoutError``.
        """
        while b"\r\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        text = line.decode("utf-8", "replace")
        if text.startswith("PING"):
            self.send("PONG" + text[4:])
        self.lines.append(text)
        return text

    def wait_for(self, fragment: str) -> str:
        for seen in self.lines:
            if fragment in seen:
                return seen
        while True:
            line = self.read_line()
            if line is None:
                raise AssertionError(f"closed before {fragment!r}; saw {self.lines}")
            if fragment in line:
                return line

    def closed(self) -> bool:
        """Read until the server closes the connection (True) or stays silent (False)."""
        while True:
            try:
                if self.read_line() is None:
                    return True
            except TimeoutError:
                return False

    def close(self) -> None:
        self.sock.close()


class ManholeEndToEndTests(TestCase):
    irc = False

    def setUp(self) -> None:
        if SSH is None:
            raise SkipTest("OpenSSH's ssh is not installed (apt-get install openssh-client)")
        if self.irc and not HAVE_IRC:
            raise SkipTest("the IRC gateway is not there yet")
        self.server = ServerProcess(
            manhole="tcp:0:interface=127.0.0.1",
            irc="tcp:0:interface=127.0.0.1" if self.irc else "none",
        )
        self.addCleanup(self.server.cleanup)
        made = self.server.pingchat(
            "--init", "user", "add", ADMIN, "--admin", "--password-stdin",
            stdin=ADMIN_PASSWORD + "\n",
        )
        self.assertEqual(made.returncode, 0, made.stderr)
        self.server.start()
        self.ssh_dir = workdir()
        self.addCleanup(shutil.rmtree, self.ssh_dir, True)
        self.ssh = SSHClient(self.server.port("ManholeFactory"), self.ssh_dir)
        self.clients: list[LineClient] = []
        self.addCleanup(lambda: [c.close() for c in self.clients])

    def native(self, name: str, register: bool = True, password: str = PASSWORD) -> LineClient:
        c = LineClient("127.0.0.1", self.server.port())
        self.clients.append(c)
        if register:
            self.assertTrue(c.request("register", user=name, password=password)["ok"])
        reply = c.request("login", user=name, password=password)
        self.assertTrue(reply["ok"], reply)
        return c

    def admin_shell(self, strict: str = "no") -> object:
        shell = self.ssh.shell(ADMIN, ADMIN_PASSWORD, strict)
        self.addCleanup(shell.close)
        shell.expect(rf"logged in as {ADMIN}")
        shell.expect(r"kick\(user, reason\)")
        shell.expect(r">>> ")
        return shell

    def audit_events(self) -> list[tuple[str, str | None, str | None]]:
        db = sqlite3.connect(Path(self.server.data_dir) / "pingchat.sqlite3")
        try:
            return list(db.execute("SELECT event, account, actor FROM audit_log ORDER BY id"))
        finally:
            db.close()


class AdminSessionTests(ManholeEndToEndTests):
    def test_admin_sees_who_kicks_and_broadcasts_to_a_native_user(self) -> None:
        alice = self.native("alice")
        bob = self.native("bob")
        shell = self.admin_shell()
        row = shell.run("who()", r"alice\s+online\s+native\s+1\s+127\.0\.0\.1")
        self.assertIn("alice", row)
        shell.run("stats()", r"connections\s+native=2")
        shell.run("broadcast('maintenance at noon')", r"notice sent to 2 session\(s\)")
        self.assertEqual(alice.event("notice", text="maintenance at noon")["from"], "localhost")
        self.assertEqual(bob.event("notice", text="maintenance at noon")["from"], "localhost")
        shell.run("kick('bob', 'enough')", r"kicked bob: 1 session\(s\) closed")
        self.assertEqual(bob.event("disconnect")["reason"], "enough")
        self.assertRaises((ConnectionError, OSError), bob.read)
        shell.run("kick('nobody')", r"NoSuchUser: nobody is not connected")
        self.assertIn(("admin_kick", "bob", ADMIN), self.audit_events())
        self.assertIn(("admin_broadcast", None, ADMIN), self.audit_events())

    def test_disable_ends_the_sessions_and_refuses_the_next_login(self) -> None:
        carol = self.native("carol")
        shell = self.admin_shell()
        shell.run("disable('carol')", r"carol disabled; 1 session\(s\) closed")
        self.assertEqual(carol.event("disconnect")["reason"], "this account has been disabled")
        again = LineClient("127.0.0.1", self.server.port())
        self.clients.append(again)
        reply = again.request("login", user="carol", password=PASSWORD)
        self.assertEqual(reply["error"]["code"], "account_disabled")
        shell.run("enable('carol')", r"carol enabled")
        self.native("carol", register=False)
        shell.run("accounts()", r"carol\s+user\s+no\s+yes")
        events = self.audit_events()
        self.assertIn(("admin_disable", "carol", ADMIN), events)
        self.assertIn(("manhole_login", ADMIN, ADMIN), events)

    def test_a_non_admin_and_a_wrong_password_are_refused(self) -> None:
        self.native("dave")
        refused = self.ssh.refused("dave", PASSWORD)
        self.assertEqual(refused.returncode, 255, refused.stderr)
        self.assertIn("Permission denied", refused.stderr)
        wrong = self.ssh.refused(ADMIN, "not the password")
        self.assertEqual(wrong.returncode, 255, wrong.stderr)
        wait_until(lambda: ("manhole_refused", "dave", None) in self.audit_events(),
                   what="the refusal in the audit log")
        events = [e[0] for e in self.audit_events()]
        self.assertIn("login_failed", events)
        self.assertNotIn("manhole_login", events)

    def test_the_host_key_is_the_same_after_a_restart(self) -> None:
        shell = self.admin_shell("accept-new")
        shell.close()
        key_file = Path(self.server.data_dir) / HOST_KEY_FILE
        key = key_file.read_bytes()
        self.assertEqual(key_file.stat().st_mode & 0o777, 0o600)
        self.server.stop()
        self.server.start()
        self.ssh.port = self.server.port("ManholeFactory")
        self.assertEqual(key_file.read_bytes(), key)
        # StrictHostKeyChecking=yes: ssh goes on only if the key is the one it saw.
        again = self.admin_shell("yes")
        again.run("1 + 1", r"\n2\n")


class SecondFactorTests(ManholeEndToEndTests):
    def test_an_admin_with_totp_logs_in_with_password_and_code(self) -> None:
        native = self.native(ADMIN, register=False, password=ADMIN_PASSWORD)
        secret = native.request("otp.setup")["secret"]
        self.assertTrue(
            native.request("otp.enable", code=pyotp.TOTP(secret).at(time.time()))["ok"]
        )
        # The password alone no longer opens the manhole...
        alone = self.ssh.refused(ADMIN, ADMIN_PASSWORD)
        self.assertEqual(alone.returncode, 255, alone.stderr)
        # ...keyboard-interactive asks for the code too (next step's code:
        # the current one was spent enabling the second factor).
        code = pyotp.TOTP(secret).at(time.time() + 30)
        shell = self.ssh.shell(
            ADMIN, ADMIN_PASSWORD, otp=code, method="keyboard-interactive"
        )
        self.addCleanup(shell.close)
        shell.expect(rf"logged in as {ADMIN}")
        shell.expect(r">>> ")
        shell.run("who()", r"root1\s+online\s+native")


class IRCAdminTests(ManholeEndToEndTests):
    irc = True

    def test_kick_and_broadcast_reach_an_irc_user_too(self) -> None:
        self.native("erin")
        frank = self.native("frank")
        irc = IRCLineClient(self.server.port("IRCFactory"), "erin", PASSWORD)
        self.addCleanup(irc.close)
        shell = self.admin_shell()
        shell.run("who()", r"erin\s+online\s+irc, native\s+2")
        shell.run("broadcast('going down soon')", r"notice sent to 3 session\(s\)")
        self.assertIn("going down soon", irc.wait_for("going down soon"))
        self.assertIn("NOTICE", irc.wait_for("going down soon"))
        frank.event("notice", text="going down soon")
        shell.run("kick('erin', 'bye now')", r"kicked erin: 2 session\(s\) closed")
        self.assertTrue(irc.closed())
        self.assertIn("bye now", " ".join(irc.lines[-3:]))
