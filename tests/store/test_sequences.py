"""Each conversation's sequence numbers (migration 009): the order in which
every node of a cluster delivers it, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pingchat.model import Message
from pingchat.store import Store
from tests.backends import POSTGRESQL, StoreBackend, on_postgresql


class SequenceTests(StoreBackend, SynchronousTestCase):
    def setUp(self) -> None:
        self.store = Store(self.open_database())
        self.store.db.numbered = True  # as on a node of a cluster
        ok = self.successResultOf
        self.alice = ok(self.store.create_account("alice", b"h", 0))
        self.bob = ok(self.store.create_account("bob", b"h", 0))
        self.carol = ok(self.store.create_account("carol", b"h", 0))
        self.room = ok(self.store.create_room("#r", 0))
        self.other = ok(self.store.create_room("#other", 0))

    def say(self, room: Any, text: str, ts: int = 1) -> Message:
        return self.successResultOf(
            self.store.add_room_message(room.id, room.name, "alice", self.alice.id, text, ts)
        )

    def dm(self, sender: Any, to: str, text: str, ts: int = 1) -> Message:
        return self.successResultOf(self.store.add_dm(sender.id, sender.name, to, ts, text=text))

    def test_each_room_numbers_its_messages_from_one_without_gaps(self) -> None:
        seqs = [self.say(self.room, "a").seq, self.say(self.other, "x").seq]
        seqs += [self.say(self.room, "b").seq, self.say(self.room, "c").seq]
        self.assertEqual(seqs, [1, 1, 2, 3])
        first = self.say(self.room, "d")
        self.assertEqual((first.conversation, first.seq), (f"r:{self.room.id}", 4))

    def test_each_dm_thread_numbers_its_messages_whoever_sends(self) -> None:
        a = self.dm(self.alice, "bob", "1")
        b = self.dm(self.bob, "alice", "2")
        c = self.dm(self.alice, "carol", "3")
        d = self.dm(self.bob, "alice", "4")
        self.assertEqual([a.seq, b.seq, c.seq, d.seq], [1, 2, 1, 3])
        low, high = sorted((self.alice.id, self.bob.id))
        self.assertEqual(a.conversation, f"d:{low}:{high}")
        self.assertEqual(b.conversation, a.conversation)

    def test_history_carries_the_numbers_and_equals_what_was_delivered(self) -> None:
        sent = [self.say(self.room, t) for t in "abc"]
        history = self.successResultOf(self.store.room_history(self.room.id))
        self.assertEqual(history, sent)

    def test_a_dm_thread_still_records_its_latest_message(self) -> None:
        self.dm(self.alice, "bob", "1", ts=10)
        last = self.dm(self.bob, "alice", "2", ts=20)
        row = self.store.db.run_sync(
            lambda conn: conn.execute("SELECT last_id, last_ts, seq FROM dm_threads").fetchall()
        )
        self.assertEqual([tuple(r) for r in row], [(last.id, 20, 2)])

    def test_conversation_after_gives_what_follows_an_id_oldest_first(self) -> None:
        sent = [self.say(self.room, t) for t in "abcde"]
        self.say(self.other, "elsewhere")
        after = self.successResultOf(
            self.store.conversation_after(f"r:{self.room.id}", sent[1].id, 2)
        )
        self.assertEqual(after, sent[2:4])

    def test_conversation_heads_give_each_rooms_last_number_and_id(self) -> None:
        self.say(self.room, "a")
        last = self.say(self.room, "b")
        heads = self.successResultOf(self.store.conversation_heads())
        self.assertEqual(
            sorted(heads),
            sorted([(f"r:{self.room.id}", 2, last.id), (f"r:{self.other.id}", 0, 0)]),
        )

    def test_dm_threads_since_lists_an_accounts_recent_conversations(self) -> None:
        ab = self.dm(self.alice, "bob", "old", ts=10)
        ac = self.dm(self.carol, "alice", "new", ts=50)
        self.dm(self.bob, "carol", "not alice's", ts=60)
        since = self.successResultOf(self.store.dm_threads_since(self.alice.id, 40))
        self.assertEqual(since, [ac.conversation])
        both = self.successResultOf(self.store.dm_threads_since(self.alice.id, 0))
        self.assertEqual(sorted(both), sorted([ab.conversation, ac.conversation]))

    def test_load_rooms_reads_every_room_again(self) -> None:
        self.successResultOf(self.store.add_member(self.room.id, "bob", True, 1))
        rooms = {s.info.name: s for s in self.successResultOf(self.store.load_rooms())}
        self.assertEqual(sorted(rooms), ["#other", "#r"])
        self.assertEqual([m.account for m in rooms["#r"].members], ["bob"])


SequenceTestsOnPostgreSQL = on_postgresql(SequenceTests)


class UnnumberedTests(StoreBackend, SynchronousTestCase):
    """One server does not number its messages (it has nobody to order them for)."""

    def test_one_server_stores_messages_without_numbers(self) -> None:
        store = Store(self.open_database())
        alice = self.successResultOf(store.create_account("alice", b"h", 0))
        self.successResultOf(store.create_account("bob", b"h", 0))
        room = self.successResultOf(store.create_room("#r", 0))
        said = self.successResultOf(
            store.add_room_message(room.id, "#r", "alice", alice.id, "hi", 1)
        )
        dm = self.successResultOf(store.add_dm(alice.id, "alice", "bob", 2, text="yo"))
        self.assertEqual((said.seq, dm.seq), (None, None))
        self.assertEqual(said.conversation, f"r:{room.id}")
        self.assertEqual(self.successResultOf(store.room_history(room.id)), [said])
        threads = store.db.run_sync(
            lambda conn: conn.execute("SELECT last_id, last_ts, seq FROM dm_threads").fetchall()
        )
        self.assertEqual([tuple(r) for r in threads], [(dm.id, 2, 0)])


UnnumberedTestsOnPostgreSQL = on_postgresql(UnnumberedTests)


class TwoWritersTests(StoreBackend, TestCase):
    """Two writers on one database, as two nodes of a cluster are: each room's
    numbers follow the commits, ids grow with them, and batches that touch
    the same rooms in opposite orders do not deadlock."""

    backend = POSTGRESQL
    timeout = 120

    @inlineCallbacks
    def test_two_writers_number_shared_rooms_without_gaps_in_commit_order(self) -> Any:
        first = self.open_database(reactor, threaded=True)
        second = type(first)(first.url, reactor, threaded=True)  # type: ignore[call-arg]
        self.addCleanup(second.stop)
        first.numbered = second.numbered = True
        one, two = Store(first), Store(second)
        alice = yield one.create_account("alice", b"h", 0)
        bob = yield one.create_account("bob", b"h", 0)
        rooms = []
        for i in range(4):
            rooms.append((yield one.create_room(f"#r{i}", 0)))
        sent: list[Any] = []
        for turn in range(30):
            batch = []
            # Each turn's jobs form one batch per writer; the two writers go
            # through the rooms in opposite orders.
            for i, room in enumerate(rooms):
                batch.append(
                    one.add_room_message(room.id, room.name, "alice", alice.id, f"a{i}", turn)
                )
            for i, room in enumerate(reversed(rooms)):
                batch.append(
                    two.add_room_message(room.id, room.name, "bob", bob.id, f"b{i}", turn)
                )
            batch.append(one.add_dm(alice.id, "alice", "bob", turn, text="ab"))
            batch.append(two.add_dm(bob.id, "bob", "alice", turn, text="ba"))
            results = yield DeferredList(batch, consumeErrors=True)
            failed = [r for ok, r in results if not ok]
            self.assertEqual(failed, [], f"turn {turn}")
            sent += [r for _, r in results]
        by_conversation: dict[str, list[Message]] = {}
        for m in sent:
            by_conversation.setdefault(m.conversation, []).append(m)
        self.assertEqual(len(by_conversation), 5)
        for conversation, messages in by_conversation.items():
            messages.sort(key=lambda m: m.seq)
            self.assertEqual([m.seq for m in messages], list(range(1, 61)), conversation)
            ids = [m.id for m in messages]
            self.assertEqual(ids, sorted(ids), f"{conversation}: ids follow the numbers")
