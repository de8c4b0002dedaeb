"""A server as a node of a cluster (``--bus``): what ``tap.build`` wires when
there is a bus.

The chat service's fan-out becomes a :class:`~pingchat.cluster.fanout.ClusterFanOut`
over the Redis bus (or the bus a test hands over), the database numbers each
conversation's messages, and the login throttle and the registration limiter
(made shared by ``tap.build``, :mod:`pingchat.cluster.throttle`) count every
node's failures.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from pingchat import config
from pingchat.chat.service import ChatService
from pingchat.cluster.bus import RedisBus, parse_url
from pingchat.cluster.fanout import ClusterFanOut, default_node_name
from pingchat.store import Store
from pingchat.store.messages import conversation_heads

log = Logger()


def join_cluster(
    settings: config.Settings,
    reactor: Any,
    store: Store,
    chat: ChatService,
    bus: Any,
    throttles: list[Any],
) -> ClusterFanOut:
    """Make this server a node of a cluster (``--bus``): the chat service's
    fan-out goes over the bus, and the throttles count every node's failures.

    At start-up, before the writer thread runs. The fan-out returned is a
    service, for the tree."""
    db_number = 0
    if bus is None:
        address = parse_url(settings.bus or "")
        bus, db_number = RedisBus(address, reactor), address.db
    store.db.numbered = True  # deliveries are ordered by each conversation's numbers
    node = settings.node_name or default_node_name()
    fanout = ClusterFanOut(chat, store, bus, reactor, node, db_number)
    # Where each room's numbering stands, before any session can be here.
    for conversation, seq, last_id in store.db.run_sync(conversation_heads):
        fanout.sequencer.baseline(conversation, seq, last_id)
    chat.fanout = fanout
    for throttle in throttles:
        throttle.share = fanout.throttle_event
        fanout.throttles.append(throttle)
    log.info("cluster: this node is {node}, on the bus {where}", node=node, where=_where(bus))
    return fanout


def _where(bus: Any) -> str:
    address = getattr(bus, "address", None)
    return address.where if address is not None else type(bus).__name__
