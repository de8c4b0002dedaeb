"""IRCv3: tags, echo, labels, batches, away-notify, extended-join, chathistory."""

from __future__ import annotations

from pingchat.model import iso_ms
from tests.irc.helpers import IRCTestCase

ALL = ("server-time", "message-tags", "echo-message", "account-tag", "batch",
       "labeled-response", "draft/chathistory", "away-notify", "extended-join")


class TagTests(IRCTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice", caps=ALL)
        self.bob = self.connect("bob", caps=("server-time", "message-tags", "account-tag"))
        self.plain = self.connect("carol")
        for c in (self.alice, self.bob, self.plain):
            c.send("JOIN #lobby")
        for c in (self.alice, self.bob, self.plain):
            c.read()

    def test_messages_carry_time_msgid_and_account_and_the_echo_matches(self) -> None:
        self.alice.send("PRIVMSG #lobby :hello")
        echo = self.alice.read()[0]
        got = self.bob.read()[0]
        self.assertEqual((echo.command, echo.params), ("PRIVMSG", ("#lobby", "hello")))
        self.assertEqual(got.tags["msgid"], echo.tags["msgid"])
        self.assertEqual(got.tags["time"], iso_ms(self.server.chat.now()))
        self.assertEqual(got.tags["account"], "alice")
        plain = self.plain.read()[0]
        self.assertEqual(dict(plain.tags), {})

    def test_each_capability_set_gets_its_own_tags_whatever_the_delivery_order(self) -> None:
        # The room's fan-out encodes a message once per tag set: a plain client
        # served first must not strip the tags of a tagged one, nor the reverse.
        dave = self.connect("dave")
        dave.send("JOIN #plainfirst")
        self.bob.send("JOIN #plainfirst")
        eve = self.connect("eve", caps=("server-time",))
        eve.send("JOIN #plainfirst")
        for c in (dave, self.bob, eve):
            c.read()
        self.alice.send("JOIN #plainfirst", "PRIVMSG #plainfirst :order")
        self.alice.read()
        got = {name: c.read()[-1] for name, c in (("dave", dave), ("bob", self.bob), ("eve", eve))}
        self.assertEqual(dict(got["dave"].tags), {})
        self.assertEqual(set(got["bob"].tags), {"time", "msgid", "account"})
        self.assertEqual(set(got["eve"].tags), {"time"})
        self.assertEqual({m.params for m in got.values()}, {("#plainfirst", "order")})

    def test_client_only_tags_ride_with_the_message_and_are_not_stored(self) -> None:
        self.alice.send("@+draft/reply=12;fizz=buzz PRIVMSG #lobby :threaded")
        echo = self.alice.read()[0]
        got = self.bob.read()[0]
        self.assertEqual(echo.tags.get("+draft/reply"), "12")
        self.assertEqual(got.tags.get("+draft/reply"), "12")
        self.assertNotIn("fizz", got.tags)  # only client-only (+) tags are relayed
        self.assertEqual(got.tags["msgid"], echo.tags["msgid"])
        self.assertEqual(dict(self.plain.read()[0].tags), {})
        self.alice.send("CHATHISTORY LATEST #lobby * 1")
        stored = [m for m in self.alice.read() if m.command == "PRIVMSG"]
        self.assertEqual(stored[0].params, ("#lobby", "threaded"))
        self.assertNotIn("+draft/reply", stored[0].tags)

    def test_tagmsg_reaches_only_clients_with_message_tags(self) -> None:
        self.alice.send(r"@label=t;+typing=active;+x=a\:b;cat=dog TAGMSG #lobby")
        echo = self.alice.read()
        got = self.bob.read()
        self.assertEqual([(m.command, m.params) for m in got], [("TAGMSG", ("#lobby",))])
        self.assertEqual((got[0].tags["+typing"], got[0].tags["+x"]), ("active", "a;b"))
        self.assertNotIn("cat", got[0].tags)
        self.assertNotIn("label", got[0].tags)
        self.assertEqual(got[0].source.split("!")[0], "alice")
        self.assertEqual([(m.command, m.tags.get("label")) for m in echo], [("TAGMSG", "t")])
        self.assertEqual(echo[0].tags["msgid"], got[0].tags["msgid"])
        self.assertEqual(self.plain.read(), [])

    def test_tagmsg_to_a_user_and_who_does_not_get_it(self) -> None:
        self.alice.send("@+typing=active TAGMSG bob", "@+typing=active TAGMSG carol")
        self.assertEqual([(m.command, m.params) for m in self.bob.read()],
                         [("TAGMSG", ("bob",))])
        self.assertEqual(self.plain.read(), [])  # carol has no message-tags
        self.assertEqual([m.params for m in self.alice.read()], [("bob",), ("carol",)])  # echoes
        self.alice.send("@label=s;+typing=active TAGMSG alice")  # to oneself: delivered and echoed
        mine = self.alice.read()
        self.assertEqual(sorted((m.command, m.tags.get("label", "")) for m in mine),
                         [("TAGMSG", ""), ("TAGMSG", "s")])
        self.alice.send("@+typing=active TAGMSG nobody", "@+typing=active TAGMSG #nowhere")
        self.assertEqual([m.command for m in self.alice.read() if m.command != "TAGMSG"],
                         ["401", "403"])
        # An account that takes DMs only from contacts gets no typing notices.
        bob = self.server.chat.sessions_of("bob")[0]
        self.successResultOf(self.server.accounts.set_dm_policy(bob, "contacts"))
        self.clock.advance(0)
        self.alice.send("@+typing=active TAGMSG bob")
        self.assertEqual(self.bob.read(), [])

    def test_tagmsg_is_checked_like_a_message(self) -> None:
        dave = self.connect("dave", caps=("message-tags",))
        self.alice.send("MODE #lobby +m")
        self.alice.read()
        for c in (self.bob, self.plain):
            c.read()
        dave.send("@+typing=active TAGMSG #lobby")  # not a member of a +n room
        self.assertEqual([m.command for m in dave.read()], ["404"])
        self.bob.send("@+typing=active TAGMSG #lobby")  # moderated, no voice
        self.assertEqual([m.command for m in self.bob.read()], ["404"])
        self.assertEqual([m.command for m in self.alice.read()], [])

    def test_without_echo_message_the_sender_sees_nothing(self) -> None:
        self.bob.send("PRIVMSG #lobby :hi")
        self.assertEqual(self.bob.read(), [])

    def test_labeled_ack_single_line_and_batch(self) -> None:
        self.alice.send("@label=a PONG :x")
        ack = self.alice.read()
        self.assertEqual([(m.command, m.tags.get("label")) for m in ack], [("ACK", "a")])
        self.alice.send("@label=b PING :x")
        pong = self.alice.read()
        self.assertEqual([(m.command, m.tags.get("label")) for m in pong], [("PONG", "b")])
        self.alice.send("@label=c WHOIS bob")
        lines = self.alice.read()
        self.assertEqual(lines[0].command, "BATCH")
        self.assertEqual(lines[0].params[1], "labeled-response")
        self.assertEqual(lines[0].tags["label"], "c")
        ref = lines[0].params[0][1:]
        self.assertTrue(all(m.tags.get("batch") == ref for m in lines[1:-1]))
        self.assertEqual(lines[-1].params, ("-" + ref,))
        self.alice.send("@label=d PRIVMSG #lobby :labelled")
        echo = self.alice.read()
        self.assertEqual([(m.command, m.tags.get("label")) for m in echo], [("PRIVMSG", "d")])

    def test_labeled_join_is_one_batch(self) -> None:
        self.alice.send("@label=j JOIN #new")
        lines = self.alice.read()
        self.assertEqual(lines[0].tags.get("label"), "j")
        self.assertEqual([m.command for m in lines[1:-1]], ["JOIN", "353", "366"])

    def test_labels_are_ignored_without_the_capability(self) -> None:
        self.bob.send("@label=x PING :y")
        self.assertNotIn("label", self.bob.read()[0].tags)

    def test_extended_join_and_away_notify(self) -> None:
        self.bob.send("PART #lobby", "JOIN #lobby")
        join = next(m for m in self.alice.read() if m.command == "JOIN")
        # account, then the real name bob gave in USER
        self.assertEqual(join.params, ("#lobby", "bob", "Real bob"))
        self.bob.send("AWAY :brb")
        away = self.alice.read()[0]
        self.assertEqual((away.command, away.params, away.source.split("!")[0]),
                         ("AWAY", ("brb",), "bob"))
        self.bob.send("AWAY")
        self.assertEqual(self.alice.read()[0].params, ())
        self.bob.disconnect()
        self.assertEqual(self.alice.read()[0].params, ("Offline",))
        self.assertNotIn("AWAY", [m.command for m in self.plain.read()])


class ChathistoryTests(IRCTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.connect("alice", caps=ALL)
        self.bob = self.connect("bob", caps=ALL)
        self.alice.send("JOIN #h")
        self.bob.send("JOIN #h")
        self.ids: list[str] = []
        self.times: list[str] = []
        for i in range(10):
            self.clock.advance(1)
            self.alice.send(f"PRIVMSG #h :m{i}")
            echo = next(m for m in self.alice.read() if m.command == "PRIVMSG")
            self.ids.append(echo.tags["msgid"])
            self.times.append(echo.tags["time"])
        self.bob.read()

    def history(self, line: str) -> list[str]:
        self.bob.send(line)
        lines = self.bob.read()
        self.assertEqual(lines[0].command, "BATCH", lines)
        self.assertEqual(lines[0].params[1:], ("chathistory", "#h"))
        ref = lines[0].params[0][1:]
        self.assertEqual(lines[-1].params, ("-" + ref,))
        inner = lines[1:-1]
        self.assertTrue(all(m.tags["batch"] == ref and "time" in m.tags for m in inner))
        return [m.params[1] for m in inner]

    def test_replies_keep_the_order_of_commands_when_the_store_answers_later(self) -> None:
        # The real reader thread answers a turn later. LATEST * resolves its
        # references at once and then waits for the query: the command must
        # still count as running (PONG after the batch, the label on it).
        from twisted.internet.defer import Deferred

        read = self.server.db.read

        def later(name: str, fn: object, *args: object) -> Deferred[object]:
            d: Deferred[object] = Deferred()
            self.clock.callLater(0.01, lambda: read(name, fn, *args).chainDeferred(d))  # type: ignore[arg-type]
            return d

        self.server.db.read = later  # type: ignore[method-assign]
        self.bob.send("@label=one CHATHISTORY LATEST #h * 2", "PING :after")
        self.assertEqual(self.bob.read(), [])
        self.clock.advance(0.01)
        lines = self.bob.read()
        self.assertEqual(
            [m.command for m in lines], ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH", "PONG"]
        )
        self.assertEqual(lines[0].tags.get("label"), "one")
        self.assertEqual(lines[-1].params[-1], "after")

    def test_latest(self) -> None:
        self.assertEqual(self.history("CHATHISTORY LATEST #h * 3"), ["m7", "m8", "m9"])
        self.assertEqual(self.history(f"CHATHISTORY LATEST #h msgid={self.ids[7]} 10"),
                         ["m8", "m9"])
        self.assertEqual(self.history(f"CHATHISTORY LATEST #h timestamp={self.times[8]} 10"),
                         ["m9"])

    def test_before_and_after(self) -> None:
        self.assertEqual(self.history(f"CHATHISTORY BEFORE #h msgid={self.ids[5]} 2"),
                         ["m3", "m4"])
        self.assertEqual(self.history(f"CHATHISTORY AFTER #h msgid={self.ids[5]} 2"),
                         ["m6", "m7"])
        self.assertEqual(self.history(f"CHATHISTORY BEFORE #h timestamp={self.times[5]} 2"),
                         ["m3", "m4"])
        self.assertEqual(self.history(f"CHATHISTORY AFTER #h timestamp={self.times[5]} 2"),
                         ["m6", "m7"])

    def test_around_and_between(self) -> None:
        self.assertEqual(self.history(f"CHATHISTORY AROUND #h msgid={self.ids[5]} 4"),
                         ["m3", "m4", "m5", "m6"])
        self.assertEqual(
            self.history(f"CHATHISTORY BETWEEN #h msgid={self.ids[2]} msgid={self.ids[6]} 10"),
            ["m3", "m4", "m5"])
        self.assertEqual(
            self.history(f"CHATHISTORY BETWEEN #h msgid={self.ids[6]} msgid={self.ids[2]} 2"),
            ["m4", "m5"])
        self.assertEqual(
            self.history(
                f"CHATHISTORY BETWEEN #h timestamp={self.times[2]} timestamp={self.times[6]} 2"),
            ["m3", "m4"])

    def test_dm_history_and_targets(self) -> None:
        self.alice.send("PRIVMSG bob :private hello")
        self.clock.advance(1)
        self.bob.send("PRIVMSG alice :private reply")
        self.alice.read()
        self.bob.read()
        self.bob.send("CHATHISTORY LATEST alice * 10")
        lines = [m for m in self.bob.read() if m.command == "PRIVMSG"]
        self.assertEqual([(m.source.split("!")[0], m.params) for m in lines],
                         [("alice", ("bob", "private hello")),
                          ("bob", ("alice", "private reply"))])
        self.bob.send("CHATHISTORY TARGETS timestamp=2020-01-01T00:00:00.000Z "
                      "timestamp=2100-01-01T00:00:00.000Z 10")
        lines = self.bob.read()
        self.assertEqual(lines[0].params[1], "draft/chathistory-targets")
        self.assertEqual([m.params[1] for m in lines[1:-1]], ["#h", "alice"])

    def test_targets_bounds_are_exclusive(self) -> None:
        end = "timestamp=2100-01-01T00:00:00.000Z"
        self.bob.send(f"CHATHISTORY TARGETS timestamp={self.times[9]} {end} 10",
                      f"CHATHISTORY TARGETS timestamp={self.times[8]} {end} 10",
                      f"CHATHISTORY TARGETS timestamp={self.times[0]} timestamp={self.times[9]} 10")
        batches: list[list[str]] = []
        for m in self.bob.read():
            if m.command == "BATCH" and m.params[0].startswith("+"):
                batches.append([])
            elif m.command == "CHATHISTORY":
                batches[-1].append(m.params[1])
        # The last window holds m0..m8 but not the room's latest message, m9:
        # TARGETS lists a conversation by its latest message.
        self.assertEqual(batches, [[], ["#h"], []])

    def test_errors(self) -> None:
        self.bob.send("CHATHISTORY LATEST #nowhere * 10", "CHATHISTORY LATEST #h * x",
                      "CHATHISTORY FOO #h * 1", "CHATHISTORY BEFORE #h junk 10",
                      "CHATHISTORY LATEST")
        lines = self.bob.read()
        self.assertEqual([m.command for m in lines], ["FAIL"] * 5)
        self.assertEqual(lines[0].params[:3], ("CHATHISTORY", "INVALID_TARGET", "LATEST"))
        self.assertEqual(lines[1].params[1], "INVALID_PARAMS")

    def test_without_batch_the_lines_come_plain(self) -> None:
        c = self.connect("carol", caps=("server-time",))
        c.send("JOIN #h")
        c.read()
        c.send("CHATHISTORY LATEST #h * 2")
        lines = c.read()
        self.assertEqual([m.command for m in lines], ["PRIVMSG", "PRIVMSG"])
        self.assertIn("time", lines[0].tags)
