"""Process-wide tuning that ``twistd pingchat`` applies before the reactor runs.

Two things a long-running Python server pays for by default, measured with
the benchmark in ``bench/`` (docs/performance.md):

* **Unbounded reactor turns.** Twisted's epoll reactor asks the kernel for
  as many ready descriptors as it watches and handles them all before any
  timed call runs. When thousands of clients send at once (a login storm
  after a restart) one turn decrypted, parsed and dispatched every one of
  them: the reactor stalled for most of a second. :func:`bound_reactor_turns`
  caps the events taken per turn, by count and by time; the kernel keeps the
  others ready (epoll is level-triggered) for the next turn, and timers, the
  database's committed batches and other connections get their turn in
  between.

* **The cyclic garbage collector.** Every Deferred, message and line
  allocates; by default a collection runs every 700 allocations and every
  so often walks the whole heap, including the hundreds of thousands of
  objects imported at start-up that will never be garbage. :func:`tune_gc`
  moves what exists at start-up out of the collector's sight
  (``gc.freeze``) and collects the young generation less often; full
  collections, which walk every live object, wait for a quiet moment
  (:class:`FullCollector`). Reference counting still frees almost
  everything at once; the collector is only for cycles.
"""

from __future__ import annotations

import errno
import gc
import time
import weakref
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import tcp
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python import log as legacy_log

from pingchat import twisted_internals

log = Logger()

# Ready descriptors handled per reactor turn. A turn that reads a line from
# each costs roughly 0.1-0.3 ms per descriptor on the benchmark machine, so
# 64 keeps a turn around 10 ms at worst while a busy server still takes many
# descriptors per epoll_wait call.
MAX_EVENTS_PER_TURN = 64

# Time one turn may spend on I/O before timers get their turn. A single
# event can overrun it (a TLS handshake costs ~1-2 ms here); the budget is
# checked after each.
TURN_BUDGET = 0.008

# What a turn's I/O and the committed database callbacks after it aim to
# stay within together: the stall the benchmark's login storm allows. (The
# end-of-turn sends are not counted: cutting the callbacks short for them
# makes every delivery dearer, see store.database.DELIVER_BUDGET.)
TURN_TOTAL = 0.020

# Allocations between collections of the youngest generation (default 700).
# A young collection scans its objects: ~1 us each here, and in a login storm
# most of them are cyclic garbage (Deferred chains, closures). At 20,000 the
# storm's young collections paused the reactor 14-21 ms and a middle one 53
# ms; 5,000 made them a quarter of that. At 3,000 the middle collections of
# a storm (new connections, all alive: nothing collected) took 14-24 ms on
# a slow hour; at 1,500 at most 4.5-9.7 ms, and in all less time (storm
# phase, gc.callbacks: middle 101-138 ms a second at 3,000, 52-65 at
# 1,500; young ones ~40 ms either way). Still 2x rarer than the default.
GC_GEN0_THRESHOLD = 1_500
# Young collections between middle ones (default 10). A middle collection
# walks what the young ones let through since the last: in a login storm
# most of that is new connections: at 10 one took 30-37 ms, at 4 up to 27.
GC_GEN1_THRESHOLD = 2


# Full collections (all three generations) walk every live object that is
# not frozen: 30-85 ms with a few thousand connections here. Python starts
# one whenever enough new objects have survived into the oldest generation,
# which is what a login storm does, several times over. tune_gc turns that
# off and FullCollector runs them instead once the process has been quiet
# for FULL_QUIET_CHECKS seconds in a row (using at most FULL_QUIET of a core;
# a storm can have a quiet second between its waves), and in any case every
# FULL_MAX_INTERVAL seconds.
GC_GEN2_THRESHOLD = 1_000_000_000  # "never": FullCollector decides
FULL_CHECK_INTERVAL = 1.0
FULL_QUIET = 0.25
FULL_QUIET_CHECKS = 3
FULL_MAX_INTERVAL = 600.0


