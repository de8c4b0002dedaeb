"""``/ws`` and ``/irc`` on StringTransports: handshake, framing, limits, pings, producers."""

from __future__ import annotations

import json
from typing import Any

from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import PerMessageDeflate

from pingchat.irc import wire as irc_wire
from pingchat.native import wire as native_wire
from pingchat.web.connection import (
    BINARY_FRAMES,
    PING_INTERVAL,
    PING_TIMEOUT,
    TEXT_FRAMES,
    FrameEncoder,
    WebSocketConnection,
)
from tests.helpers import PASSWORD, Logged
from tests.web.helpers import NativePeer, WebTestCase, WSPeer

WS_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def decode_frames(data: bytes) -> list[Any]:
    """What a client makes of server frames (wsproto's client, after a fake handshake)."""
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(data)
    return [e.data for e in client.events() if isinstance(e, (TextMessage, BytesMessage))]


class FrameEncoderTests(WebTestCase):
    def test_one_message_per_line_without_line_endings(self) -> None:
        self.assertEqual(decode_frames(TEXT_FRAMES.frames(b'{"a":1}\n')), ['{"a":1}'])
        self.assertEqual(decode_frames(TEXT_FRAMES.frames(b"A x\r\nB y\r\n")), ["A x", "B y"])
        self.assertEqual(decode_frames(BINARY_FRAMES.frames(b"A \xff\r\n")), [b"A \xff"])

    def test_invalid_utf8_never_goes_out_as_text(self) -> None:
        self.assertEqual(
            decode_frames(TEXT_FRAMES.frames(b"PRIVMSG #a :caf\xe9 \xff\r\n")),
            ["PRIVMSG #a :caf\ufffd \ufffd"],
        )

    def test_a_fan_out_frames_each_line_once(self) -> None:
        encoder = FrameEncoder(binary=False)
        calls: list[bytes] = []
        real = encoder._frame
        self.patch(encoder, "_frame", lambda line: calls.append(line) or real(line))
        line = b'{"event":"message","text":"hi"}\n'
        first = encoder.frames(line)
        for _ in range(100):
            self.assertIs(encoder.frames(line), first)
        self.assertEqual(len(calls), 1)
        # An equal but different object is framed anew (identity, not equality).
        encoder.frames(bytes(bytearray(line)))
        self.assertEqual(len(calls), 2)

    def test_large_lines_use_long_lengths(self) -> None:
        text = "x" * 70_000
        self.assertEqual(decode_frames(TEXT_FRAMES.frames(text.encode() + b"\n")), [text])


