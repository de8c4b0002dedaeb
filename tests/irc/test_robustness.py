"""Bad input: oversized and malformed lines, invalid UTF-8, floods, slow readers."""

from __future__ import annotations

from twisted.logger import globalLogPublisher

from tests.irc.helpers import IRCTestCase


class BadInputTests(IRCTestCase):
    def test_an_overlong_line_is_417_and_the_connection_stays_usable(self) -> None:
        c = self.connect("alice")
        c.send("PRIVMSG #a :" + "x" * 600)
        c.send_raw(b"PRIVMSG #a :" + b"y" * 20000 + b"\r\nPING :still here\r\n")
        lines = c.read()
        self.assertEqual([m.command for m in lines], ["417", "417", "PONG"])
        self.assertFalse(c.closed)

    def test_tags_may_be_long_but_not_endless(self) -> None:
        c = self.connect("alice")
        c.send("@+a=" + "t" * 3000 + " PING :ok", "@+a=" + "t" * 5000 + " PING :no")
        self.assertEqual(c.commands(), ["PONG", "417"])

    def test_invalid_utf8_is_refused_with_fail_and_not_relayed(self) -> None:
        self.make_account("bob")
        bob = self.native("bob")
        c = self.connect("alice")
        c.send_raw(b"PRIVMSG bob :caf\xe9 \xff\r\n")
        fail = c.read()[0]
        self.assertEqual((fail.command, fail.params[:2]), ("FAIL", ("PRIVMSG", "INVALID_UTF8")))
        self.assertEqual(bob.take_events("message"), [])
        self.assertFalse(c.closed)
        c.send("PRIVMSG bob :café")  # the same text in UTF-8 goes through
        self.assertEqual(bob.take_events("message")[0]["text"], "café")

    def test_every_command_with_invalid_utf8_is_refused_by_name(self) -> None:
        c = self.connect("alice", caps=("labeled-response", "message-tags"))
        c.send("JOIN #a")
        c.read()
        c.send_raw(b"TOPIC #a :\xe9t\xe9\r\nNOTICE #a :\xe9\r\n@label=L1 PART #a :\xff\r\n")
        lines = c.read()
        self.assertEqual([(m.command, m.params[:2]) for m in lines],
                         [("FAIL", ("TOPIC", "INVALID_UTF8")), ("FAIL", ("NOTICE", "INVALID_UTF8")),
                          ("FAIL", ("PART", "INVALID_UTF8"))])
        self.assertEqual(lines[2].tags.get("label"), "L1")
        self.assertEqual(self.server.chat.get_room("#a").topic, "")
        self.assertIn("alice", {m for m in self.server.chat.get_room("#a").members})

    def test_a_command_that_is_not_a_word_is_refused_as_star(self) -> None:
        c = self.connect("alice")
        c.send_raw(b"PRIV\xe9MSG #a :x\r\n")
        fail = c.read()[0]
        self.assertEqual((fail.command, fail.params[:2]), ("FAIL", ("*", "INVALID_UTF8")))

    def test_registration_with_an_invalid_realname_is_refused(self) -> None:
        c = self.irc()
        c.send_raw(b"NICK zed\r\nUSER zed 0 * :Z\xe9d\r\n")
        fail = c.read()[0]
        self.assertEqual((fail.command, fail.params[:2]), ("FAIL", ("USER", "INVALID_UTF8")))
        c.send("USER zed 0 * :Zéd")
        self.assertIn("001", c.commands())

    def test_utf8only_is_advertised(self) -> None:
        c = self.irc()
        c.send("NICK zed", "USER zed 0 * :Z")
        tokens = [t for m in c.read() if m.command == "005" for t in m.params[1:-1]]
        self.assertIn("UTF8ONLY", tokens)

    def test_client_tags_cannot_carry_cr_lf_or_nul_to_others(self) -> None:
        alice = self.connect("alice", caps=("message-tags", "labeled-response"))
        bob = self.connect("bob", caps=("message-tags",))
        for c in (alice, bob):
            c.send("JOIN #a")
            c.read()
        alice.send_raw(b"@+ok=1;+bad\rQUIT=x;+nul=a\x00b;+x\x00y=1;label=L\x00 PRIVMSG #a :hi\r\n")
        for c in (alice, bob):
            data = c.raw()
            self.assertNotIn(b"\x00", data)
            self.assertNotIn(b"\r", data.replace(b"\r\n", b""))
        alice.send_raw(b"@+ok=1;+bad\rQUIT=x;+nul=a\x00b PRIVMSG #a :again\r\n")
        (m,) = bob.read()
        self.assertEqual(dict(m.tags), {"+ok": "1", "+nul": "ab", **{k: v for k, v in m.tags.items()
                                                                     if k in ("msgid", "time")}})

    def test_numbers_are_ascii_digits_only(self) -> None:
        # str.isdigit() is true for "¹" (int() refuses it); int() takes Arabic-Indic "10".
        arabic_10 = "\u0661\u0660"
        errors: list[object] = []
        globalLogPublisher.addObserver(errors.append)
        self.addCleanup(globalLogPublisher.removeObserver, errors.append)
        c = self.connect("alice", caps=("draft/chathistory", "batch"))
        c.send("JOIN #a")
        c.read()
        c.send("WHOWAS alice ¹", "CAP LS ¹", "MODE #a +l ¹", f"MODE #a +l {arabic_10}",
               f"CHATHISTORY LATEST #a * {arabic_10}", "PING :done")
        lines = c.read()
        self.assertEqual([m.command for m in lines],
                         ["406", "369", "CAP", "696", "696", "FAIL", "PONG"])
        self.assertEqual(lines[-2].params[:2], ("CHATHISTORY", "INVALID_PARAMS"))
        self.assertEqual(self.server.chat.get_room("#a").limit, None)
        self.assertEqual([e for e in errors if isinstance(e, dict) and e.get("isError")], [])

    def test_garbage_lines_are_ignored_421_or_refused(self) -> None:
        c = self.connect("alice")
        c.send_raw(b"\r\n   \r\n:onlysource\r\n@a=b\r\n\x01\x02\r\n\x00\x01\r\nPING :ok\r\n")
        self.assertEqual(c.commands(), ["421", "FAIL", "PONG"])  # FAIL: NUL (test_nul.py)

    def test_numeric_commands_from_clients_are_ignored(self) -> None:
        c = self.connect("alice")
        c.send("001 x :y", "PING :ok")
        self.assertEqual(c.commands(), ["PONG"])

    def test_crlf_in_parameters_cannot_be_smuggled(self) -> None:
        c = self.connect("alice")
        c.send("JOIN #a")
        c.read()
        # a bare CR inside a line is not a line ending, and never leaves as one
        c.send_raw(b"PRIVMSG #a :x\rQUIT :no\r\n")
        self.assertFalse(c.closed)
        history = self.successResultOf(
            self.server.chat.history(self.server.chat.sessions_of("alice")[0], room="#a"))
        self.assertEqual([m.text for m in history], ["x QUIT :no"])


