"""Test doubles for the client: a scripted server connection and a front end
that records what it is shown and answers questions from a script."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, fail, succeed

from pingchat.client.connection import RequestFailed
from pingchat.client.view import ChatWindow, Line, plain_text

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def refuse(code: str, message: str, **extra: Any) -> RequestFailed:
    """What a handler raises to answer with an error."""
    return RequestFailed("?", {"ok": False, "error": {"code": code, "message": message, **extra}})


def login_reply(user: str, rooms: list[str] | None = None) -> dict[str, Any]:
    """A successful ``login`` (or ``resume``) reply, for a handler to return."""
    return {"user": user, "token": f"token-of-{user}", "expires_at": "x", "rooms": rooms or []}


class FakeConnector:
    """Stands in for :class:`~pingchat.client.app.Connector`: always connected; counts
    the reconnections asked of it."""

    state = "connected"
    hold = False

    def __init__(self) -> None:
        self.reconnects = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def reconnect_now(self) -> None:
        self.reconnects += 1


class FakeServer:
    """Stands in for a :class:`~pingchat.client.connection.ClientProtocol`:
    each op answers through a handler; every request is recorded."""

    def __init__(self, **handlers: Handler) -> None:
        self.handlers: dict[str, Handler] = {k.replace("_", "."): v for k, v in handlers.items()}
        self.requests: list[dict[str, Any]] = []
        self.closed = False

    def on(self, op: str, handler: Handler) -> None:
        self.handlers[op] = handler

    def request(self, op: str, **args: Any) -> Deferred[dict[str, Any]]:
        self.requests.append({"op": op, **args})
        handler = self.handlers.get(op)
        if handler is None:
            return succeed({"ok": True})
        try:
            return succeed({"ok": True, **handler(args)})
        except RequestFailed as e:
            return fail(RequestFailed(op, e.reply))

    def sent(self, op: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["op"] == op]

    def start_keepalive(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeFrontend:
    """Records lines; answers questions from ``answers`` (else they wait)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.shown: list[tuple[ChatWindow, Line]] = []
        self.questions: list[tuple[Deferred[str], bool]] = []
        self.stopped = False

    def show(self, window: ChatWindow, line: Line) -> None:
        self.shown.append((window, attrs.evolve(line)))  # as it was when shown

    def ask(self, question: str, secret: bool = False) -> Deferred[str]:
        if self.answers:
            return succeed(self.answers.pop(0))
        d: Deferred[str] = Deferred()
        self.questions.append((d, secret))
        return d

    def answer(self, text: str) -> None:
        d, _ = self.questions.pop(0)
        d.callback(text)

    def cancel_questions(self) -> None:
        questions, self.questions = self.questions, []
        for d, _ in questions:
            d.errback(CancelledError())

    def refresh(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True

    def text(self) -> str:
        """Everything shown, as the plain front end would write it."""
        return "\n".join(t for w, line in self.shown if not line.echo
                         for t in plain_text(w, line))
