"""End to end: real IRC clients (irssi in tmux, weechat-headless, and a bot
written with Twisted's IRC client library) against ``twistd -n pingchat``,
talking with a native-protocol client in the same test."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase
from twisted.words.protocols import irc

from tests.client import LineClient
from tests.e2e.harness import ServerProcess, wait_until
from tests.e2e.irc_clients import Irssi, WeeChat

PASSWORD = "correct horse"


class IRCEndToEndBase(TestCase):
    extra: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.server = ServerProcess(*self.extra, irc="tcp:0:interface=127.0.0.1",
                                    ircs="ssl:0:interface=127.0.0.1").start()
        self.addCleanup(self.server.cleanup)
        self.natives: list[LineClient] = []
        self.addCleanup(lambda: [c.close() for c in self.natives])

    def native(self, name: str, register: bool = True) -> LineClient:
        c = LineClient("127.0.0.1", self.server.port())
        self.natives.append(c)
        if register:
            self.assertTrue(c.request("register", user=name, password=PASSWORD)["ok"])
        self.assertTrue(c.request("login", user=name, password=PASSWORD)["ok"])
        return c

    def register(self, name: str) -> None:
        c = LineClient("127.0.0.1", self.server.port())
        try:
            self.assertTrue(c.request("register", user=name, password=PASSWORD)["ok"])
        finally:
            c.close()

    def wait_joined(self, native: LineClient, room: str, user: str) -> None:
        native.sock.settimeout(20)
        native.event("joined", room=room, user=user)


class IrssiTests(IRCEndToEndBase):
    def test_irssi_over_tls_with_sasl_chats_with_a_native_user(self) -> None:
        self.register("alice")
        bob = self.native("bob")
        # While alice is away: a DM for her, and a room with history.
        self.assertFalse(bob.request("dm", to="alice", text="sent while you were out")[
            "delivered"])
        self.assertTrue(bob.request("join", room="#e2e")["ok"])
        self.assertTrue(bob.request("say", room="#e2e", text="earlier words")["ok"])

        alice = Irssi("alice", self.server.port("IRCFactory-tls"), PASSWORD).start()
        self.addCleanup(alice.stop)
        # The offline DM opens a query window as soon as alice is logged in.
        log = alice.wait_log("bob", "sent while you were out")
        self.assertIn("<bob>", log)

        alice.type("/join #e2e")
        self.wait_joined(bob, "#e2e", "alice")
        self.assertTrue(bob.request("say", room="#e2e", text="hello irssi")["ok"])
        alice.wait_log("#e2e", "hello irssi")

        alice.type("/window goto #e2e")
        alice.type("hi native from irssi")
        event = bob.event("message", room="#e2e")
        self.assertEqual((event["from"], event["text"]), ("alice", "hi native from irssi"))

        alice.type("/msg bob a private word")
        event = bob.event("message", to="bob")
        self.assertEqual((event["from"], event["text"]), ("alice", "a private word"))
        self.assertTrue(bob.request("dm", to="alice", text="private answer")["delivered"])
        alice.wait_log("bob", "private answer")

        self.assertTrue(bob.request("mode", room="#e2e", give_op="alice")["ok"])
        alice.wait_log("#e2e", "+o alice")
        alice.type("/window goto #e2e")
        alice.type("/topic new topic from irssi")
        self.assertEqual(bob.event("topic", room="#e2e")["topic"], "new topic from irssi")
        who = bob.request("whois", user="alice")
        self.assertEqual(who["doors"], ["irc"])


class WeeChatTests(IRCEndToEndBase):
    def test_weechat_over_tls_with_sasl_chats_with_a_native_user(self) -> None:
        self.register("carol")
        bob = self.native("bob")
        self.assertTrue(bob.request("join", room="#wee")["ok"])
        carol = WeeChat("carol", self.server.port("IRCFactory-tls"), PASSWORD,
                        ca_file=self.server.data_dir / "tls-cert.pem", script=[
            "/set irc.server.pc.autojoin #wee",
            # weechat has no input here: its part of the talk is scripted
            "/wait 4s /msg -server pc #wee hi from weechat",
            "/wait 4s /msg -server pc bob a dm from weechat",
        ]).start()
        self.addCleanup(carol.stop)
        self.wait_joined(bob, "#wee", "carol")
        self.assertTrue(bob.request("say", room="#wee", text="hello weechat")["ok"])
        carol.wait_log("#wee", "hello weechat")
        event = bob.event("message", room="#wee")
        self.assertEqual((event["from"], event["text"]), ("carol", "hi from weechat"))
        event = bob.event("message", to="bob")
        self.assertEqual((event["from"], event["text"]), ("carol", "a dm from weechat"))


class Bot(irc.IRCClient):
    """A bot written with Twisted's IRC client library (twisted.words)."""

    nickname = "robot"
    password = f"robot:{PASSWORD}"  # PASS account:password

    def __init__(self) -> None:
        self.signed_on: defer.Deferred[None] = defer.Deferred()
        self.received: list[tuple[str, str, str]] = []
        self.waiters: list[tuple[Any, defer.Deferred[tuple[str, str, str]]]] = []
        self.lost: defer.Deferred[None] = defer.Deferred()

    def signedOn(self) -> None:
        self.signed_on.callback(None)

    def privmsg(self, user: str, channel: str, message: str) -> None:
        item = (user.split("!")[0], channel, message)
        self.received.append(item)
        for waiter in list(self.waiters):
            if waiter[0](item):
                self.waiters.remove(waiter)
                waiter[1].callback(item)

    def wait(self, predicate: Any) -> defer.Deferred[tuple[str, str, str]]:
        for item in self.received:
            if predicate(item):
                return defer.succeed(item)
        d: defer.Deferred[tuple[str, str, str]] = defer.Deferred()
        self.waiters.append((predicate, d))
        return d.addTimeout(20, reactor)

    def connectionLost(self, reason: Any) -> None:
        irc.IRCClient.connectionLost(self, reason)
        self.lost.callback(None)


class LibraryClientTests(IRCEndToEndBase):
    @defer.inlineCallbacks
    def test_a_twisted_words_bot_and_a_native_client_talk(self) -> Any:
        bob = self.native("bob")
        self.register("robot")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.server.port("IRCFactory"))
        factory = Factory.forProtocol(Bot)
        bot: Bot = yield endpoint.connect(factory)
        self.addCleanup(lambda: (bot.transport.loseConnection(), bot.lost)[1])
        yield bot.signed_on
        bot.join("#bots")
        yield threads.deferToThread(
            wait_until, lambda: "robot" in {m["user"] for m in bob.request(
                "members", room="#bots").get("members", [])}, 20, 0.1, "robot in #bots")
        yield threads.deferToThread(bob.request, "join", room="#bots")
        yield threads.deferToThread(bob.request, "say", room="#bots", text="ping bot")
        said = yield bot.wait(lambda item: item[1] == "#bots")
        self.assertEqual(said, ("bob", "#bots", "ping bot"))
        bot.msg("#bots", "pong human")
        bot.msg("bob", "and privately")
        event = yield threads.deferToThread(bob.event, "message", room="#bots")
        self.assertEqual((event["from"], event["text"]), ("robot", "pong human"))
        event = yield threads.deferToThread(bob.event, "message", to="bob")
        self.assertEqual(event["text"], "and privately")
        yield threads.deferToThread(bob.request, "dm", to="robot", text="hello robot")
        dm = yield bot.wait(lambda item: item[1] == "robot")
        self.assertEqual(dm, ("bob", "robot", "hello robot"))
