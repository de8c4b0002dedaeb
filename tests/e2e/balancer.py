"""HAProxy in front of the test's nodes, as docs/deployment.md has an
administrator run it: TCP mode, ``balance leastconn``, a check per node,
``option redispatch``. Unprivileged, in a temporary directory, on 127.0.0.1
at ports that were free a moment before; its log goes to the test's output
on failure.

In CI (``CI`` set) a missing haproxy is a failure (``.ci/run`` installs it);
elsewhere the test is skipped with a note saying what to install.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from tests.e2e.harness import wait_until
from tests.e2e.irc_clients import require
from tests.e2e.terminal import free_port

# The defaults of docs/deployment.md's haproxy.cfg, but for the log, which
# goes to stdout here (no syslog in a test).
DEFAULTS = """\
global
    log stdout format raw local0
    maxconn 1000
    stats socket {dir}/admin.sock mode 600 level admin

defaults
    log global
    mode tcp
    option tcplog
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    retries 3
    option redispatch 1
    default-server check inter 2s fall 2 rise 2 on-marked-down shutdown-sessions
"""


class HAProxy:
    """``haproxy -db -f DIR/haproxy.cfg``: one frontend per door, each with a
    backend listing the door's port on every node."""

    def __init__(
        self,
        backends: dict[str, dict[str, int]],
        https: str | None = None,
        proxy: tuple[str, ...] = (),
    ) -> None:
        """*backends*: door -> {node name: port on 127.0.0.1}. The door named
        *https* is the web door as docs/deployment.md has it: HAProxy ends TLS
        (the certificate and key in ``DIR/https.pem``), HTTP mode, forwarding
        headers, an HTTP check. The doors in *proxy* tell the nodes each
        client's address with the PROXY protocol (``send-proxy-v2``), to the
        nodes' ``haproxy:`` listeners."""
        self.binary = require("haproxy")
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-haproxy-"))
        self.backends = backends
        self.https = https
        self.proxy = proxy
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self._reader: threading.Thread | None = None

    def config(self) -> str:
        text = DEFAULTS.format(dir=self.dir)
        for door, nodes in self.backends.items():
            if door == self.https:
                text += (
                    f"\nfrontend {door}\n    mode http\n"
                    f"    bind 127.0.0.1:{self.ports[door]} ssl crt {self.dir}/https.pem\n"
                    "    option forwardfor\n"
                    "    http-request set-header X-Forwarded-Proto https\n"
                    f"    timeout client 1h\n    default_backend {door}\n"
                    f"backend {door}\n    mode http\n    balance leastconn\n"
                    "    option httpchk GET /\n    timeout server 1h\n    timeout tunnel 1h\n"
                )
            else:
                text += (
                    f"\nfrontend {door}\n    bind 127.0.0.1:{self.ports[door]}\n"
                    f"    default_backend {door}\nbackend {door}\n    balance leastconn\n"
                )
            send = " send-proxy-v2" if door in self.proxy else ""
            text += "".join(f"    server {n} 127.0.0.1:{p}{send}\n" for n, p in nodes.items())
        return text

    def start(self) -> HAProxy:
        for _attempt in range(5):  # a free port may be taken meanwhile: choose again
            self.ports = {door: free_port() for door in self.backends}
            (self.dir / "haproxy.cfg").write_text(self.config())
            self.log = []
            self.proc = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.dir / "haproxy.cfg")],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
            wait_until(
                lambda: self.proc is None or self.proc.poll() is not None or self._listening(),
                20,
                what="haproxy to listen",
            )
            if self.proc.poll() is None:
                return self
            self._reader.join(5)
        raise AssertionError("haproxy did not start:\n" + self.output())

    def _listening(self) -> bool:
        for port in self.ports.values():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def output(self) -> str:
        return "".join(self.log)

    def command(self, line: str) -> str:
        """One command on the admin socket (``show stat``, ...); its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.dir / "admin.sock"))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self, door: str) -> dict[str, str]:
        """Each node's state in *door*'s backend as HAProxy's checks see it (UP, DOWN...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == door and row.get("svname") in self.backends[door]:
                out[row["svname"]] = row["status"].split()[0]
        return out

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self._reader is not None:
                self._reader.join(5)
            self.proc = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)
