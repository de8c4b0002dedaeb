"""Run ``twistd -n pingchat`` as a real subprocess for end-to-end tests.

Every listener is bound to 127.0.0.1 port 0; the ports the kernel chose are
read back from twistd's log ("<Factory> starting on <port>").
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TWISTD = str(Path(sys.executable).with_name("twistd"))
PINGCHAT = str(Path(sys.executable).with_name("pingchat"))
_STARTING = re.compile(r"\] (\w+)( \(TLS\))?( \(PROXY\))? starting on (\d+)")


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll *predicate* until it returns something true; fail after *timeout*.

    End-to-end tests watch real processes, which offer nothing to wait on but
    their output, so polling is the honest tool here.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(interval)


class ServerProcess:
    """A pingchat server in a subprocess, with its own temporary data dir."""

    def __init__(
        self,
        *extra: str,
        data_dir: Path | None = None,
        chat: str | None = "ssl:0:interface=127.0.0.1",
        irc: str | None = "none",
        ircs: str | None = "none",
        manhole: str | None = "none",
        web: str | None = "none",
        metrics: str | None = "none",
        env: dict[str, str] | None = None,
        data_dir_option: bool = True,
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="pingchat-e2e-"))
        self.args = [TWISTD, "-n", "--pidfile=", "pingchat", "--server-name", "localhost"]
        if data_dir_option:
            self.args += ["--data-dir", str(self.data_dir)]
        for option, value in (
            ("--chat", chat),
            ("--irc", irc),
            ("--ircs", ircs),
            ("--manhole", manhole),
            ("--web", web),
            ("--metrics", metrics),
        ):
            if value is not None:
                self.args += [option, value]
        self.args += list(extra)
        self.env = {**os.environ, "PINGCHAT_BCRYPT_ROUNDS": "4", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.ports: dict[str, list[int]] = {}
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self._spawn()
        wait_until(
            lambda: (
                self.proc.poll() is not None
                or any("Server Shut Down" in line or "pingchat ready" in line for line in self.log)
            ),
            timeout,
            what="the server to start",
        )
        if self.proc.poll() is not None:
            raise AssertionError("server exited:\n" + "".join(self.log))
        return self

    def run_to_exit(self, timeout: float = 30.0) -> int:
        """Start the server expecting it to give up; its exit status."""
        self._spawn()
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the server did not exit:\n" + self.output()) from None
        finally:
            self.stop()
        return code

    def _spawn(self) -> None:
        self.log = []
        self.ports = {}
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=str(self.data_dir.parent),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            match = _STARTING.search(line)
            if match:
                key = match.group(1) + ("-tls" if match.group(2) else "")
                key += "-proxy" if match.group(3) else ""  # a haproxy: listener
                self.ports.setdefault(key, []).append(int(match.group(4)))
            self.log.append(line)

    def port(self, factory: str = "NativeFactory-tls") -> int:
        return self.ports[factory][0]

    def output(self) -> str:
        return "".join(self.log)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        self.proc = None
        return code

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def pingchat(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the ``pingchat`` command on this server's data dir."""
        return subprocess.run(
            [PINGCHAT, "--data-dir", str(self.data_dir), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
