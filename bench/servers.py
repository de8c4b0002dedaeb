"""Start and stop the servers under test, each pinned to its own core (or not).

Every listener is on 127.0.0.1; ports are picked free by the kernel. Used by
the benchmark (``bench/run.py``) and the soak (``bench/soak.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent
PASSWORD = "bench-password"
ROOM = "#bench"

# Flood limits raised so that the benchmark measures the server, not its
# protection against one noisy client. Stated in every report.
PINGCHAT_LIMITS = [
    "--rate", "0",  # no per-connection request limit
    "--login-free-attempts", "1000000",
    "--registrations-per-hour", "0",  # no per-address registration limit
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pin(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


class Server:
    """One server process under test."""

    name = "?"

    def __init__(self, core: int | None, bcrypt_rounds: int) -> None:
        self.core = core  # None: not pinned
        self.bcrypt_rounds = bcrypt_rounds
        self.env: dict[str, str] = {}  # added to the server's environment
        self.dir = Path(tempfile.mkdtemp(prefix=f"pingchat-bench-{self.name}-"))
        self.lag_file = self.dir / "lag.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.chat_port: int | None = None
        self.irc_available = True

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Work on the data dir before the server starts (seeding)."""

    def start(self) -> None:
        self.prepare()
        env = {**os.environ, "PINGCHAT_BCRYPT_ROUNDS": str(self.bcrypt_rounds),
               "PINGCHAT_LAG_PROBE": str(self.lag_file), **self.env}
        with (self.dir / "server.log").open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.dir, preexec_fn=lambda: pin(self.core),  # noqa: PLW1509
            )
        wait_listening(self.port if self.chat_port is None else self.chat_port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "server.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def target(self, kind: str) -> dict[str, Any]:
        assert self.proc is not None
        return {
            "kind": kind,
            "server": "pingchat" if isinstance(self, Pingchat) else "words",
            "port": self.chat_port if kind == "native" else self.port,
            "chat_port": self.chat_port,
            "pid": self.proc.pid,
            "password": PASSWORD,
            "lag_file": str(self.lag_file),
        }


class Pingchat(Server):
    """``twistd -n pingchat`` on free loopback ports, with a temporary data dir.

    *twistd* is the script to run (default: the one beside this Python);
    *pythonpath* is put first on the server's ``PYTHONPATH``, so that another
    checkout's ``pingchat`` (and its ``twisted/plugins``) is the one served.
    *ircs* adds the IRC-over-TLS door; *options* replaces the benchmark's
    raised limits (``PINGCHAT_LIMITS``).
    """

    name = "pingchat"

    def __init__(
        self,
        core: int | None,
        bcrypt_rounds: int,
        history: int = 0,
        *,
        twistd: str | None = None,
        pythonpath: str | None = None,
        ircs: bool = False,
        options: list[str] | None = None,
    ) -> None:
        super().__init__(core, bcrypt_rounds)
        self.chat_port = free_port()
        self.ircs_port: int | None = free_port() if ircs else None
        self.history = history
        self.twistd = twistd or str(VENV_BIN / "twistd")
        self.options = PINGCHAT_LIMITS if options is None else options
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"  # another checkout may be read-only
        if pythonpath:
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (pythonpath, os.environ.get("PYTHONPATH")) if p
            )

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def command(self) -> list[str]:
        ircs = "none" if self.ircs_port is None else f"ssl:{self.ircs_port}:interface=127.0.0.1"
        return [
            self.twistd, "-n", "--pidfile=", "pingchat",
            "--data-dir", str(self.data_dir),
            "--server-name", "bench",
            "--chat", f"ssl:{self.chat_port}:interface=127.0.0.1",
            "--irc", f"tcp:{self.port}:interface=127.0.0.1",
            "--ircs", ircs, "--manhole", "none", "--web", "none",
            # On, as by default (their cost is part of what is measured), on a free port.
            "--metrics", "tcp:0:interface=127.0.0.1",
            *self.options,
        ]

    def prepare(self) -> None:
        if self.history:
            from bench.seed import seed_history

            seed_history(self.data_dir, "#history", self.history)

    def start(self) -> None:
        super().start()
        # The IRC gateway may not exist yet: say so instead of failing.
        try:
            wait_listening(self.port, self.proc, timeout=3)  # type: ignore[arg-type]
        except RuntimeError:
            self.irc_available = False


class Words(Server):
    name = "words"

    def __init__(self, core: int, bcrypt_rounds: int, accounts: int) -> None:
        super().__init__(core, bcrypt_rounds)
        self.accounts = accounts

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "bench.twistd_words", str(self.port),
            str(self.accounts), PASSWORD, ROOM, str(self.lag_file),
        ]

    def start(self) -> None:
        self.prepare()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        with (self.dir / "server.log").open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.dir, preexec_fn=lambda: pin(self.core),  # noqa: PLW1509
            )
        wait_listening(self.port, self.proc)
