"""The manhole's Python prompt: Twisted's colouring manhole that waits for Deferreds.

The namespace it runs in is :mod:`pingchat.admin.namespace`'s; the SSH
server around it, :mod:`pingchat.admin.manhole`.
"""

from __future__ import annotations

from typing import Any

from twisted.conch.manhole import ColoredManhole, ManholeInterpreter
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pingchat.errors import ChatError


class AdminInterpreter(ManholeInterpreter):
    """Hands Deferreds to the manhole to wait on, and shows expected errors briefly."""

    def displayhook(self, obj: Any) -> None:
        if isinstance(obj, Deferred):
            self.handler.wait_for(obj)
            return
        self.locals["_"] = obj
        if obj is not None:
            self.write(repr(obj))

    def excepthook(self, excType: Any, excValue: Any, excTraceback: Any) -> None:
        if isinstance(excValue, (ChatError, UnauthorizedLogin)):
            self.write(f"{excType.__name__}: {excValue}\n")
            return
        super().excepthook(excType, excValue, excTraceback)


class AdminManhole(ColoredManhole):
    """Twisted's colouring manhole, with a banner, that waits for Deferreds.

    When a line evaluates to a Deferred that has not fired yet, the prompt
    comes back only once it fires (with its result or error printed); lines
    typed meanwhile run after it. Ctrl-C stops waiting; the result is then
    printed whenever it arrives.
    """

    def __init__(self, namespace: dict[str, Any], greeting: str = "") -> None:
        super().__init__(namespace)
        self.greeting = greeting
        self.waiting: Deferred[Any] | None = None
        self.typed_ahead: list[bytes] = []

    def connectionMade(self) -> None:
        super().connectionMade()
        self.interpreter = AdminInterpreter(self, self.namespace)

    def initializeScreen(self) -> None:
        self.terminal.reset()
        if self.greeting:
            self.terminal.write(self.greeting.encode("utf-8"))
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def terminalSize(self, width: int, height: int) -> None:
        # RecvLine clears the screen here, which would wipe the banner at login.
        self.width = width
        self.height = height

    def lineReceived(self, line: bytes) -> None:
        if self.waiting is not None:
            self.typed_ahead.append(line)
            return
        more = self.interpreter.push(line)
        self.pn = bool(more)
        if self.waiting is None:
            self._prompt()

    def _prompt(self) -> None:
        # As Conch's Manhole does, from the terminal's public lastWrite.
        last = self.terminal.lastWrite
        if not last.endswith(b"\n") and not last.endswith(b"\x1bE"):
            self.terminal.nextLine()
        self.terminal.write(self.ps[self.pn])

    def wait_for(self, d: Deferred[Any]) -> None:
        """Show what *d* fires with; until then, hold the prompt back."""
        pending = True
        fired_now = False

        def show(text: str) -> None:
            nonlocal fired_now
            if pending:
                fired_now = True
                if text:
                    self.terminal.write(text)
            elif self.waiting is d:
                self.waiting = None
                if text:
                    self.terminal.write(text)
                self._prompt()
                self._run_typed_ahead()
            elif text:
                self.addOutput(text, True)

        d.addCallbacks(self._describe, self._describe_failure).addCallback(show)
        pending = False
        if not fired_now:
            self.waiting = d

    def _describe(self, result: Any) -> str:
        self.interpreter.locals["_"] = result
        return "" if result is None else repr(result)

    def _describe_failure(self, failure: Failure) -> str:
        if failure.check(ChatError, UnauthorizedLogin):
            kind = failure.type.__name__ if failure.type else "Error"
            return f"{kind}: {failure.getErrorMessage()}"
        return failure.getTraceback()

    def _run_typed_ahead(self) -> None:
        while self.typed_ahead and self.waiting is None:
            self.lineReceived(self.typed_ahead.pop(0))

    def handle_INT(self) -> None:
        if self.waiting is not None:
            self.waiting = None
            self.typed_ahead = []
            self.terminal.nextLine()
            self.terminal.write(b"(no longer waiting; the result will be shown when it comes)")
            self.terminal.nextLine()
            self.terminal.write(self.ps[self.pn])
            return
        super().handle_INT()
