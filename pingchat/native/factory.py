"""The factory of the native door: shared settings for every connection."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from twisted.cred.portal import Portal
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from pingchat.auth.throttle import TokenBucket
from pingchat.chat.accounts import AccountManager
from pingchat.chat.service import ChatService
from pingchat.model import Message
from pingchat.native import wire
from pingchat.native.protocol import NativeProtocol

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

log = Logger()


class NativeFactory(Factory):
    """Builds :class:`NativeProtocol` instances bound to the chat service."""

    def __init__(
        self,
        service: ChatService,
        portal: Portal,
        accounts: AccountManager,
        clock: IReactorTime,
        *,
        max_line: int = wire.MAX_LINE,
        rate: float = 20.0,
        burst: float = 60.0,
        max_backlog: int = 1024 * 1024,
    ) -> None:
        self.service = service
        self.portal = portal
        self.accounts = accounts
        self.clock = clock
        self.max_line = max_line
        self.rate = rate
        self.burst = burst
        self.max_backlog = max_backlog
        self.connections: set[NativeProtocol] = set()
        # Clients dropped past max_backlog, by door ("native", or "web" for /ws).
        self.backlog_drops: Counter[str] = Counter()
        self._last_message: tuple[Message | None, bytes] = (None, b"")
        self._last_event: tuple[tuple[Any, ...] | None, bytes] = (None, b"")

    def buildProtocol(self, addr: IAddress | None) -> NativeProtocol:
        return NativeProtocol(self)

    def new_bucket(self) -> TokenBucket:
        return TokenBucket(self.rate, self.burst)

    def event_line(self, name: str, **fields: str | None) -> bytes:
        """An event with plain string fields, encoded; the last one is remembered.

        Joins, parts and presence changes are handed to every member of a
        room in turn, as messages are: a room of 1,000 encoded each join
        1,000 times (30 s of CPU for 1,000 members joining).
        """
        key = (name, *fields.items())
        last, line = self._last_event
        if last != key:
            line = wire.encode(wire.event(name, **fields))
            self._last_event = (key, line)
        return line

    def message_line(self, message: Message) -> bytes:
        """The ``message`` event of *message*, encoded.

        The service hands one message to every recipient in turn; remembering
        the last one encodes it once per fan-out instead of once per recipient
        (formatting and JSON were most of the server's time in a fan-out).
        """
        last, line = self._last_message
        if last is not message:
            line = wire.encode({"event": "message", **message.to_event()})
            self._last_message = (message, line)
        return line
