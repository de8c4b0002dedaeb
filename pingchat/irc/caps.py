"""IRCv3 capability negotiation: what the gateway offers and how it says so."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet

# name -> value advertised to CAP LS 302 clients ("" for none).
SUPPORTED: dict[str, str] = {
    "account-tag": "",
    "away-notify": "",
    "batch": "",
    "cap-notify": "",
    "draft/chathistory": "",
    "draft/message-redaction": "",
    "echo-message": "",
    "extended-join": "",
    "labeled-response": "",
    "message-tags": "",
    "multi-prefix": "",
    "sasl": "PLAIN",
    "server-time": "",
    "userhost-in-names": "",
}

# cap-notify is implicitly enabled for CAP LS 302 clients and cannot be
# disabled by them (IRCv3 capability negotiation, version 302).
STICKY_302 = frozenset({"cap-notify"})

LS_CHUNK = 400  # bytes of capability text per CAP LS line


def ls_tokens(version: int, available: Iterable[str] | None = None) -> list[str]:
    """The capability tokens to advertise, with values for version 302."""
    names = sorted(SUPPORTED if available is None else available)
    out = []
    for name in names:
        value = SUPPORTED.get(name, "")
        out.append(f"{name}={value}" if value and version >= 302 else name)
    return out


def chunk(tokens: list[str], limit: int = LS_CHUNK) -> list[str]:
    """Group tokens into space-separated strings of at most *limit* bytes."""
    lines: list[str] = []
    current = ""
    for token in tokens:
        candidate = f"{current} {token}" if current else token
        if current and len(candidate.encode("utf-8")) > limit:
            lines.append(current)
            current = token
        else:
            current = candidate
    lines.append(current)
    return lines


def parse_request(text: str) -> list[tuple[str, bool]] | None:
    """``"a -b"`` -> ``[("a", True), ("b", False)]``; ``None`` if any is unknown."""
    changes = []
    for word in text.split():
        enable = not word.startswith("-")
        name = word.lstrip("-")
        if name not in SUPPORTED:
            return None
        changes.append((name, enable))
    return changes


def tags_wanted(caps: AbstractSet[str]) -> tuple[bool, bool, bool]:
    """The tags a room message carries for a client with *caps*.

    Clients asking for the same tags get the same bytes; the gateway encodes
    a room message once per distinct answer (``IRCFactory.room_message_data``).
    """
    return ("server-time" in caps, "message-tags" in caps, "account-tag" in caps)
