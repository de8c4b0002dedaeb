"""The chat world's values and rules: names, messages, rooms, timestamps.

The bottom of pingchat: the store, the interfaces, the chat service and every
door import their values from here (one definition each), and this module
imports nothing of pingchat but its errors. Nothing here does I/O or reads
the clock; time is passed in as milliseconds since the epoch.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import re
import time
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import attrs

from pingchat.errors import BadRequest, InvalidName

# SPEC §2: account names start with a letter or underscore, then IRC nick characters.
ACCOUNT_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-\[\]\\^{}|`]{0,31}")
ROOM_NAME_MAX = 50  # '#' + 1..49 characters
MAX_TEXT_BYTES = 4096
FORBIDDEN_ROOM_CHARS = frozenset(" ,\x07\r\n\x00:")
# The widest integer the store holds (SQLite INTEGER, PostgreSQL BIGINT).
INT64 = range(-(2**63), 2**63)
TOPIC_MAX = 390
ROOM_FLAGS = frozenset("imnst")  # modes without arguments (+s: secret, not in lists)
ROOM_LIMIT_MAX = 2**31 - 1  # +l: a 32-bit integer, as IRC servers take it
HISTORY_MAX = 200  # messages in one page of history
ROOM_HISTORY_DAYS_MAX = 36_500  # +H: a room keeps its history at most this many days


def fold(name: str) -> str:
    """Case-fold a name for uniqueness (IRC ``CASEMAPPING=ascii``)."""
    return name.lower() if name.isascii() else name.casefold()


def check_history_days(value: object) -> int:
    """A room's retention (+H): a whole number of days, 1 to ROOM_HISTORY_DAYS_MAX."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("history_days must be a whole number of days")
    if not 1 <= value <= ROOM_HISTORY_DAYS_MAX:
        raise BadRequest(f"history_days must be from 1 to {ROOM_HISTORY_DAYS_MAX}")
    return value


def check_account_name(name: object) -> str:
    """Return *name* if it is a valid account name, else raise ``InvalidName``."""
    if not isinstance(name, str) or not ACCOUNT_NAME_RE.fullmatch(name):
        raise InvalidName(
            "account names are 1-32 characters: a letter or _ first, then "
            "letters, digits or any of _-[]\\^{}|`"
        )
    return name


def check_room_name(name: object) -> str:
    """Return *name* if it is a valid room name (``#`` + 1-49 characters)."""
    if (
        not isinstance(name, str)
        or not name.startswith("#")
        or not 2 <= len(name) <= ROOM_NAME_MAX
        or any(c in FORBIDDEN_ROOM_CHARS or ord(c) < 32 for c in name)
    ):
        raise InvalidName(
            "room names are # followed by 1-49 characters, without spaces, "
            "commas, colons or control characters"
        )
    return name


def strings_in(value: Any) -> Iterator[str]:
    """Every string in *value*: itself, or the keys, values and items of the
    dicts, lists, tuples and sets in it, at any depth (without recursion, so
    JSON nested deeper than Python's stack is walked too)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)


def clean_text(text: str) -> str:
    """Remove the characters that must never be relayed inside a message.

    CR, LF and NUL would let a message end an IRC line and inject a command;
    a line break inside a message therefore becomes a space.
    """
    if "\r" in text or "\n" in text or "\x00" in text:
        text = text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
        text = text.replace("\x00", "")
    return text


def check_text(text: object, field: str = "text") -> str:
    """Validate message text and strip CR/LF/NUL from it."""
    if not isinstance(text, str):
        raise BadRequest(f"{field} must be a string")
    text = clean_text(text)
    if not text.strip():
        raise BadRequest(f"{field} must not be empty")
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise BadRequest(f"{field} is longer than {MAX_TEXT_BYTES} bytes")
    return text


MAX_CIPHERTEXT = 12 * 1024
NONCE_BYTES = 24  # XSalsa20-Poly1305 (NaCl box)

# Per-device E2E keys (docs/e2e.md). A device id is chosen by the client;
# "default" names the one key an account published before device ids existed.
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
LEGACY_DEVICE = "default"
MAX_DEVICES = 20
MAX_DEVICE_LABEL = 64
MAX_ENVELOPES = 64
# Bidirectional overrides and isolates: a label could otherwise show reversed.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def key_fingerprint(public_key_b64: str) -> str:
    """A short, readable digest of a public key, as every client and the server show it:
    the first 32 hex digits of its SHA-256, in groups of four.

    The web client computes the same in JavaScript (``fingerprint`` in
    ``web/static/js/e2e.js``; ``tests/web/test_client_fingerprint.py``
    checks that they agree).
    """
    digest = hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()[:32]
    return " ".join(digest[i : i + 4] for i in range(0, 32, 4))


def _check_base64(value: object, field: str, limit: int) -> bytes:
    """*value* must be a non-empty base64 string of at most *limit* characters."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} must be a non-empty base64 string")
    if len(value) > limit:
        raise BadRequest(f"{field} is longer than {limit} characters")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{field} is not valid base64") from None


