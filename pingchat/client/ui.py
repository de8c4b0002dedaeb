"""The full-screen terminal UI, with prompt_toolkit, on the same event loop as Twisted.

The reactor is Twisted's asyncio reactor, so prompt_toolkit's ``Application``
runs as an asyncio task beside the connection: no threads, and redraws are
just ``invalidate()``.

Layout, top to bottom: a title bar (the window: room and topic, or whom a
DM is with and whether it is end-to-end encrypted), the messages of the
current window, a status bar (time, user, server, connection state, window
list with activity), and the input line (history with Up/Down, Emacs-style
editing, Tab completion; masked when a password is asked for).
"""

from __future__ import annotations

import textwrap
from datetime import datetime

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.data_structures import Point
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import HSplit, Layout, VSplit, Window
from prompt_toolkit.layout.controls import BufferControl, FormattedTextControl
from prompt_toolkit.layout.processors import ConditionalProcessor, PasswordProcessor
from prompt_toolkit.styles import Style
from twisted.internet.defer import CancelledError, Deferred

from pingchat.client import commands
from pingchat.client.app import ChatClient
from pingchat.client.view import ChatWindow, Line
from pingchat.client.view import who as who_of

STYLE = Style.from_dict({
    "title": "reverse",
    "status": "reverse",
    "status.alert": "reverse bold",
    "status.bad": "reverse bold",
    "time": "ansibrightblack",
    "nick": "ansicyan bold",
    "own": "ansigreen bold",
    "e2e": "ansigreen",
    "event": "ansiyellow",
    "error": "ansired bold",
    "warning": "ansired bold",
    "prompt": "ansicyan bold",
    "elsewhere": "ansimagenta bold",
    "history": "italic",
    "input-prompt": "bold",
})

_PREFIX = {"info": "* ", "event": "* ", "error": "! ", "warning": "!! ", "prompt": "? ",
           "elsewhere": "» "}


def _wrap(text: str, first: int, rest: int) -> list[str]:
    """Break *text* at spaces: *first* columns for its first row, *rest* after."""
    if len(text) <= first:
        return [text]
    rows = textwrap.wrap(text, width=max(10, first), break_on_hyphens=False,
                         drop_whitespace=True)
    if len(rows) > 1:
        tail = " ".join(rows[1:])
        rows = rows[:1] + textwrap.wrap(tail, width=max(10, rest), break_on_hyphens=False)
    return rows or [""]


def line_fragments(line: Line, width: int = 0) -> StyleAndTextTuples:
    """One line of a window as styled text, word-wrapped to *width* columns (if
    given) with continuation rows aligned under the text."""
    time = f"{line.time} "
    out: StyleAndTextTuples = [("class:time", time)]
    if line.kind in ("message", "own", "notice"):
        nick_style = "class:own" if line.kind == "own" else "class:nick"
        who = f"{who_of(line)} "
        out.append((nick_style, who))
        if line.encrypted:
            out.append(("class:e2e", "[e2e] "))
        style = "class:history" if line.history else ""
        indent = " " * (len(time) + len(who))
    else:
        prefix = _PREFIX.get(line.kind, "* ")
        style = f"class:{line.kind}"
        out.append((style, prefix))
        indent = " " * (len(time) + len(prefix))
    mark = len("[e2e] ") if line.encrypted else 0  # only on the first row
    rows: list[str] = []
    for text in line.text.split("\n"):
        first = width - len(indent) - (0 if rows else mark)
        if width and len(text) > first:
            rows += _wrap(text, first, width - len(indent))
        else:
            rows.append(text)
    out.append((style, rows[0]))
    for more in rows[1:]:
        out.append(("", "\n" + indent))
        out.append((style, more))
    return out


def _common_prefix(words: list[str]) -> int:
    """How many leading characters all *words* share."""
    n = 0
    for chars in zip(*words, strict=False):
        if len(set(chars)) != 1:
            break
        n += 1
    return n


