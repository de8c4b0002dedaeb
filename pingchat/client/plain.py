"""``--plain``: the client as a line stream, for scripts and screen readers.

Every event is one line on standard output (see
:func:`pingchat.client.view.plain_text` for the shapes); every line on
standard input is a command or text for the current window, exactly as typed
in the full-screen UI, or the answer to the last question (``? ...``). When
standard input ends, the client finishes what it was asked to do and quits.
"""

from __future__ import annotations

import os
import termios
from collections import deque
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.stdio import StandardIO
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat.client.app import ChatClient
from pingchat.client.view import ChatWindow, Line, plain_text


@implementer(IHalfCloseableProtocol)
class _Stdio(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024

    def __init__(self, frontend: PlainFrontend) -> None:
        self.frontend = frontend

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        self.frontend.received(line.decode("utf-8", "replace").rstrip("\r"))

    def readConnectionLost(self) -> None:  # noqa: N802
        self.frontend.end_of_input()

    def writeConnectionLost(self) -> None:  # noqa: N802
        pass

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        self.frontend.closed()


class PlainFrontend:
    def __init__(self, client: ChatClient, reactor: Any, stdin: int = 0, stdout: int = 1) -> None:
        self.client = client
        self.reactor = reactor
        self.stdin = stdin
        self.stdout = stdout
        self.done: Deferred[None] = Deferred()
        self._questions: list[tuple[Deferred[str], bool]] = []
        self._stdio: StandardIO | None = None
        self._stopped = False
        self._lines: deque[str] = deque()
        self._busy = False
        self._eof = False
        self._eof_told = False
        self._pumping = False

    def attach(self) -> None:
        # (mypy reads the Windows StandardIO's signature, which lacks stdin/stdout)
        self._stdio = StandardIO(_Stdio(self), stdin=self.stdin,  # type: ignore[call-arg]
                                 stdout=self.stdout, reactor=self.reactor)

    def write(self, text: str) -> None:
        if self._stdio is not None and not self._stopped:
            self._stdio.write(text.encode("utf-8", "replace") + b"\n")

    # -- Frontend ---------------------------------------------------------------

    def show(self, window: ChatWindow, line: Line) -> None:
        if line.echo:
            return  # a copy of a line already written
        for text in plain_text(window, line):
            self.write(text)

    def ask(self, question: str, secret: bool = False) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self._questions.append((d, secret))
        if secret and not self._lines:
            self._echo(False)
        self._pump()
        return d

    def cancel_questions(self) -> None:
        questions, self._questions = self._questions, []
        self._echo(True)
        for d, _ in questions:
            d.errback(CancelledError("the question is no longer asked"))

    def refresh(self) -> None:
        self._pump()

    def stop(self) -> None:
        if self._stopped:
            return
        self._echo(True)
        if self._stdio is None:
            self._stopped = True
            self.done.callback(None)
            return
        self._stdio.loseConnection()  # writes what is buffered first, then closed()
        self._stopped = True

    # -- standard input ------------------------------------------------------------

    def received(self, text: str) -> None:
        self._lines.append(text)
        self._pump()

    def end_of_input(self) -> None:
        self._eof = True
        self._pump()

    def _pump(self) -> None:
        """Hand input over strictly in order: answers to questions first; a
        command only once the one before it is done and the client can take it."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while True:
                if self._lines and self._questions:
                    d, secret = self._questions.pop(0)
                    if secret:
                        self._echo(True)
                    d.callback(self._lines.popleft())
                    continue
                idle = not self._busy and not self.client.waiting_to_start
                if (self._eof and not self._lines and not self._eof_told
                        and (self._questions or idle)):
                    # Nothing more will come: questions stay unanswered; finish up.
                    self._eof_told = True
                    self.client.input_closed()
                    break
                if self._busy or self._questions or self.client.waiting_to_start:
                    break
                if self._lines:
                    self._busy = True
                    done = self.client.input(self._lines.popleft())
                    done.addBoth(self._command_done)
                    continue
                break
        finally:
            self._pumping = False

    def _command_done(self, result: object) -> None:
        self._busy = False
        self.reactor.callLater(0, self._pump)

    def closed(self) -> None:
        stopping, self._stopped = self._stopped, True
        if not stopping:
            self.client.quit()  # standard output went away
        if not self.done.called:
            self.done.callback(None)

    def _echo(self, on: bool) -> None:
        """Hide what is typed at a terminal while a secret is asked for."""
        if not os.isatty(self.stdin):
            return
        try:
            mode = termios.tcgetattr(self.stdin)
            mode[3] = mode[3] | termios.ECHO if on else mode[3] & ~termios.ECHO
            termios.tcsetattr(self.stdin, termios.TCSANOW, mode)
        except termios.error:
            pass
