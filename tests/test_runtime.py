"""Bounded reactor turns, bounded accept loops, the collector's settings."""

from __future__ import annotations

import gc
import socket
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pingchat import runtime


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakePoller:
    """What epoll would return: the events queued, at most *maxevents*."""

    def __init__(self, events: list[tuple[int, int]]) -> None:
        self.events = events
        self.calls: list[tuple[float, int]] = []

    def poll(self, timeout: float, maxevents: int) -> list[tuple[int, int]]:
        self.calls.append((timeout, maxevents))
        out, self.events = self.events[:maxevents], self.events[maxevents:]
        return out


class Readable:
    def __init__(self, fd: int, clock: FakeClock, cost: float, seen: list[int]) -> None:
        self.fd, self.clock, self.cost, self.seen = fd, clock, cost, seen

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:  # noqa: N802
        return "readable"

    def doRead(self) -> None:  # noqa: N802
        self.seen.append(self.fd)
        self.clock.now += self.cost


class BoundedTurnTests(SynchronousTestCase):
    def reactor(self, n: int, cost: float) -> tuple[Any, FakePoller, list[int], FakeClock]:
        # An epoll reactor object without its file descriptors: only the
        # attributes the poll loop uses.
        reactor: Any = EPollReactor.__new__(EPollReactor)
        clock, seen = FakeClock(), list[int]()
        reactor._selectables = {fd: Readable(fd, clock, cost, seen) for fd in range(10, 10 + n)}
        reactor._poller = FakePoller([(fd, EPollReactor._POLL_IN) for fd in range(10, 10 + n)])
        return reactor, reactor._poller, seen, clock

    def test_asks_epoll_for_a_bounded_number_of_events(self) -> None:
        reactor, poller, seen, _ = self.reactor(100, cost=0.0)
        self.assertTrue(runtime.bound_reactor_turns(reactor, max_events=64, clock=FakeClock()))
        reactor.doIteration(0.5)
        self.assertEqual(poller.calls, [(0.5, 64)])
        self.assertEqual(seen, list(range(10, 74)))
        reactor.doIteration(None)
        self.assertEqual(poller.calls[-1], (-1, 64))
        self.assertEqual(seen, list(range(10, 110)))

    def test_a_turn_that_spends_its_budget_keeps_the_rest_for_the_next(self) -> None:
        reactor, poller, seen, clock = self.reactor(7, cost=0.004)
        runtime.bound_reactor_turns(reactor, max_events=64, budget=0.01, clock=clock)
        reactor.doIteration(1.0)
        self.assertEqual(seen, [10, 11, 12])  # the third one went over the budget
        # What the turn's I/O took, for the timed work after it (Database).
        self.assertAlmostEqual(reactor.pingchat_turn_io, 0.012)
        reactor.doIteration(1.0)  # the held events first, without waiting on epoll
        self.assertEqual(len(poller.calls), 1)
        self.assertEqual(seen, [10, 11, 12, 13, 14, 15])
        reactor.doIteration(1.0)
        self.assertEqual(seen, list(range(10, 17)))
        self.assertAlmostEqual(reactor.pingchat_turn_io, 0.004)
        self.assertEqual(len(poller.calls), 1)

    def test_an_event_for_a_descriptor_gone_since_is_skipped(self) -> None:
        reactor, _, seen, clock = self.reactor(3, cost=0.0)
        del reactor._selectables[11]
        runtime.bound_reactor_turns(reactor, clock=clock)
        reactor.doIteration(0)
        self.assertEqual(seen, [10, 12])

    def test_other_reactors_are_left_alone(self) -> None:
        clock = Clock()
        self.assertFalse(runtime.bound_reactor_turns(clock))
        self.assertFalse(hasattr(clock, "doIteration"))


class GarbageCollectorTests(SynchronousTestCase):
    def test_tune_gc_freezes_what_exists_and_sets_the_thresholds(self) -> None:
        before = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *before)
        self.addCleanup(gc.unfreeze)
        runtime.tune_gc(gen0=12_345, gen1=3)
        self.assertEqual(gc.get_threshold(), (12_345, 3, runtime.GC_GEN2_THRESHOLD))
        self.assertGreater(gc.get_freeze_count(), 0)


class FullCollectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.cpu = 0.0
        self.pending = 1
        self.collected: list[float] = []
        self.collector = runtime.FullCollector(
            self.clock,
            interval=1.0,
            quiet=0.25,
            quiet_checks=2,
            max_interval=60.0,
            cpu=lambda: self.cpu,
            collect=lambda: self.collected.append(self.clock.seconds()),
            pending=lambda: self.pending,
        )
        self.collector.startService()
        self.addCleanup(self.collector.stopService)

    def second(self, busy: float) -> None:
        """One second passes, the process running *busy* of it."""
        self.cpu += busy
        self.clock.advance(1.0)

    def test_waits_for_quiet_seconds_in_a_row(self) -> None:
        for busy in (0.9, 0.9, 0.1, 0.9, 0.9):  # a storm, with a lull
            self.second(busy)
        self.assertEqual(self.collected, [])
        self.second(0.1)
        self.second(0.2)
        self.assertEqual(self.collected, [7.0])
        self.assertEqual(self.collector.collections, 1)
        self.second(0.0)
        self.second(0.0)
        self.assertEqual(self.collected, [7.0, 9.0])

    def test_nothing_new_in_the_oldest_generation_nothing_to_do(self) -> None:
        self.pending = 0
        for _ in range(5):
            self.second(0.0)
        self.assertEqual(self.collected, [])

    def test_a_server_never_quiet_still_collects_now_and_then(self) -> None:
        for _ in range(130):
            self.second(1.0)
        self.assertEqual(self.collected, [60.0, 120.0])

    def test_stops_with_the_service(self) -> None:
        self.collector.stopService()
        self.second(0.0)
        self.assertEqual(self.collected, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class Counting(protocol.Factory):
    def __init__(self) -> None:
        self.built: list[Recorder] = []

    def buildProtocol(self, addr: Any) -> Recorder:  # noqa: N802
        p = Recorder()
        self.built.append(p)
        return p


class Recorder(protocol.Protocol):
    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost.callback(None)


class BoundedAcceptTests(TestCase):
    def test_the_setting_is_capped(self) -> None:
        port = runtime.ServerPort(0, Counting(), 50, "127.0.0.1", None)
        port.numberAccepts = 100
        self.assertEqual(port.numberAccepts, runtime.MAX_ACCEPTS_PER_TURN)
        port.numberAccepts = 0
        self.assertEqual(port.numberAccepts, 1)

    def test_one_readable_event_accepts_at_most_the_bound(self) -> Deferred[Any]:
        from twisted.internet import reactor

        factory = Counting()
        port = runtime.server_reactor(reactor).listenTCP(0, factory, 64, "127.0.0.1")
        self.assertIsInstance(port, runtime.ServerPort)
        self.addCleanup(port.stopListening)
        address = port.getHost()
        clients = []
        for _ in range(40):
            s = socket.create_connection((address.host, address.port))
            clients.append(s)
            self.addCleanup(s.close)
        port.doRead()  # what the reactor does when the listening socket is readable
        self.assertEqual(len(factory.built), runtime.MAX_ACCEPTS_PER_TURN)
        port.doRead()
        self.assertEqual(len(factory.built), 2 * runtime.MAX_ACCEPTS_PER_TURN)
        for s in clients:
            s.close()
        for p in factory.built:
            assert p.transport is not None
            p.transport.loseConnection()
        return DeferredList([p.lost for p in factory.built])

    def test_fake_reactors_pass_through(self) -> None:
        clock = Clock()
        self.assertIs(runtime.server_reactor(clock), clock)


class TurnFlusherTests(SynchronousTestCase):
    def test_zero_delay_calls_run_together_at_the_end_of_the_turn(self) -> None:
        clock = Clock()
        flusher = runtime.TurnFlusher(clock)
        ran: list[str] = []
        flusher.callLater(0, ran.append, "a")
        cancelled = flusher.callLater(0, ran.append, "b")
        flusher.callLater(0, ran.append, "c")
        cancelled.cancel()
        self.assertFalse(cancelled.active())
        self.assertEqual(len(clock.getDelayedCalls()), 1)  # one timed call for all of them
        self.assertEqual(ran, [])
        clock.advance(0)
        self.assertEqual(ran, ["a", "c"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_later_calls_are_the_reactors(self) -> None:
        clock = Clock()
        flusher = runtime.TurnFlusher(clock)
        ran: list[int] = []
        call = flusher.callLater(2.0, ran.append, 1)
        self.assertEqual(clock.getDelayedCalls(), [call])
        clock.advance(2)
        self.assertEqual(ran, [1])

    def test_one_flusher_per_reactor(self) -> None:
        a, b = Clock(), Clock()
        self.assertIs(runtime.turn_flusher(a), runtime.turn_flusher(a))
        self.assertIsNot(runtime.turn_flusher(a), runtime.turn_flusher(b))


class Writer(protocol.Protocol):
    """Writes what it is told to as soon as it is connected, then maybe closes."""

    def __init__(self, chunks: list[bytes], close: bool) -> None:
        self.chunks, self.close = chunks, close
        self.writers_after_write: bool | None = None
        self.nodelay: bool | None = None

    def connectionMade(self) -> None:  # noqa: N802
        assert self.transport is not None
        for chunk in self.chunks:
            self.transport.write(chunk)
        from twisted.internet import reactor

        writers: list[Any] = reactor.getWriters()  # type: ignore[attr-defined]
        self.writers_after_write = self.transport in writers
        self.nodelay = self.transport.getTcpNoDelay()  # type: ignore[attr-defined]
        if self.close:
            self.transport.loseConnection()


class TurnByTurnWriter(Writer):
    """Writes one chunk per reactor turn, then closes; the reader waits for the last."""

    all_written: Deferred[None]

    def connectionMade(self) -> None:  # noqa: N802
        from twisted.internet import reactor

        def next_chunk() -> None:
            assert self.transport is not None
            if self.chunks:
                self.transport.write(self.chunks.pop(0))
                reactor.callLater(0, next_chunk)  # type: ignore[attr-defined]
            else:
                self.transport.loseConnection()
                self.all_written.callback(None)

        next_chunk()


class Collect(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.done.callback(self.data)


class TurnFlushServerTests(TestCase):
    """Over real loopback sockets: order, large writes, close after writing."""

    def serve(
        self,
        chunks: list[bytes],
        writer: type[Writer] = Writer,
        reader_waits_for: Deferred[None] | None = None,
    ) -> tuple[Deferred[bytes], list[Writer]]:
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        made: list[Writer] = []

        class Factory(protocol.Factory):
            def buildProtocol(self, addr: Any) -> Writer:  # noqa: N802
                w = writer(list(chunks), close=True)
                made.append(w)
                return w

        port = runtime.server_reactor(reactor).listenTCP(0, Factory(), 50, "127.0.0.1")
        self.addCleanup(port.stopListening)
        client = Collect()
        connected = connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), client
        )
        if reader_waits_for is not None:
            # The client reads nothing until the server has written everything.
            def pause(_: object) -> None:
                transport: Any = client.transport
                transport.pauseProducing()
                reader_waits_for.addCallback(lambda _: transport.resumeProducing())

            connected.addCallback(pause)
        return client.done, made

    def test_a_turns_writes_arrive_in_order_without_waiting_on_epoll(self) -> Deferred[None]:
        chunks = [b"one ", b"two ", b"three"]
        done, made = self.serve(chunks)

        def check(data: bytes) -> None:
            self.assertEqual(data, b"one two three")
            # the writes were held for the end of the turn, not handed to epoll
            self.assertIs(made[0].writers_after_write, False)
            # and no Nagle delay on top of that
            self.assertTrue(made[0].nodelay)

        return done.addCallback(check)

    def test_what_the_kernel_does_not_take_waits_for_the_socket(self) -> Deferred[None]:
        big = bytes(range(256)) * 32 * 1024  # 8 MiB: far more than a socket buffer
        done, _ = self.serve([big[: len(big) // 2], big[len(big) // 2 :]])
        return done.addCallback(lambda data: self.assertTrue(data == big, len(data)))

    def test_turns_of_writes_larger_than_the_kernel_takes_keep_their_order(
        self,
    ) -> Deferred[None]:
        # Each turn sends straight away; once the kernel takes only part of
        # one, the rest and every later turn wait in Twisted's buffer.
        chunks = [bytes([i]) * 100_000 for i in range(150)]  # 15 MB, 100 KB a turn
        all_written: Deferred[None] = Deferred()
        TurnByTurnWriter.all_written = all_written
        self.addCleanup(delattr, TurnByTurnWriter, "all_written")
        done, _ = self.serve(chunks, TurnByTurnWriter, reader_waits_for=all_written)
        expected = b"".join(chunks)
        return done.addCallback(lambda data: self.assertTrue(data == expected, len(data)))
