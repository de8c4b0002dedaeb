"""The client's own files: trusted certificates, saved sessions, device
secrets, E2E keys.

Everything lives in one directory (``$XDG_CONFIG_HOME/pingchat``, else
``~/.config/pingchat``), created mode 0700; every file in it that holds a
secret or a trust decision is written atomically with mode 0600, so a crash
never leaves half a file and nobody else on the machine can read or plant one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import attrs

from pingchat.model import fold

DEFAULT_PORT = 7464


def default_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/pingchat``, falling back to ``~/.config/pingchat``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pingchat"


@attrs.frozen
class ServerAddress:
    """Where the client connects: a host name or IP address and a TCP port."""

    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, text: str) -> ServerAddress:
        """Parse ``HOST``, ``HOST:PORT``, ``[IPV6]`` or ``[IPV6]:PORT``.

        A bare IPv6 address (two or more colons, no brackets) has no port.
        """
        text = text.strip()
        host, port = text, DEFAULT_PORT
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise ValueError(f"missing ']' in {text!r}")
            host, rest = text[1:end], text[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"unexpected {rest!r} after the address in {text!r}")
                port = _port(rest[1:], text)
        elif text.count(":") == 1:
            host, _, number = text.partition(":")
            port = _port(number, text)
        if not host:
            raise ValueError(f"no host name in {text!r}")
        return cls(host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def slug(self) -> str:
        """A file-name-safe name for per-server files."""
        return re.sub(r"[^A-Za-z0-9.-]", "_", self.host) + f"_{self.port}"


def _port(number: str, text: str) -> int:
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise ValueError(f"bad port number in {text!r}")
    return int(number)


def write_private(path: Path, data: bytes) -> None:
    """Replace *path* atomically with *data*, readable only by its owner (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class ConfigDir:
    """The directory of the client's files, and its per-server subdirectories."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> Path:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.path

    def server_dir(self, server: ServerAddress) -> Path:
        return self.path / "servers" / server.slug

    @property
    def known_hosts(self) -> Path:
        return self.path / "known_hosts"

    def read_json(self, path: Path) -> dict[str, Any]:
        """The object in *path*, or an empty one if there is no such file."""
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise ValueError(f"{path} is damaged ({e}); remove it to start over") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} is damaged (not a JSON object); remove it to start over")
        return data

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        write_private(path, json.dumps(data, indent=2, sort_keys=True).encode("utf-8") + b"\n")


class SessionStore:
    """The saved session token of one server (``session.json``, mode 0600), and
    the device secret the server gave each account at its last password login
    (``devices.json``, mode 0600; kept across logouts: it lets the account in
    during a wide password-guessing attack on it)."""

    def __init__(self, config: ConfigDir, server: ServerAddress) -> None:
        self.config = config
        self.path = config.server_dir(server) / "session.json"
        self.devices_path = config.server_dir(server) / "devices.json"

    def _devices(self) -> dict[str, Any]:
        # Only a convenience is lost with a damaged file: the next login
        # gets a new device secret and the file is written afresh.
        try:
            return self.config.read_json(self.devices_path)
        except ValueError:
            return {}

    def device(self, user: str) -> str | None:
        secret = self._devices().get(fold(user))
        return secret if isinstance(secret, str) else None

    def save_device(self, user: str, secret: str) -> None:
        devices = self._devices()
        if devices.get(fold(user)) != secret:
            devices[fold(user)] = secret
            self.config.write_json(self.devices_path, devices)

    def load(self) -> tuple[str, str] | None:
        """``(user, token)`` of the saved session, if any."""
        data = self.config.read_json(self.path)
        user, token = data.get("user"), data.get("token")
        if isinstance(user, str) and isinstance(token, str):
            return user, token
        return None

    def last_user(self) -> str | None:
        user = self.config.read_json(self.path).get("user")
        return user if isinstance(user, str) else None

    def save(self, user: str, token: str) -> None:
        self.config.write_json(self.path, {"user": user, "token": token})

    def forget_account(self, user: str) -> None:
        """*user*'s account was deleted: its saved session (name included) and
        its device secret go; another account's stay."""
        devices = self._devices()
        if devices.pop(fold(user), None) is not None:
            self.config.write_json(self.devices_path, devices)
        try:
            saved = self.config.read_json(self.path).get("user")
        except ValueError:
            saved = None  # damaged: the next start says so
        if isinstance(saved, str) and fold(saved) == fold(user):
            self.path.unlink(missing_ok=True)

    def forget(self, user: str | None = None) -> None:
        """Drop the token (keeping the user name, to offer it at the next login)."""
        data = self.config.read_json(self.path)
        if not data:
            return
        self.config.write_json(self.path, {"user": user or data.get("user")})
