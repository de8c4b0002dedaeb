"""What the IRC command mixins share with :class:`~pingchat.irc.protocol.IRCProtocol`.

:class:`~pingchat.irc.protocol.IRCProtocol` is one class assembled from
mixins, one per group of commands (:mod:`pingchat.irc.registration`,
:mod:`pingchat.irc.login`, :mod:`pingchat.irc.rooms`, :mod:`pingchat.irc.queries`,
:mod:`pingchat.irc.messaging`, :mod:`pingchat.irc.operators`, and the
events, :mod:`pingchat.irc.events`).
:class:`IRCBase` declares, for the type checker only, the state and methods
they use from the protocol and from each other, and what the helpers over a
connection (:class:`~pingchat.irc.reply.Reply`, NickServ, CHATHISTORY) use of
it; at run time it is empty. It imports none of them: the protocol sits on top
of the package, this module at its bottom.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from pingchat.chat.service import ChatService
    from pingchat.chat.session import Session
    from pingchat.irc import wire
    from pingchat.model import Message, Room


class NeedMoreParams(Exception):
    """A command came with fewer parameters than it needs (461)."""


class IRCBase:
    """The base of the command mixins: declarations only (see the module docstring)."""

    if TYPE_CHECKING:
        # IRCProtocol's state: set in __init__, or a class default there until a
        # connection sets it. (factory stays Any, as Twisted's
        # Protocol declares it: IRCFactory here would clash with Factory.buildProtocol.)
        factory: Any
        address: str | None
        closed: bool
        nick: str | None
        user: str | None
        realname: str
        password: str | None
        registered: bool
        _registering: bool
        session: Session | None
        _logout: Callable[[], None] | None
        caps: set[str]
        cap_version: int
        _cap_negotiating: bool
        _sasl: str | None
        _sasl_buffer: str
        _held: list[tuple[str, dict[str, str]]] | None
        invisible: bool
        wallops_mode: bool

        # Defined in IRCProtocol (protocol.py).
        @property
        def service(self) -> ChatService: ...
        @property
        def server(self) -> str: ...
        def close(self, reason: str) -> None: ...
        def _remember(self) -> None: ...
        def _end_session(self, reason: str = "Quit") -> None: ...
        def _schedule(self, delay: float, fn: Callable[[], None]) -> None: ...
        def _registration_timed_out(self) -> None: ...
        def _keepalive(self) -> None: ...
        def write(self, line: str, tags: Mapping[str, str] | None = None) -> None: ...
        def write_bounded(self, data: bytes) -> None: ...  # output.BoundedOutput
        def _caps_changed(self) -> None: ...
        def event(self, line: str, tags: Mapping[str, str] | None = None) -> None: ...
        @property
        def me(self) -> str: ...
        @property
        def my_mask(self) -> str: ...
        def numeric(self, code: str, *params: str) -> str: ...
        def new_batch_id(self) -> str: ...
        # Defined in EventsMixin (events.py).
        def mask_of(self, name: str, guest: bool = False) -> str: ...
        def sender_mask(self, m: Message) -> str: ...
        def account_of(self, name: str) -> str | None: ...
        def realname_of(self, name: str) -> str: ...
        def message_tags(
            self,
            ts: int | None = None,
            msgid: int | None = None,
            account: str | None = None,
            client_tags: dict[str, str] | None = None,
        ) -> dict[str, str]: ...
        def text_lines(self, source: str, command: str, target: str, text: str) -> list[str]: ...
        @staticmethod
        def need(msg: wire.Message, count: int) -> None: ...
        # The Reply of this connection's command in flight, if it is *command*
        # (a Reply, or None; reply.py imports this module).
        def _routed(self, command: str) -> Any: ...

        # Defined in one mixin, used by another.
        def _login_hint(self) -> str: ...  # login.py
        def authenticate(
            self, account: str, secret: str, otp: str | None = None, announce: bool = True
        ) -> Deferred[Session]: ...  # login.py
        def auth_failure_text(self, failure: Failure) -> str: ...  # login.py
        def _maybe_register(self) -> Deferred[Any] | None: ...  # registration.py
        def _timer_after_welcome(self) -> None: ...  # registration.py
        def _account_burst(self) -> None: ...  # registration.py
        def _isupport(self, send: Callable[[str], None]) -> None: ...  # registration.py
        def _lusers(self, send: Callable[[str], None]) -> None: ...  # registration.py
        def _motd(self, send: Callable[[str], None]) -> None: ...  # registration.py
        @property
        def my_session(self) -> Session: ...  # rooms.py
        def _join_burst(self, send: Callable[[str], None], room: Room) -> None: ...  # rooms.py
        def _oper_up(self, send: Callable[[str], None]) -> None: ...  # operators.py
