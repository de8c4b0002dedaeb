"""Wiring of the IRC gateway's listeners (filled in by the IRC gateway work)."""

from __future__ import annotations

from typing import Any


def attach_irc(server: Any, reactor: Any) -> None:
    """Attach the ``--irc`` and ``--ircs`` listeners to ``server.top``."""
