"""What the user sees and is asked, whatever front end draws it.

Every part of the client writes its lines and asks its questions through one
:class:`Screen`: it keeps the windows' lines and unread counts, points out a
DM that arrived for another window, and hands questions to the
:class:`Frontend` (the full-screen UI or ``--plain``), which does the drawing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import CancelledError, Deferred

from pingchat.client.view import ChatWindow, Line, Windows, who


class Frontend(Protocol):
    """What the client needs from whatever draws it."""

    def show(self, window: ChatWindow, line: Line) -> None:
        """A line was added to *window*."""

    def ask(self, question: str, secret: bool = False) -> Deferred[str]:
        """Ask the user; fire with the answer (or fail with CancelledError)."""
        ...

    def cancel_questions(self) -> None:
        """Drop unanswered questions (the connection they were for is gone)."""

    def refresh(self) -> None:
        """Something besides lines changed: status, windows, the current window."""

    def stop(self) -> None:
        """The client is done: stop taking input and end the program."""


def _yes(answer: str) -> bool | None:
    answer = answer.strip().lower()
    if answer in ("y", "yes"):
        return True
    if answer in ("n", "no"):
        return False
    return None


class Screen:
    """The windows and the front end drawing them.

    *me* names the logged-in user (a line naming them alerts its window);
    *quit* ends the client when a question is answered with ``/quit``.
    """

    def __init__(self, windows: Windows, me: Callable[[], str | None],
                 quit: Callable[[], None]) -> None:
        self.windows = windows
        self.frontend: Frontend | None = None
        self._me = me
        self._quit = quit

    @property
    def here(self) -> ChatWindow:
        """The window the user is looking at."""
        return self.windows.current

    def add(self, window: ChatWindow, line: Line, notify: bool = False) -> None:
        """Add *line* to *window*; with *notify*, count it as unread there."""
        window.lines.append(line)
        if notify and window is not self.windows.current:
            window.unread += 1
            me = self._me()
            if window.kind == "dm" or (me and me.lower() in line.text.lower()):
                window.alert = True
                if window.kind == "dm" and line.kind in ("message", "notice"):
                    self._elsewhere(window, line)
        if self.frontend is not None:
            self.frontend.show(window, line)
            self.frontend.refresh()

    def _elsewhere(self, window: ChatWindow, line: Line) -> None:
        n = self.windows.number(window)
        mark = "[e2e] " if line.encrypted else ""
        pointer = Line(f"[{window.title}, window {n}] {who(line)} {mark}{line.text}",
                       "elsewhere", ts=line.ts, echo=True)
        self.windows.current.lines.append(pointer)
        if self.frontend is not None:
            self.frontend.show(self.windows.current, pointer)

    def info(self, text: str, window: ChatWindow | None = None, echo: bool = False) -> None:
        self.add(window or self.here, Line(text, "info", echo=echo))

    def error(self, text: str, window: ChatWindow | None = None) -> None:
        self.add(window or self.here, Line(text, "error"))

    def warning(self, text: str, window: ChatWindow | None = None, echo: bool = False) -> None:
        self.add(window or self.here, Line(text, "warning", echo=echo))

    def refresh(self) -> None:
        if self.frontend is not None:
            self.frontend.refresh()

    def cancel_questions(self) -> None:
        if self.frontend is not None:
            self.frontend.cancel_questions()

    def stop(self) -> None:
        """Drop the questions and let the front end end the program."""
        if self.frontend is not None:
            self.frontend.cancel_questions()
            self.frontend.stop()

    async def ask(self, question: str, secret: bool = False) -> str:
        assert self.frontend is not None
        self.add(self.here, Line(question, "prompt"))
        answer = await self.frontend.ask(question, secret)
        if not secret and answer.strip().lower() in ("/quit", "/exit"):
            self._quit()
            raise CancelledError("the user quit")
        return answer

    async def ask_yes_no(self, question: str) -> bool:
        while True:
            answer = _yes(await self.ask(question))
            if answer is not None:
                return answer
            self.error("please answer yes or no")
