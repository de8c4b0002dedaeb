"""A terminal program in tmux for the end-to-end tests: the terminal client
(``pingchat client``) driven with send-keys and read with capture-pane."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.e2e.harness import wait_until


def free_port() -> int:
    """A port that was free a moment ago, for a server that must come back on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tmux:
    """A private tmux server (own socket) whose panes stay readable after exit."""

    def __init__(self, case: TestCase, width: int = 120, height: int = 50) -> None:
        if shutil.which("tmux") is None:
            raise AssertionError("tmux is not installed (.ci/run installs it)")
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-tmux-"))
        self.socket = self.dir / "tmux.sock"
        self.conf = self.dir / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\nset -g history-limit 5000\n")
        self.width, self.height = width, height
        self.env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        self.env.pop("TMUX", None)
        case.addCleanup(self.kill)

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-u", "-S", str(self.socket), "-f", str(self.conf), *args],
            capture_output=True, text=True, timeout=10, env=self.env, check=True,
        ).stdout

    def start(self, name: str, *argv: str) -> None:
        env = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm-256color",
               "PINGCHAT_BCRYPT_ROUNDS": "4"}
        command = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        command = f"env {command} " + " ".join(shlex.quote(a) for a in argv)
        # The exit status is written by a shell, not read from tmux: tmux 3.3
        # started from these tests was seen to leave its exited child a zombie
        # and the pane alive.
        command = f"{command}; echo \"[exited with status $?]\""
        self.tmux("new-session", "-d", "-s", name, "-x", str(self.width), "-y",
                  str(self.height), "sh", "-c", command)

    def screen(self, name: str, history: bool = False) -> str:
        """What the pane shows; with *history*, also what scrolled off the top
        (after a full-screen program exits, what it wrote last may be there)."""
        return self.tmux("capture-pane", "-p", "-t", name, *(["-S", "-"] if history else []))

    def wait_for(self, name: str, pattern: str, timeout: float = 20,
                 history: bool = False) -> str:
        """Wait until *pattern* (a regular expression) is on the screen."""
        try:
            return str(wait_until(
                lambda: (m := re.search(pattern, self.screen(name, history))) and m.group(0),
                timeout, what=repr(pattern)))
        except AssertionError as e:
            raise AssertionError(
                f"{e}; the screen of {name}:\n{self.screen(name, history)}") from None

    def type(self, name: str, text: str) -> None:
        self.tmux("send-keys", "-t", name, "-l", text)
        self.tmux("send-keys", "-t", name, "Enter")

    def trust_and_log_in(self, name: str, user: str, password: str) -> None:
        """In the terminal client *name* just started: trust the server on
        first use, then ``login`` as *user*. The caller waits for what comes
        next (its own marker of a finished login)."""
        self.wait_for(name, r"Trust this server\? \(yes/no\)")
        self.type(name, "yes")
        self.wait_for(name, r"Type  login .* register")
        self.type(name, "login")
        self.wait_for(name, "User name")
        self.type(name, user)
        self.wait_for(name, f"Password for {user}")
        self.type(name, password)

    def keys(self, name: str, *keys: str) -> None:
        self.tmux("send-keys", "-t", name, *keys)

    def wait_exit(self, name: str, timeout: float = 20) -> int:
        """The client's exit status, once it has exited."""
        return int(self.wait_for(name, r"\[exited with status (\d+)\]", timeout, history=True)
                   .removeprefix("[exited with status ").rstrip("]"))

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True,
                       timeout=10, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
