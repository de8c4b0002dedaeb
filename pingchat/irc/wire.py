"""IRC lines: pure parsing and formatting, with IRCv3 message tags.

Nothing here touches a transport. A line is at most 512 bytes (with CR LF)
without its tags; the tags may add up to 8191 bytes more. Lines are UTF-8
only (the gateway advertises ``UTF8ONLY``): :func:`decode` refuses anything
else, and the protocol answers such a line with ``FAIL <command>
INVALID_UTF8``, so native and IRC users always see the same text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

import attrs

MAX_LINE = 512  # bytes, including CR LF, excluding tags
MAX_TAGS = 8191  # bytes of the tag section, including '@' and the trailing space
MAX_INPUT = MAX_LINE + MAX_TAGS

# NUL cannot be written in a tag value at all (IRCv3 message-tags): it is dropped.
_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n", "\x00": ""}
# A tag key (IRCv3 message-tags): an optional client prefix '+', an optional
# vendor (a host name) and '/', then letters, digits and hyphens. A key that
# is anything else is ignored when read and never written.
TAG_KEY = re.compile(r"\+?(?:[A-Za-z0-9][A-Za-z0-9.-]*/)?[A-Za-z0-9-]+")
# The keys the gateway itself writes: known good, not matched again per line.
_SERVER_KEYS = frozenset({"time", "msgid", "account", "label", "batch"})
_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class ParseError(ValueError):
    """A line that is not an IRC message (empty, or without a command)."""


@attrs.frozen
class Message:
    """One IRC message: tags, an optional source, a command and its parameters."""

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: Mapping[str, str] = attrs.field(factory=dict)

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if index < len(self.params) else default


@attrs.frozen
class LineTooLong:
    """Marker yielded by :class:`LineFramer` for a discarded oversized line."""

    length: int


def decode(raw: bytes) -> str:
    """Strict UTF-8; raises ``UnicodeDecodeError`` (a ``ValueError``) for anything else.

    Python's codec already refuses what UTF-8 forbids (overlong forms,
    encoded surrogates, code points past U+10FFFF).
    """
    return raw.decode("utf-8")


def number(text: str) -> int | None:
    """The integer *text* spells in ASCII digits (an optional leading ``-``), else None.

    Not ``str.isdigit``/``int``: ``"¹".isdigit()`` is true but ``int("¹")``
    fails, and ``int("\u0661\u0660")`` (Arabic-Indic digits) is 10.
    """
    digits = text[1:] if text.startswith("-") else text
    if digits.isascii() and digits.isdigit():
        return int(text)
    return None


def escape_tag_value(value: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in value)


def unescape_tag_value(value: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for c in chars:
        if c != "\\":
            out.append(c)
            continue
        nxt = next(chars, None)
        if nxt is None:  # a trailing lone backslash is dropped
            break
        out.append(_UNESCAPES.get(nxt, nxt))
    return "".join(out)


def parse_tags(text: str) -> dict[str, str]:
    """The tags of a tag section; malformed keys are ignored."""
    tags: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if TAG_KEY.fullmatch(key):
            tags[key] = unescape_tag_value(value)
    return tags


def format_tags(tags: Mapping[str, str]) -> str:
    """``@a=b;c`` (empty values are written as bare keys), or ``""``.

    A malformed key is left out, so no tag can carry a space, CR, LF or NUL
    onto the wire, whoever made it.
    """
    if not tags:
        return ""
    parts = [
        k if v == "" else f"{k}={escape_tag_value(v)}"
        for k, v in tags.items()
        if k in _SERVER_KEYS or TAG_KEY.fullmatch(k)
    ]
    return "@" + ";".join(parts) if parts else ""


def parse(line: str) -> Message:
    """Parse one line (without CR LF) into a :class:`Message`."""
    rest = line.lstrip(" ")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        tag_text, _, rest = rest[1:].partition(" ")
        tags = parse_tags(tag_text)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    params: list[str] = []
    command = ""
    first = True
    while rest:
        if rest.startswith(":") and not first:
            params.append(rest[1:])
            break
        word, _, rest = rest.partition(" ")
        rest = rest.lstrip(" ")
        if first:
            command, first = word, False
        else:
            params.append(word)
    if not command:
        raise ParseError("no command")
    return Message(command.upper(), tuple(params), source, tags)


def format_params(params: Sequence[str]) -> str:
    """Join parameters, giving the last one a ``:`` when it needs one."""
    if not params:
        return ""
    *middle, last = params
    if last == "" or " " in last or last.startswith(":"):
        last = ":" + last
    return " ".join([*middle, last])


def format_line(
    command: str,
    params: Sequence[str] = (),
    source: str | None = None,
) -> str:
    """The line (without tags and without CR LF)."""
    out = f":{source} {command}" if source else command
    if params:
        out += " " + format_params(params)
    return out


def encode(line: str, tags: Mapping[str, str] | None = None) -> bytes:
    """Bytes to send: tags, then the line cut to 510 bytes, then CR LF.

    CR, LF and NUL never reach the wire: they are replaced or removed, so no
    text can end a line early and inject a command.
    """
    if "\r" in line or "\n" in line or "\x00" in line:
        line = line.replace("\r", " ").replace("\n", " ").replace("\x00", "")
    body = line.encode("utf-8")
    if len(body) > MAX_LINE - 2:
        body = truncate_utf8(body, MAX_LINE - 2)
    tag_text = format_tags(tags or {})
    if tag_text:
        prefix = tag_text.encode("utf-8")
        if len(prefix) > MAX_TAGS - 1:
            prefix = b""
        else:
            prefix += b" "
        body = prefix + body
    return body + b"\r\n"


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """Cut *data* to at most *limit* bytes without splitting a UTF-8 sequence."""
    if len(data) <= limit:
        return data
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


def split_text(text: str, limit: int) -> list[str]:
    """Split *text* into pieces of at most *limit* UTF-8 bytes.

    Pieces break at a space when one is near the end, and never inside a
    character. An empty text gives one empty piece.
    """
    limit = max(limit, 4)
    data = text.encode("utf-8")
    if len(data) <= limit:
        return [text]
    pieces: list[str] = []
    while len(data) > limit:
        chunk = truncate_utf8(data, limit)
        space = chunk.rfind(b" ")
        if space > len(chunk) // 2:
            pieces.append(chunk[:space].decode("utf-8"))
            data = data[space + 1 :]
        else:
            pieces.append(chunk.decode("utf-8"))
            data = data[len(chunk) :]
    if data:
        pieces.append(data.decode("utf-8"))
    return pieces


class LineFramer:
    """Turns a byte stream into lines; an oversized line is discarded whole.

    Lines end with CR LF (a bare LF is accepted too). A line longer than
    *max_line* bytes yields :class:`LineTooLong` once, and the connection stays
    usable: the rest of that line is skipped up to its end.
    """

    def __init__(self, max_line: int = MAX_INPUT) -> None:
        self.max_line = max_line
        self._buffer = b""
        self._discarding = 0

    def feed(self, data: bytes) -> Iterator[bytes | LineTooLong]:
        buffer = self._buffer + data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            if line.endswith(b"\r"):
                line = line[:-1]
            start = end + 1
            if self._discarding:
                length = self._discarding + len(line)
                self._discarding = 0
                yield LineTooLong(length)
            elif len(line) > self.max_line:
                yield LineTooLong(len(line))
            else:
                yield line
        rest = buffer[start:]
        if self._discarding:
            self._discarding += len(rest)
            rest = b""
        elif len(rest) > self.max_line:
            self._discarding = len(rest)
            rest = b""
        self._buffer = rest
