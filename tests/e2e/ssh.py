"""Drive the real OpenSSH client (``ssh``) against a server, through a pty.

The password goes through ``SSH_ASKPASS`` (with ``SSH_ASKPASS_REQUIRE=force``,
OpenSSH 8.4+), so no ``sshpass`` and no controlling terminal are needed; the
interactive session runs on a pseudo-terminal that the test reads and types
into.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
from pathlib import Path
from typing import Any

from tests.e2e.harness import wait_until

SSH = shutil.which("ssh")
_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[c78DEHM=>]")


def plain(data: bytes) -> str:
    """Terminal output without escape sequences or carriage returns."""
    return _ESCAPES.sub(b"", data).replace(b"\r", b"").decode("utf-8", "replace")


class SSHClient:
    """Options and credentials for OpenSSH against one manhole port."""

    def __init__(self, port: int, workdir: Path, host_alias: str = "pingchat-manhole") -> None:
        assert SSH is not None, "OpenSSH's ssh is not installed"
        self.port = port
        self.workdir = workdir
        self.known_hosts = workdir / "known_hosts"
        self.askpass = workdir / "askpass.sh"
        self.askpass.write_text(
            "#!/bin/sh\n"
            'case "$1" in\n'
            '  *code*) printf "%s\\n" "$PINGCHAT_TEST_OTP" ;;\n'
            '  *) printf "%s\\n" "$PINGCHAT_TEST_PASSWORD" ;;\n'
            "esac\n"
        )
        self.askpass.chmod(0o700)
        self.host_alias = host_alias

    def command(
        self, user: str, strict: str = "no", *extra: str, method: str = "password"
    ) -> list[str]:
        assert SSH is not None
        return [
            SSH, "-F", "/dev/null", "-p", str(self.port),
            "-o", f"StrictHostKeyChecking={strict}",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"HostKeyAlias={self.host_alias}",
            "-o", f"PreferredAuthentications={method}",
            "-o", "PubkeyAuthentication=no",
            "-o", "NumberOfPasswordPrompts=1",
            "-o", "IdentityAgent=none",
            "-o", "ConnectTimeout=10",
            *extra, f"{user}@127.0.0.1",
        ]

    def env(self, password: str, otp: str = "") -> dict[str, str]:
        return {
            **os.environ,
            "SSH_ASKPASS": str(self.askpass),
            "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": os.environ.get("DISPLAY", ":0"),
            "PINGCHAT_TEST_PASSWORD": password,
            "PINGCHAT_TEST_OTP": otp,
        }

    def refused(
        self, user: str, password: str, otp: str = "", method: str = "password"
    ) -> subprocess.CompletedProcess[str]:
        """Try to log in without a terminal; returns the finished process."""
        return subprocess.run(
            self.command(user, "no", "-T", method=method), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, env=self.env(password, otp), timeout=60,
            start_new_session=True,
        )

    def shell(
        self, user: str, password: str, strict: str = "no", otp: str = "",
        method: str = "password",
    ) -> ShellSession:
        """``ssh -tt``; *method* is ``password`` or ``keyboard-interactive``."""
        return ShellSession(
            self.command(user, strict, "-tt", method=method), self.env(password, otp)
        )


class ShellSession:
    """An interactive ``ssh -tt`` on a pty: type lines, wait for output."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        # A wide terminal, so that no line the tests look for is wrapped.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.proc = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, env=env,
            start_new_session=True, close_fds=True,
        )
        os.close(slave)
        self.data = b""
        self.mark = 0

    def _pump(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the other side of the pty is gone
                return
            if not chunk:
                return
            self.data += chunk

    def text(self) -> str:
        self._pump()
        return plain(self.data)

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait for *pattern* (a regex) after the last match; move past it."""
        compiled = re.compile(pattern)

        def found() -> Any:
            return compiled.search(self.text(), self.mark)

        try:
            match = wait_until(found, timeout, what=repr(pattern))
        except AssertionError:
            raise AssertionError(
                f"{pattern!r} not seen; the session showed:\n{self.text()[self.mark:]}"
            ) from None
        self.mark = match.end()
        return match  # type: ignore[no-any-return]

    def run(self, line: str, result: str, timeout: float = 20.0) -> str:
        """Type *line*; wait for *result* (a regex) and the next prompt."""
        os.write(self.master, line.encode() + b"\r")
        match = self.expect(result, timeout)
        self.expect(r">>> ", timeout)
        return match.group(0)

    def exited(self) -> bool:
        self._pump()
        return self.proc.poll() is not None

    def close(self) -> None:
        if self.master < 0:
            return
        if self.proc.poll() is None:
            try:
                os.write(self.master, b"\x04")
                wait_until(lambda: self.proc.poll() is not None, 10, what="ssh to exit")
            except (OSError, AssertionError):
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
        os.close(self.master)
        self.master = -1


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="pingchat-ssh-"))
