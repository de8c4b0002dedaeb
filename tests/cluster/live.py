"""For the tests of a real cluster: a Redis to test against, and a blocking
IRC client written with the standard library only (the native one is
tests/client.py)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import time
import urllib.parse
from typing import Any
from unittest import SkipTest

from tests.backends import under_ci

ENV = "PINGCHAT_TEST_REDIS"


def redis_server(case: Any) -> str:
    """The test Redis's URL; skips (fails under CI) if there is none."""
    url = os.environ.get(ENV, "").strip()
    if url:
        return url
    if under_ci():
        case.fail(f"{ENV} is not set: CI must test the bus (.ci/run starts a Redis)")
    raise SkipTest(
        f"no Redis to test against: set {ENV}=unix:///DIR/redis.sock or redis://HOST:PORT"
        " (bash .ci/redis start DIR starts a throwaway one and prints its URL)"
    )


def fresh_redis(case: Any) -> str:
    """The test Redis's URL on a database of its own (1-15), emptied first.

    Pub/sub channels are shared by all databases; pingchat names its channel
    after the database number, so tests on different numbers do not hear
    each other.
    """
    url = redis_server(case)
    db = random.randint(1, 15)  # noqa: S311
    redis_cli(url, db, "FLUSHDB")
    if url.startswith("unix://"):
        return f"{url.split('?')[0]}?db={db}"
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


def redis_cli(url: str, db: int, *command: str) -> str:
    if shutil.which("redis-cli") is None:
        raise SkipTest("no redis-cli")
    if url.startswith("unix://"):
        target = ["-s", url[len("unix://") :].split("?")[0]]
    else:
        host_port = url.split("://", 1)[1].split("/")[0]
        host, _, port = host_port.partition(":")
        target = ["-h", host, "-p", port or "6379"]
    return subprocess.run(
        ["redis-cli", *target, "-n", str(db), *command],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout


class RedisProcess:
    """A redis-server of a test's own, on a Unix socket, to kill and start again."""

    def __init__(self, directory: str) -> None:
        if shutil.which("redis-server") is None:
            if under_ci():
                raise AssertionError("redis-server is missing: .ci/run installs it")
            raise SkipTest("no redis-server (apt-get install redis-server)")
        self.dir = directory
        self.socket = os.path.join(directory, "redis.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                self.socket,
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.socket)
                s.close()
                return
            time.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)


class IRCClient:
    """A blocking IRC client: registers with PASS, reads lines into .lines."""

    def __init__(self, port: int, nick: str, password: str, timeout: float = 15.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.lines: list[str] = []
        self.nick = nick
        self.send(f"PASS {nick}:{password}", f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        self.wait_for(lambda line: f" 001 {nick} " in line)

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def read_line(self) -> str:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        text = line.decode("utf-8", "replace")
        if text.startswith("PING "):
            self.send("PONG " + text[5:])
        return text

    def wait_for(self, predicate: Any) -> str:
        """The first line (kept or to come) that *predicate* accepts; it is taken."""
        for i, line in enumerate(self.lines):
            if predicate(line):
                return self.lines.pop(i)
        while True:
            line = self.read_line()
            if predicate(line):
                return line
            self.lines.append(line)

    def privmsgs(self, target: str, count: int) -> list[str]:
        """The texts of the next *count* PRIVMSGs to *target*."""
        out = []
        for _ in range(count):
            line = self.wait_for(lambda x: f" PRIVMSG {target} :" in x)
            out.append(line.split(f" PRIVMSG {target} :", 1)[1])
        return out

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
