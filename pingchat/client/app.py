"""The client itself, for any front end: the parts it is made of, wired together.

:class:`ChatClient` sits between a :class:`~pingchat.client.connection.Connector`
(the server) and a :class:`~pingchat.client.screen.Frontend` (the full-screen
UI or ``--plain``). It owns the parts and hands each only what it needs:

- :class:`~pingchat.client.screen.Screen`: the windows' lines and the questions;
- :class:`~pingchat.client.session.Session`: logging in, and the account commands;
- :class:`~pingchat.client.dm.DirectMessages`: end-to-end encrypted DMs and keys;
- :class:`~pingchat.client.events.ServerEvents`: server events into windows;
- :class:`~pingchat.client.actions.Actions`: the room and people commands.

The client itself takes the connector's news, sets the parts up at each login,
runs typed lines as commands (kept until the first login), and knows when
``--plain`` is done. It never draws anything.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, gatherResults, succeed
from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure

from pingchat import __version__
from pingchat.client import commands
from pingchat.client.actions import Actions
from pingchat.client.commands import Command, CommandError
from pingchat.client.configdir import ConfigDir, ServerAddress, SessionStore
from pingchat.client.connection import ClientProtocol, Connector, NotConnected, RequestFailed
from pingchat.client.dm import DirectMessages
from pingchat.client.events import ServerEvents
from pingchat.client.screen import Frontend, Screen
from pingchat.client.session import Session
from pingchat.client.trust import TrustPolicy
from pingchat.client.view import Windows

log = Logger()

LOCAL_COMMANDS = frozenset({"help", "clear", "quit", "query", "reconnect", "close"})

Handler = Callable[[Command], Coroutine[Any, Any, None]]


def command_handlers(*parts: object) -> dict[str, Handler]:
    """Each ``cmd_NAME`` method of *parts*, by command name."""
    handlers: dict[str, Handler] = {}
    for part in parts:
        for attr in dir(part):
            if attr.startswith("cmd_"):
                name = attr.removeprefix("cmd_")
                if name in handlers:
                    raise ValueError(f"two handlers for /{name}")
                handlers[name] = getattr(part, attr)
    return handlers


class ChatClient:
    """The client's parts, and what happens between them; see the module docstring."""

    def __init__(
        self,
        reactor: Any,
        server: ServerAddress,
        config: ConfigDir,
        trust: TrustPolicy,
        user_hint: str | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.connector = connector or Connector(reactor, server, trust, self)
        self.windows = Windows(str(server))
        self.screen = Screen(self.windows, me=lambda: self.session.user, quit=self.quit)
        self.session = Session(self.screen, SessionStore(config, server), reactor, user_hint,
                               self._logged_in, self._account_deleted)
        self.dms = DirectMessages(self.screen, self.session, config, server)
        self.events = ServerEvents(self.screen, self.session, self.dms)
        self.actions = Actions(self.screen, self.session, self.events, self.dms)
        self.handlers = command_handlers(self, self.session, self.dms, self.actions)
        self.state = "offline"
        self.state_detail = ""
        self.exit_code = 0
        self.fatal: str | None = None
        self.logged_in_once = False
        self._queued: list[str] = []
        self._busy: set[Deferred[Any]] = set()
        self._input_closed = False
        self._stopped = False
        self._left: ClientProtocol | None = None  # a connection whose account was deleted

    # -- life cycle -------------------------------------------------------------------

    def start(self, frontend: Frontend) -> None:
        self.screen.frontend = frontend
        self.screen.info(f"pingchat {__version__}: connecting to {self.server} …  (/help for"
                         " help, /quit to leave)")
        self.connector.start()

    def quit(self, code: int | None = None) -> None:
        if code is not None:
            self.exit_code = code
        if self._stopped:
            return
        self._stopped = True
        self.connector.stop()
        self.screen.stop()

    def input_closed(self) -> None:
        """Standard input ended (``--plain``): finish what was asked, then quit."""
        self._input_closed = True
        self.screen.cancel_questions()
        if not self.logged_in_once:
            if not self.fatal:
                self.fatal = "standard input ended before the client logged in"
            self.quit(1)
            return
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._input_closed and not self._busy and not self._queued:
            self.quit()

    def _run(self, coro: Coroutine[Deferred[Any], Any, Any]) -> Deferred[Any]:
        """Run *coro*; ``--plain`` does not end before it is done."""
        d = Deferred.fromCoroutine(coro)
        self._busy.add(d)

        def done(result: Any) -> Any:
            self._busy.discard(d)
            self._maybe_finish()
            return result

        return d.addBoth(done)

    # -- ConnectorClient --------------------------------------------------------------

    def ask_trust(self, question: str) -> Deferred[bool]:
        return Deferred.fromCoroutine(self.screen.ask_yes_no(question))

    def trusted(self, note: str, first: bool) -> None:
        if first:
            self.screen.info(note, self.windows.status)

    def state_changed(self, state: str, detail: str) -> None:
        self.state, self.state_detail = state, detail
        if state in ("waiting", "offline") and detail:
            self.screen.warning(detail)
        if state in ("waiting", "offline", "failed", "refused"):
            self.session.proto = None
            self.screen.cancel_questions()
        if state == "failed":
            self.fatal = detail
            self.screen.error(detail, self.windows.status)
            self.quit(1)
            return
        if state == "error":
            self.screen.error(detail)
        self.screen.refresh()

    def refused(self, message: str) -> None:
        self.fatal = message
        self.screen.warning(message, self.windows.status)
        if self.windows.current is not self.windows.status:
            self.screen.warning(message, echo=True)
        self.quit(1)

    def session_started(self, proto: ClientProtocol) -> Deferred[Any]:
        return Deferred.fromCoroutine(self.session.authenticate(proto))

    def event(self, proto: ClientProtocol, event: dict[str, Any]) -> None:
        if proto is self._left:
            return  # its goodbye ("your account has been deleted") was said already
        self.events.receive(event)

    # -- logged in --------------------------------------------------------------------

    def _logged_in(self, proto: ClientProtocol, reply: dict[str, Any], again: bool) -> None:
        """The session logged in over *proto* (*again*: resumed after a drop):
        keys, room windows and their history, then the commands typed meanwhile."""
        user = str(reply["user"])
        status = self.windows.status
        self.dms.start(user, proto)
        # session.proto is set last: until then, input waits (front ends redraw,
        # and the plain one feeds input, whenever a line is added below).
        if again:
            self.screen.info("reconnected; session resumed", status)
            if self.windows.current is not status:
                self.screen.info("reconnected", echo=True)
        else:
            self.screen.info(f"Logged in as {user} on"
                             f" {self.session.server_name or self.server}.", status)
        rooms = [str(r) for r in reply.get("rooms", [])]
        for name in rooms:
            window = self.windows.open("room", name)
            window.joined = True
            self._run(self.events.catch_up(proto, window))
        if rooms:
            self._run(self.events.fetch_topics(proto))
        if not again and not self.logged_in_once:
            if rooms:
                self.windows.switch(self.windows.find(rooms[0]) or status)
                self.screen.info("You are in " + ", ".join(rooms) + ". /query #room or Ctrl-N"
                                 " switches windows; /help lists every command.", status)
            else:
                self.screen.info("Next: /rooms lists the rooms, /join #room joins one (or"
                                 " creates it), /msg user text sends a direct message, /help"
                                 " shows all commands.", status)
        self.logged_in_once = True
        self._run(self.dms.publish())
        self.session.proto = proto
        self.screen.refresh()
        queued, self._queued = self._queued, []
        for line in queued:
            self.input(line)
        self._maybe_finish()

    def _account_deleted(self, proto: ClientProtocol, user: str) -> None:
        """The server deleted *user*'s account and is closing *proto*: forget
        its keys here, close its windows, and come back to the account menu
        over a new connection at once, as after ``/logout``."""
        status = self.windows.status
        left = self.dms.forget_account(user)
        if left:
            self.screen.error("could not delete this device's key files: " + "; ".join(left)
                              + ". Delete them by hand.", status)
        else:
            self.screen.info(f"This computer forgot its saved session, device secret and"
                             f" encryption key for {user}.", status)
        for window in list(self.windows.items):
            if window is not status:
                self.windows.close(window)
        self.windows.switch(status)
        self._left = proto
        self.connector.reconnect_now()

    # -- input ------------------------------------------------------------------------

    @property
    def waiting_to_start(self) -> bool:
        """Not logged in yet, or reconnecting: commands would have to wait."""
        return self.session.proto is None and self.state not in ("failed", "refused",
                                                                 "offline")

    def input(self, text: str) -> Deferred[None]:
        """Lines the user typed (not answers to questions); fires when they are done."""
        done: list[Deferred[None]] = []
        for line in text.replace("\r", "").split("\n"):
            if line.strip():
                done.append(self._input_line(line))
        return gatherResults(done).addCallback(lambda _: None)

    def _input_line(self, line: str) -> Deferred[None]:
        try:
            cmd = commands.parse(line)
        except CommandError as e:
            self.screen.error(str(e))
            return succeed(None)
        if cmd.name not in LOCAL_COMMANDS and self.session.proto is None:
            if not self.logged_in_once and self.waiting_to_start:
                self._queued.append(line)
                return succeed(None)
            self.screen.error(f"not connected ({self.state_detail or self.state}); /reconnect"
                              " tries again now")
            return succeed(None)
        handler = self.handlers[cmd.name]
        return self._run(handler(cmd)).addErrback(self._command_failed, cmd)

    def _command_failed(self, failure: Failure, cmd: Command) -> None:
        e = failure.value
        if isinstance(e, RequestFailed):
            self.screen.error(e.message)
        elif isinstance(e, (NotConnected, ConnectionLost)):
            self.screen.error(f"/{cmd.name} did not go through: the connection dropped")
        elif isinstance(e, CommandError):
            self.screen.error(str(e))
        elif isinstance(e, CancelledError):
            pass
        else:
            log.failure("command {cmd} failed", failure, cmd=cmd.name)
            self.screen.error(f"/{cmd.name} failed: {e}")

    async def cmd_quit(self, cmd: Command) -> None:
        self.quit()

    async def cmd_reconnect(self, cmd: Command) -> None:
        self.screen.info(f"connecting to {self.server} again")
        self.connector.reconnect_now()
