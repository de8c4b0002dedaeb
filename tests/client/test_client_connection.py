"""The client's protocol (requests matched to replies by id, events) and the
connector (trust first, log in, reconnect with back-off), on fake transports
and a fake clock."""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from pingchat.client.configdir import ServerAddress
from pingchat.client.connection import (
    Backoff,
    ClientProtocol,
    Connector,
    NotConnected,
    RequestFailed,
)
from pingchat.client.trust import TrustPolicy, UntrustedServer


def sent(transport: StringTransport) -> list[dict[str, Any]]:
    lines = transport.value().decode().splitlines()
    transport.clear()
    return [json.loads(line) for line in lines]


class ProtocolTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.proto = ClientProtocol(self.clock, keepalive=60)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)
        self.events: list[dict[str, Any]] = []
        self.proto.on_event = self.events.append

    def feed(self, *objs: dict[str, Any]) -> None:
        self.proto.dataReceived(b"".join(json.dumps(o).encode() + b"\n" for o in objs))

    def test_requests_get_increasing_ids_and_replies_are_matched_by_id(self) -> None:
        first = self.proto.request("join", room="#a")
        second = self.proto.request("who")
        requests = sent(self.transport)
        self.assertEqual([(r["id"], r["op"]) for r in requests], [(1, "join"), (2, "who")])
        self.assertEqual(requests[0]["room"], "#a")
        self.feed({"id": 2, "ok": True, "users": []}, {"id": 1, "ok": True, "room": "#a"})
        self.assertEqual(self.successResultOf(first)["room"], "#a")
        self.assertEqual(self.successResultOf(second)["users"], [])

    def test_an_error_reply_fails_the_request_with_code_and_message(self) -> None:
        d = self.proto.request("join", room="#a")
        self.feed({"id": 1, "ok": False, "error": {"code": "forbidden", "message": "banned"}})
        failure = self.failureResultOf(d, RequestFailed)
        self.assertEqual((failure.value.code, failure.value.message), ("forbidden", "banned"))

    def test_rate_limited_carries_retry_after(self) -> None:
        d = self.proto.request("login", user="a", password="b")
        self.feed({"id": 1, "ok": False, "error": {"code": "rate_limited", "message": "slow",
                                                   "retry_after": 2.5}})
        self.assertEqual(self.failureResultOf(d, RequestFailed).value.retry_after, 2.5)

    def test_events_and_unmatched_errors_go_to_the_event_handler(self) -> None:
        self.feed({"event": "hello", "protocol": 1},
                  {"id": None, "ok": False, "error": {"code": "line_too_long", "message": "x"}},
                  {"id": 99, "ok": True})
        self.assertEqual([e["event"] for e in self.events], ["hello", "error"])

    def test_lines_split_across_packets_and_junk_are_handled(self) -> None:
        d = self.proto.request("ping")
        data = b'not json\n[1,2]\n{"id": 1, "ok": tr' + b'ue, "pong": true}\r\n'
        for i in range(len(data)):
            self.proto.dataReceived(data[i : i + 1])
        self.assertTrue(self.successResultOf(d)["pong"])

    def test_pending_requests_fail_when_the_connection_is_lost(self) -> None:
        d = self.proto.request("history", room="#a")
        self.proto.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(d, ConnectionLost)
        self.assertTrue(self.proto.lost.called)
        self.failureResultOf(self.proto.request("ping"), NotConnected)

    def test_keepalive_pings_a_quiet_line_and_drops_a_dead_one(self) -> None:
        self.proto.start_keepalive()
        sent(self.transport)
        self.clock.advance(30)
        self.assertEqual([r["op"] for r in sent(self.transport)], ["ping"])
        self.feed({"id": 1, "ok": True})
        self.clock.advance(30)  # the answer made the line lively again
        self.assertEqual([r["op"] for r in sent(self.transport)], ["ping"])
        self.clock.advance(60)  # no answer to that ping
        self.assertTrue(self.transport.disconnecting)


class BackoffTests(TestCase):
    def test_delays_double_up_to_the_cap_and_reset(self) -> None:
        b = Backoff(initial=1, maximum=10, jitter=lambda d: d)
        self.assertEqual([b.next() for _ in range(6)], [1, 2, 4, 8, 10, 10])
        b.reset()
        self.assertEqual(b.next(), 1)

    def test_jitter_stays_near_the_delay(self) -> None:
        b = Backoff(initial=10, maximum=10)
        for _ in range(50):
            self.assertTrue(8 <= b.next() <= 12)


class _Policy(TrustPolicy):
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok

    def verify(self, server: ServerAddress, cert: x509.Certificate, ask: Any) -> Deferred[str]:
        if not self.ok:
            raise UntrustedServer("certificate changed")
        return succeed("fine")


