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
  (``gc.freeze``) and collects the young generation less often. Reference
  counting still frees almost everything at once; the collector is only for
  cycles.
"""

from __future__ import annotations

import errno
import gc
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.python import log as legacy_log

# Ready descriptors handled per reactor turn. A turn that reads a line from
# each costs roughly 0.1-0.3 ms per descriptor on the benchmark machine, so
# 64 keeps a turn around 10 ms at worst while a busy server still takes many
# descriptors per epoll_wait call.
MAX_EVENTS_PER_TURN = 64

# Time one turn may spend on I/O before timers get their turn. A single
# event can overrun it (a TLS handshake costs ~1-2 ms here); the budget is
# checked after each.
TURN_BUDGET = 0.008

# Allocations between collections of the youngest generation (default 700).
GC_GEN0_THRESHOLD = 20_000


def tune_gc(gen0: int = GC_GEN0_THRESHOLD) -> None:
    """Freeze start-up objects and make young collections rarer."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)


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
    Returns whether the reactor was changed: other reactors (and the ones the
    tests use) are left alone. Handling one event is Twisted's own code.
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not Linux
        return False
    if not isinstance(reactor, EPollReactor):
        return False
    poller = reactor._poller
    selectables = reactor._selectables
    do_read_or_write = reactor._doReadOrWrite
    # As Twisted's loop does: errors are logged with the selectable's name.
    call_with_logger = legacy_log.callWithLogger
    held: list[tuple[int, int]] = []

    def do_poll(timeout: float | None) -> None:
        nonlocal held
        if held:
            events, held = held, []
        else:
            try:
                events = poller.poll(-1 if timeout is None else timeout, max_events)
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
        deadline = clock() + budget
        for i, (fd, event) in enumerate(events):
            selectable = selectables.get(fd)
            if selectable is not None:
                call_with_logger(selectable, do_read_or_write, selectable, fd, event)
                if clock() > deadline:
                    held = events[i + 1 :]
                    return

    reactor.doIteration = reactor.doPoll = do_poll  # type: ignore[method-assign]
    return True


# Connections accepted per readable event of a listening socket. Twisted
# starts at 100 and adds 20 whenever a burst fills the loop; building a TLS
# connection costs ~0.2 ms here, so a reconnect storm made single accept
# loops of 30-40 ms.
MAX_ACCEPTS_PER_TURN = 16


class BoundedAcceptPort(tcp.Port):
    """A TCP listening port that accepts at most :data:`MAX_ACCEPTS_PER_TURN` at once.

    The rest stay in the kernel's accept queue for the next turn.
    """

    max_accepts = MAX_ACCEPTS_PER_TURN
    _number_accepts = MAX_ACCEPTS_PER_TURN

    @property  # type: ignore[override]
    def numberAccepts(self) -> int:  # noqa: N802 - Twisted's attribute
        return self._number_accepts

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:  # noqa: N802
        self._number_accepts = max(1, min(value, self.max_accepts))


class BoundedAcceptReactor:
    """The reactor, except that ``listenTCP`` makes a :class:`BoundedAcceptPort`.

    Pass it to ``serverFromString`` so that ``tcp:`` (and ``tcp6:``) endpoints
    listen with bounded accept loops; everything else is the reactor's own.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(  # noqa: N802 - IReactorTCP
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> BoundedAcceptPort:
        p = BoundedAcceptPort(port, factory, backlog, interface, self._reactor)
        p.startListening()
        return p


def bounded_accepts(reactor: Any) -> Any:
    """*reactor* wrapped by :class:`BoundedAcceptReactor` if it is a real one."""
    from twisted.internet.posixbase import PosixReactorBase

    return BoundedAcceptReactor(reactor) if isinstance(reactor, PosixReactorBase) else reactor
