"""A blocking PingChat client written only with the standard library.

Used by the integration and end-to-end tests, as an independent client that
knows only the protocol description would be.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
from typing import Any


def proxy_v1(source: str, source_port: int, dest: str, dest_port: int) -> bytes:
    """A PROXY protocol version 1 header, as HAProxy's ``send-proxy`` writes it."""
    family = "TCP6" if ":" in source else "TCP4"
    return f"PROXY {family} {source} {dest} {source_port} {dest_port}\r\n".encode()


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(source: str, source_port: int, dest: str, dest_port: int) -> bytes:
    """A PROXY protocol version 2 header (``send-proxy-v2``): PROXY command, TCP."""
    if ":" in source:
        family, af = 0x21, socket.AF_INET6
    else:
        family, af = 0x11, socket.AF_INET
    body = (
        socket.inet_pton(af, source)
        + socket.inet_pton(af, dest)
        + struct.pack("!HH", source_port, dest_port)
    )
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


def proxy_v2_local() -> bytes:
    """A version 2 LOCAL header (a balancer's own health check): no address."""
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)


class NativeRequests:
    """Requests, replies and events of the native protocol, over any transport.

    A subclass says how a message is read (``read``) and how a request goes
    out (``send_request``, a JSON object without its line ending).
    """

    events: list[dict[str, Any]]
    next_id: int

    def read(self) -> dict[str, Any]:
        raise NotImplementedError

    def send_request(self, text: str) -> None:
        raise NotImplementedError

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        """Send a request and return its reply; events seen meanwhile are kept."""
        self.next_id += 1
        rid = self.next_id
        self.send_request(json.dumps({"id": rid, "op": op, **args}))
        return self.reply(rid)

    def reply(self, rid: Any) -> dict[str, Any]:
        while True:
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)
            elif msg.get("id") == rid:
                return msg

    def event(self, name: str, **match: Any) -> dict[str, Any]:
        """The first event (already seen or next to come) with this name and fields."""
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name and all(e.get(k) == v for k, v in match.items()):
                    return self.events.pop(i)
            msg = self.read()
            if "event" in msg:
                self.events.append(msg)


class LineClient(NativeRequests):
    """The native protocol over TLS, one JSON object per line."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        source: str | None = None,
        preamble: bytes = b"",
    ) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        if preamble:  # a PROXY header, in clear before TLS, as a balancer sends it
            raw.sendall(preamble)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.next_id = 0
        self.hello = self.read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)  # type: ignore[no-any-return]

    def send_request(self, text: str) -> None:
        self.send_raw(text.encode() + b"\n")
