"""Real IRC clients for the end-to-end tests: irssi in tmux, weechat-headless.

In CI (``CI`` set in the environment) a missing client binary is a failure;
on a developer's machine the test is skipped with a note saying what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from tests.e2e.harness import wait_until


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not installed (apt-get install {binary})"
        if os.environ.get("CI"):
            raise AssertionError(message + "; CI installs it in .ci/run")
        raise unittest.SkipTest(message)
    return path


class Irssi:
    """irssi in its own tmux server, logging every window to files."""

    def __init__(self, nick: str, port: int, password: str, tls: bool = True) -> None:
        require("tmux")
        self.binary = require("irssi")
        self.nick = nick
        self.home = Path(tempfile.mkdtemp(prefix="pingchat-irssi-"))
        self.logs = self.home / "logs"
        self.socket = f"pingchat-{os.getpid()}-{id(self)}"
        (self.home / "config").write_text(
            f"""
servers = (
  {{ address = "127.0.0.1"; chatnet = "pc"; port = "{port}";
    use_tls = "{'yes' if tls else 'no'}"; tls_verify = "no"; autoconnect = "yes"; }}
);
chatnets = {{
  pc = {{ type = "IRC"; sasl_mechanism = "PLAIN"; sasl_username = "{nick}";
         sasl_password = "{password}"; }};
}};
settings = {{
  core = {{ real_name = "{nick} in irssi"; user_name = "{nick}"; nick = "{nick}"; }};
  "fe-common/core" = {{ autolog = "yes"; autolog_path = "{self.logs}/$tag/$0.log";
                        autolog_level = "all"; }};
}};
"""
        )

    def start(self) -> Irssi:
        subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-s", "irssi", "-x", "200",
             "-y", "50", f"{self.binary} --home={self.home}"],
            check=True, env={**os.environ, "TERM": "xterm"},
        )
        return self

    def screen(self) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, "capture-pane", "-p", "-t", "irssi"],
                             capture_output=True, text=True)
        return out.stdout

    def type(self, line: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "irssi", "-l", line],
                       check=True)
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "irssi", "Enter"],
                       check=True)

    def log(self, window: str) -> str:
        path = self.logs / "pc" / f"{window.lower()}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, window: str, text: str, timeout: float = 15.0) -> str:
        try:
            return str(wait_until(lambda: text in self.log(window) and self.log(window),
                                  timeout, what=f"{text!r} in irssi's {window} window"))
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- screen ---\n{self.screen()}") from None

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


class WeeChat:
    """weechat-headless with a script of commands (the fifo plugin is not in
    Debian's weechat-headless), logging every buffer to files.

    Over TLS it verifies the server against *ca_file* (the data dir's
    self-signed ``tls-cert.pem``), as a careful user would.
    """

    def __init__(
        self, nick: str, port: int, password: str, script: list[str], tls: bool = True,
        ca_file: Path | None = None,
    ) -> None:
        self.binary = require("weechat-headless")
        self.tls = tls
        self.ca_file = ca_file
        self.host = "localhost" if tls else "127.0.0.1"
        self.nick = nick
        self.home = Path(tempfile.mkdtemp(prefix="pingchat-weechat-"))
        self.port = port
        self.password = password
        self.script = script
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = self.home / "stdout.txt"

    def tls_option(self) -> str:
        """WeeChat 4 renamed the ``ssl*`` server options (3.x, Debian 12) to ``tls*``.

        An unknown option is only a warning to weechat, so with the wrong name
        it silently spoke plaintext to the TLS port and the server closed it.
        """
        version = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                                 check=False).stdout.strip()
        major = version.split(".", 1)[0]
        return "tls" if major.isdigit() and int(major) >= 4 else "ssl"

    def start(self) -> WeeChat:
        tls = self.tls_option()
        if self.tls and self.ca_file is not None:
            verify = [f"/set weechat.network.gnutls_ca_user {self.ca_file}",
                      f"/set irc.server.pc.{tls}_verify on"]
        else:
            verify = [f"/set irc.server.pc.{tls}_verify off"]
        commands = ";".join([
            f"/set logger.file.path {self.home / 'logs'}",
            "/set logger.file.mask $server.$channel.weechatlog",
            "/set logger.file.flush_delay 0",
            "/set logger.level.irc 9",
            f"/server add pc {self.host}/{self.port}",
            f"/set irc.server.pc.{tls} {'on' if self.tls else 'off'}",
            *verify,
            "/set irc.server.pc.sasl_mechanism plain",
            f"/set irc.server.pc.sasl_username {self.nick}",
            f"/set irc.server.pc.sasl_password {self.password}",
            f"/set irc.server.pc.nicks {self.nick}",
            f"/set irc.server.pc.username {self.nick}",
            *self.script,
            "/connect pc",
        ])
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--dir", str(self.home), "--stdout", "-r", commands],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        return self

    def log(self, channel: str) -> str:
        path = self.home / "logs" / f"pc.{channel.lower()}.weechatlog"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, channel: str, text: str, timeout: float = 20.0) -> str:
        try:
            return str(wait_until(lambda: text in self.log(channel) and self.log(channel),
                                  timeout, what=f"{text!r} in weechat's {channel} buffer"))
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- weechat ---\n{self.output.read_text()[-3000:]}"
                                 ) from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)
