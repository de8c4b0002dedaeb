"""Log lines of one kind that come in the same reactor turn, written as one.

Twisted's text log observer (the one ``twistd`` writes with) spends 55-75 µs
of the reactor's time on every event: the timestamp and the format string are
formatted in Python and each line is flushed. One line per session is nothing
on a quiet server, but a reconnect storm of 5,000 clients wrote 5,000
"session started" lines, about a sixth of what each resume cost the reactor
(``bench`` storm case). :class:`TurnLines` keeps what one turn adds and logs
it once, at the end of the turn: alone, as the usual line; several, as one
line that names them all.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class TurnLines:
    """Info lines of one kind, grouped per reactor turn.

    *one* is the format of a line alone (Twisted's ``{field}`` syntax, with
    the fields given to :meth:`__call__`); *entry* formats each of several
    with ``str.format``, and *many* is their line, with ``{count}`` and
    ``{entries}`` (the entries joined by ``"; "``). Structured observers
    also get every entry's fields, as ``entry_fields``.
    """

    def __init__(self, log: Logger, clock: IReactorTime, one: str, many: str, entry: str) -> None:
        self.log = log
        self.clock = clock
        self.one = one
        self.many = many
        self.entry = entry
        self._pending: list[dict[str, Any]] = []
        self._call: IDelayedCall | None = None

    def __call__(self, **fields: Any) -> None:
        if self._call is None:
            self._call = self.clock.callLater(0, self.flush)
        self._pending.append(fields)

    def flush(self) -> None:
        """Log what is pending now (the end of the turn, or the service stopping)."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        pending, self._pending = self._pending, []
        if len(pending) == 1:
            self.log.info(self.one, **pending[0])
        elif pending:
            self.log.info(
                self.many,
                count=len(pending),
                entries="; ".join(self.entry.format(**fields) for fields in pending),
                entry_fields=pending,
            )
