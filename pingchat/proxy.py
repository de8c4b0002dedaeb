"""The PROXY protocol on a listener (``haproxy:``): the client's address from the balancer.

A load balancer in TCP mode (HAProxy's ``send-proxy`` or ``send-proxy-v2``)
connects to a node on its own behalf and writes, before anything of the
client's, a header that names the client's address. Twisted reads it
(:func:`twisted.protocols.haproxy.proxyEndpoint`, versions 1 and 2): the
connection's ``getPeer`` is then the client's, for the audit log, the
throttles, IRC hostmasks and everything else that asks. pingchat adds what
Twisted leaves to its user:

* *Only the balancer.* The header is believed, so anyone who can reach a
  PROXY listener could claim any address. A connection whose real peer is
  not in ``--trusted-proxy`` is closed as it is accepted, before a byte of
  it is read; one line per address and minute says so (at most
  :data:`NAMED_REFUSALS` a minute, the rest counted).
* *The door starts after the header.* Twisted's wrapper connects the door at
  once, when ``getPeer`` is still the balancer's, and the doors note the
  address as they start. Here the door (the TLS layer on ``haproxy:ssl:``) is
  built and connected when the first byte after the header arrives: the
  client speaks first on every door (TLS ClientHello, IRC ``NICK``, HTTP).
* *Nothing waits forever.* A connection that has not sent a header and a
  first byte after it within :data:`HEADER_TIMEOUT` seconds is closed.
  A header that is not a PROXY header closes the connection (Twisted).

The layers of a connection: TCP, then the PROXY wrapper, then TLS for
``haproxy:ssl:``, then the door. The header comes in clear before the TLS
handshake, as HAProxy sends it; Twisted's own ``haproxy:ssl:`` string would
put TLS first, which is why :func:`pingchat.tls.server_endpoint` reads the
prefix itself and never hands it to Twisted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any, Protocol

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Protocol as BaseProtocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.haproxy import proxyEndpoint
from twisted.protocols.policies import WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

PREFIX = "haproxy"
# The endpoints a PROXY header may come in on: a balancer reaches a node over TCP.
UNDER_PROXY = ("tcp", "tcp6", "ssl")
# Seconds from the connection to its first byte after the header.
HEADER_TIMEOUT = 60.0
# Refused connections: addresses named in the log per minute; the rest are counted.
REFUSAL_WINDOW = 60.0
NAMED_REFUSALS = 20
TRUST = "which is not a --trusted-proxy (only the balancer may use a PROXY listener)"

log = Logger()


class PeerCheck(Protocol):
    """Who may connect to a PROXY listener (``--trusted-proxy``:
    :class:`pingchat.web.policy.TrustedProxies`)."""

    @property
    def networks(self) -> Sequence[object]: ...

    def trusts(self, host: str | None) -> bool: ...


def behind_proxy(description: str) -> tuple[bool, str]:
    """Whether *description* is a PROXY listener (``haproxy:…``), and the endpoint under it.

    The prefix is read in any case, as Twisted's plugin lookup would read it.
    """
    head, sep, rest = description.partition(":")
    if sep and head.strip().lower() == PREFIX:
        return True, rest
    return False, description


class Refusals:
    """The log of connections refused by one PROXY listener, bounded.

    Each address is named at most once per :data:`REFUSAL_WINDOW`, and no
    more than :data:`NAMED_REFUSALS` addresses per window; what is not named
    is counted and said with the next line.
    """

    def __init__(self, clock: IReactorTime, listener: str) -> None:
        self.clock = clock
        self.listener = listener
        self.total = 0
        self._named: set[str | None] = set()
        self._window_ends = float("-inf")
        self._unnamed = 0

    def refused(self, host: str | None, why: str = TRUST) -> None:
        """Log (within bounds) that a connection from *host* was closed, and *why*."""
        self.total += 1
        now = self.clock.seconds()
        if now >= self._window_ends:
            self._named.clear()
            self._window_ends = now + REFUSAL_WINDOW
        if host in self._named or len(self._named) >= NAMED_REFUSALS:
            self._unnamed += 1
            return
        self._named.add(host)
        more, self._unnamed = self._unnamed, 0
        log.warn(
            "{listener}: refused a connection from {address}, {why}{more}",
            listener=self.listener,
            address=host,
            why=why,
            more=f"; {more} other refused connection(s) not logged" if more else "",
        )


class TrustedPeersOnly(WrappingFactory):  # type: ignore[type-arg]
    """Builds the wrapped factory's protocol only for a peer *proxies* trusts.

    For any other peer ``buildProtocol`` returns None: the port closes the
    socket at once, nothing of it read.
    """

    def __init__(self, wrapped: IProtocolFactory, proxies: PeerCheck, refusals: Refusals) -> None:
        super().__init__(wrapped)
        self.proxies = proxies
        self.refusals = refusals

    def buildProtocol(self, addr: IAddress | None) -> Any:  # noqa: N802 - IProtocolFactory
        host = getattr(addr, "host", None)
        if not self.proxies.trusts(host):
            self.refusals.refused(host)
            return None
        return self.wrappedFactory.buildProtocol(addr)

    def logPrefix(self) -> str:  # noqa: N802 - ILoggingContext
        return _log_prefix(self.wrappedFactory)


@implementer(IStreamServerEndpoint)
class _TrustedPeersEndpoint:
    def __init__(self, wrapped: IStreamServerEndpoint, proxies: PeerCheck, refusals: Refusals):
        self.wrapped = wrapped
        self.proxies = proxies
        self.refusals = refusals

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:  # noqa: N803
        return self.wrapped.listen(TrustedPeersOnly(protocolFactory, self.proxies, self.refusals))


class AwaitingHeader(BaseProtocol):
    """Under the PROXY wrapper, the door's stand-in until the header has been read.

    Twisted's wrapper passes on only what follows the header, so the first
    data here comes after it: the door's protocol is built then, for the
    address the header named, and connected to the wrapper (its transport,
    whose ``getPeer`` is now the client). Later data is handed on.
    """

    factory: AfterHeader
    protocol: IProtocol | None = None
    _timeout: IDelayedCall | None = None

    def __init__(self, factory: AfterHeader) -> None:
        self.factory = factory

    def connectionMade(self) -> None:  # noqa: N802 - IProtocol
        self._timeout = self.factory.clock.callLater(HEADER_TIMEOUT, self._timed_out)

    def _timed_out(self) -> None:
        self._timeout = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _stop_timeout(self) -> None:
        if self._timeout is not None:
            if self._timeout.active():
                self._timeout.cancel()
            self._timeout = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - IProtocol
        protocol = self.protocol
        if protocol is None:
            self._stop_timeout()
            wrapper = self.transport
            assert wrapper is not None
            peer = wrapper.getPeer()
            if not _is_ip(peer):
                # A Unix socket's path, or what Twisted's version 1 parser took for an address.
                self.factory.refusals.refused(
                    wrapper.transport.getPeer().host,  # type: ignore[attr-defined]
                    f"whose PROXY header names no IP address ({peer})",
                )
                wrapper.loseConnection()
                return
            protocol = self.factory.wrappedFactory.buildProtocol(peer)
            if protocol is None:
                wrapper.loseConnection()
                return
            self.protocol = protocol
            protocol.makeConnection(wrapper)
        protocol.dataReceived(data)

    def logPrefix(self) -> str:  # noqa: N802 - ILoggingContext
        return _log_prefix(self.protocol if self.protocol is not None else self.factory)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._stop_timeout()
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connectionLost(reason)


class AfterHeader(WrappingFactory):  # type: ignore[type-arg]
    """The wrapped factory, whose protocols start once the PROXY header is read."""

    def __init__(self, wrapped: IProtocolFactory, clock: IReactorTime, refusals: Refusals) -> None:
        super().__init__(wrapped)
        self.clock = clock
        self.refusals = refusals

    def buildProtocol(self, addr: IAddress | None) -> Any:  # noqa: N802 - IProtocolFactory
        return AwaitingHeader(self)

    def logPrefix(self) -> str:  # noqa: N802 - ILoggingContext
        return _log_prefix(self.wrappedFactory)


def _is_ip(peer: IAddress) -> bool:
    if not isinstance(peer, (IPv4Address, IPv6Address)):
        return False
    try:
        ipaddress.ip_address(peer.host)
    except ValueError:
        return False
    return True


def _log_prefix(factory: Any) -> str:
    prefix = getattr(factory, "logPrefix", None)
    return str(prefix()) if callable(prefix) else type(factory).__name__


@implementer(IStreamServerEndpoint)
class ProxyListenerEndpoint:
    """*wrapped* (a TCP endpoint) speaking the PROXY protocol, for *proxies*' peers only.

    ``listen(factory)`` listens with, from the socket up: the trust check,
    Twisted's PROXY wrapper, :class:`AfterHeader`, then *factory* (for
    ``haproxy:ssl:``, the TLS factory wrapping the door's).
    """

    def __init__(
        self,
        wrapped: IStreamServerEndpoint,
        proxies: PeerCheck,
        clock: IReactorTime,
        listener: str,
    ) -> None:
        self.clock = clock
        self.refusals = Refusals(clock, listener)
        self._proxied = proxyEndpoint(_TrustedPeersEndpoint(wrapped, proxies, self.refusals))

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:  # noqa: N803
        listening: Deferred[IListeningPort] = self._proxied.listen(
            AfterHeader(protocolFactory, self.clock, self.refusals)
        )
        return listening
