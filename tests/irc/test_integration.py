"""The IRC gateway over real loopback sockets, plaintext and TLS."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.protocols.basic import LineOnlyReceiver
from twisted.trial.unittest import TestCase

from pingchat.irc import wire
from pingchat.irc.factory import IRCFactory
from pingchat.testing import make_server
from pingchat.tls import ensure_certificate, server_endpoint, server_options
from tests.irc.helpers import PASSWORD, plain


class LineClient(LineOnlyReceiver):
    """Collects parsed lines; ``wait_for`` fires when one matches."""

    delimiter = b"\r\n"

    def __init__(self) -> None:
        self.lines: list[wire.Message] = []
        self.waiting: list[tuple[Any, defer.Deferred[wire.Message]]] = []
        self.lost: defer.Deferred[None] = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        m = wire.parse(wire.decode(line))
        self.lines.append(m)
        for item in list(self.waiting):
            if item[0](m):
                self.waiting.remove(item)
                item[1].callback(m)

    def send(self, *lines: str) -> None:
        for line in lines:
            self.sendLine(line.encode("utf-8"))

    def wait_for(self, predicate: Any) -> defer.Deferred[wire.Message]:
        for m in self.lines:
            if predicate(m):
                return defer.succeed(m)
        d: defer.Deferred[wire.Message] = defer.Deferred()
        self.waiting.append((predicate, d))
        return d.addTimeout(10, reactor)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


class LoopbackTestCase(TestCase):
    """An inline server with an IRC factory on the real reactor, and socket clients."""

    def setUp(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="pingchat-irc-net-"))
        self.addCleanup(shutil.rmtree, self.data_dir, True)
        self.server = make_server(self.data_dir)
        self.addCleanup(self.server.db.stop)
        for name in ("alice", "bob"):
            self.successResultOf(self.server.accounts.register(name, PASSWORD, None))
        # The chat world runs on its Clock; the IRC connections on the real reactor.
        self.factory = IRCFactory(self.server.chat, self.server.portal, self.server.accounts,
                                  reactor, server_name="test.pingchat")
        key, cert = ensure_certificate(self.data_dir, "localhost")
        self.cert = cert.read_bytes()
        self.tls = server_options(key, cert)

    @defer.inlineCallbacks
    def listen(self, description: str) -> Any:
        port = yield server_endpoint(reactor, description, self.tls).listen(self.factory)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @defer.inlineCallbacks
    def connect(self, port: int, tls: bool) -> Any:
        endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        if tls:
            trust = Certificate.loadPEM(self.cert)
            endpoint = wrapClientTLS(optionsForClientTLS("localhost", trust), endpoint)
        client = yield endpoint.connect(Factory.forProtocol(LineClient))
        self.addCleanup(self.close, client)
        return client

    def close(self, client: LineClient) -> defer.Deferred[None]:
        if client.transport is not None and not client.lost.called:
            client.transport.loseConnection()
        return client.lost

    @defer.inlineCallbacks
    def login(self, client: LineClient, name: str) -> Any:
        client.send("CAP LS 302", f"NICK {name}", f"USER {name} 0 * :{name}",
                    "CAP REQ :sasl server-time message-tags", "AUTHENTICATE PLAIN")
        yield client.wait_for(lambda m: m.command == "AUTHENTICATE")
        client.send("AUTHENTICATE " + plain(name, PASSWORD), "CAP END")
        welcome = yield client.wait_for(lambda m: m.command == "001")
        yield client.wait_for(lambda m: m.command in ("376", "422"))
        return welcome


class LoopbackTests(LoopbackTestCase):
    @defer.inlineCallbacks
    def test_plain_and_tls_clients_chat_through_one_room(self) -> Any:
        plain_port = yield self.listen("tcp:0:interface=127.0.0.1")
        tls_port = yield self.listen("ssl:0:interface=127.0.0.1")
        alice = yield self.connect(plain_port, tls=False)
        bob = yield self.connect(tls_port, tls=True)
        welcome = yield self.login(alice, "alice")
        self.assertEqual(welcome.params[0], "alice")
        yield self.login(bob, "bob")
        alice.send("JOIN #net")
        yield alice.wait_for(lambda m: m.command == "366")
        bob.send("JOIN #net")
        yield alice.wait_for(lambda m: m.command == "JOIN" and m.source.startswith("bob!"))
        bob.send("PRIVMSG #net :over TLS", "PRIVMSG alice :direct")
        said = yield alice.wait_for(lambda m: m.command == "PRIVMSG" and m.params[0] == "#net")
        self.assertEqual(said.params[1], "over TLS")
        self.assertIn("msgid", said.tags)
        dm = yield alice.wait_for(lambda m: m.command == "PRIVMSG" and m.params[0] == "alice")
        self.assertEqual(dm.params[1], "direct")

    @defer.inlineCallbacks
    def test_client_only_tags_cross_plain_and_tls_sockets(self) -> Any:
        plain_port = yield self.listen("tcp:0:interface=127.0.0.1")
        tls_port = yield self.listen("ssl:0:interface=127.0.0.1")
        alice = yield self.connect(plain_port, tls=False)
        bob = yield self.connect(tls_port, tls=True)
        yield self.login(alice, "alice")
        yield self.login(bob, "bob")
        for c in (alice, bob):
            c.send("JOIN #tags")
            yield c.wait_for(lambda m: m.command == "366")
        bob.send("@+typing=active TAGMSG #tags", "@+draft/reply=7 PRIVMSG #tags :re",
                 "@+typing=done TAGMSG alice")
        typing = yield alice.wait_for(lambda m: m.command == "TAGMSG" and m.params == ("#tags",))
        self.assertEqual(typing.tags["+typing"], "active")
        self.assertTrue(typing.tags["msgid"].startswith("live"))
        reply = yield alice.wait_for(lambda m: m.command == "PRIVMSG")
        self.assertEqual((reply.params[1], reply.tags["+draft/reply"]), ("re", "7"))
        direct = yield alice.wait_for(lambda m: m.command == "TAGMSG" and m.params == ("alice",))
        self.assertEqual(direct.tags["+typing"], "done")

    def test_quit_closes_the_socket(self) -> defer.Deferred[None]:
        return self._quit_closes_the_socket(tls=False)

    def test_quit_closes_the_socket_over_tls(self) -> defer.Deferred[None]:
        # The connection is its own output producer; Twisted's TLS transport
        # holds its shutdown back while a producer is registered.
        return self._quit_closes_the_socket(tls=True)

    @defer.inlineCallbacks
    def _quit_closes_the_socket(self, tls: bool) -> Any:
        port = yield self.listen(("ssl:" if tls else "tcp:") + "0:interface=127.0.0.1")
        alice = yield self.connect(port, tls=tls)
        yield self.login(alice, "alice")
        alice.send("QUIT :bye")
        error = yield alice.wait_for(lambda m: m.command == "ERROR")
        self.assertIn("bye", error.params[0])
        yield alice.lost.addTimeout(10, reactor)
        self.assertFalse(self.server.chat.is_online("alice"))
