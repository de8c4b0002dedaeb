"""Wiring of the SSH manhole (filled in by the manhole work)."""

from __future__ import annotations

from typing import Any


def attach_manhole(server: Any, reactor: Any) -> None:
    """Attach the ``--manhole`` listeners to ``server.top``."""
