"""The bus between nodes: Redis pub/sub for events, Redis commands for state.

:class:`RedisBus` talks to Redis with txredisapi, the Twisted-native client
Synapse uses: its connections are the reactor's, so no thread is added
beside the database's and bcrypt's, and a message published or received
costs a write or a read on a socket, not a hop between threads. Its
``SubscriberProtocol`` tells exactly when a subscription starts and ends,
which is when a node must catch up; its factories reconnect by themselves
(Twisted's ``ClientService``, with back-off). (redis-py, the other
maintained client, blocks: it would need a thread for commands and one for
the subscription, and reconnects a subscription without saying so.)

Two connections: one subscribed to the cluster's channel, one for
commands (publishing, the session tables, heartbeats). While either is
down the bus is *down*: publishing does nothing (the store still has every
message; the nodes catch up when it is back, see pingchat.cluster.fanout)
and commands fail at once rather than wait for Redis.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from pingchat.errors import ChatError

log = Logger()

REPLY_TIMEOUT = 5.0  # seconds a command waits for Redis's answer
RECONNECT_FIRST = 0.5  # seconds before the first reconnection attempt
RECONNECT_MAX = 5.0  # and at most between two


class BusDown(ChatError):
    code = "bus_unavailable"


class Listener(Protocol):
    """What a bus tells the node that started it."""

    def bus_up(self) -> None:
        """Subscribed, and commands go through: publish and catch up."""

    def bus_down(self) -> None:
        """Lost Redis: events published meanwhile will never arrive."""

    def bus_message(self, data: str) -> None:
        """An event another node (or this one) published."""


class Bus(Protocol):
    """A channel every node hears, and a few Redis commands."""

    up: bool

    def start(self, listener: Listener) -> None: ...

    def stop(self) -> Deferred[None]: ...

    def publish(self, data: str) -> bool:
        """Publish to every node; False (and nothing sent) while the bus is down."""

    def command(self, *args: Any) -> Deferred[Any]:
        """One Redis command; fails at once with BusDown while the bus is down."""


@attrs.frozen
class RedisAddress:
    """Where Redis is, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    host: str | None = None
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False

    @property
    def where(self) -> str:
        """For logs and messages: never the password."""
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


def parse_url(url: str) -> RedisAddress:
    """``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
    ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``, as redis-py reads them."""
    parts = urllib.parse.urlsplit(url.strip())
    query = dict(urllib.parse.parse_qsl(parts.query))
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    try:
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError("a unix:// URL needs a socket path")
            return RedisAddress(
                path=parts.path, db=int(query.get("db", 0)), username=user, password=password
            )
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        db = parts.path.strip("/") or query.get("db", "0")
        return RedisAddress(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=int(db),
            username=user,
            password=password,
            tls=parts.scheme == "rediss",
        )
    except ValueError as e:
        if "invalid literal" in str(e) or "Port" in str(e):
            raise ValueError("the port and the database number must be numbers") from None
        raise


class RedisBus:
    """:class:`Bus` on a Redis server, through txredisapi."""

    def __init__(self, address: RedisAddress, reactor: Any) -> None:
        self.address = address
        self.reactor = reactor
        # Pub/sub channels are not per database: the database number is in the name.
        self.channel = f"pingchat:{address.db}:events"
        self.up = False
        self._listener: Listener | None = None
        self._commands: Any = None
        self._handler: Any = None
        self._subscriber: Any = None
        self._subscribed = False
        self.published = 0
        self.received = 0
        self.dropped = 0  # not published: the bus was down

    def _endpoint(self) -> Any:
        from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
        from twisted.internet.ssl import optionsForClientTLS

        a = self.address
        if a.path is not None:
            return UNIXClientEndpoint(self.reactor, a.path, timeout=5)
        endpoint = HostnameEndpoint(self.reactor, a.host or "localhost", a.port, timeout=5)
        if a.tls:
            return wrapClientTLS(optionsForClientTLS(a.host or "localhost"), endpoint)  # type: ignore[arg-type]
        return endpoint

    def start(self, listener: Listener) -> None:
        import txredisapi  # imports the global reactor: only once the server runs

        self._listener = listener
        a = self.address
        bus = self

        class Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
            def connectionMade(self) -> Any:
                d = super().connectionMade()
                ready = self.whenConnected().addCallback(lambda _: self.subscribe(bus.channel))
                ready.addCallbacks(
                    lambda _: bus._subscription(True), lambda _: self.transport.loseConnection()
                )
                return d

            def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
                bus._received(message)

            def connectionLost(self, why: Any) -> None:
                super().connectionLost(why)
                bus._subscription(False)

        commands = txredisapi.RedisFactory(
            a.where,
            a.db or None,
            1,
            True,
            txredisapi.ConnectionHandler,
            "utf-8",
            a.password,
            REPLY_TIMEOUT,
            False,
            a.username,
        )
        subscriber = txredisapi.SubscriberFactory(isLazy=True)
        subscriber.protocol = Subscriber
        subscriber.password, subscriber.username = a.password, a.username
        subscriber.replyTimeout = None
        # The command connection's comings and goings count too.
        commands.addConnection = self._wrap(commands.addConnection)
        commands.delConnection = self._wrap(commands.delConnection)
        self._commands, self._handler, self._subscriber = commands, commands.handler, subscriber
        for factory in (commands, subscriber):
            factory.initialDelay, factory.maxDelay, factory.factor = (
                RECONNECT_FIRST,
                RECONNECT_MAX,
                2.0,
            )
            factory.startConnecting(self._endpoint())

    def _wrap(self, method: Any) -> Any:
        def wrapped(conn: Any) -> Any:
            result = method(conn)
            self._changed()
            return result

        return wrapped

    def _subscription(self, on: bool) -> None:
        self._subscribed = on
        self._changed()

    def _changed(self) -> None:
        up = self._subscribed and self._commands is not None and self._commands.size > 0
        if up == self.up:
            return
        self.up = up
        if up:
            log.info("bus: connected to {where}", where=self.address.where)
            if self._listener is not None:
                self._listener.bus_up()
        else:
            log.warn(
                "bus: lost {where}; this node serves its own sessions and catches up when it"
                " is back (retrying)",
                where=self.address.where,
            )
            if self._listener is not None:
                self._listener.bus_down()

    def _received(self, message: Any) -> None:
        self.received += 1
        if self._listener is not None:
            self._listener.bus_message(message)

    def publish(self, data: str) -> bool:
        if not self.up:
            self.dropped += 1
            return False
        self.published += 1
        self._handler.publish(self.channel, data).addErrback(self._publish_failed)
        return True

    def _publish_failed(self, failure: Any) -> None:
        self.dropped += 1
        log.debug("bus: a publish failed: {why}", why=failure.getErrorMessage())

    def command(self, *args: Any) -> Deferred[Any]:
        if not self.up:
            return fail(BusDown("the bus (Redis) is unavailable"))
        d: Deferred[Any] = self._handler.execute_command(*args)
        return d

    def stop(self) -> Deferred[None]:
        self._listener = None
        self.up = False
        done = []
        for factory in (self._subscriber, self._commands):
            if factory is not None:
                done.append(factory.disconnect())
        if not done:
            return succeed(None)
        from twisted.internet.defer import gatherResults

        return gatherResults(done, consumeErrors=True).addBoth(lambda _: None)
