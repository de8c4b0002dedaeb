"""The sequencer: each conversation delivered once, in number order, gaps
filled from the store (pingchat.cluster.order), on a task.Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pingchat.cluster.order import GAP_WAIT, Sequencer
from pingchat.errors import StoreUnavailable
from pingchat.model import Message


def msg(seq: int, key: str = "r:1", text: str | None = None) -> Message:
    return Message(
        id=100 + seq,
        ts=seq,
        sender="a",
        text=text or f"m{seq}",
        room="#r",
        conversation=key,
        seq=seq,
    )


class SequencerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.delivered: list[tuple[int | None, Any]] = []
        self.stored: dict[str, list[Message]] = {}
        self.reads: list[tuple[str, int]] = []
        self.pending_read: Deferred[list[Message]] | None = None
        self.seq = Sequencer(self.clock, self.deliver, self.fetch, page=3)

    def deliver(self, message: Message, origin: Any) -> None:
        self.delivered.append((message.seq, origin))

    def fetch(self, key: str, after: int, limit: int) -> Deferred[list[Message]]:
        self.reads.append((key, after))
        if self.pending_read is not None:
            d, self.pending_read = self.pending_read, None
            return d
        rows = [m for m in self.stored.get(key, []) if m.id > after]
        return succeed(rows[:limit])

    def store(self, *seqs: int, key: str = "r:1") -> None:
        self.stored.setdefault(key, []).extend(msg(s, key) for s in seqs)

    def seqs(self) -> list[int | None]:
        return [s for s, _ in self.delivered]

    def test_messages_in_order_are_delivered_at_once(self) -> None:
        self.seq.baseline("r:1", 0, 0)
        for s in (1, 2, 3):
            self.seq.offer(msg(s), origin=f"o{s}")
        self.assertEqual(self.delivered, [(1, "o1"), (2, "o2"), (3, "o3")])
        self.assertEqual(self.reads, [])

    def test_an_early_message_waits_for_the_one_before_it(self) -> None:
        self.seq.baseline("r:1", 0, 0)
        self.seq.offer(msg(1))
        self.seq.offer(msg(3))
        self.seq.offer(msg(4))
        self.assertEqual(self.seqs(), [1])
        self.seq.offer(msg(2))
        self.assertEqual(self.seqs(), [1, 2, 3, 4])
        self.clock.advance(GAP_WAIT * 2)
        self.assertEqual(self.reads, [], "a gap that filled is never read from the store")

    def test_a_duplicate_is_delivered_once(self) -> None:
        self.seq.baseline("r:1", 0, 0)
        for s in (1, 2, 2, 1, 4, 4):
            self.seq.offer(msg(s))
        self.seq.offer(msg(3))
        self.assertEqual(self.seqs(), [1, 2, 3, 4])
        self.assertEqual(self.seq.duplicates, 3)

    def test_a_gap_that_does_not_fill_is_read_from_the_store_after_the_wait(self) -> None:
        self.seq.baseline("r:1", 0, 0)
        self.store(1, 2, 3, 4)
        self.seq.offer(msg(1), "mine")
        self.seq.offer(msg(4), "four")
        self.clock.advance(GAP_WAIT - 0.01)
        self.assertEqual(self.seqs(), [1])
        self.clock.advance(0.02)
        # A full page (3) is followed by another read, which finds nothing more.
        self.assertEqual(self.reads, [("r:1", 101), ("r:1", 104)])
        # 2 and 3 from the store; 4 as it came, with its origin.
        self.assertEqual(self.delivered, [(1, "mine"), (2, None), (3, None), (4, "four")])
        self.assertEqual(self.seq.fetched, 2)

    def test_a_long_gap_is_read_page_by_page(self) -> None:
        self.seq.baseline("r:1", 0, 0)
        self.store(*range(1, 9))
        self.seq.offer(msg(8))
        self.clock.advance(GAP_WAIT)
        self.assertEqual(self.seqs(), list(range(1, 9)))
        self.assertEqual([after for _, after in self.reads], [0, 103, 106])

    def test_a_store_that_fails_is_asked_again_later_and_nothing_is_skipped(self) -> None:
        self.seq.baseline("r:1", 0, 0)
        self.store(1, 2)
        self.pending_read = fail(StoreUnavailable("down"))
        self.seq.offer(msg(2))
        self.clock.advance(GAP_WAIT)
        self.assertEqual(self.seqs(), [])
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        self.clock.advance(GAP_WAIT * 2)
        self.assertEqual(self.seqs(), [1, 2])

    def test_a_message_that_arrives_while_the_store_is_read_is_not_delivered_twice(self) -> None:
        self.seq.baseline("r:1", 0, 0)
        self.store(1, 2, 3)
        reading: Deferred[list[Message]] = Deferred()
        self.pending_read = reading
        self.seq.offer(msg(3))
        self.clock.advance(GAP_WAIT)
        self.seq.offer(msg(2))  # arrives while the read is on its way
        self.assertEqual(self.seqs(), [])
        reading.callback(self.stored["r:1"])
        self.assertEqual(self.seqs(), [1, 2, 3])

    def test_conversations_are_independent(self) -> None:
        self.seq.baseline("r:1", 0, 0)
        self.seq.baseline("r:2", 5, 50)
        self.seq.offer(msg(2, "r:1"))
        self.seq.offer(msg(6, "r:2"))
        self.assertEqual(self.seqs(), [6])

    def test_the_first_message_of_a_conversation_never_seen_starts_it(self) -> None:
        self.seq.offer(msg(7, "d:1:2"))
        self.seq.offer(msg(8, "d:1:2"))
        self.assertEqual(self.seqs(), [7, 8])

    def test_a_baseline_never_moves_a_conversation_already_followed(self) -> None:
        self.seq.offer(msg(3))
        self.seq.baseline("r:1", 10, 110)
        self.seq.offer(msg(4))
        self.assertEqual(self.seqs(), [3, 4])

    def test_catch_up_reads_what_the_store_has_after_the_last_delivered(self) -> None:
        self.seq.baseline("r:1", 0, 0)
        self.seq.offer(msg(1))
        self.store(1, 2, 3)
        self.seq.catch_up("r:1")
        self.assertEqual(self.seqs(), [1, 2, 3])
        self.assertEqual(self.reads, [("r:1", 101)])

    def test_unnumbered_messages_are_delivered_as_they_come(self) -> None:
        live = Message(id=0, ts=0, sender="a", text=None, room="#r", kind="tagmsg")
        self.seq.offer(live)
        self.assertEqual(self.seqs(), [None])

    def test_a_conversation_numbered_from_one_again_is_followed_again(self) -> None:
        """Retention removes a DM thread with its last message; the next DM
        makes it again, numbered from 1, with a newer id."""
        self.seq.offer(msg(5, "d:1:2"))
        again = Message(id=900, ts=9, sender="a", text="x", conversation="d:1:2", seq=1)
        self.seq.offer(again)
        self.seq.offer(msg(5, "d:1:2"))  # an old copy: still a duplicate
        self.seq.offer(Message(id=901, ts=9, sender="a", text="y", conversation="d:1:2", seq=2))
        self.assertEqual(self.seqs(), [5, 1, 2])
        self.assertEqual(self.seq.waiting(), 0)