def tune_gc(gen0: int = GC_GEN0_THRESHOLD, gen1: int = GC_GEN1_THRESHOLD) -> None:
    """Freeze start-up objects, set the younger thresholds, leave full ones to FullCollector."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, gen1, GC_GEN2_THRESHOLD)


class FullCollector(Service):
    """Run the collector's full collections when the reactor is quiet.

    Every *interval* seconds it looks at how much CPU the process used in
    that time (*cpu*: all threads, since a password storm keeps the bcrypt
    threads busy while the reactor thread waits). A full collection runs
    when that was at most *quiet* of a core at the last *quiet_checks*
    checks in a row and younger collections have moved objects into the
    oldest generation since the last one, or when *max_interval* seconds
    have gone by without one. Garbage that lived long enough to get there
    (the cycles of a closed connection) is freed a few seconds after a busy
    spell ends.
    """

    name = "full-collector"

    def __init__(
        self,
        clock: Any,
        interval: float = FULL_CHECK_INTERVAL,
        quiet: float = FULL_QUIET,
        quiet_checks: int = FULL_QUIET_CHECKS,
        max_interval: float = FULL_MAX_INTERVAL,
        cpu: Callable[[], float] = time.process_time,
        collect: Callable[[], object] = gc.collect,
        pending: Callable[[], int] = lambda: gc.get_count()[2],
    ) -> None:
        self.clock = clock
        self.interval, self.quiet, self.max_interval = interval, quiet, max_interval
        self.quiet_checks = quiet_checks
        self._quiet_for = 0  # checks in a row
        self._cpu, self._collect, self._pending = cpu, collect, pending
        self._loop = LoopingCall(self._check)
        self._loop.clock = clock
        self._last_cpu = 0.0
        self._last_full = 0.0
        self.collections = 0
        self.longest_pause = 0.0  # seconds: the longest full collection so far

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self._last_cpu = self._cpu()
        self._last_full = self.clock.seconds()
        self._loop.start(self.interval, now=False)

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def _check(self) -> None:
        cpu = self._cpu()
        busy = (cpu - self._last_cpu) / self.interval
        self._last_cpu = cpu
        overdue = self.clock.seconds() - self._last_full >= self.max_interval
        self._quiet_for = self._quiet_for + 1 if busy <= self.quiet else 0
        if overdue or (self._quiet_for >= self.quiet_checks and self._pending() > 0):
            started = time.perf_counter()
            self._collect()
            self.longest_pause = max(self.longest_pause, time.perf_counter() - started)
            self.collections += 1
            self._last_full = self.clock.seconds()
            self._quiet_for = 0
            self._last_cpu = self._cpu()  # the collection itself is not load


def bound_reactor_turns(
    reactor: Any,
    max_events: int = MAX_EVENTS_PER_TURN,
    budget: float = TURN_BUDGET,
    clock: Callable[[], float] = time.perf_counter,
) -> bool:
    """Bound the I/O an epoll reactor handles in one turn: by count and by time.

    At most *max_events* are asked of ``epoll_wait``; once *budget* seconds
    have gone, the events not yet handled are kept and handled first on the
    next turn (without waiting on epoll), after timed calls have run.
    How long a turn's I/O took is left on the reactor as
    ``pingchat_turn_io`` (seconds), so that the timed work after it can keep
    the two within :data:`TURN_TOTAL`.
    Returns whether the reactor was changed: other reactors (and the ones the
    tests use) are left alone, and so is an epoll reactor whose internals
    are not what this relies on (:mod:`pingchat.twisted_internals` says so
    in a warning). Handling one event is Twisted's own code.
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not Linux
        return False
    if not isinstance(reactor, EPollReactor):
        return False
    handles = twisted_internals.epoll_loop(reactor)
    if handles is None:  # Twisted's internals are not what this relies on: its own loop
        return False
    poll, selectables, do_read_or_write = handles
    # As Twisted's loop does: errors are logged with the selectable's name.
    call_with_logger = legacy_log.callWithLogger
    held: list[tuple[int, int]] = []

    def do_poll(timeout: float | None) -> None:
        nonlocal held
        if held:
            events, held = held, []
        else:
            try:
                events = poll(-1 if timeout is None else timeout, max_events)
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
        started = clock()
        deadline = started + budget
        try:
            for i, (fd, event) in enumerate(events):
                selectable = selectables.get(fd)
                if selectable is not None:
                    call_with_logger(selectable, do_read_or_write, selectable, fd, event)
                    if clock() > deadline:
                        held = events[i + 1 :]
                        return
        finally:
            reactor.pingchat_turn_io = clock() - started  # type: ignore[attr-defined]

    twisted_internals.replace_turn(reactor, do_poll)
    return True