class _Endpoint:
    """Hands out connections the test controls."""

    def __init__(self) -> None:
        self.attempts: list[Deferred[Any]] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.attempts.append(d)
        self.factory = factory
        return d

    def succeed(self) -> tuple[ClientProtocol, StringTransport]:
        proto = self.factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.attempts[-1].callback(proto)
        return proto, transport

    def refuse(self) -> None:
        self.attempts[-1].errback(ConnectionRefusedError())


class _Client:
    def __init__(self) -> None:
        self.states: list[str] = []
        self.details: list[str] = []
        self.sessions: list[ClientProtocol] = []
        self.refusals: list[str] = []
        self.login_result: Deferred[Any] | None = None

    def ask_trust(self, question: str) -> Deferred[bool]:
        return succeed(True)

    def trusted(self, note: str, first: bool) -> None:
        pass

    def session_started(self, proto: ClientProtocol) -> Deferred[Any]:
        self.sessions.append(proto)
        return self.login_result or succeed(None)

    def event(self, proto: ClientProtocol, event: dict[str, Any]) -> None:
        pass

    def state_changed(self, state: str, detail: str) -> None:
        self.states.append(state)
        self.details.append(detail)

    def refused(self, message: str) -> None:
        self.refusals.append(message)


class ConnectorTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = _Endpoint()
        self.client = _Client()
        self.policy = _Policy()
        self.connector = Connector(self.clock, ServerAddress("h"), self.policy, self.client,
                                   backoff=Backoff(jitter=lambda d: d),
                                   endpoint=lambda: self.endpoint)  # type: ignore[arg-type,return-value]

    def connect_ok(self) -> tuple[ClientProtocol, StringTransport]:
        proto, transport = self.endpoint.succeed()
        proto.handshake.callback(None)  # type: ignore[arg-type]
        return proto, transport

    def test_trust_is_checked_before_logging_in(self) -> None:
        self.connector.start()
        proto, _ = self.endpoint.succeed()
        self.assertEqual(self.client.states, ["connecting", "verifying"])
        self.assertEqual(self.client.sessions, [])
        proto.handshake.callback(None)  # type: ignore[arg-type]
        self.assertEqual(self.client.sessions, [proto])
        self.assertEqual(self.client.states[-2:], ["logging in", "connected"])
        self.assertTrue(self.connector.ready)

    def test_an_untrusted_server_is_dropped_and_never_retried(self) -> None:
        self.policy.ok = False
        self.connector.start()
        proto, transport = self.connect_ok()
        self.assertEqual(self.client.refusals, ["certificate changed"])
        self.assertEqual(self.client.sessions, [])
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionLost()))
        self.clock.advance(3600)
        self.assertEqual(len(self.endpoint.attempts), 1)
        self.assertEqual(self.connector.state, "refused")

    def test_the_first_connection_failing_is_final(self) -> None:
        self.connector.start()
        self.endpoint.refuse()
        self.assertEqual(self.client.states[-1], "failed")
        self.assertIn("connection refused", self.client.details[-1])
        self.clock.advance(3600)
        self.assertEqual(len(self.endpoint.attempts), 1)

    def test_a_dropped_session_reconnects_with_back_off_and_resets_after_login(self) -> None:
        self.connector.start()
        proto, _ = self.connect_ok()
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.client.states[-1], "waiting")
        self.assertIn("reconnecting in 1s", self.client.details[-1])
        self.clock.advance(1)
        self.endpoint.refuse()
        self.assertIn("reconnecting in 2s", self.client.details[-1])
        self.clock.advance(1.9)
        self.assertEqual(len(self.endpoint.attempts), 2)
        self.clock.advance(0.1)
        self.endpoint.refuse()
        self.assertIn("reconnecting in 4s", self.client.details[-1])
        self.clock.advance(4)
        proto, _ = self.connect_ok()
        self.assertEqual(len(self.client.sessions), 2)
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertIn("reconnecting in 1s", self.client.details[-1])

    def test_stop_closes_and_cancels_the_retry(self) -> None:
        self.connector.start()
        proto, _ = self.connect_ok()
        proto.connectionLost(Failure(ConnectionLost()))
        self.connector.stop()
        self.clock.advance(60)
        self.assertEqual(len(self.endpoint.attempts), 1)
        self.assertEqual(self.client.states[-1], "offline")

    def test_reconnect_now_skips_the_wait(self) -> None:
        self.connector.start()
        proto, transport = self.connect_ok()
        self.connector.reconnect_now()
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(len(self.endpoint.attempts), 2)

    def test_a_failed_login_closes_the_connection(self) -> None:
        self.client.login_result = fail(RuntimeError("boom"))
        self.connector.start()
        _, transport = self.connect_ok()
        self.assertTrue(transport.disconnecting)
        self.assertIn("error", self.client.states)
