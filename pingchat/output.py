"""Output that gives up on a client that stops reading, shared by the doors.

A door protocol registers itself with its transport as a streaming producer:
the transport calls ``pauseProducing`` when its send buffer is full and
``resumeProducing`` when it has drained. What is written while paused piles
up in memory, so past ``max_backlog`` bytes the client is taken to have
stopped reading and is disconnected, with a logged reason. Memory per
connection stays bounded and one stuck client never slows the others.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()


@implementer(IPushProducer)
class BoundedOutput:
    """Mixin for a ``Protocol``: ``write_bounded`` instead of ``transport.write``."""

    transport: Any
    closed: bool
    address: str | None
    paused = False
    backlog = 0

    def max_backlog(self) -> int:
        raise NotImplementedError

    def who(self) -> str | None:
        """The name to log for this client (account, nick, or None)."""
        return None

    def start_bounded_output(self) -> None:
        """Call from ``connectionMade``."""
        self.transport.registerProducer(self, True)

    def write_bounded(self, data: bytes) -> None:
        """Write *data*, or drop the client if too much is already waiting."""
        if self.closed or self.transport is None:
            return
        if self.paused:
            self.backlog += len(data)
            bound = self.max_backlog()
            if self.backlog > bound:
                log.warn(
                    "disconnecting {user} at {address}: more than {bound} bytes"
                    " of output pending (the client is not reading)",
                    user=self.who(),
                    address=self.address,
                    bound=bound,
                )
                self.closed = True
                self.transport.abortConnection()
                return
        self.transport.write(data)

    def pauseProducing(self) -> None:  # noqa: N802 - IPushProducer
        self.paused = True
        self.backlog = 0

    def resumeProducing(self) -> None:  # noqa: N802 - IPushProducer
        self.paused = False
        self.backlog = 0

    def stopProducing(self) -> None:  # noqa: N802 - IPushProducer
        pass
