"""Pure framing and encoding of the PingChat protocol; no transport here.

One JSON object per line, UTF-8, ``\\n``-terminated (``\\r\\n`` accepted), at
most 16 KiB a line. A longer line is discarded up to its end and reported
once, so the connection stays usable.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring
from typing import Any

from pingchat.errors import BadRequest, ChatError
from pingchat.model import strings_in

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


class RefusedLine(ChatError):
    """A line refused before any op sees it.

    ``request_id`` is the line's id when it could be read and is valid (a
    string, a finite number or a boolean), for the error reply to echo;
    otherwise None.
    """

    def __init__(self, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class BadJSON(RefusedLine):
    """Not UTF-8, or not JSON (RFC 8259 has no NaN or Infinity)."""

    code = "bad_json"


class BadLine(RefusedLine, BadRequest):
    """JSON, but not a request: not an object, no op, a bad id, text that is not Unicode."""

    code = "bad_request"


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotFinite(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotFinite(f"{literal[:24]} is beyond the range of a number (about 1.8e308)")
    return value


_NOT_FINITE = object()


def _lenient_float(literal: str) -> Any:
    value = float(literal)
    return value if math.isfinite(value) else _NOT_FINITE


# json.loads builds a decoder per call when given hooks; these are made once.
_strict = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_lenient = json.JSONDecoder(parse_constant=lambda _: _NOT_FINITE, parse_float=_lenient_float)

# A line decoded from UTF-8 holds no surrogate: one can only come from a
# \uD800-\uDFFF escape, and json pairs those that pair up. The escape is
# looked for first, so the walk runs only for lines that may hold one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


# NUL (U+0000) is not text the server takes (docs/protocol.md): PostgreSQL's
# text cannot hold it. A decoded line holds one only from a \u0000 escape
# (JSON refuses a raw control character), so again the escape comes first.
_NUL_ESCAPE = "\\u0000"
_NUL = re.compile("\x00")


def _holds(value: Any, pattern: re.Pattern[str]) -> bool:
    """True if any string, key or value of the JSON tree *value* matches *pattern*
    (``_SURROGATE``: one that cannot be UTF-8)."""
    return any(pattern.search(text) for text in strings_in(value))


def _is_scalar(value: Any) -> bool:
    """A valid id: a string, a finite number, a boolean (or absent: None)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int))  # bool is an int


def _readable_id(text: str) -> Any:
    """The id of a line that is not JSON only because of NaN/Infinity, if valid."""
    try:
        obj = _lenient.decode(text)
    except (ValueError, RecursionError):
        return None
    request_id = obj.get("id") if isinstance(obj, dict) else None
    if not _is_scalar(request_id) or _holds(request_id, _SURROGATE):
        return None
    return request_id


def parse_request(line: bytes) -> dict[str, Any]:
    """Decode one request line; raise :class:`RefusedLine` (``BadJSON`` or ``BadLine``).

    What comes out is JSON an op can trust: strings that are Unicode (no lone
    surrogate, in keys or values, at any depth) without NUL, which no store
    backend holds alike, and finite numbers, so anything echoed from it
    encodes again.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadJSON(f"the line is not valid UTF-8 (byte {e.start})") from None
    try:
        obj = _strict.decode(text)
    except _NotFinite as e:
        raise BadJSON(f"the line is not valid JSON: {e}", _readable_id(text)) from None
    except (ValueError, RecursionError) as e:
        raise BadJSON(f"the line is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadLine("a request must be a JSON object")
    request_id = obj.get("id")
    valid_id = _is_scalar(request_id)
    if _SURROGATE_ESCAPE.search(text) and _holds(obj, _SURROGATE):
        if _holds(request_id, _SURROGATE):
            valid_id = False
        raise BadLine(
            "the request holds a lone surrogate (an unpaired \\ud800-\\udfff escape):"
            " that is not Unicode text",
            request_id if valid_id else None,
        )
    if not valid_id:
        raise BadLine("id must be a scalar (string, number or boolean)")
    if _NUL_ESCAPE in text and _holds(obj, _NUL):
        raise BadLine(
            "the request holds NUL (U+0000, a \\u0000 escape), which is not allowed in"
            " any string: nothing of it was used",
            request_id,
        )
    if not isinstance(obj.get("op"), str):
        raise BadLine("every request needs an op (a string)", request_id)
    return obj


def _compact_json() -> Callable[[Any], str]:
    """``json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)``, made once.

    ``json.dumps`` builds a ``JSONEncoder`` and then CPython's C encoder on
    every call: 7.3 us for a DM's reply, 2.1 with the C encoder kept.
    Without the C encoder (another Python), or if its signature ever
    changes, a kept ``JSONEncoder`` does the same. No circular-reference
    check: replies and events are trees built here. NaN and Infinity raise
    ``ValueError``, as RFC 8259 has no such numbers: nothing the server
    writes is anything but JSON.
    """
    encoder = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False
    )
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
    if c_make_encoder is not None:
        try:
            chunks = c_make_encoder(
                None, encoder.default, encode_basestring, None, ":", ",", False, False, False
            )
            if "".join(chunks({"a": [1, "é"]}, 0)) == '{"a":[1,"é"]}' and _refuses_nan(chunks):
                return lambda obj: "".join(chunks(obj, 0))
        except TypeError:
            pass
    return encoder.encode


def _refuses_nan(chunks: Callable[[Any, int], Any]) -> bool:
    try:
        chunks({"a": float("nan")}, 0)
    except ValueError:
        return True
    return False


dumps = _compact_json()


def encode(obj: dict[str, Any]) -> bytes:
    """One line of the protocol: compact JSON, UTF-8, ``\\n``.

    Raises ``ValueError`` for what JSON cannot hold: NaN, Infinity, a lone
    surrogate (``UnicodeEncodeError``).
    """
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