class FullScreenUI:
    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.scroll = 0
        self._questions: list[tuple[Deferred[str], bool]] = []
        self._stopped = False
        self.buffer = Buffer(multiline=False, history=InMemoryHistory())
        self._pane = FormattedTextControl(
            self._messages, focusable=False, show_cursor=False,
            get_cursor_position=lambda: Point(0, self._cursor_row),
        )
        self._cursor_row = 0
        self._rows_drawn = 0
        self.pane = Window(self._pane, wrap_lines=True,
                           get_line_prefix=lambda line, wrap: "      " if wrap else "")
        secret = Condition(lambda: bool(self._questions) and self._questions[0][1])
        input_line = VSplit([
            Window(FormattedTextControl(self._prompt), dont_extend_width=True, height=1),
            Window(BufferControl(self.buffer, input_processors=[
                ConditionalProcessor(PasswordProcessor(), secret)]), height=1),
        ])
        layout = Layout(HSplit([
            Window(FormattedTextControl(self._title), height=1, style="class:title"),
            self.pane,
            Window(FormattedTextControl(self._status), height=1, style="class:status"),
            input_line,
        ]), focused_element=self.buffer)
        self.app: Application[None] = Application(
            layout=layout, key_bindings=self._bindings(), style=STYLE, full_screen=True,
        )

    # -- drawing ----------------------------------------------------------------

    def _messages(self) -> StyleAndTextTuples:
        window = self.client.windows.current
        width = self._width()
        out: StyleAndTextTuples = []
        for i, line in enumerate(window.lines):
            if i:
                out.append(("", "\n"))
            out.extend(line_fragments(line, width))
        rows = sum(text.count("\n") for _, text, *_ in out)
        self._rows_drawn = rows + 1
        self._cursor_row = max(0, rows - self.scroll)
        return out

    def _width(self) -> int:
        try:
            return int(self.app.output.get_size().columns)
        except Exception:
            return 0

    def _title(self) -> StyleAndTextTuples:
        w = self.client.windows.current
        if w.kind == "room":
            state = "" if w.joined else "  (not joined)"
            text = f" {w.title}{state}  {w.topic or ''}"
        elif w.kind == "dm":
            if w.encrypted is None:
                how = "end-to-end encrypted when they have a key (/whois shows it)"
            elif w.encrypted:
                how = "end-to-end encrypted"
            else:
                how = "NOT end-to-end encrypted (they have no key)"
            text = f" direct messages with {w.title}: {how}"
        else:
            text = f" pingchat — {self.client.server}   /help for help"
        if self.scroll:
            text += f"   [scrolled back {self.scroll} lines: PageDown]"
        return [("class:title", text)]

    def _status(self) -> StyleAndTextTuples:
        c = self.client
        now = datetime.now().strftime("%H:%M")
        who = c.session.user or "not logged in"
        state = c.state if c.state != "waiting" else "reconnecting"
        style = "class:status" if c.state == "connected" else "class:status.bad"
        n = c.windows.number(c.windows.current)
        out: StyleAndTextTuples = [
            ("class:status", f" [{now}] [{who}@{c.server}] "),
            (style, f"[{state}]"),
            ("class:status", f" [{n}:{c.windows.current.title}]"),
        ]
        activity = c.windows.activity()
        if activity:
            out.append(("class:status", " [act: "))
            for i, (number, w) in enumerate(activity):
                mark = f"{number}:{w.title}" + (f"({w.unread})" if w.unread else "")
                out.append(("class:status.alert" if w.alert else "class:status",
                            ("," if i else "") + mark))
            out.append(("class:status", "]"))
        return out

    def _prompt(self) -> StyleAndTextTuples:
        if self._questions:
            return [("class:prompt", "password> " if self._questions[0][1] else "answer> ")]
        w = self.client.windows.current
        name = w.title if w.kind != "status" else "pingchat"
        return [("class:input-prompt", f"[{name}] ")]

    # -- keys ---------------------------------------------------------------------

    def _bindings(self) -> KeyBindings:
        kb = KeyBindings()

        @kb.add("enter")
        def _enter(event: KeyPressEvent) -> None:
            self._submit()

        @kb.add("c-c")
        def _quit(event: KeyPressEvent) -> None:
            self.client.quit()

        @kb.add("c-d")
        def _eof(event: KeyPressEvent) -> None:
            if not self.buffer.text:
                self.client.quit()
            else:
                self.buffer.delete()

        @kb.add("c-n")
        @kb.add("escape", "right")
        def _next(event: KeyPressEvent) -> None:
            self._step(1)

        @kb.add("c-p")
        @kb.add("escape", "left")
        def _previous(event: KeyPressEvent) -> None:
            self._step(-1)

        for digit in "123456789":
            @kb.add("escape", digit)
            def _window(event: KeyPressEvent, digit: str = digit) -> None:
                window = self.client.windows.by_number(int(digit))
                if window is not None:
                    self._switch(window)

        @kb.add("pageup")
        def _up(event: KeyPressEvent) -> None:
            page = max(1, self._page() - 2)
            self.scroll = min(self.scroll + page, self._rows())

        @kb.add("pagedown")
        def _down(event: KeyPressEvent) -> None:
            self.scroll = max(0, self.scroll - max(1, self._page() - 2))

        @kb.add("tab")
        def _tab(event: KeyPressEvent) -> None:
            self._complete()

        @kb.add("c-l")
        def _redraw(event: KeyPressEvent) -> None:
            event.app.renderer.clear()

        return kb

    def _page(self) -> int:
        info = self.pane.render_info
        return info.window_height if info is not None else 20

    def _rows(self) -> int:
        return self._rows_drawn

    def _step(self, delta: int) -> None:
        self.client.windows.step(delta)
        self.scroll = 0
        self.app.invalidate()

    def _switch(self, window: ChatWindow) -> None:
        self.client.windows.switch(window)
        self.scroll = 0
        self.app.invalidate()

    def _submit(self) -> None:
        text = self.buffer.text
        if self._questions:
            d, secret = self._questions.pop(0)
            self.buffer.reset()
            if not secret and text:
                self.buffer.history.append_string(text)
            d.callback(text)
        else:
            if text.strip():
                self.buffer.append_to_history()
            self.buffer.reset()
            self.scroll = 0
            self.client.input(text)
        self.app.invalidate()

    def _complete(self) -> None:
        before = self.buffer.document.text_before_cursor
        word = before.split(" ")[-1]
        if not word:
            return
        c = self.client
        at_start = before == word
        if at_start and word.startswith("/"):
            names = {"/" + s.name for s in commands.SPECS}
            names |= {"/" + a for s in commands.SPECS for a in s.aliases}
        elif word.startswith("#"):
            names = {w.title for w in c.windows.items if w.kind == "room"}
        else:
            names = {str(m.get("user")) for m in c.windows.current.members.values()}
            names |= {w.title for w in c.windows.items if w.kind == "dm"}
        matches = sorted(n for n in names if n.lower().startswith(word.lower()))
        if not matches:
            return
        if len(matches) == 1:
            completion = matches[0] + (": " if at_start and word[0] not in "/#" else " ")
        else:
            completion = matches[0][: _common_prefix([m.lower() for m in matches])]
            c.screen.info("  ".join(matches))
        self.buffer.delete_before_cursor(len(word))
        self.buffer.insert_text(completion)

    # -- Frontend ------------------------------------------------------------------

    def show(self, window: ChatWindow, line: Line) -> None:
        if window is self.client.windows.current and self.scroll:
            self.scroll += 1 + line.text.count("\n")  # keep the view still while reading back
        self.app.invalidate()

    def ask(self, question: str, secret: bool = False) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self._questions.append((d, secret))
        self.scroll = 0
        self.app.invalidate()
        return d

    def cancel_questions(self) -> None:
        questions, self._questions = self._questions, []
        for d, _ in questions:
            d.errback(CancelledError("the question is no longer asked"))
        self.app.invalidate()

    def refresh(self) -> None:
        self.app.invalidate()

    def stop(self) -> None:
        self._stopped = True
        future = self.app.future
        if future is not None and not future.done():
            self.app.exit()