# Connections accepted per readable event of a listening socket. Twisted
# starts at 100 and adds 20 whenever a burst fills the loop; building a TLS
# connection costs ~0.2 ms here, so a reconnect storm made single accept
# loops of 30-40 ms.
MAX_ACCEPTS_PER_TURN = 16


class _TurnCall:
    """A call that :class:`TurnFlusher` runs at the end of the turn (an IDelayedCall's face)."""

    __slots__ = ("args", "cancelled", "done", "f")

    def __init__(self, f: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.f, self.args = f, args
        self.cancelled = self.done = False

    def cancel(self) -> None:
        self.cancelled = True

    def active(self) -> bool:
        return not (self.cancelled or self.done)


class TurnFlusher:
    """Everything pingchat sends in a reactor turn goes out once, at its end.

    Two kinds of work wait here for the end of the turn: the TLS layers'
    flushes (a turn's writes to a TLS connection become one TLS record:
    pingchat's ``tls.TurnWrites`` register with :meth:`add_layer`, and
    Twisted's own ``BufferingTLSTransport``, given this object as its clock,
    uses :meth:`callLater` with a delay of 0), and then the connections
    written to (:class:`TurnFlushServer`), each sent in one ``send()``.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._calls: list[_TurnCall] = []
        self._layers: list[Any] = []  # TLS layers (pingchat.tls.TurnWrites)
        self._dirty: list[TurnFlushServer] = []
        self._scheduled = False

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:  # noqa: N802
        if delay > 0:
            return self._reactor.callLater(delay, f, *args)
        call = _TurnCall(f, args)
        self._calls.append(call)
        self._schedule()
        return call

    def seconds(self) -> float:
        return float(self._reactor.seconds())

    def add(self, connection: TurnFlushServer) -> None:
        self._dirty.append(connection)
        self._schedule()

    def add_layer(self, layer: Any) -> None:
        """Call ``layer.flush_turn()`` at the end of this turn, before connections are sent."""
        self._layers.append(layer)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        try:
            while self._calls or self._layers or self._dirty:
                calls, self._calls = self._calls, []
                for call in calls:
                    if call.active():
                        call.done = True
                        try:
                            call.f(*call.args)
                        except Exception:
                            log.failure("flushing a connection failed")
                layers, self._layers = self._layers, []
                for layer in layers:
                    try:
                        layer.flush_turn()
                    except Exception:
                        log.failure("flushing a connection failed")
                dirty, self._dirty = self._dirty, []
                for connection in dirty:
                    connection.flush_turn()
        finally:
            self._scheduled = False


_flushers: weakref.WeakKeyDictionary[Any, TurnFlusher] = weakref.WeakKeyDictionary()


def turn_flusher(reactor: Any) -> TurnFlusher:
    """The one :class:`TurnFlusher` of *reactor*."""
    flusher = _flushers.get(reactor)
    if flusher is None:
        flusher = _flushers[reactor] = TurnFlusher(reactor)
    return flusher


class TurnFlushServer(tcp.Server):
    """A server connection whose writes of one turn go out in one ``send()``.

    Twisted's transport buffers every write and asks epoll to say when the
    socket is writable: two ``epoll_ctl`` calls, a wake-up and a dispatch
    for every connection written to in a turn, whatever the socket's state.
    At 400 room messages a second into 200 clients that was most of the
    server's time. Here the writes of a turn are joined and sent at the end
    of the turn, straight away; only what the kernel does not take goes to
    Twisted's buffer and waits for epoll as before (and with it flow
    control: ``pauseProducing`` for a full buffer, errors, closing).
    ``TCP_NODELAY`` is set: a native login's reply went out in two sends and
    waited ~40 ms for the client's delayed ACK.

    Twisted's buffer is read through :mod:`pingchat.twisted_internals`;
    where its assumptions do not hold, listeners make Twisted's own
    ``tcp.Server`` instead (:class:`ServerPort`).
    """

    _turn: list[bytes] | None = None  # written this turn, not yet sent

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flusher = turn_flusher(self.reactor)
        # Writes are already joined per turn: Nagle's algorithm only delays
        # the second send() of a reply until the client's delayed ACK (40 ms).
        self.setTcpNoDelay(True)

    def write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if not data:
            return
        turn = self._turn
        if turn is not None:
            # Begun this turn while connected with nothing waiting for the
            # socket; nothing is put in Twisted's buffer before flush_turn.
            turn.append(data)
        elif twisted_internals.writes_refused(self):
            return
        elif twisted_internals.waiting_for_socket(self):
            super().write(data)  # already waiting for the socket: keep the order
        else:
            self._turn = [data]
            self._flusher.add(self)

    def writeSequence(self, iovec: Any) -> None:  # noqa: N802 - ITransport
        for data in iovec:
            self.write(data)

    def held_bytes(self) -> int:
        """Bytes written this turn and not yet sent (twisted_internals.HeldBytes)."""
        return sum(map(len, self._turn)) if self._turn else 0

    def flush_turn(self) -> None:
        """Send what this turn wrote; leave the rest to Twisted's buffer."""
        if self._turn is None:
            return
        data = b"".join(self._turn)
        self._turn = None
        if twisted_internals.writes_refused(self):
            return
        if not twisted_internals.waiting_for_socket(self):
            sent = twisted_internals.send_now(self, data)
            if sent == len(data):
                return
            data = data[sent:]
        super().write(data)

    def loseConnection(self, *args: Any) -> None:  # noqa: N802 - ITransport
        self.flush_turn()  # what was written before closing still goes out
        super().loseConnection(*args)

    def loseWriteConnection(self) -> None:  # noqa: N802 - IHalfCloseableDescriptor
        self.flush_turn()
        super().loseWriteConnection()


class ServerPort(twisted_internals.ListeningPort):
    """pingchat's TCP listening port.

    It accepts at most :data:`MAX_ACCEPTS_PER_TURN` connections per readable
    event (the rest stay in the kernel's accept queue for the next turn),
    and its connections are :class:`TurnFlushServer` transports; each where
    Twisted's internals are as :mod:`pingchat.twisted_internals` expects.
    """

    max_accepts = MAX_ACCEPTS_PER_TURN
    connection_class = TurnFlushServer


class ServerReactor:
    """The reactor, except that ``listenTCP`` makes a :class:`ServerPort`.

    Pass it to ``serverFromString`` so that ``tcp:`` (and ``tcp6:``) endpoints
    listen with pingchat's port; everything else is the reactor's own.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reactor, name)

    def listenTCP(  # noqa: N802 - IReactorTCP
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> ServerPort:
        p = ServerPort(port, factory, backlog, interface, self.reactor)
        p.startListening()
        return p


def server_reactor(reactor: Any) -> Any:
    """*reactor* wrapped by :class:`ServerReactor` if it is a real one."""
    from twisted.internet.posixbase import PosixReactorBase

    return ServerReactor(reactor) if isinstance(reactor, PosixReactorBase) else reactor
