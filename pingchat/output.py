"""Output that gives up on a client that stops reading, shared by the doors.

A door protocol registers itself with its transport as a streaming producer:
the transport calls ``pauseProducing`` when its send buffer is full and
``resumeProducing`` once it has handed everything to the kernel. While
paused, every write first asks how much output the connection still holds
(:func:`~pingchat.twisted_internals.pending_output_bytes`: the transports'
own buffers, TLS included); past ``max_backlog`` bytes the client is taken
to have stopped reading and is disconnected, with a logged reason. What
the server holds for one client never passes the bound by more than one
write, and one stuck client never slows the others.

The pause is only the signal to start measuring. It is not a measure:
Twisted's TCP transport calls ``pauseProducing`` again on *every* write
while its buffer is full, so a count that restarted at each pause never
grew (a plaintext IRC client that stopped reading was never dropped).
Where a transport cannot be measured (a test's ``StringTransport``, a
transport pingchat does not know), the bytes written since the pause are
counted instead; that count falls only when the transport says it has
drained (``resumeProducing``), never at another pause.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from pingchat.twisted_internals import pending_output_bytes

log = Logger()


@implementer(IPushProducer)
class BoundedOutput:
    """Mixin for a ``Protocol``: ``write_bounded`` instead of ``transport.write``."""

    transport: Any
    closed: bool
    address: str | None
    door: str
    # The door's factory: its ``backlog_drops`` counts the clients dropped, by door.
    factory: Any
    paused = False
    # Output the connection held at the last measure (bytes). While paused,
    # for a transport that cannot be measured: the bytes written since the pause.
    backlog = 0
    _counted = False  # backlog is a count, not a measure

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
            if not self._counted:
                measured = pending_output_bytes(self.transport)
                if measured is None:
                    self._counted = True
                else:
                    self.backlog = measured
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
                self.factory.backlog_drops[self.door] += 1
                self.transport.abortConnection()
                return
            if self._counted:
                self.backlog += len(data)
        self.transport.write(data)

    def lose_connection(self) -> None:
        """Close the connection once what was written has been sent.

        The door is its transport's producer for the connection's whole
        life, and Twisted's TLS transport holds its shutdown back until no
        producer is registered: without this, an IRC-over-TLS ``QUIT`` was
        answered with ``ERROR`` and the connection then stayed open.
        """
        if self.transport is None:
            return
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def pauseProducing(self) -> None:  # noqa: N802 - IPushProducer
        # Called again on every write while the buffer stays full: not a reset.
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - IPushProducer
        # The transport has handed what it held to the kernel.
        self.paused = False
        self.backlog = 0
        self._counted = False

    def stopProducing(self) -> None:  # noqa: N802 - IPushProducer
        pass
