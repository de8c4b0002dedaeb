"""What the user sees, independent of how it is drawn: windows of lines.

There is one window for the server (status, questions, command output when
nothing else fits), one per room and one per direct-message conversation.
Both front ends (the full-screen UI and ``--plain``) draw these; the plain
one writes every line as it comes, labelled with its window.
"""

from __future__ import annotations

import io
from collections import deque
from datetime import datetime
from typing import Any

import attrs

from pingchat.model import fold

MAX_LINES = 2000
DELETED = "(message deleted)"


def local_time(ts: str | None, full: bool = False) -> str | None:
    """``HH:MM`` in local time from a protocol timestamp; with *full*, the date
    too unless it is today."""
    if not ts:
        return None
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return None
    if full and when.date() != datetime.now().astimezone().date():
        return when.strftime("%Y-%m-%d %H:%M")
    return when.strftime("%H:%M")


def ctcp_action(text: str) -> str | None:
    """The action of an IRC-style ``/me`` message (``\\x01ACTION waves\\x01``), if it is one."""
    if text.startswith("\x01ACTION ") and len(text) > 9:
        return text[8:].rstrip("\x01")
    return None


def message_line(text: str, kind: str, **fields: Any) -> Line:
    """A message's line: ``/me`` actions marked, other CTCP control characters dropped."""
    action = ctcp_action(text)
    if action is not None:
        return Line(action, kind, action=True, **fields)
    return Line(text.replace("\x01", ""), kind, **fields)


def who(line: Line) -> str:
    """``<alice>``, ``* alice`` (an action) or ``-alice-`` (a notice)."""
    if line.action:
        return f"* {line.sender}"
    return f"-{line.sender}-" if line.kind == "notice" else f"<{line.sender}>"


@attrs.define
class Line:
    """One line of a window.

    ``kind``: ``message`` (someone's), ``own``, ``notice``, ``event`` (joins,
    topics...), ``info``, ``error``, ``warning``, ``prompt`` (a question),
    ``elsewhere`` (a pointer to a message in another window). Copies like
    these are marked ``echo``: the plain front end, which writes every window,
    skips them.
    """

    text: str
    kind: str = "info"
    sender: str | None = None
    ts: str | None = None
    encrypted: bool = False
    history: bool = False
    action: bool = False  # "/me waves": shown as "* alice waves"
    echo: bool = False  # a copy, in the current window, of a line shown elsewhere
    msg_id: int | None = None  # the server's id of the message it shows
    deleted: bool = False  # the message was deleted: its text is gone
    at: str = attrs.field(factory=lambda: datetime.now().strftime("%H:%M"))

    def mark_deleted(self) -> None:
        """The message was deleted for everyone: its text goes, the line stays."""
        self.text, self.deleted, self.action, self.encrypted = DELETED, True, False, False

    @property
    def time(self) -> str:
        """When it was said (local time), or when the line appeared."""
        return local_time(self.ts, full=self.history) or self.at


@attrs.define(eq=False)
class ChatWindow:
    kind: str  # "status", "room" or "dm"
    title: str
    lines: deque[Line] = attrs.field(factory=lambda: deque(maxlen=MAX_LINES))
    unread: int = 0
    alert: bool = False
    last_msg_id: int = 0
    joined: bool = False
    topic: str | None = None
    members: dict[str, dict[str, object]] = attrs.field(factory=dict)
    encrypted: bool | None = None  # DMs: whether the last message went end-to-end encrypted
    warned_plain: bool = False
    seen: set[int] = attrs.field(factory=set)

    def mark_seen(self, msg_id: int) -> bool:
        """Note a message id as shown; False if it was shown already."""
        if msg_id in self.seen:
            return False
        self.seen.add(msg_id)
        if len(self.seen) > 4 * MAX_LINES:
            self.seen = set(sorted(self.seen)[-2 * MAX_LINES :])
        self.last_msg_id = max(self.last_msg_id, msg_id)
        return True

    @property
    def key(self) -> str:
        return fold(self.title) if self.kind != "status" else ""

    @property
    def label(self) -> str:
        """How the plain front end names the window: ``#room``, ``@user``, or nothing."""
        if self.kind == "dm":
            return "@" + self.title
        return self.title if self.kind == "room" else ""


