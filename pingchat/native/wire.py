"""Pure framing and encoding of the PingChat protocol; no transport here.

One JSON object per line, UTF-8, ``\\n``-terminated (``\\r\\n`` accepted), at
most 16 KiB a line. A longer line is discarded up to its end and reported
once, so the connection stays usable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring
from typing import Any

from pingchat.errors import BadRequest, ChatError

MAX_LINE = 16 * 1024


class LineTooLong:
    """Marker yielded by :class:`LineFramer` in place of an oversized line."""

    def __init__(self, length: int) -> None:
        self.length = length


class LineFramer:
    """Split a byte stream into lines, discarding (and flagging) oversized ones."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = b""
        self._discarding = 0  # bytes of an oversized line dropped so far

    def feed(self, data: bytes) -> Iterator[bytes | LineTooLong]:
        buf = self._buffer + data
        self._buffer = b""
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end]
            start = end + 1
            if self._discarding:
                total = self._discarding + len(line)
                self._discarding = 0
                yield LineTooLong(total)
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line:
                yield LineTooLong(len(line))
                continue
            yield line
        rest = buf[start:]
        if self._discarding:
            self._discarding += len(rest)
        elif len(rest) > self.max_line:
            self._discarding = len(rest)
        else:
            self._buffer = rest


class BadJSON(ChatError):
    code = "bad_json"


def parse_request(line: bytes) -> dict[str, Any]:
    """Decode one request line; raise ``BadJSON`` or ``BadRequest``."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadJSON(f"the line is not valid UTF-8 (byte {e.start})") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise BadJSON(f"the line is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadRequest("a request must be a JSON object")
    request_id = obj.get("id")
    if request_id is not None and not isinstance(request_id, (str, int, float, bool)):
        obj.pop("id", None)
        raise BadRequest("id must be a scalar (string or number)")
    if not isinstance(obj.get("op"), str):
        raise BadRequest("every request needs an op (a string)")
    return obj


def _compact_json() -> Callable[[Any], str]:
    """``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))``, made once.

    ``json.dumps`` builds a ``JSONEncoder`` and then CPython's C encoder on
    every call: 7.3 us for a DM's reply, 2.1 with the C encoder kept.
    Without the C encoder (another Python), or if its signature ever
    changes, a kept ``JSONEncoder`` does the same. No circular-reference
    check: replies and events are trees built here.
    """
    encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
    if c_make_encoder is not None:
        try:
            chunks = c_make_encoder(
                None, encoder.default, encode_basestring, None, ":", ",", False, False, True
            )
            if "".join(chunks({"a": [1, "é"]}, 0)) == '{"a":[1,"é"]}':
                return lambda obj: "".join(chunks(obj, 0))
        except TypeError:
            pass
    return encoder.encode


dumps = _compact_json()


def encode(obj: dict[str, Any]) -> bytes:
    """One line of the protocol: compact JSON, UTF-8, ``\\n``."""
    return dumps(obj).encode("utf-8") + b"\n"


def ok(request_id: Any, result: dict[str, Any] | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {"id": request_id, "ok": True}
    if result:
        reply.update(result)
    return reply


def error(request_id: Any, code: str, message: str, **extra: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "id": request_id,
        "ok": False,
        "error": {"code": code, "message": message},
    }
    if extra:
        reply["error"].update(extra)
        reply.update(extra)
    return reply


def event(name: str, **fields: Any) -> dict[str, Any]:
    return {"event": name, **fields}