class HandshakeTests(WebTestCase):
    origins = ("https://gamja.example",)

    def test_plain_get_on_an_endpoint_is_a_clear_400(self) -> None:
        status, _, body = self.get("/ws")
        self.assertEqual(status, 400)
        self.assertIn(b"WebSocket endpoint", body)

    def test_wrong_version_is_426_with_the_version_we_speak(self) -> None:
        status, headers, _ = self.get("/ws", {**WS_HEADERS, "Sec-WebSocket-Version": "8"})
        self.assertEqual((status, headers["sec-websocket-version"]), (426, "13"))

    def test_only_get_and_only_the_endpoint_itself(self) -> None:
        self.assertEqual(self.get("/ws", WS_HEADERS, method="POST")[0], 405)
        self.assertEqual(self.get("/ws", WS_HEADERS, method="HEAD")[0], 405)
        self.assertEqual(self.get("/ws/more", WS_HEADERS)[0], 404)
        self.assertEqual(self.get("/irc/", WS_HEADERS)[0], 404)

    def test_query_strings_are_ignored_not_read(self) -> None:
        peer = WSPeer(self.connect(), "/ws?token=abc")
        self.assertIsNotNone(peer.accepted)

    def test_irc_subprotocol_follows_the_clients_preference(self) -> None:
        for offered, chosen in [
            (["binary.ircv3.net", "text.ircv3.net"], "binary.ircv3.net"),
            (["text.ircv3.net", "binary.ircv3.net"], "text.ircv3.net"),
            (["foo", "text.ircv3.net"], "text.ircv3.net"),
            (["foo"], None),
            ([], None),
        ]:
            peer = WSPeer(self.connect(), "/irc", subprotocols=offered)
            assert peer.accepted is not None, offered
            self.assertEqual(peer.accepted.subprotocol, chosen, offered)

    def test_no_compression_extension_is_accepted(self) -> None:
        peer = WSPeer(self.connect(), "/ws", extensions=[PerMessageDeflate()])
        assert peer.accepted is not None
        self.assertEqual(peer.accepted.extensions, [])
        # Frames stay plain: the same bytes for every recipient of a fan-out.
        hello = peer.messages()[0]
        self.assertIn('"event":"hello"', hello)

    def test_native_endpoint_takes_no_subprotocol(self) -> None:
        peer = WSPeer(self.connect(), "/ws", subprotocols=["text.ircv3.net"])
        assert peer.accepted is not None
        self.assertIsNone(peer.accepted.subprotocol)

    def test_own_origin_extra_origin_and_no_origin_are_accepted(self) -> None:
        for origin in (None, "http://localhost:8080", "https://gamja.example"):
            peer = WSPeer(self.connect(), "/irc", origin=origin)
            self.assertIsNotNone(peer.accepted, origin)
        # Over HTTPS the own origin is https://.
        peer = WSPeer(self.connect(secure=True), "/ws", origin="https://localhost:8080")
        self.assertIsNotNone(peer.accepted)

    def test_a_foreign_origin_is_refused_with_403_and_logged_once(self) -> None:
        logged = Logged(self, "refused a WebSocket")
        for _ in range(3):
            for path in ("/ws", "/irc"):
                peer = WSPeer(self.connect(), path, origin="https://evil.example")
                assert peer.rejected is not None
                self.assertEqual(peer.rejected.status_code, 403)
                self.assertIn(b"https://evil.example may not open a WebSocket", peer.reject_body)
        self.assertEqual(len(logged.events), 2)  # once per endpoint and origin
        self.assertEqual(logged.events[0]["origin"], "https://evil.example")
        # The other scheme of our own host is another origin too.
        peer = WSPeer(self.connect(), "/ws", origin="https://localhost:8080")
        self.assertIsNotNone(peer.rejected)
        self.assertEqual(self.server.native.connections, set())