def check_int64(value: int, field: str) -> int:
    """Return *value* if the store can hold it (a message id bound), else ``BadRequest``."""
    if value not in INT64:
        raise BadRequest(f"{field} is out of range (a 64-bit integer)")
    return value


def check_ciphertext(ciphertext: object, nonce: object) -> None:
    """Ciphertext (and its optional nonce) must be base64; the server never reads it."""
    _check_base64(ciphertext, "ciphertext", MAX_CIPHERTEXT)
    if nonce is not None:
        _check_base64(nonce, "nonce", 256)


def check_device_id(device: object, field: str = "device", legacy: bool = False) -> str:
    """A device id: 8-64 characters of ``[A-Za-z0-9_-]`` (compared exactly).

    With *legacy*, ``default`` (an account's key from before device ids) is
    accepted too: it can be revoked and sealed for, but never published
    under by name.
    """
    if isinstance(device, str) and (
        DEVICE_ID_RE.fullmatch(device) or (legacy and device == LEGACY_DEVICE)
    ):
        return device
    raise BadRequest(f"{field} must be a device id: 8-64 letters, digits, _ or -")


def check_public_key(key: object) -> str:
    """A public key must be the base64 of exactly 32 bytes (X25519)."""
    if not isinstance(key, str):
        raise BadRequest("public_key must be a base64 string")
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("public_key is not valid base64") from None
    if len(raw) != 32:
        raise BadRequest("public_key must be 32 bytes (an X25519 key)")
    return base64.b64encode(raw).decode("ascii")


def check_device_label(label: object) -> str | None:
    """A device's label: 1-64 characters of text without control characters."""
    if label is None:
        return None
    if not isinstance(label, str) or not label.strip():
        raise BadRequest("label must be a non-empty string")
    if len(label) > MAX_DEVICE_LABEL:
        raise BadRequest(f"label is longer than {MAX_DEVICE_LABEL} characters")
    if any(
        unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI_CONTROLS for c in label
    ):
        raise BadRequest("label must not contain control characters")
    return label


def check_envelopes(envelopes: object, to: str, sender: str) -> list[dict[str, str]]:
    """Validate a DM's envelopes (one sealed copy per device) and return them.

    Each is rebuilt with exactly its four fields, so what is stored and
    relayed is what was checked. The server cannot check that the
    envelopes cover every device (it never reads them); a client may hold
    a stale list of devices.
    """
    if not isinstance(envelopes, list) or not envelopes:
        raise BadRequest("envelopes must be a non-empty list")
    if len(envelopes) > MAX_ENVELOPES:
        raise BadRequest(f"a dm has at most {MAX_ENVELOPES} envelopes")
    allowed = {fold(to), fold(sender)}
    seen: set[tuple[str, str]] = set()
    checked = []
    for i, envelope in enumerate(envelopes):
        where = f"envelopes[{i}]"
        if not isinstance(envelope, dict):
            raise BadRequest(f"{where} must be an object")
        user = envelope.get("user")
        if not isinstance(user, str) or fold(user) not in allowed:
            raise BadRequest(f"{where}.user must be the recipient ({to}) or you ({sender})")
        device = check_device_id(envelope.get("device"), f"{where}.device", legacy=True)
        ciphertext = envelope.get("ciphertext")
        _check_base64(ciphertext, f"{where}.ciphertext", MAX_CIPHERTEXT)
        nonce = envelope.get("nonce")
        if len(_check_base64(nonce, f"{where}.nonce", 64)) != NONCE_BYTES:
            raise BadRequest(f"{where}.nonce must be {NONCE_BYTES} bytes")
        if (fold(user), device) in seen:
            raise BadRequest(f"{where} is a second envelope for {user}'s device {device}")
        seen.add((fold(user), device))
        assert isinstance(ciphertext, str) and isinstance(nonce, str)
        checked.append({"user": user, "device": device, "ciphertext": ciphertext, "nonce": nonce})
    return checked


