"""The parts of Twisted's HTTP server that the WebSocket upgrade relies on.

Twisted's public ``WebSocketResource`` cannot serve ``/irc``: it accepts
every handshake without a subprotocol (browsers that offered
``text.ircv3.net`` then fail the connection), buffers a fragmented message
without a size limit, and its transport's ``attachProducer`` registers on
the TCP transport, where the ``HTTPChannel`` is already registered
(``RuntimeError``). So the door does its own handshake with wsproto and
takes over the HTTP connection the way ``WebSocketResource`` does. What that
takes from Twisted beyond its public API is listed here, one assumption
each, with a check function; ``tests/web/test_twisted_ws.py`` tests each
assumption and names it when it fails. Verified with Twisted 25.5 to 26.10.

ASSUMPTION 1 (private): ``HTTPChannel._protocolUpgradeForWebsockets(protocol)``
    hands the channel's connection to *protocol*: later bytes go to
    ``protocol.dataReceived``, the connection's end to
    ``protocol.connectionLost``, and ``protocol.makeConnection`` is called
    with the channel's transport. Without it, :func:`upgrade` does the same by
    hand (what the method does in the versions above).

ASSUMPTION 2 (private behaviour): while a request is being handled the
    channel's idle timeout is off (``HTTPChannel.allContentReceived`` calls
    ``setTimeout(None)``); the upgrade request is never finished, so the
    Site's timeout never cuts a WebSocket.

ASSUMPTION 3 (documented behaviour, relied on in an unusual state): a
    producer registered with ``Request.registerProducer`` is paused and
    resumed by the channel when the transport's buffer fills and drains,
    also after the upgrade (``HTTPChannel.pauseProducing`` forwards to it).
"""

from __future__ import annotations

import inspect
from typing import Any

from twisted.internet.interfaces import IProtocol
from twisted.web.http import HTTPChannel

UPGRADE_METHOD = "_protocolUpgradeForWebsockets"


class AssumptionFailed(AssertionError):
    """Twisted no longer does what this module relies on."""


def upgrade(channel: Any, protocol: IProtocol) -> None:
    """Hand *channel*'s connection to *protocol* (ASSUMPTION 1)."""
    method = getattr(channel, UPGRADE_METHOD, None)
    if method is not None:
        method(protocol)
        return
    channel.dataReceived = protocol.dataReceived
    channel.connectionLost = protocol.connectionLost
    protocol.makeConnection(channel.transport)


def check_upgrade_method() -> None:
    """ASSUMPTION 1: the private method exists and takes one protocol."""
    method = getattr(HTTPChannel, UPGRADE_METHOD, None)
    if method is None:
        raise AssumptionFailed(
            f"ASSUMPTION 1: HTTPChannel.{UPGRADE_METHOD} is gone (upgrade() falls back)"
        )
    params = list(inspect.signature(method).parameters)
    if len(params) != 2:
        raise AssumptionFailed(
            f"ASSUMPTION 1: HTTPChannel.{UPGRADE_METHOD} takes {params}, not (self, protocol)"
        )


def check_timeout_during_request() -> None:
    """ASSUMPTION 2: the channel has a ``setTimeout`` and turns it off per request."""
    source = inspect.getsource(HTTPChannel.allContentReceived)
    if not hasattr(HTTPChannel, "setTimeout") or "setTimeout(None)" not in source:
        raise AssumptionFailed(
            "ASSUMPTION 2: HTTPChannel.allContentReceived no longer turns the idle"
            " timeout off while a request is handled"
        )


def check_producer_forwarding() -> None:
    """ASSUMPTION 3: the channel is a push producer that forwards to a request's producer."""
    for name in ("registerProducer", "unregisterProducer", "pauseProducing", "resumeProducing"):
        if not callable(getattr(HTTPChannel, name, None)):
            raise AssumptionFailed(f"ASSUMPTION 3: HTTPChannel.{name} is gone")


def check_all() -> None:
    check_upgrade_method()
    check_timeout_during_request()
    check_producer_forwarding()
