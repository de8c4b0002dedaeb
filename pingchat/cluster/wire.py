"""The events nodes publish on the bus: one JSON object each.

Every event has ``t`` (its type) and ``n`` (the publishing node)::

    m  a stored message        {"m": message}
    l  a live message (TAGMSG) {"room": name, "m": message}
    s  sessions of accounts    {"e": {folded: entry}}      (pingchat.cluster.roster)
    a  an account's away state {"user": name, "away": text | null}
    c  a room created          {"room": {id, name, ...}}
    r  a room changed          {"room": name, "k": join|leave|topic|modes|invite, ...}
    k  a device key changed    {"user", "device", "action", "fingerprint", "audience"}
    o  a contact event         {"to", "user", "status"}
    b  a server notice to all  {"text", "sender"}
    x  an account disconnected {"user", "reason"}
    w  an operator's WALLOPS   {"text", "sender"}
    d  a message deleted       {"m": its tombstone, "by", "reason"}
    f  a failed login (etc.)   {"k": login|token|register, "account", "address"}
    h  a node (re)started      {"i": its start time}
    q  a node stops            {}

Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from pingchat.model import Message, RoomInfo

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode(event: dict[str, Any]) -> str:
    return _dumps(event)


def decode(data: str | bytes) -> dict[str, Any]:
    event = json.loads(data)
    if not isinstance(event, dict) or "t" not in event or "n" not in event:
        raise ValueError("not a pingchat bus event")
    return event


def decode_entry(data: object) -> dict[str, Any]:
    """A session-table entry as Redis holds it (JSON text); {} if unreadable."""
    try:
        entry = json.loads(data) if isinstance(data, (str, bytes)) else None
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


# Message fields, in the order of its attributes; those left None are not sent.
_FIELDS = (
    "id",
    "ts",
    "sender",
    "text",
    "room",
    "to",
    "ciphertext",
    "nonce",
    "kind",
    "sender_account",
    "sender_device",
    "envelopes",
    "deleted_at",
    "deleted_by",
    "conversation",
    "seq",
    "client_tags",
)


def message_to_wire(message: Message) -> dict[str, Any]:
    out = {}
    for name in _FIELDS:
        value = getattr(message, name)
        if value is not None:
            out[name] = value
    return out


def message_from_wire(data: dict[str, Any]) -> Message:
    fields = {name: data[name] for name in _FIELDS if name in data}
    fields.setdefault("text", None)
    return Message(**fields)


def room_info_to_wire(info: RoomInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "topic": info.topic,
        "topic_by": info.topic_by,
        "topic_at": info.topic_at,
        "created_at": info.created_at,
        "modes": info.modes,
        "key": info.key,
        "limit": info.limit,
    }


def room_info_from_wire(data: dict[str, Any]) -> RoomInfo:
    return RoomInfo(**data)
