"""Test doubles for the bus: an in-memory Redis that several nodes share.

:class:`FakeRedis` answers the few commands the cluster uses (strings with
expiry on a clock, hashes, sets) and carries published events to every
subscribed :class:`FakeBus`, each an in-memory :class:`~pingchat.cluster.bus.Bus`
that a test can cut off (``down()``/``up_again()``), whose deliveries it can
hold back and release out of order, or drop.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

from pingchat.cluster.bus import BusDown, Listener


class FakeRedis:
    """Strings (with PX expiry), hashes and sets; pub/sub to every FakeBus."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.strings: dict[str, tuple[str, float | None]] = {}
        self.hashes: dict[str, dict[str, str]] = {}
        self.sets: dict[str, set[str]] = {}
        self.buses: list[FakeBus] = []

    def _now(self) -> float:
        return float(self.clock.seconds())

    def execute(self, name: str, *args: Any) -> Any:
        name = name.upper()
        args = tuple(str(a) for a in args)
        if name == "SET":
            key, value, *rest = args
            expires = None
            if rest and rest[0].upper() == "PX":
                expires = self._now() + int(rest[1]) / 1000
            self.strings[key] = (value, expires)
            return "OK"
        if name == "GET":
            found = self.strings.get(args[0])
            if found is None or (found[1] is not None and found[1] <= self._now()):
                self.strings.pop(args[0], None)
                return None
            return found[0]
        if name == "DEL":
            n = 0
            for key in args:
                n += (
                    (self.strings.pop(key, None) is not None)
                    + (self.hashes.pop(key, None) is not None)
                    + (self.sets.pop(key, None) is not None)
                )
            return n
        if name == "HSET":
            table = self.hashes.setdefault(args[0], {})
            pairs = args[1:]
            for i in range(0, len(pairs), 2):
                table[pairs[i]] = pairs[i + 1]
            return len(pairs) // 2
        if name == "HDEL":
            table = self.hashes.get(args[0], {})
            return sum(table.pop(f, None) is not None for f in args[1:])
        if name == "HGETALL":
            flat: list[str] = []
            for k, v in self.hashes.get(args[0], {}).items():
                flat += [k, v]
            return flat
        if name == "SADD":
            self.sets.setdefault(args[0], set()).update(args[1:])
            return len(args) - 1
        if name == "SREM":
            members = self.sets.get(args[0], set())
            return sum(m in members and not members.discard(m) for m in args[1:])  # type: ignore[func-returns-value]
        if name == "SMEMBERS":
            return sorted(self.sets.get(args[0], set()))
        if name == "PUBLISH":
            for bus in list(self.buses):
                bus.hear(args[1])
            return len(self.buses)
        raise NotImplementedError(f"FakeRedis has no {name}")


class FakeBus:
    """A node's connection to a :class:`FakeRedis`."""

    def __init__(self, redis: FakeRedis, channel: str = "pingchat:0:events") -> None:
        self.redis = redis
        self.channel = channel
        self.up = False
        self.listener: Listener | None = None
        self.hold = False  # keep what arrives in .held instead of handing it over
        self.held: list[str] = []
        self.drop = False  # lose what arrives
        self.sent: list[str] = []  # every event this node published
        self.published = self.received = self.dropped = 0

    def start(self, listener: Listener) -> None:
        self.listener = listener
        self.up_again()

    def up_again(self) -> None:
        if self not in self.redis.buses:
            self.redis.buses.append(self)
        self.up = True
        if self.listener is not None:
            self.listener.bus_up()

    def down(self) -> None:
        if self in self.redis.buses:
            self.redis.buses.remove(self)
        self.up = False
        if self.listener is not None:
            self.listener.bus_down()

    def stop(self) -> Deferred[None]:
        if self in self.redis.buses:
            self.redis.buses.remove(self)
        self.up = False
        self.listener = None
        return succeed(None)

    def publish(self, data: str) -> bool:
        if not self.up:
            self.dropped += 1
            return False
        self.published += 1
        self.sent.append(data)
        self.redis.execute("PUBLISH", self.channel, data)
        return True

    def command(self, *args: Any) -> Deferred[Any]:
        if not self.up:
            return fail(BusDown("the bus is down"))
        return succeed(self.redis.execute(*args))

    def hear(self, data: str) -> None:
        self.received += 1
        if self.drop:
            return
        if self.hold:
            self.held.append(data)
        elif self.listener is not None:
            self.listener.bus_message(data)

    def release(self, order: list[int] | None = None) -> None:
        """Hand over what was held, in arrival order or in *order* (indexes)."""
        held, self.held = self.held, []
        for i in order if order is not None else range(len(held)):
            if self.listener is not None:
                self.listener.bus_message(held[i])
