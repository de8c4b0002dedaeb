"""A blocking WebSocket client (RFC 6455) written only with the standard library.

It knows only the RFC: an independent check of the server's framing, and a
client that can also send what a browser never would (huge, fragmented,
binary or broken frames). Used in a thread by the integration tests and
from the end-to-end tests.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
from typing import Any

from tests.client import NativeRequests

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeRefused(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.headers = headers
        self.body = body


class Closed(Exception):
    """The server sent a close frame (or hung up: code None)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed: {code} {reason}")
        self.code = code
        self.reason = reason


def http_request(
    host: str,
    port: int,
    raw: bytes,
    tls: bool = False,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """Send one raw HTTP/1.1 request (``Connection: close``); the status, headers and body."""
    sock = _connect(host, port, tls, timeout)
    try:
        sock.sendall(raw)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return parse_response(data)


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """An HTTP/1.1 response's status, headers (lower-case names) and body (unchunked)."""
    head, _, body = data.partition(b"\r\n\r\n")
    status, headers = _parse_head(head)
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return status, headers, body


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return out


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = (headers[key] + ", " if key in headers else "") + value.strip()
    return status, headers


def _connect(
    host: str, port: int, tls: bool, timeout: float, rcvbuf: int | None = None
) -> socket.socket:
    raw = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    if rcvbuf is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(timeout)
    raw.connect((host, port))
    if not tls:
        return raw
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(raw, server_hostname="localhost")


class WSClient:
    """One WebSocket connection; ``recv`` returns whole messages and answers pings."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/ws",
        *,
        tls: bool = False,
        origin: str | None = None,
        subprotocols: list[str] | None = None,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
        answer_pings: bool = True,
    ) -> None:
        self.sock = _connect(host, port, tls, timeout, rcvbuf)
        self.answer_pings = answer_pings
        self.buffer = b""
        self.pings: list[bytes] = []
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {'localhost' if host in ('127.0.0.1', '::1') else host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if origin is not None:
            lines.append(f"Origin: {origin}")
        if subprotocols:
            lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status, self.headers = _parse_head(head)
        if self.status != 101:
            body = self._refusal_body()
            self.close()
            raise HandshakeRefused(self.status, self.headers, body)
        expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()  # noqa: S324
        assert self.headers.get("sec-websocket-accept") == expected, self.headers
        self.subprotocol = self.headers.get("sec-websocket-protocol")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _refusal_body(self) -> bytes:
        """The body of a non-101 answer (the connection may stay open: keep-alive)."""
        chunked = self.headers.get("transfer-encoding") == "chunked"
        length = int(self.headers.get("content-length", "0"))
        with contextlib.suppress(OSError):
            while not (b"0\r\n\r\n" in self.buffer if chunked else len(self.buffer) >= length):
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buffer += chunk
        return _unchunk(self.buffer) if chunked else self.buffer[:length]

    # -- sending -------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True) -> None:
        head = bytes([(0x80 if fin else 0) | opcode])
        length = len(payload)
        bit = 0x80 if mask else 0
        if length < 126:
            head += bytes([bit | length])
        elif length < 1 << 16:
            head += bytes([bit | 126]) + struct.pack("!H", length)
        else:
            head += bytes([bit | 127]) + struct.pack("!Q", length)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            head += key
        self.sock.sendall(head + payload)

    def send_text(self, text: str) -> None:
        self.send_frame(TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self.send_frame(BINARY, data)

    def send_close(self, code: int = 1000) -> None:
        self.send_frame(CLOSE, struct.pack("!H", code))

    # -- receiving -----------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(None, "connection closed without a close frame")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read(2)
        assert not b1 & 0x80, "a server must not mask its frames"
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return bool(b0 & 0x80), b0 & 0x0F, self._read(length)

    def recv(self) -> tuple[int, bytes]:
        """The next whole data message: (TEXT or BINARY, payload); raises Closed."""
        opcode, parts = None, []
        while True:
            fin, op, payload = self.recv_frame()
            if op == PING:
                self.pings.append(payload)
                if self.answer_pings:
                    self.send_frame(PONG, payload)
                continue
            if op == PONG:
                continue
            if op == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(code, payload[2:].decode("utf-8", "replace"))
            if op != CONT:
                opcode = op
            parts.append(payload)
            if fin:
                assert opcode is not None
                return opcode, b"".join(parts)

    def recv_text(self) -> str:
        opcode, payload = self.recv()
        assert opcode == TEXT, (opcode, payload)
        return payload.decode("utf-8")

    def wait_closed(self) -> Closed:
        """Read until the server closes; the close it sent."""
        while True:
            try:
                self.recv()
            except Closed as closed:
                return closed


class NativeWS(WSClient, NativeRequests):
    """The native protocol over ``/ws``: one JSON object per text message."""

    def __init__(self, host: str, port: int, **kw: Any) -> None:
        super().__init__(host, port, "/ws", **kw)
        self.events: list[dict[str, Any]] = []
        self.next_id = 0
        self.hello = self.read()

    def read(self) -> dict[str, Any]:
        return json.loads(self.recv_text())  # type: ignore[no-any-return]

    def send_request(self, text: str) -> None:
        self.send_text(text)


class IRCWS(WSClient):
    """IRC over ``/irc``: one line per message, no CR LF."""

    def __init__(self, host: str, port: int, **kw: Any) -> None:
        super().__init__(host, port, "/irc", **kw)
        self.binary = self.subprotocol == "binary.ircv3.net"

    def send_line(self, line: str) -> None:
        if self.binary:
            self.send_binary(line.encode("utf-8"))
        else:
            self.send_text(line)

    send = send_line

    def read_line(self) -> str:
        opcode, payload = self.recv()
        assert opcode == (BINARY if self.binary else TEXT), (opcode, payload)
        assert not payload.endswith(b"\n"), payload
        return payload.decode("utf-8")

    def expect(self, *words: str) -> str:
        """Read lines until one contains every word; that line."""
        while True:
            line = self.read_line()
            if all(w in line for w in words):
                return line
