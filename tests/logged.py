"""The errors a server logs while a test runs: a test of bad input asserts
that there are none (no traceback, nothing at error or critical level)."""

from __future__ import annotations

from typing import Any

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase


def errors_logged(case: SynchronousTestCase) -> list[dict[str, Any]]:
    """A list that fills with the error events logged until *case* ends."""
    logged: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event or event.get("log_level") in (LogLevel.error, LogLevel.critical):
            logged.append(event)

    globalLogPublisher.addObserver(observe)
    case.addCleanup(globalLogPublisher.removeObserver, observe)
    return logged
