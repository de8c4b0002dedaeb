"""IRC and native clients in one chat world; what reaches IRC from other doors."""

from __future__ import annotations

from pingchat.irc import wire
from pingchat.model import Message, iso_ms
from pingchat.testing import NativeTestClient
from tests.irc.helpers import PASSWORD, IRCTestCase


class BridgeTests(IRCTestCase):
    def test_room_chat_both_ways_between_irc_and_native(self) -> None:
        self.make_account("bob")
        bob = self.native("bob")
        irc = self.connect("alice", caps=("server-time", "message-tags"))
        irc.send("JOIN #lobby")
        irc.read()
        self.assertTrue(bob.request("join", room="#lobby")["ok"])
        joined = irc.read()[0]
        self.assertEqual((joined.command, joined.source), ("JOIN", "bob!bob@user/bob"))
        said = bob.request("say", room="#lobby", text="hi from native")
        got = irc.read()[0]
        self.assertEqual((got.command, got.params), ("PRIVMSG", ("#lobby", "hi from native")))
        self.assertEqual(got.tags["msgid"], str(said["msg_id"]))
        self.assertEqual(got.tags["time"], said["ts"])
        irc.send("PRIVMSG #lobby :hi from irc", "NOTICE #lobby :a notice")
        events = bob.take_events("message")
        self.assertEqual([(e["from"], e["text"]) for e in events],
                         [("alice", "hi from irc"), ("alice", "a notice")])
        self.assertEqual(events[1].get("kind"), "notice")

    def test_dms_both_ways(self) -> None:
        self.make_account("bob")
        bob = self.native("bob")
        irc = self.connect("alice")
        irc.send("PRIVMSG bob :hello bob")
        self.assertEqual(bob.take_events("message")[0]["text"], "hello bob")
        reply = bob.request("dm", to="alice", text="hello alice")
        self.assertTrue(reply["delivered"])
        m = irc.read()[0]
        self.assertEqual((m.command, m.params, m.source),
                         ("PRIVMSG", ("alice", "hello alice"), "bob!bob@user/bob"))

    def test_native_clients_get_no_tagmsg_and_messages_without_client_tags(self) -> None:
        self.make_account("bob")
        bob = self.native("bob")
        self.assertTrue(bob.request("join", room="#lobby")["ok"])
        irc = self.connect("alice", caps=("message-tags",))
        irc.send("JOIN #lobby")
        irc.read()
        bob.take_events()
        irc.send("@+typing=active TAGMSG #lobby", "@+typing=active TAGMSG bob",
                 "@+draft/reply=1 PRIVMSG #lobby :hello", "@+draft/reply=1 PRIVMSG bob :psst")
        events = bob.take_events()
        self.assertEqual([(e["event"], e.get("room"), e["text"]) for e in events],
                         [("message", "#lobby", "hello"), ("message", None, "psst")])
        self.assertFalse(any(k.startswith("+") or "tag" in k for e in events for k in e))

    def test_offline_dms_arrive_at_irc_login_with_server_time(self) -> None:
        self.make_account("alice")
        self.make_account("bob")
        bob = self.native("bob")
        sent = []
        for text in ("first", "second"):
            reply = bob.request("dm", to="alice", text=text)
            self.assertFalse(reply["delivered"])
            sent.append(reply)
            self.clock.advance(5)
        irc = self.connect("alice", caps=("server-time", "message-tags"), register=False)
        self.clock.advance(0)
        dms = [m for m in irc.received + irc.read() if m.command == "PRIVMSG"]
        self.assertEqual([m.params[1] for m in dms], ["first", "second"])
        self.assertEqual([m.tags["time"] for m in dms], [r["ts"] for r in sent])
        self.assertEqual([m.tags["msgid"] for m in dms], [str(r["msg_id"]) for r in sent])

    def test_offline_dms_without_server_time_show_when_they_were_sent(self) -> None:
        self.make_account("alice")
        self.make_account("bob")
        bob = self.native("bob")
        reply = bob.request("dm", to="alice", text="while you were out")
        irc = self.connect("alice", register=False)
        self.clock.advance(0)
        dm = next(m for m in irc.received + irc.read() if m.command == "PRIVMSG")
        self.assertEqual(dm.params[1],
                         f"[{reply['ts'][:16].replace('T', ' ')} UTC] while you were out")

    def test_irc_dm_to_an_offline_native_user_is_queued_and_said_so(self) -> None:
        self.make_account("bob")
        irc = self.connect("alice")
        irc.send("PRIVMSG bob :see this later")
        away = irc.read()[0]
        self.assertEqual(away.command, "301")
        bob = NativeTestClient(self.server)
        self.assertTrue(bob.request("login", user="bob", password=PASSWORD)["ok"])
        self.clock.advance(0)
        self.assertEqual(bob.take_events("message")[0]["text"], "see this later")

    def test_all_sessions_of_an_account_see_its_traffic(self) -> None:
        self.make_account("bob")
        native_alice = self.connect("alice")  # an IRC session...
        alice_native = self.native("alice")  # ...and a native one, same account
        bob = self.native("bob")
        self.assertTrue(alice_native.request("dm", to="bob", text="from my phone")["ok"])
        copy = native_alice.read()[0]
        self.assertEqual((copy.source.split("!")[0], copy.params),
                         ("alice", ("bob", "from my phone")))
        self.assertTrue(alice_native.request("join", room="#lobby")["ok"])
        self.assertEqual([m.command for m in native_alice.read()], ["JOIN", "353", "366"])
        bob.request("join", room="#lobby")
        bob.request("say", room="#lobby", text="hey")
        self.assertIn("PRIVMSG", [m.command for m in native_alice.read()])

    def test_rooms_of_the_account_are_joined_at_login(self) -> None:
        self.make_account("alice")
        native = self.native("alice")
        native.request("join", room="#one")
        native.request("join", room="#two")
        native.request("topic", room="#two", topic="Two's topic")
        irc = self.connect("alice", register=False)
        self.clock.advance(0)
        lines = irc.received
        self.assertEqual([m.params[0] for m in lines if m.command == "JOIN"], ["#one", "#two"])
        self.assertEqual(self.find(lines, "332").params[-1], "Two's topic")
        end_of_motd = [m.command for m in lines].index("376")
        self.assertGreater([m.command for m in lines].index("JOIN"), end_of_motd)

    def test_native_text_cannot_inject_irc_commands(self) -> None:
        self.make_account("bob")
        bob = self.native("bob")
        bob.request("join", room="#lobby")
        irc = self.connect("alice")
        irc.send("JOIN #lobby")
        irc.read()
        bob.request("say", room="#lobby", text="hi\r\nQUIT :owned")
        bob.request("topic", room="#lobby", topic="t\nKICK #lobby alice")
        bob.request("dm", to="alice", text="a\rPRIVMSG #lobby :b")
        raw = irc.raw()
        self.assertEqual(raw.count(b"\r\n"), 3, raw)
        # and even a message that reached the mind unclean goes out on one line
        # (a native request holding NUL is refused: tests/native/test_nul.py)
        irc.protocol.message(Message(id=9, ts=0, sender="bob", text="x\r\nQUIT :y\x00",
                                     to="alice", sender_account="bob"))
        raw = irc.raw()
        self.assertEqual(raw.count(b"\r\n"), 1)
        self.assertNotIn(b"\x00", raw)

    def test_long_native_text_is_split_to_fit_512_bytes(self) -> None:
        self.make_account("bob")
        bob = self.native("bob")
        irc = self.connect("alice", caps=("message-tags",))
        irc.send("JOIN #lobby")
        bob.request("join", room="#lobby")
        irc.read()
        text = " ".join(f"word{i}" for i in range(400)) + " é" * 150
        self.assertTrue(bob.request("say", room="#lobby", text=text)["ok"])
        raw = irc.raw()
        lines = raw.split(b"\r\n")[:-1]
        self.assertGreater(len(lines), 5)
        for line in lines:
            body = line.split(b" ", 1)[1] if line.startswith(b"@") else line
            self.assertLessEqual(len(body) + 2, 512)
        pieces = [wire.parse(line.decode()).params[1] for line in lines]
        self.assertEqual(" ".join(pieces).split(), text.split())
        self.assertEqual(sum(1 for line in lines if b"msgid=" in line), 1)

    def test_server_notice_and_admin_disconnect(self) -> None:
        irc = self.connect("alice")
        self.server.chat.broadcast("maintenance at noon")
        notice = irc.read()[0]
        self.assertEqual((notice.command, notice.source, notice.params[-1]),
                         ("NOTICE", "test.pingchat", "maintenance at noon"))
        self.server.chat.disconnect_user("alice", "kicked by an admin")
        error = irc.read()[0]
        self.assertEqual(error.command, "ERROR")
        self.assertIn("kicked by an admin", error.params[0])
        self.assertFalse(self.server.chat.is_online("alice"))

    def test_encrypted_dms_are_shown_as_a_placeholder(self) -> None:
        irc = self.connect("alice")
        irc.protocol.message(Message(id=3, ts=0, sender="bob", text=None, to="alice",
                                     ciphertext="AAAA", sender_account="bob"))
        self.assertIn("encrypted", irc.read()[0].params[-1])

    def test_time_tags_are_iso_with_milliseconds(self) -> None:
        irc = self.connect("alice", caps=("server-time",))
        irc.protocol.message(Message(id=3, ts=1_790_000_000_123, sender="bob", text="x",
                                     to="alice", sender_account="bob"))
        self.assertEqual(irc.read()[0].tags["time"], iso_ms(1_790_000_000_123))


class GuestBridgeTests(IRCTestCase):
    settings = {"guests": True}

    def test_a_guest_quit_is_one_quit_line(self) -> None:
        alice = self.connect("alice")
        g = self.connect("visitor", password=None)
        for c in (alice, g):
            c.send("JOIN #a", "JOIN #b")
        alice.read()
        g.disconnect()
        lines = alice.read()
        self.assertEqual([(m.command, m.source) for m in lines],
                         [("QUIT", "visitor!visitor@guest")])

    def test_account_members_stay_in_rooms_when_they_disconnect(self) -> None:
        alice = self.connect("alice")
        bob = self.connect("bob")
        for c in (alice, bob):
            c.send("JOIN #a")
        bob.disconnect()
        alice.read()
        alice.send("NAMES #a")
        self.assertIn("bob", alice.read()[0].params[-1].split())
