"""The client's side of the PingChat protocol, and a connection that comes back.

:class:`ClientProtocol` speaks JSON lines over one TLS connection: requests
carry an ``id`` and their replies are matched to them; everything else is an
event. :class:`Connector` keeps the client connected: it checks the server's
certificate with a :class:`~pingchat.client.trust.TrustPolicy` before a byte
is sent, hands the fresh connection to the client to log in or resume, and
after a dropped connection tries again with exponential back-off.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any
from typing import Protocol as TypingProtocol

from cryptography import x509
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TimeoutError,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from pingchat.client.configdir import ServerAddress
from pingchat.client.trust import TrustPolicy, UntrustedServer
from pingchat.native.wire import LineFramer, LineTooLong, encode

MAX_REPLY_LINE = 8 * 1024 * 1024  # a history reply can be much longer than a request


class RequestFailed(Exception):
    """The server answered a request with an error."""

    def __init__(self, op: str, reply: dict[str, Any]) -> None:
        error = reply.get("error") or {}
        self.op = op
        self.code: str = str(error.get("code", "error"))
        self.message: str = str(error.get("message", "request failed"))
        self.reply = reply
        super().__init__(f"{op}: {self.code}: {self.message}")

    @property
    def retry_after(self) -> float:
        value = (self.reply.get("error") or {}).get("retry_after", 1.0)
        return float(value) if isinstance(value, (int, float)) else 1.0


class NotConnected(Exception):
    """There is no connection to send a request on."""


@implementer(IHandshakeListener)
class ClientProtocol(Protocol):
    """One connection to the server: requests, replies and events as JSON lines."""

    def __init__(self, clock: IReactorTime, keepalive: float = 60.0) -> None:
        self.clock = clock
        self.keepalive = keepalive
        self.framer = LineFramer(MAX_REPLY_LINE)
        self.handshake: Deferred[x509.Certificate] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.lost_reason: Failure | None = None
        self.on_event: Callable[[dict[str, Any]], None] = lambda event: None
        self._pending: dict[int, tuple[str, Deferred[dict[str, Any]]]] = {}
        self._next_id = 0
        self._heard = clock.seconds()
        self._keepalive: LoopingCall | None = None
        self.connected_ok = False
        self.closed = False

    def handshakeCompleted(self) -> None:  # noqa: N802
        peer = self.transport.getPeerCertificate()  # type: ignore[union-attr]
        if peer is None:
            self.handshake.errback(UntrustedServer("the server sent no certificate"))
        else:
            self.handshake.callback(peer.to_cryptography())

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008, N802
        self.closed = True
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        pending, self._pending = self._pending, {}
        for op, d in pending.values():
            d.errback(ConnectionLost(f"the connection closed before the reply to {op}"))
        self.lost_reason = reason  # (a Failure given to callback() would run the errbacks)
        self.lost.callback(None)

    def request(self, op: str, **args: Any) -> Deferred[dict[str, Any]]:
        """Send a request; fire with the reply, or fail with :class:`RequestFailed`."""
        if self.closed or self.transport is None:
            return fail(NotConnected(f"not connected (while sending {op})"))
        self._next_id += 1
        request_id = self._next_id
        d: Deferred[dict[str, Any]] = Deferred()
        self._pending[request_id] = (op, d)
        self.transport.write(encode({"id": request_id, "op": op, **args}))
        return d

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self._heard = self.clock.seconds()
        for line in self.framer.feed(data):
            if isinstance(line, LineTooLong) or not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "event" in message:
            self.on_event(message)
            return
        request_id = message.get("id")
        found = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if found is None:
            # An error the server could not tie to a request (e.g. line_too_long).
            if message.get("ok") is False:
                self.on_event({"event": "error", **message})
            return
        op, d = found
        if message.get("ok"):
            d.callback(message)
        else:
            d.errback(RequestFailed(op, message))

    def start_keepalive(self) -> None:
        """Ping when the line has been quiet; drop a connection that stopped answering."""
        if self._keepalive is None and self.keepalive > 0:
            self._keepalive = LoopingCall(self._check_alive)
            self._keepalive.clock = self.clock
            self._keepalive.start(self.keepalive / 2, now=False)

    def _check_alive(self) -> None:
        quiet = self.clock.seconds() - self._heard
        if quiet >= self.keepalive * 1.5:
            self.transport.abortConnection()  # type: ignore[union-attr]
        elif quiet >= self.keepalive / 2:
            self.request("ping").addErrback(lambda _: None)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.loseConnection()


class Backoff:
    """Delays between reconnection attempts: doubling, capped, with jitter."""

    def __init__(self, initial: float = 1.0, maximum: float = 30.0, factor: float = 2.0,
                 jitter: Callable[[float], float] | None = None) -> None:
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self.jitter = jitter or (lambda d: d * random.uniform(0.8, 1.2))
        self.attempts = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return round(self.jitter(delay), 1)

    def reset(self) -> None:
        self.attempts = 0


class ConnectorClient(TypingProtocol):
    """What the :class:`Connector` tells the client and asks of it."""

    def ask_trust(self, question: str) -> Deferred[bool]: ...

    def trusted(self, note: str, first: bool) -> None: ...

    def session_started(self, proto: ClientProtocol) -> Deferred[Any]: ...

    def event(self, proto: ClientProtocol, event: dict[str, Any]) -> None: ...

    def state_changed(self, state: str, detail: str) -> None: ...

    def refused(self, message: str) -> None: ...


class Connector:
    """Keeps one verified, logged-in connection to the server, reconnecting when it drops.

    States: ``connecting``, ``verifying``, ``logging in``, ``connected``,
    ``waiting`` (to reconnect), ``offline`` (stopped), ``refused`` (the server
    failed the trust check: the client will not reconnect on its own).
    """

    def __init__(
        self,
        reactor: Any,
        server: ServerAddress,
        trust: TrustPolicy,
        client: ConnectorClient,
        backoff: Backoff | None = None,
        endpoint: Callable[[], IStreamClientEndpoint] | None = None,
        keepalive: float = 60.0,
    ) -> None:
        self.reactor = reactor
        self.server = server
        self.trust = trust
        self.client = client
        self.backoff = backoff or Backoff()
        self._endpoint = endpoint or self._tls_endpoint
        self.keepalive = keepalive
        self.proto: ClientProtocol | None = None
        self.state = "offline"
        self.ever_connected = False
        self._stopping = False
        self._retry: IDelayedCall | None = None
        self._trusted_once = False
        self._now = False
        self._open: set[ClientProtocol] = set()
        self._waiting_closed: list[Deferred[None]] = []

    def _tls_endpoint(self) -> IStreamClientEndpoint:
        tcp = HostnameEndpoint(self.reactor, self.server.host, self.server.port, timeout=15)
        return wrapClientTLS(self.trust.creator(self.server), tcp)

    def _set(self, state: str, detail: str = "") -> None:
        self.state = state
        self.client.state_changed(state, detail)

    @property
    def ready(self) -> bool:
        return self.state == "connected" and self.proto is not None

    def start(self) -> None:
        self._stopping = False
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        if self._stopping:
            return
        self._set("connecting", str(self.server))

        def build() -> ClientProtocol:
            return ClientProtocol(self.reactor, self.keepalive)

        d = self._endpoint().connect(Factory.forProtocol(build))
        d.addCallbacks(self._connected, self._connect_failed)

    def _connect_failed(self, failure: Failure) -> None:
        self._gone(f"could not connect to {self.server}: {_reason(failure)}")

    def _connected(self, proto: Any) -> None:
        assert isinstance(proto, ClientProtocol)
        if self._stopping:
            proto.close()
            return
        self.proto = proto
        self._open.add(proto)
        proto.on_event = lambda event: self.client.event(proto, event)
        self._set("verifying", str(self.server))
        proto.handshake.addCallbacks(lambda cert: self._verify(proto, cert), lambda f: None)
        proto.lost.addCallback(
            lambda _: self._lost(proto, proto.lost_reason or Failure(ConnectionDone()))
        )

    def _verify(self, proto: ClientProtocol, cert: x509.Certificate) -> None:
        d = maybeDeferred(self.trust.verify, self.server, cert, self.client.ask_trust)

        def trusted(note: str) -> Deferred[Any] | None:
            if proto.closed:
                return None
            self.client.trusted(note, not self._trusted_once)
            self._trusted_once = True
            self._set("logging in", str(self.server))
            return self.client.session_started(proto).addCallback(logged_in)

        def logged_in(_: object) -> None:
            if not proto.closed:
                self.backoff.reset()
                self.ever_connected = True
                proto.start_keepalive()
                self._set("connected", str(self.server))

        def untrusted(failure: Failure) -> None:
            failure.trap(UntrustedServer)
            self._stopping = True
            self.state = "refused"
            proto.close()
            self.client.refused(str(failure.value))
            self._set("refused", str(failure.value))

        def broken(failure: Failure) -> None:
            if not proto.closed:
                self.client.state_changed("error", _reason(failure))
                proto.close()

        d.addCallback(trusted).addErrback(untrusted).addErrback(broken)

    def _lost(self, proto: ClientProtocol, reason: Failure) -> None:
        if proto is self.proto:
            self.proto = None
        self._open.discard(proto)
        if not self._open:
            waiting, self._waiting_closed = self._waiting_closed, []
            for d in waiting:
                d.callback(None)
        if self.state == "refused":
            return
        if self.state in ("connecting", "verifying") and reason.check(
            SSL.Error, VerificationError
        ):
            # The handshake itself failed: with --ca, the certificate did not
            # verify. Trying again would only fail the same way.
            message = f"TLS with {self.server} failed: {_reason(reason)}"
            self._stopping = True
            self.state = "refused"
            self.client.refused(message)
            self._set("refused", message)
            return
        self._gone(f"connection to {self.server} lost: {_reason(reason)}")

    def _gone(self, why: str) -> None:
        if self._stopping:
            self._set("offline", "")
            return
        if not self.ever_connected:
            self._stopping = True
            self._set("failed", why)
            return
        if self._now:
            self._now = False
            self._connect()
            return
        delay = self.backoff.next()
        self._set("waiting", f"{why}; reconnecting in {delay:g}s")
        self._retry = self.reactor.callLater(delay, self._connect)

    def reconnect_now(self) -> None:
        """Connect again at once (after a server goodbye, or to skip the wait)."""
        self._stopping = False
        self.backoff.reset()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
            self._retry = None
        if self.proto is not None:
            self._now = True
            self.proto.close()  # _lost makes the new attempt
        elif self.state not in ("connecting", "verifying", "logging in"):
            self._connect()

    def closed(self) -> Deferred[None]:
        """Fires once no connection is open (at once if none is)."""
        if not self._open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting_closed.append(d)
        return d

    def stop(self) -> None:
        self._stopping = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self.proto is not None:
            self.proto.close()
        else:
            self._set("offline", "")


def _reason(failure: Failure) -> str:
    """A short, human explanation of why a connection failed."""
    value = failure.value
    if isinstance(value, SSL.Error):
        details = []
        if value.args and isinstance(value.args[0], list):
            details = [e[2] for e in value.args[0] if isinstance(e, tuple) and len(e) > 2]
        return "; ".join(str(d) for d in details) or "TLS error"
    if isinstance(value, VerificationError):
        return f"the certificate does not match the host name ({value})"
    for kind, text in (
        (ConnectionRefusedError, "connection refused (is the server running?)"),
        (DNSLookupError, "unknown host name"),
        (TimeoutError, "no answer (timed out)"),
        (ConnectionDone, "the server closed the connection"),
        (ConnectionLost, "the connection was lost"),
    ):
        if isinstance(value, kind):
            return text
    return str(value).strip() or type(value).__name__