def iso_ms(ms: int) -> str:
    """Format milliseconds since the epoch as ISO 8601 UTC, e.g. ``...T22:44:16.123Z``.

    On every delivery path and for every row of a history page, so it
    avoids ``datetime.strftime`` (several times slower), remembers the last
    value (a burst shares one stamp) and the last minute's date and time
    (``time.gmtime`` and its formatting were 4 of the 6 us; a page of
    history is mostly a few minutes).
    """
    global _last_iso, _last_minute
    last = _last_iso
    if ms == last[0]:
        return last[1]
    minute, rest = divmod(ms, 60_000)
    prefix = _last_minute
    if minute != prefix[0]:
        t = time.gmtime(minute * 60)
        prefix = _last_minute = (
            minute,
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:",
        )
    text = f"{prefix[1]}{rest // 1000:02d}.{rest % 1000:03d}Z"
    _last_iso = (ms, text)
    return text


# Tuples replaced whole, so a reader on another thread never sees half of one.
_last_iso: tuple[int | None, str] = (None, "")
_last_minute: tuple[int | None, str] = (None, "")


def parse_iso_ms(text: str) -> int:
    """Parse an ISO 8601 timestamp (as written by :func:`iso_ms`) into milliseconds."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise BadRequest(f"not an ISO 8601 timestamp: {text!r}") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    # Exact integer arithmetic: timestamp() is a float and can lose the last ms.
    delta = dt - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Presence(Enum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


@attrs.define
class PresenceState:
    """An account's (or guest's) presence as the service keeps it, online or not."""

    presence: Presence = Presence.OFFLINE
    away: str | None = None
    last_seen: int | None = None


class Role(Enum):
    USER = "user"
    ADMIN = "admin"


@attrs.frozen
class Account:
    """An account as stored (no secrets)."""

    id: int
    name: str
    role: str = "user"
    disabled: bool = False
    created_at: int = 0
    last_seen: int | None = None
    dm_policy: str = "anyone"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value


@attrs.define(eq=True)
class Message:
    """A stored room message or direct message.

    Never changed once made, but not ``attrs.frozen``: a frozen class's
    ``__init__`` sets each field through ``object.__setattr__`` and took
    3.6 us here against 1.1, and one is built for every message stored or
    sent and for every row of a history page.
    """

    id: int
    ts: int
    sender: str
    text: str | None
    room: str | None = None
    to: str | None = None
    ciphertext: str | None = None
    nonce: str | None = None
    kind: str = "privmsg"  # or "notice"; "tagmsg" for client tags without text, never stored
    sender_account: str | None = None
    # A DM sealed per device (docs/e2e.md): the sending device's id and one
    # envelope {user, device, ciphertext, nonce} per receiving device.
    sender_device: str | None = None
    envelopes: list[dict[str, str]] | None = None
    # A deleted message is a tombstone (docs/protocol.md, ``message.delete``):
    # when and by whom it was deleted; its body and envelopes are gone.
    deleted_at: int | None = None
    deleted_by: str | None = None
    # Where it belongs ('r:<room id>' or 'd:<low account id>:<high account id>')
    # and its number there (1, 2, 3...: no gaps, in commit order), as the
    # store gave them: the order in which every node of a cluster delivers a
    # conversation (docs/architecture.md). None for messages stored before
    # numbering began, and for live ones (TAGMSG).
    conversation: str | None = None
    seq: int | None = None
    # IRCv3 client-only tags (``+typing``, ``+draft/reply``...) the sender
    # attached: relayed live to clients that show them, never stored.
    client_tags: dict[str, str] | None = None

    @property
    def encrypted(self) -> bool:
        """End-to-end encrypted: the server (and IRC) cannot show its text."""
        return self.ciphertext is not None or self.envelopes is not None

    def to_event(self, offline: bool = False) -> dict[str, Any]:
        """The native protocol's ``message`` event (without ``"event"``)."""
        out: dict[str, Any] = {"msg_id": self.id, "ts": iso_ms(self.ts), "from": self.sender}
        if self.room is not None:
            out["room"] = self.room
        else:
            out["to"] = self.to
        if self.deleted_at is not None:
            out["deleted"] = True
            return out
        if self.envelopes is not None:
            out["device"] = self.sender_device
            out["envelopes"] = self.envelopes
        elif self.ciphertext is not None:
            out["ciphertext"] = self.ciphertext
            if self.nonce is not None:
                out["nonce"] = self.nonce
        else:
            out["text"] = self.text
        if self.kind != "privmsg":
            out["kind"] = self.kind
        if offline:
            out["offline"] = True
        return out


