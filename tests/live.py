"""A real pingchat server in-process for integration tests: the writer thread,
the bcrypt pool and TLS on 127.0.0.1:0. Blocking stdlib clients run in a
thread (``deferToThread``) while the reactor runs; cleanup waits until the
server has seen every connection close, so no test leaves a dirty reactor."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import blockingCallFromThread
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial.unittest import TestCase

from pingchat.config import Settings
from pingchat.tap import build
from pingchat.tls import ensure_certificate, server_endpoint, server_options
from pingchat.web.policy import TrustedProxies
from tests.client import LineClient, proxy_v1

PASSWORD = "pass word 1"


def held_by(transport: Any) -> int:
    """Bytes a server connection's transports hold unsent, read here independently.

    Down through the layers: pingchat's TLS turn buffer and TLS's own
    buffer, a PROXY listener's wrapper (which holds nothing), then the TCP
    transport's write buffers and its end-of-turn buffer. (A wrapper
    forwards unknown attributes to the transport below it: each layer is
    recognised by its class.)
    """
    total = 0
    while isinstance(transport, ProtocolWrapper):
        if isinstance(transport, TLSMemoryBIOProtocol):
            total += sum(len(b) for b in getattr(transport._aggregator, "_buffer", None) or ())
            total += sum(len(b) for b in transport._appSendBuffer)
        transport = transport.transport
    assert isinstance(transport, FileDescriptor), transport
    total += len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return total + sum(len(b) for b in getattr(transport, "_turn", None) or ())


def watch_output(proto: Any) -> list[int]:
    """Measure what *proto*'s transports hold after each of its writes.

    Returns a one-item list holding the largest measure so far.
    """
    peak = [0]
    write = proto.write_bounded

    def measured(data: bytes) -> None:
        write(data)
        peak[0] = max(peak[0], held_by(proto.transport))

    proto.write_bounded = measured
    return peak


class LiveServer(TestCase):
    """A real server (threads and all) listening with TLS on 127.0.0.1:0.

    With :attr:`proxied`, its listener is a PROXY listener
    (``haproxy:ssl:``) for 127.0.0.1, and its clients send a header that
    names :attr:`claimed` before TLS, as a balancer would.
    """

    max_backlog = 1024 * 1024  # the default bound
    proxied = False
    claimed = "203.0.113.7"
    proxies = TrustedProxies.parse(["127.0.0.1"])
    metrics: tuple[str, ...] = ()  # no metrics listener, unless a test asks

    @inlineCallbacks
    def setUp(self) -> Any:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-live-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        settings = Settings(
            data_dir=self.dir,
            chat=(),
            irc=(),
            ircs=(),
            manhole=(),
            web=(),
            metrics=self.metrics,
            server_name="localhost",
            sqlite_synchronous="NORMAL",
            rate=0,
            max_backlog=self.max_backlog,
        )
        self.server = build(settings, reactor)
        self.server.top.startService()
        self.addCleanup(self.server.top.stopService)
        key, cert = ensure_certificate(self.dir, "localhost")
        endpoint = server_endpoint(
            reactor, self.listener("ssl:0:interface=127.0.0.1"), server_options(key, cert),
            self.proxies,
        )  # fmt: skip
        self.port = yield endpoint.listen(self.server.native)
        self.addCleanup(self._drain)
        self.addCleanup(self.port.stopListening)

    def _drain(self) -> Deferred[None]:
        """Close what is left and wait until the server has seen every connection go."""
        for conn in list(self.server.native.connections):
            conn.transport.loseConnection()
        return self.until(lambda: not self.server.native.connections)

    def until(self, predicate: Any, tries: int = 500) -> Deferred[None]:
        def check(left: int) -> Any:
            if predicate() or left <= 0:
                return None
            return task.deferLater(reactor, 0.01, check, left - 1)

        return check(tries)  # type: ignore[no-any-return]

    def listener(self, description: str) -> str:
        """*description*, as a PROXY listener if the test is :attr:`proxied`."""
        return f"haproxy:{description}" if self.proxied else description

    @property
    def client_address(self) -> str:
        """The address the server should see for this test's clients."""
        return self.claimed if self.proxied else "127.0.0.1"

    def preamble(self, port: int = 7464) -> bytes:
        """What a client sends first: a PROXY header if the test is :attr:`proxied`."""
        return proxy_v1(self.claimed, 40000, "127.0.0.1", port) if self.proxied else b""

    def connect(self, source: str | None = None) -> LineClient:
        """A client of the server, from *source* (another 127.x address) if given."""
        return LineClient(
            "127.0.0.1", self.port.getHost().port, source=source, preamble=self.preamble()
        )

    def account(self, client: LineClient, name: str, room: str | None = None) -> LineClient:
        assert client.request("register", user=name, password=PASSWORD)["ok"]
        assert client.request("login", user=name, password=PASSWORD)["ok"]
        if room is not None:
            assert client.request("join", room=room)["ok"]
        return client

    def on_reactor(self, fn: Any, *args: Any) -> Any:
        return blockingCallFromThread(reactor, fn, *args)
