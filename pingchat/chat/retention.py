"""History retention: old messages expire, a small batch at a time, every ten minutes.

``--history-days`` (0: forever) is the server's ceiling; a room's operators
may keep less with mode ``+H <days>`` (never more: an administrator's limit
is a promise to every user). ``--offline-days`` bounds how long a DM waits
in the offline queue for its recipient's next login; a queued DM is never
expired from history before it is delivered or dropped from the queue.

Each batch is one short job on the database writer (at most
:data:`pingchat.store.retention.BATCH` rows, fewer when a batch takes more
than :data:`BATCH_SECONDS`); then the reader thread copies the WAL into
the database file (a PASSIVE checkpoint, which holds no writer back: left
to the writer, a checkpoint inside a COMMIT held the server's writes for
40-400 ms every few batches), and after a pause of :data:`PAUSE` the next
batch goes. The server's own writes go on between them. Deleted rows are
overwritten in the file (``secure_delete``), and after a run that deleted
anything the WAL is emptied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from pingchat.chat.erasure import DAY_MS, empty_wal
from pingchat.chat.service import ChatService
from pingchat.interfaces import IStore
from pingchat.store.retention import BATCH, Expired

log = Logger()

INTERVAL = 600.0  # seconds between runs (and one at start-up)
BATCH_MIN, BATCH_MAX = 50, 4 * BATCH
# A batch that took longer than this halves the next; one under a quarter of
# it doubles it. With 4 ms, its COMMIT (the deleted pages, overwritten, to
# fsync) made the writes beside it wait 16 ms at the 99th percentile; with
# 2 ms, 10 ms (bench/retention.py).
BATCH_SECONDS = 0.002
# The rest between two batches, so that the server's own writes get batches
# of their own. Expiring 1,000,000 messages took under five minutes.
PAUSE = 0.01


class Retention(Service):
    """Runs the expiry at start-up and every :data:`INTERVAL` seconds."""

    name = "retention"

    def __init__(
        self,
        store: IStore,
        service: ChatService,
        clock: IReactorTime,
        history_days: float = 0.0,
        offline_days: float = 0.0,
        interval: float = INTERVAL,
    ) -> None:
        self.store = store
        self.service = service
        self.clock = clock
        self.history_days = history_days
        self.offline_days = offline_days
        self.interval = interval
        self.batch = BATCH
        self.running_expiry: Deferred[dict[str, int]] | None = None
        self.wal_emptied: Deferred[None] | None = None
        self._loop: LoopingCall | None = None
        self._stopping = False

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stopService(self) -> Deferred[Any] | None:
        """Stop the timer; a run under way stops after its current batch."""
        super().stopService()
        self._stopping = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self.running_expiry is None:
            return None
        ended: Deferred[None] = Deferred()

        def tell(result: Any) -> Any:
            ended.callback(None)
            return result

        self.running_expiry.addBoth(tell)
        return ended

    def _tick(self) -> None:
        if self.running_expiry is None:
            self.expire().addErrback(lambda f: log.failure("history expiry failed", f))

    def now(self) -> int:
        return int(self.clock.seconds() * 1000)

    def expire(self) -> Deferred[dict[str, int]]:
        """One run; fires with how many messages and queued DMs it deleted."""
        d = self._expire()

        def ended(result: Any) -> Any:
            self.running_expiry = None
            return result

        self.running_expiry = d
        return d.addBoth(ended)

    @inlineCallbacks
    def _expire(self) -> Any:
        now = self.now()
        counts = {"offline": 0, "messages": 0}
        # Each step checks that the service still runs: the database stops
        # beside it (a MultiService stops its children all at once).
        if self.offline_days > 0 and not self._stopping:
            bound = yield self.store.expiry_bound(now - int(self.offline_days * DAY_MS))
            counts["offline"] = yield self._batches(lambda _cursor: self.store.expire_offline(
                bound, self.batch
            ))
        if self.history_days > 0 and not self._stopping:
            cutoff = now - int(self.history_days * DAY_MS)
            counts["messages"] += yield self._expire_before(cutoff, None)
        for room in list(self.service.all_rooms()):
            days = room.history_days
            if days is None or (self.history_days > 0 and days >= self.history_days):
                continue  # the server's ceiling covers it
            if not self._stopping:
                counts["messages"] += yield self._expire_before(now - days * DAY_MS, room.id)
        if not self._stopping:
            yield self.store.forget_reservations(now)
        if counts["messages"] or counts["offline"]:
            log.info(
                "retention: {messages} message(s) expired, {offline} undelivered DM(s)"
                " dropped from the offline queue",
                **counts,
            )
            # Not waited for: it may retry for a minute while readers hold the WAL.
            self.wal_emptied = empty_wal(self.store, self.clock)
        return counts

    @inlineCallbacks
    def _expire_before(self, cutoff: int, room_id: int | None) -> Any:
        bound = yield self.store.expiry_bound(cutoff, room_id)
        if self._stopping:
            return 0
        return (
            yield self._batches(
                lambda cursor: self.store.expire_messages(
                    room_id, cursor, bound, cutoff, self.batch
                )
            )
        )

    @inlineCallbacks
    def _batches(self, batch: Callable[[int], Deferred[Expired]]) -> Any:
        """Run *batch* from cursor 0 until it is done (or the service stops)."""
        cursor, total = 0, 0
        while not self._stopping:
            result: Expired = yield batch(cursor)
            cursor, total = result.cursor, total + result.deleted
            self._adapt(result.seconds)
            if result.done or self._stopping:
                break
            # The batch's pages go to the database file from the reader
            # thread, not in a COMMIT of the writer's (bench/retention.py).
            yield self.store.backfill_wal()
            yield deferLater(self.clock, PAUSE, lambda: None)
        return total

    def _adapt(self, seconds: float) -> None:
        """Keep each batch to a few milliseconds of the writer's time, whatever the disk."""
        if seconds > BATCH_SECONDS:
            self.batch = max(BATCH_MIN, self.batch // 2)
        elif seconds < BATCH_SECONDS / 4:
            self.batch = min(BATCH_MAX, self.batch * 2)