class FloodTests(IRCTestCase):
    settings = {"rate": 5.0, "rate_burst": 10.0}

    def test_a_short_burst_is_delayed_not_dropped(self) -> None:
        c = self.connect("alice")
        self.clock.advance(10)  # refill the bucket after registration
        c.send(*[f"PING :{i}" for i in range(20)])
        first = c.read()
        self.assertEqual(len(first), 10)
        self.clock.advance(1)
        self.assertEqual(len(c.read()), 5)
        self.clock.advance(2)
        self.assertEqual([m.params[1] for m in c.read()], [str(i) for i in range(15, 20)])
        self.assertFalse(c.closed)

    def test_a_paste_past_the_burst_is_delivered_in_full_at_the_rate(self) -> None:
        # 101 lines in one write used to be "Excess Flood" with none delivered.
        self.make_account("bob")
        alice = self.connect("alice")
        alice.send("JOIN #paste")
        bob = self.native("bob")
        bob.request("join", room="#paste")
        self.clock.advance(10)  # refill the bucket after registration
        bob.take_events()
        alice.send(*[f"PRIVMSG #paste :line {i}" for i in range(400)])
        received = [e["text"] for e in bob.take_events("message")]
        self.assertEqual(received, [f"line {i}" for i in range(10)])  # the burst
        self.clock.advance(1)
        received += [e["text"] for e in bob.take_events("message")]
        self.assertEqual(len(received), 15)  # then the rate: 5 lines a second
        for _ in range(80):
            self.clock.advance(1)
        received += [e["text"] for e in bob.take_events("message")]
        self.assertEqual(received, [f"line {i}" for i in range(400)])
        self.assertFalse(alice.closed)
        self.assertNotIn("ERROR", alice.commands())

    def test_reading_pauses_while_lines_wait_and_resumes_once_they_are_done(self) -> None:
        c = self.connect("alice")
        self.clock.advance(10)
        c.send(*[f"PING :{i}" for i in range(300)])
        self.assertEqual(c.transport.producerState, "paused")  # TCP holds the rest
        for _ in range(250):  # 10 at once, then 5 a second: 260 of 300 in 50 s
            self.clock.advance(0.2)
        self.assertEqual(c.transport.producerState, "paused")
        for _ in range(40):
            self.clock.advance(0.2)
        self.assertEqual(c.transport.producerState, "producing")
        self.assertEqual([m.params[-1] for m in c.read()], [str(i) for i in range(300)])

    def test_more_lines_than_the_bound_in_one_go_is_excess_flood(self) -> None:
        c = self.connect("alice")
        c.send(*["PRIVMSG nobody :spam"] * 2000)
        lines = c.read()
        self.assertEqual(lines[-1].command, "ERROR")
        self.assertIn("Excess Flood", lines[-1].params[0])
        self.assertTrue(c.closed)
        self.assertFalse(self.server.chat.is_online("alice"))
        self.assertEqual(len(c.protocol._inbox), 0)  # what waited is let go

    def test_more_bytes_than_the_bound_in_one_go_is_excess_flood(self) -> None:
        c = self.connect("alice")
        c.send(*["PRIVMSG nobody :" + "x" * 480] * 300)  # 150 KB in 300 lines
        lines = c.read()
        self.assertEqual(lines[-1].command, "ERROR")
        self.assertIn("Excess Flood", lines[-1].params[0])
        self.assertTrue(c.closed)

    def test_nothing_is_read_after_excess_flood(self) -> None:
        c = self.connect("alice")
        c.send(*["PING :x"] * 2000)
        c.read()
        c.send("PING :after")
        self.assertEqual(c.read(), [])


