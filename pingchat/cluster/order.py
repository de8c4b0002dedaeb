"""Each conversation's messages, delivered in their sequence order.

A message carries its conversation (``r:<room id>``, ``d:<low>:<high>``)
and its number there, given by the store in the storing transaction under
the conversation's row lock (``pingchat/store/messages.py``): numbers have
no gaps and follow the commit order, and so do ids within a conversation.
Messages reach a node from two places, its own store (what it stored) and
the bus (what other nodes stored), and the bus keeps no order between
nodes and may drop some. :class:`Sequencer` delivers each conversation's
numbers one after the other: a message that comes early waits; a gap that
has not filled after :data:`GAP_WAIT` seconds is read from the store (the
conversation after the last delivered id: the missing message is committed,
since a later number was), so nothing is skipped or delivered twice.

Pure logic on a clock: the store read and the delivery are callables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from pingchat.model import Message

log = Logger()

GAP_WAIT = 0.5  # seconds an early message waits for the ones before it
RETRY_MAX = 10.0  # seconds between store reads while the store fails
PAGE = 200  # messages per store read

Deliver = Callable[[Message, Any], None]
Fetch = Callable[[str, int, int], "Deferred[list[Message]]"]


class Conversation:
    """Where one conversation's delivery stands on this node."""

    __slots__ = ("fetching", "last_id", "retry", "seq", "timer", "waiting")

    def __init__(self, seq: int, last_id: int) -> None:
        self.seq = seq  # the last number delivered
        self.last_id = last_id  # its message's id
        self.waiting: dict[int, tuple[Message, Any]] = {}  # early ones, by number
        self.timer: IDelayedCall | None = None
        self.fetching = False
        self.retry = GAP_WAIT


class Sequencer:
    """Delivers each conversation's messages once, in number order."""

    def __init__(
        self,
        clock: IReactorTime,
        deliver: Deliver,
        fetch: Fetch,
        gap_wait: float = GAP_WAIT,
        page: int = PAGE,
    ) -> None:
        self.clock = clock
        self.deliver = deliver
        self.fetch = fetch
        self.gap_wait = gap_wait
        self.page = page
        self.conversations: dict[str, Conversation] = {}
        # Counts for the metrics and the tests.
        self.duplicates = 0
        self.reordered = 0
        self.fetched = 0

    def baseline(self, key: str, seq: int, last_id: int) -> None:
        """Where *key* stood in the store when this node started following it.

        Kept only for a conversation not followed yet: one already followed
        knows better (the store may be ahead of what reached the node, and
        what is ahead is still on its way).
        """
        if key not in self.conversations:
            self.conversations[key] = Conversation(seq, last_id)

    def offer(self, message: Message, origin: Any = None) -> None:
        """A stored message, from this node's store or from the bus."""
        key, seq = message.conversation, message.seq
        if key is None or seq is None:
            self.deliver(message, origin)  # not numbered: nothing to order by
            return
        c = self.conversations.get(key)
        if c is None:
            # The first of this conversation seen here: it starts the count.
            self.conversations[key] = Conversation(seq, message.id)
            self.deliver(message, origin)
            return
        if message.id <= c.last_id or seq in c.waiting:
            # Ids grow with the numbers within a conversation: a message at
            # or below the last delivered id is a copy of one already here.
            self.duplicates += 1
            return
        if seq <= c.seq:
            # A newer id numbered from 1 again: the conversation's row went
            # and came back (retention removed a DM thread's last message).
            c.seq, c.waiting = seq - 1, {}
        if seq == c.seq + 1:
            self._deliver(c, message, origin)
            if c.waiting:
                self._drain(c)
            return
        self.reordered += 1
        c.waiting[seq] = (message, origin)
        if c.timer is None and not c.fetching:
            c.timer = self.clock.callLater(self.gap_wait, self._fill, key)

    def catch_up(self, key: str) -> None:
        """Read what the store holds after the last delivered message (the bus
        was lost: what was published meanwhile never came)."""
        c = self.conversations.get(key)
        if c is None or c.fetching:
            return
        if c.timer is not None and c.timer.active():
            c.timer.cancel()
        c.timer = None
        self._fill(key)

    def waiting(self) -> int:
        """Messages held back, waiting for earlier ones."""
        return sum(len(c.waiting) for c in self.conversations.values())

    def stop(self) -> None:
        for c in self.conversations.values():
            if c.timer is not None and c.timer.active():
                c.timer.cancel()
            c.timer = None

    # -- the mechanism ------------------------------------------------------------

    def _deliver(self, c: Conversation, message: Message, origin: Any) -> None:
        c.seq, c.last_id = message.seq, message.id  # type: ignore[assignment]
        self.deliver(message, origin)

    def _drain(self, c: Conversation) -> None:
        while True:
            nxt = c.waiting.pop(c.seq + 1, None)
            if nxt is None:
                break
            self._deliver(c, *nxt)
        # Anything at or below what was delivered is a duplicate.
        for seq in [s for s in c.waiting if s <= c.seq]:
            del c.waiting[seq]
        if not c.waiting and c.timer is not None:
            if c.timer.active():
                c.timer.cancel()
            c.timer = None

    def _fill(self, key: str) -> None:
        c = self.conversations[key]
        c.timer = None
        c.fetching = True
        d = self.fetch(key, c.last_id, self.page)
        d.addCallbacks(self._fetched, self._fetch_failed, callbackArgs=(key,), errbackArgs=(key,))
        d.addErrback(lambda f: log.failure("catching up {key}", f, key=key))

    def _fetched(self, messages: list[Message], key: str) -> None:
        c = self.conversations[key]
        c.fetching = False
        c.retry = self.gap_wait
        for m in messages:
            if m.seq is None or m.seq <= c.seq:
                continue
            # One that came by the bus meanwhile keeps what only it has (its
            # origin session, IRCv3 client tags).
            message, origin = c.waiting.pop(m.seq, (m, None))
            self.fetched += message is m
            self._deliver(c, message, origin)
        self._drain(c)
        if len(messages) >= self.page:
            self._fill(key)  # more where those came from
        elif c.waiting and c.timer is None:
            # Still a gap: its message was not committed when the store was
            # read (a bus message that outran a reader's snapshot): again.
            c.timer = self.clock.callLater(self.gap_wait, self._fill, key)

    def _fetch_failed(self, failure: Failure, key: str) -> None:
        c = self.conversations[key]
        c.fetching = False
        log.warn(
            "could not read {key} from the store to fill a gap ({why}); trying again",
            key=key,
            why=failure.getErrorMessage(),
        )
        c.retry = min(c.retry * 2, RETRY_MAX)
        if c.timer is None:
            c.timer = self.clock.callLater(c.retry, self._fill, key)