class NativeOverWebSocketTests(WebTestCase):
    def peer(self, **kw: Any) -> NativePeer:
        return NativePeer(self.connect(**kw))

    def logged_in(self, name: str) -> NativePeer:
        p = self.peer()
        self.assertTrue(p.request("register", user=name, password=PASSWORD)["ok"])
        self.assertTrue(p.request("login", user=name, password=PASSWORD)["ok"])
        self.clock.advance(0)
        p.read()
        return p

    def test_every_op_and_event_as_on_the_tls_door(self) -> None:
        alice, bob = self.logged_in("alice"), self.logged_in("bob")
        self.assertEqual(alice.hello["event"], "hello")
        for p in (alice, bob):
            self.assertTrue(p.request("join", room="#web")["ok"])
        reply = alice.request("say", room="#web", text="hello bob")
        self.assertTrue(reply["ok"])
        events = [e for e in bob.read() if e.get("event") == "message"]
        self.assertEqual([(e["from"], e["text"]) for e in events], [("alice", "hello bob")])
        self.assertTrue(alice.request("dm", to="bob", text="psst")["ok"])
        self.assertIn("psst", [e.get("text") for e in bob.read()])

    def test_each_message_is_exactly_one_json_object(self) -> None:
        alice = self.peer()
        alice.send_text('{"id": 1, "op": "ping"}')
        messages = alice.messages()
        self.assertEqual(len(messages), 1)
        assert isinstance(messages[0], str)
        self.assertFalse(messages[0].endswith("\n"))
        self.assertTrue(json.loads(messages[0])["ok"])

    def test_a_newline_inside_a_message_is_json_whitespace_not_a_second_request(self) -> None:
        alice = self.peer()
        alice.send_text('{"id": 1,\n "op": "ping"}\n')
        replies = [json.loads(m) for m in alice.messages()]
        self.assertEqual([(r["id"], r["ok"]) for r in replies], [(1, True)])
        alice.send_text('{"id": 2, "op": "ping"}\n{"id": 3, "op": "ping"}')
        replies = [json.loads(m) for m in alice.messages()]
        self.assertEqual(len(replies), 1)
        self.assertEqual(replies[0]["error"]["code"], "bad_json")

    def test_fragments_make_one_request(self) -> None:
        alice = self.peer()
        alice.send_text('{"id": 7, ', finished=False)
        self.assertEqual(alice.messages(), [])
        alice.send_text('"op": "ping"}')
        self.assertEqual(json.loads(alice.messages()[0])["id"], 7)

    def test_binary_message_gets_bad_request_and_the_connection_stays(self) -> None:
        alice = self.peer()
        alice.send_bytes(b'{"id": 1, "op": "ping"}')
        reply = json.loads(alice.messages()[0])
        self.assertEqual(reply["error"]["code"], "bad_request")
        self.assertTrue(alice.request("ping")["ok"])

    def test_empty_message_is_ignored(self) -> None:
        alice = self.peer()
        alice.send_text("  ")
        self.assertEqual(alice.messages(), [])

    def test_a_message_over_16_kib_closes_with_1009_and_nothing_more_is_kept(self) -> None:
        logged = Logged(self, "(code 1009)")
        alice = self.peer()
        (conn,) = [p.transport for p in self.server.native.connections]
        self.assertIsInstance(conn, WebSocketConnection)
        limit = native_wire.MAX_LINE
        chunk = "x" * 4096
        sent = 0
        while sent + len(chunk) <= limit:
            alice.send_text(chunk, finished=False)
            sent += len(chunk)
            self.assertLessEqual(sum(map(len, conn._parts)), limit)
            self.assertFalse(alice.transport.disconnecting)
        alice.send_text(chunk, finished=False)
        close = alice.close_event()
        assert close is not None
        self.assertEqual(close.code, 1009)
        self.assertTrue(alice.transport.disconnecting)
        self.assertEqual(conn._parts, [])
        self.assertEqual(len(logged.events), 1)
        # Whatever else arrives is dropped unread.
        alice.http.send(b"\x81\x7f" + b"\xff" * 100)
        self.assertEqual(conn._parts, [])

    def test_a_message_at_the_limit_is_a_request(self) -> None:
        alice = self.peer()
        text = json.dumps({"id": 1, "op": "ping", "pad": ""})
        text = text[:-2] + "x" * (native_wire.MAX_LINE - len(text)) + '"}'
        self.assertEqual(len(text.encode()), native_wire.MAX_LINE)
        alice.send_text(text)
        self.assertTrue(json.loads(alice.messages()[0])["ok"])

    def test_the_limit_counts_bytes_not_characters(self) -> None:
        alice = self.peer()
        alice.send_text("é" * (native_wire.MAX_LINE // 2 + 1))
        close = alice.close_event()
        assert close is not None
        self.assertEqual(close.code, 1009)

    def test_broken_frames_and_invalid_utf8_close_the_connection(self) -> None:
        alice = self.peer()
        alice.http.send(
            b"\x81\x83abcd" + bytes(b ^ k for b, k in zip(b"\xff\xfe\xfd", b"abc", strict=True))
        )
        close = alice.close_event()
        assert close is not None
        self.assertEqual(close.code, 1007)
        self.assertTrue(alice.transport.disconnecting)
        bob = self.peer()
        bob.http.send(b"\x81\x05hello")  # an unmasked client frame
        close = bob.close_event()
        assert close is not None
        self.assertEqual(close.code, 1002)

    def test_the_clients_close_is_answered(self) -> None:
        alice = self.logged_in("alice")
        alice.http.send(alice.ws.send(CloseConnection(1000)))
        close = alice.close_event()
        assert close is not None
        self.assertEqual(close.code, 1000)
        self.assertTrue(alice.transport.disconnecting)
        alice.http.lose()
        self.assertEqual(self.server.chat.sessions_of("alice"), [])

    def test_a_ping_is_answered(self) -> None:
        alice = self.peer()
        alice.ping(b"hi")
        pongs = [e for e in alice.events() if type(e).__name__ == "Pong"]
        self.assertEqual([p.payload for p in pongs], [b"hi"])

    def test_a_protocol_that_hangs_up_sends_a_close_frame(self) -> None:
        alice = self.logged_in("alice")
        (proto,) = [p for p in self.server.native.connections]
        proto.disconnect("bye")
        events = alice.events()
        self.assertIn(
            "disconnect",
            [json.loads(e.data).get("event") for e in events if isinstance(e, TextMessage)],
        )
        self.assertEqual([e.code for e in events if isinstance(e, CloseConnection)], [1000])
        self.assertTrue(alice.transport.disconnecting)

    def test_the_session_is_tagged_web(self) -> None:
        self.logged_in("alice")
        (session,) = self.server.chat.sessions_of("alice")
        self.assertEqual(session.mind.door, "web")


class ProxyTests(WebTestCase):
    proxies = ("127.0.0.1",)

    def test_the_client_behind_a_trusted_proxy_is_the_address_of_record(self) -> None:
        p = NativePeer(self.connect(), headers=[("X-Forwarded-For", "1.1.1.1, 203.0.113.9")])
        self.assertTrue(p.request("register", user="alice", password=PASSWORD)["ok"])
        self.assertTrue(p.request("login", user="alice", password=PASSWORD)["ok"])
        (session,) = self.server.chat.sessions_of("alice")
        self.assertEqual(session.address, "203.0.113.9")
        (proto,) = self.server.native.connections
        self.assertEqual(proto.transport.getPeer().host, "203.0.113.9")

    def test_the_same_header_from_anyone_else_is_ignored(self) -> None:
        p = NativePeer(
            self.connect(peer="198.51.100.7"), headers=[("X-Forwarded-For", "203.0.113.9")]
        )
        self.assertTrue(p.request("register", user="alice", password=PASSWORD)["ok"])
        self.assertTrue(p.request("login", user="alice", password=PASSWORD)["ok"])
        (session,) = self.server.chat.sessions_of("alice")
        self.assertEqual(session.address, "198.51.100.7")

    def test_login_throttling_counts_the_forwarded_client(self) -> None:
        # Two clients behind one proxy: one's failures do not lock out the other.
        mallory = NativePeer(self.connect(), headers=[("X-Forwarded-For", "203.0.113.66")])
        good = NativePeer(self.connect(), headers=[("X-Forwarded-For", "203.0.113.9")])
        self.assertTrue(good.request("register", user="alice", password=PASSWORD)["ok"])
        for i in range(30):
            mallory.request("login", user=f"nobody{i}", password="wrong password")
        last = mallory.request("login", user="nobody99", password="wrong password")
        self.assertEqual(last["error"]["code"], "rate_limited")
        self.assertTrue(good.request("login", user="alice", password=PASSWORD)["ok"])

    def test_origin_uses_the_scheme_the_proxy_reports(self) -> None:
        headers = [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https")]
        ok = WSPeer(
            self.connect(),
            "/ws",
            host="chat.example",
            origin="https://chat.example",
            headers=headers,
        )
        self.assertIsNotNone(ok.accepted)
        bad = WSPeer(
            self.connect(),
            "/ws",
            host="chat.example",
            origin="http://chat.example",
            headers=headers,
        )
        self.assertIsNotNone(bad.rejected)


class IRCOverWebSocketTests(WebTestCase):
    def irc(self, subprotocols: list[str] | None = None, **kw: Any) -> WSPeer:
        peer = WSPeer(self.connect(**kw), "/irc", subprotocols=subprotocols)
        assert peer.accepted is not None
        return peer

    def register(self, name: str, peer: WSPeer, binary: bool = False) -> list[Any]:
        native = self.client()
        self.assertTrue(native.request("register", user=name, password=PASSWORD)["ok"])
        for line in (f"PASS {name}:{PASSWORD}", f"NICK {name}", f"USER {name} 0 * :{name}"):
            if binary:
                peer.send_bytes(line.encode())
            else:
                peer.send_text(line)
        self.clock.advance(0)
        return peer.messages()

    def test_text_subprotocol_lines_are_text_messages_without_crlf(self) -> None:
        peer = self.irc(["text.ircv3.net"])
        lines = self.register("alice", peer)
        self.assertTrue(all(isinstance(m, str) for m in lines), lines)
        self.assertTrue(any(" 001 alice " in m for m in lines), lines)  # type: ignore[operator]
        self.assertFalse([m for m in lines if "\r" in m or "\n" in m])  # type: ignore[operator]

    def test_binary_subprotocol_lines_are_binary_messages(self) -> None:
        peer = self.irc(["binary.ircv3.net"])
        lines = self.register("alice", peer, binary=True)
        self.assertTrue(all(isinstance(m, bytes) for m in lines), lines)
        self.assertTrue(any(b" 001 alice " in m for m in lines), lines)  # type: ignore[operator]

    def test_irc_over_websocket_shares_the_tcp_doors_world(self) -> None:
        peer = self.irc()
        self.register("alice", peer)
        tcp = self.server.extras["irc"].buildProtocol(None)
        self.assertIs(peer_protocol(self, "alice").factory, tcp.factory)
        (session,) = self.server.chat.sessions_of("alice")
        self.assertEqual(session.mind.door, "web-irc")

    def test_a_message_with_cr_lf_or_nul_is_refused_not_split(self) -> None:
        peer = self.irc()
        self.register("alice", peer)
        for bad in ("JOIN #a\r\nQUIT :injected", "JOIN #a\nQUIT", "JOIN #a\rQUIT", "JOIN #a\0"):
            peer.send_text(bad)
            self.clock.advance(0)
            replies = peer.messages()
            self.assertEqual(len(replies), 1, (bad, replies))
            self.assertIn("FAIL * INVALID_MESSAGE", replies[0])  # type: ignore[arg-type]
        self.assertEqual(self.server.chat.rooms_of("alice"), [])
        self.assertFalse(peer.transport.disconnecting)

    def test_one_trailing_line_ending_is_tolerated(self) -> None:
        peer = self.irc()
        self.register("alice", peer)
        peer.send_text("JOIN #a\r\n")
        self.clock.advance(0)
        self.assertTrue(any(" JOIN #a" in m for m in peer.messages()))  # type: ignore[operator]

    def test_over_the_tcp_doors_line_and_tag_limit_closes_with_1009(self) -> None:
        peer = self.irc()
        peer.send_text("@" + "a" * irc_wire.MAX_INPUT + " PING x")
        close = peer.close_event()
        assert close is not None
        self.assertEqual(close.code, 1009)

    def test_under_that_limit_long_lines_get_the_tcp_doors_answer(self) -> None:
        peer = self.irc()
        self.register("alice", peer)
        peer.send_text("PRIVMSG #a :" + "x" * 600)
        self.clock.advance(0)
        self.assertTrue(any(" 417 " in m for m in peer.messages()))  # type: ignore[operator]


def peer_protocol(test: WebTestCase, name: str) -> Any:
    (session,) = test.server.chat.sessions_of(name)
    return session.mind


class PingTests(WebTestCase):
    def test_silence_gets_a_ping_and_an_answer_keeps_the_connection(self) -> None:
        alice = NativePeer(self.connect())
        self.clock.advance(PING_INTERVAL - 1)
        self.assertFalse([e for e in alice.events() if isinstance(e, Ping)])
        self.clock.advance(1)
        pings = [e for e in alice.events() if isinstance(e, Ping)]
        self.assertEqual(len(pings), 1)
        alice.http.send(alice.ws.send(pings[0].response()))
        self.clock.advance(PING_TIMEOUT + 1)
        self.assertFalse(alice.transport.disconnecting)
        self.clock.advance(PING_INTERVAL)
        self.assertEqual(len([e for e in alice.events() if isinstance(e, Ping)]), 1)

    def test_any_data_counts_as_an_answer(self) -> None:
        alice = NativePeer(self.connect())
        for _ in range(10):
            self.clock.advance(PING_INTERVAL / 2)
            alice.request("ping")
        self.assertFalse([e for e in alice.events() if isinstance(e, Ping)])
        self.assertFalse(alice.transport.disconnecting)

    def test_no_answer_closes_with_1011_and_a_log_line(self) -> None:
        logged = Logged(self, "no answer to a ping")
        alice = NativePeer(self.connect())
        self.clock.advance(PING_INTERVAL)
        self.clock.advance(PING_TIMEOUT - 1)
        self.assertFalse(alice.transport.disconnecting)
        self.clock.advance(1)
        events = alice.events()
        self.assertEqual([e.code for e in events if isinstance(e, CloseConnection)], [1011])
        self.assertTrue(alice.transport.disconnecting)
        self.assertEqual(len(logged.events), 1)

    def test_while_the_door_holds_reading_back_the_client_is_not_timed_out(self) -> None:
        # IRC stops reading while a paste waits for the rate limit; the
        # client's pongs then wait unread in the socket.
        alice = NativePeer(self.connect())
        (conn,) = [p.transport for p in self.server.native.connections]
        conn.pauseProducing()
        self.assertEqual(alice.transport.producerState, "paused")
        for _ in range(20):
            self.clock.advance(PING_INTERVAL)
        self.assertFalse(alice.transport.disconnecting)
        conn.resumeProducing()
        self.assertEqual(alice.transport.producerState, "producing")
        self.clock.advance(PING_INTERVAL)
        self.clock.advance(PING_TIMEOUT)
        self.assertTrue(alice.transport.disconnecting)  # the keepalive is back

    def test_timers_end_with_the_connection(self) -> None:
        alice = NativePeer(self.connect())
        alice.http.lose()
        self.assertEqual(self.server.native.connections, set())
        self.assertFalse([c for c in self.clock.getDelayedCalls() if "keepalive" in repr(c.func)])


class ProducerTests(WebTestCase):
    settings = {"max_backlog": 4096}

    def test_a_browser_that_stops_reading_pauses_us_and_is_dropped_past_the_backlog(self) -> None:
        logged = Logged(self, "not reading")
        alice = NativePeer(self.connect())
        for p in (alice,):
            self.assertTrue(p.request("register", user="alice", password=PASSWORD)["ok"])
            self.assertTrue(p.request("login", user="alice", password=PASSWORD)["ok"])
            self.assertTrue(p.request("join", room="#busy")["ok"])
        bob = self.account("bob")
        bob.request("join", room="#busy")
        (proto,) = [s.mind for s in self.server.chat.sessions_of("alice")]
        # The socket's buffer is full: the transport pauses its producer.
        alice.transport.producer.pauseProducing()
        self.assertTrue(proto.paused)
        alice.transport.producer.resumeProducing()
        self.assertFalse(proto.paused)
        alice.transport.producer.pauseProducing()
        for i in range(100):
            bob.request("say", room="#busy", text=f"message {i} " + "x" * 100)
            if alice.transport.disconnected:
                break
        self.assertTrue(alice.transport.disconnected)  # aborted, not waiting to flush
        self.assertLess(i, 60)
        self.assertEqual(len(logged.events), 1)
        # Counted for the metrics, against the door she came through.
        self.assertEqual(dict(self.server.native.backlog_drops), {"web": 1})

    def test_a_tcp_transport_pausing_at_every_write_counts_as_one_pause(self) -> None:
        # Twisted's TCP transport calls pauseProducing at each write while its
        # buffer is full; the backlog must keep counting from the first one.
        alice = self.logged_in_peer("alice", "#busy")
        bob = self.account("bob")
        bob.request("join", room="#busy")
        producer = alice.transport.producer
        for i in range(100):
            producer.pauseProducing()
            bob.request("say", room="#busy", text=f"message {i} " + "x" * 100)
            if alice.transport.disconnected:
                break
        self.assertTrue(alice.transport.disconnected)
        self.assertLess(i, 60)

    def logged_in_peer(self, name: str, room: str) -> NativePeer:
        peer = NativePeer(self.connect())
        self.assertTrue(peer.request("register", user=name, password=PASSWORD)["ok"])
        self.assertTrue(peer.request("login", user=name, password=PASSWORD)["ok"])
        self.assertTrue(peer.request("join", room=room)["ok"])
        return peer

    def test_the_wire_transport_is_the_socket_transport(self) -> None:
        alice = NativePeer(self.connect())
        (proto,) = self.server.native.connections
        self.assertIs(proto.transport.wire_transport, alice.transport)
        self.assertIs(proto.transport.transport, alice.transport)