class SlowRateTests(IRCTestCase):
    settings = {"rate": 0.2, "rate_burst": 10.0}

    def test_lines_waiting_for_the_rate_keep_a_client_from_timing_out(self) -> None:
        # 200 lines at one every 5 s wait 1,000 s, reading paused all the
        # while: longer than the keepalive's 120 + 60 s.
        c = self.connect("alice")
        c.send(*[f"PING :{i}" for i in range(200)])
        for _ in range(1000):
            self.clock.advance(1)
        self.assertFalse(c.closed)
        pongs = [m.params[-1] for m in c.read() if m.command == "PONG"]
        self.assertEqual(pongs, [str(i) for i in range(200)])


class SlowReaderTests(IRCTestCase):
    settings = {"max_backlog": 10_000}

    def test_a_client_that_does_not_read_is_dropped_at_the_bound(self) -> None:
        c = self.connect("alice")
        c.protocol.pauseProducing()  # the transport says its buffer is full
        for _ in range(200):
            self.server.chat.broadcast("x" * 100)
        self.assertTrue(c.transport.disconnecting or c.protocol.closed)
        self.assertLess(len(c.transport.value()), 10_000 + 30_000)

    def test_a_pause_at_every_write_does_not_reset_the_bound(self) -> None:
        # Twisted's TCP transport calls pauseProducing again on every write
        # while its buffer is full: each call must not start the count over.
        c = self.connect("alice")
        transport, proto = c.transport, c.protocol
        write = transport.write

        def full_write(data: bytes) -> None:
            write(data)
            proto.pauseProducing()

        self.patch(transport, "write", full_write)
        for _ in range(200):
            self.server.chat.broadcast("x" * 100)
        self.assertTrue(proto.closed)
        self.assertTrue(transport.disconnecting)
        self.assertLess(len(transport.value()), 10_000 + 30_000)

    def test_a_client_that_resumes_is_kept(self) -> None:
        c = self.connect("alice")
        for _ in range(20):
            c.protocol.pauseProducing()
            self.server.chat.broadcast("x" * 100)
            c.protocol.resumeProducing()
        self.assertFalse(c.protocol.closed)


class PipeliningTests(IRCTestCase):
    """Messages overlap while the store commits; other commands keep their turn."""

    def test_messages_overlap_in_the_store_and_the_next_command_waits_for_them(self) -> None:
        from twisted.internet.defer import Deferred

        alice = self.connect("alice", caps=("echo-message",))
        alice.send("JOIN #pipe")
        alice.read()
        held: list[tuple[Deferred[object], Deferred[object]]] = []
        original = self.server.store.add_room_message

        def slow(*args: object, **kw: object) -> Deferred[object]:
            outer: Deferred[object] = Deferred()
            held.append((outer, original(*args, **kw)))  # type: ignore[arg-type]
            return outer

        self.patch(self.server.store, "add_room_message", slow)
        alice.send("PRIVMSG #pipe :one", "PRIVMSG #pipe :two", "NOTICE #pipe :three",
                   "PART #pipe")
        self.assertEqual(len(held), 3)  # all three are in the store at once
        self.assertEqual(alice.read(), [])  # PART waits its turn
        for outer, stored in held:
            stored.chainDeferred(outer)
        lines = alice.read()
        self.assertEqual([m.command for m in lines], ["PRIVMSG", "PRIVMSG", "NOTICE", "PART"])
        self.assertEqual([m.params[1] for m in lines[:3]], ["one", "two", "three"])


class ConnectionMemoryTests(IRCTestCase):
    def test_connections_attributes_fit_one_shared_key_table(self) -> None:
        # CPython shares one key table among a class's instances for up to
        # 29 attributes; past that every connection's __dict__ is a table of
        # its own (1,584 bytes instead of ~300 on 3.11). What a PASS client
        # and a CAP+SASL client set, together, must stay within it.
        pass_client = self.connect("alice", how="pass")
        sasl_client = self.connect("bob", caps=("server-time", "message-tags", "batch"))
        for c in (pass_client, sasl_client):
            c.send("JOIN #x", "PRIVMSG #x :hi", "WHO #x", "PING :x")
        self.clock.advance(0)
        keys = set(vars(pass_client.protocol)) | set(vars(sasl_client.protocol))
        self.assertLessEqual(len(keys), 29, sorted(keys))
