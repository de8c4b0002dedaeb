"""The fence's machinery: assumptions, the shortcuts resting on them, and which hold.

No private name is touched here; the probes are in :mod:`.probes`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs
from twisted.logger import Logger

log = Logger()


class Broken(Exception):
    """An assumption about a library's internals does not hold; the message says how."""


def require(condition: object, message: str) -> None:
    if not condition:
        raise Broken(message)


@attrs.frozen
class Assumption:
    """Something pingchat relies on that a library does not promise, and its probe."""

    name: str
    probe: Callable[[], None] = attrs.field(repr=False)


@attrs.frozen
class Shortcut:
    """A path through internals (a faster one, or one with no public way to take it),
    taken only while all its assumptions hold."""

    name: str
    assumptions: tuple[Assumption, ...]
    fallback: str  # what Twisted's own path costs


def versions() -> str:
    """The versions of the libraries whose internals are used, for messages."""
    import cryptography
    import OpenSSL

    import twisted

    return (
        f"Twisted {twisted.__version__}, pyOpenSSL {OpenSSL.__version__},"
        f" cryptography {cryptography.__version__}"
    )


def run_probe(assumption: Assumption) -> str | None:
    """None if *assumption* holds, else what its probe found."""
    try:
        assumption.probe()
    except Broken as e:
        return str(e)
    except Exception as e:  # anything a changed library raises means "does not hold"
        return f"{type(e).__name__}: {e}"
    return None


class Fence:
    """Which assumptions hold in this process: each probed once, each failure logged once."""

    def __init__(self, shortcuts: Iterable[Shortcut]) -> None:
        self.shortcuts = tuple(shortcuts)
        self.problems: dict[str, str | None] = {}

    def problem(self, assumption: Assumption) -> str | None:
        """Why *assumption* does not hold (probing it the first time), or None."""
        if assumption.name not in self.problems:
            reason = run_probe(assumption)
            self.problems[assumption.name] = reason
            if reason is not None:
                self._warn(assumption, reason)
        return self.problems[assumption.name]

    def fail(self, assumption: Assumption, reason: str) -> None:
        """Record that *assumption* turned out not to hold on a live object."""
        if self.problems.get(assumption.name) is None:
            self.problems[assumption.name] = reason
            self._warn(assumption, reason)

    def enabled(self, shortcut: Shortcut) -> bool:
        """Whether *shortcut* may be taken: every one of its assumptions holds."""
        found = [self.problem(a) for a in shortcut.assumptions]
        return all(p is None for p in found)

    def check_all(self, skip: Iterable[Shortcut] = ()) -> list[str]:
        """Probe every assumption of every shortcut but *skip*; the names that do not hold."""
        skipped = set(skip)
        for shortcut in self.shortcuts:
            if shortcut not in skipped:
                self.enabled(shortcut)
        return sorted(name for name, p in self.problems.items() if p is not None)

    def _warn(self, assumption: Assumption, reason: str) -> None:
        affected = [s for s in self.shortcuts if assumption in s.assumptions]
        log.warn(
            "{versions}: pingchat's assumption {assumption} about their internals does not"
            " hold ({reason}); using their own path instead of: {shortcuts}",
            versions=versions(),
            assumption=assumption.name,
            reason=reason,
            shortcuts="; ".join(f"{s.name} ({s.fallback})" for s in affected),
        )