class Windows:
    """The open windows, in order, and which one is shown."""

    def __init__(self, status_title: str) -> None:
        self.status = ChatWindow("status", status_title)
        self.items: list[ChatWindow] = [self.status]
        self.current: ChatWindow = self.status

    def find(self, name: str) -> ChatWindow | None:
        key = fold(name)
        for w in self.items:
            if w.kind != "status" and w.key == key:
                return w
        return None

    def open(self, kind: str, title: str) -> ChatWindow:
        found = self.find(title)
        if found is not None:
            return found
        window = ChatWindow(kind, title)
        self.items.append(window)
        return window

    def number(self, window: ChatWindow) -> int:
        return self.items.index(window) + 1

    def by_number(self, n: int) -> ChatWindow | None:
        return self.items[n - 1] if 1 <= n <= len(self.items) else None

    def switch(self, window: ChatWindow) -> None:
        self.current = window
        window.unread = 0
        window.alert = False

    def step(self, delta: int) -> None:
        i = self.items.index(self.current)
        self.switch(self.items[(i + delta) % len(self.items)])

    def close(self, window: ChatWindow) -> None:
        if window is self.status or window not in self.items:
            return
        i = self.items.index(window)
        self.items.remove(window)
        if self.current is window:
            self.switch(self.items[max(0, i - 1)])

    def activity(self) -> list[tuple[int, ChatWindow]]:
        """Windows other than the current one with unread lines."""
        return [(i + 1, w) for i, w in enumerate(self.items)
                if w is not self.current and (w.unread or w.alert)]


def members_text(window: ChatWindow) -> str:
    """``in #room (2): @alice, bob (away)``: who is in a room window, operators first marked."""
    names = []
    for m in sorted(window.members.values(), key=lambda m: fold(str(m["user"]))):
        mark = "@" if m.get("op") else ("+" if m.get("voice") else "")
        state = m.get("presence")
        extra = f" ({state})" if state and state != "online" else ""
        names.append(f"{mark}{m['user']}{extra}")
    return f"in {window.title} ({len(names)}): " + ", ".join(names)


def qr_lines(data: str) -> list[str]:
    """*data* as a QR code in text: two modules per character cell, light modules
    drawn, so it scans on the usual light-on-dark terminal."""
    import qrcode

    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(data)
    qr.make(fit=True)
    matrix: list[list[bool]] = qr.get_matrix()
    if len(matrix) % 2:
        matrix.append([False] * len(matrix[0]))
    glyphs = {(False, False): "█", (False, True): "▀", (True, False): "▄", (True, True): " "}
    out = io.StringIO()
    for top, bottom in zip(matrix[::2], matrix[1::2], strict=True):
        out.write("".join(glyphs[(t, b)] for t, b in zip(top, bottom, strict=True)) + "\n")
    return out.getvalue().rstrip("\n").split("\n")


def plain_text(window: ChatWindow, line: Line) -> list[str]:
    """The ``--plain`` rendering: one output line per text line, labelled.

    Messages and room events carry their window's label (``#room`` or
    ``@user``); client messages start with ``*`` (information), ``!``
    (error), ``!!`` (warning) or ``?`` (a question to answer on stdin).
    """
    label = window.label
    out = []
    for i, text in enumerate(line.text.split("\n") or [""]):
        if line.kind in ("message", "own", "notice"):
            sender = who(line)
            marks = ""
            if line.encrypted:
                marks += "[e2e] "
            if line.history:
                when = local_time(line.ts, full=True)
                marks += f"[{when}] " if when else "[earlier] "
            body = f"{sender} {marks}{text}" if i == 0 else f"{sender} {text}"
            out.append(f"{label} {body}" if label else body)
        elif line.kind == "event":
            out.append(f"{label} * {text}" if label else f"* {text}")
        elif line.kind == "error":
            out.append(f"! {text}")
        elif line.kind == "warning":
            out.append(f"!! {text}")
        elif line.kind == "prompt":
            out.append(f"? {text}")
        else:
            out.append(f"* {text}")
    return out