@attrs.frozen
class RoomInfo:
    """A room's persistent state."""

    id: int
    name: str
    topic: str = ""
    topic_by: str | None = None
    topic_at: int | None = None
    created_at: int = 0
    modes: str = ""
    key: str | None = None
    limit: int | None = None
    history_days: int | None = None  # +H; None: the server's retention


@attrs.frozen
class Membership:
    """One account's membership of a room, with its channel privileges."""

    room: str
    account: str
    op: bool = False
    voice: bool = False


@attrs.frozen
class RoomSnapshot:
    """A room with its members and bans, as loaded at start-up."""

    info: RoomInfo
    members: list[Membership]
    bans: list[str]
    invites: list[str]


@attrs.define
class Member:
    """An account's (or guest's) place in a room."""

    name: str
    op: bool = False
    voice: bool = False
    guest: bool = False

    @property
    def prefix(self) -> str:
        return "@" if self.op else "+" if self.voice else ""


@attrs.define(eq=False)
class Room:
    """A room's live state: its stored fields, members (by folded name), bans, invites.

    The chat service owns it and changes it; doors only read it, as the
    service hands it out (``ChatService.room_named``, ``rooms_of``).
    """

    id: int
    name: str
    topic: str = ""
    topic_by: str | None = None
    topic_at: int | None = None
    created_at: int = 0
    flags: set[str] = attrs.Factory(lambda: {"n", "t"})
    key: str | None = None
    limit: int | None = None
    history_days: int | None = None
    members: dict[str, Member] = attrs.Factory(dict)
    bans: list[str] = attrs.Factory(list)
    invites: set[str] = attrs.Factory(set)

    @classmethod
    def from_info(cls, info: RoomInfo) -> Room:
        return cls(
            id=info.id,
            name=info.name,
            topic=info.topic,
            topic_by=info.topic_by,
            topic_at=info.topic_at,
            created_at=info.created_at,
            flags=set(info.modes) & ROOM_FLAGS,
            key=info.key,
            limit=info.limit,
            history_days=info.history_days,
        )

    def mode_string(self, show_key: bool = True) -> tuple[str, list[str]]:
        """``('+ntk', ['secret'])``: the room's modes as IRC shows them."""
        letters = "".join(sorted(self.flags))
        args: list[str] = []
        if self.key is not None:
            letters += "k"
            args.append(self.key if show_key else "*")
        if self.limit is not None:
            letters += "l"
            args.append(str(self.limit))
        if self.history_days is not None:
            letters += "H"
            args.append(str(self.history_days))
        return "+" + letters, args

    def member(self, name: str) -> Member | None:
        return self.members.get(fold(name))

    def is_op(self, name: str) -> bool:
        m = self.members.get(fold(name))
        return m is not None and m.op

    def is_banned(self, name: str, hostmask: str) -> bool:
        for mask in self.bans:
            pattern = fold(mask)
            if fnmatch.fnmatchcase(fold(hostmask), pattern) or pattern == fold(name):
                return True
        return False


def hostmask(name: str, guest: bool = False, user: str | None = None) -> str:
    """The IRC ``nick!user@host`` shown for a user; hosts are cloaked.

    The user part is the name, except for a guest whose door gave one (IRC's
    ``USER``): accounts keep one stable mask across doors.
    """
    return f"{name}!{user or name}@{'guest' if guest else 'user/' + name}"
