"""What the manhole's helpers share: the administrator they act for, and what they return.

Each group of helpers (:mod:`~pingchat.admin.inspection`,
:mod:`~pingchat.admin.users`, :mod:`~pingchat.admin.rooms`) is a
:class:`Toolbox` for one administrator's session; :class:`~pingchat.admin.namespace.AdminTools`
puts them together at the prompt. What they return prints well there
(:class:`Done`, :class:`Table`, :class:`Report`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime

from pingchat.chat.service import ChatService
from pingchat.errors import NoSuchUser
from pingchat.model import check_account_name
from pingchat.server import Server

# -- values that print nicely --------------------------------------------------------


class Done(str):
    """A one-line outcome; shown without quotes at the prompt."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


class Table(list[dict[str, Any]]):
    """Rows of a listing: a list of dicts that prints as aligned columns."""

    def __init__(self, columns: Sequence[str], rows: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(rows)
        self.columns = tuple(columns)

    def __repr__(self) -> str:
        if not self:
            return "(none)"
        cells = [[_cell(row.get(c)) for c in self.columns] for row in self]
        widths = [
            max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(self.columns)
        ]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(line.rstrip() for line in lines)


class Report(dict[str, Any]):
    """A mapping that prints as ``key: value`` lines (nested mappings inline)."""

    def __repr__(self) -> str:
        width = max((len(k) for k in self), default=0)
        return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in self.items())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


# -- measurements --------------------------------------------------------------------


class RateMeter:
    """Samples the chat service's message counters to report rates per second.

    :meth:`sample` runs every few seconds (a ``TimerService`` does it); the
    rate is taken over the samples of the last *window* seconds.
    """

    def __init__(
        self, clock: IReactorTime, counters: Callable[[], tuple[int, int]], window: float = 60.0
    ) -> None:
        self.clock = clock
        self.counters = counters
        self.window = window
        self.started = clock.seconds()
        self.samples: collections.deque[tuple[float, int, int]] = collections.deque()
        self.sample()

    def sample(self) -> None:
        now = self.clock.seconds()
        self.samples.append((now, *self.counters()))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def rates(self) -> tuple[float, float]:
        """Messages stored and delivered per second over the recent window."""
        now = self.clock.seconds()
        stored, delivered = self.counters()
        then, stored0, delivered0 = self.samples[0]
        for sample in self.samples:
            if now - sample[0] <= self.window:
                then, stored0, delivered0 = sample
                break
        elapsed = now - then
        if elapsed <= 0:
            return 0.0, 0.0
        return (stored - stored0) / elapsed, (delivered - delivered0) / elapsed


# -- the administrator's context -------------------------------------------------------


class Toolbox:
    """A group of helpers of one administrator's manhole session.

    *actor* is the administrator's account name: it goes into the audit log
    with every change made here.
    """

    helpers: tuple[str, ...] = ()  # the names it gives the prompt, in the order of help()

    def __init__(
        self,
        server: Server,
        actor: str,
        clock: IReactorTime,
        meter: RateMeter | None = None,
        address: str | None = None,
    ) -> None:
        self.server = server
        self.actor = actor
        self.clock = clock
        self.meter = meter
        self.address = address

    @property
    def chat(self) -> ChatService:
        return self.server.chat

    @property
    def store(self) -> Any:
        return self.server.store

    def _audit(self, event: str, account: str | None = None, **detail: Any) -> None:
        self.server.audit(
            event, account=account, actor=self.actor, address=self.address, **detail
        )

    def _connected(self, user: str) -> list[Any]:
        check_account_name(user)
        sessions = self.chat.sessions_of(user)
        if not sessions:
            raise NoSuchUser(f"{user} is not connected")
        return sessions  # type: ignore[no-any-return]
