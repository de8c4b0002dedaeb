"""The native door's TLS transport gives back what its memory BIOs grew to."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import TestCase

from pingchat.runtime import TurnFlusher
from pingchat.tls import COMPACT_AFTER, COMPACT_DELAY, CompactTLSFactory, ensure_certificate
from pingchat.tls import server_options as make_server_options
from pingchat.twisted_internals import openssl
from pingchat.twisted_internals.openssl import compact_bios


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


class Collect(Protocol):
    def __init__(self) -> None:
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def bios(connection: Any) -> tuple[Any, Any]:
    return connection._into_ssl, connection._from_ssl


class TLSTestCase(TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.dir, True)
        key, cert = ensure_certificate(self.dir, "localhost")
        self.cert = cert
        self.server_options = make_server_options(key, cert)
        self.client_options = optionsForClientTLS(
            "localhost", trustRoot=Certificate.loadPEM(cert.read_bytes())
        )

    def pair(
        self, server_protocol: type[Protocol], clock: Clock, server_clock: Any = None
    ) -> tuple[Any, Any, Any]:
        """A CompactTLSTransport server and a Twisted TLS client, joined in memory."""
        server_factory = CompactTLSFactory(
            self.server_options,
            False,
            Factory.forProtocol(server_protocol),
            clock=server_clock or clock,
        )
        client_factory = TLSMemoryBIOFactory(
            self.client_options, True, Factory.forProtocol(Collect), clock=clock
        )
        return connectedServerAndClient(
            lambda: server_factory.buildProtocol(None),
            lambda: client_factory.buildProtocol(None),
            clock=clock,
        )


class CompactBIOTests(TLSTestCase):
    """``compact_bios`` on pyOpenSSL connections driven by hand."""

    def handshake(self) -> tuple[SSL.Connection, SSL.Connection]:
        server = SSL.Connection(self.server_options.getContext(), None)
        server.set_accept_state()
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.load_verify_locations(str(self.cert))
        context.set_verify(SSL.VERIFY_PEER)
        client = SSL.Connection(context, None)
        client.set_tlsext_host_name(b"localhost")
        client.set_connect_state()
        for _ in range(10):
            for side in (client, server):
                with contextlib.suppress(SSL.WantReadError):
                    side.do_handshake()
            self.move(client, server)
            self.move(server, client)
        # The server reads what the client sent after its Finished, if anything.
        with contextlib.suppress(SSL.WantReadError):
            server.recv(1)
        return server, client

    def move(self, source: SSL.Connection, sink: SSL.Connection) -> None:
        with contextlib.suppress(SSL.WantReadError):
            sink.bio_write(source.bio_read(2**20))

    def exchange(self, server: SSL.Connection, client: SSL.Connection, size: int) -> None:
        """*size* bytes each way, record by record."""
        data = bytes(range(256)) * (size // 256)
        for sender, receiver in ((client, server), (server, client)):
            received = b""
            for i in range(0, len(data), 2**14):
                sender.send(data[i : i + 2**14])
                self.move(sender, receiver)
                while len(received) < i + len(data[i : i + 2**14]):
                    received += receiver.recv(2**15)
            self.assertEqual(received, data)

    def test_swaps_empty_bios_and_the_connection_goes_on(self) -> None:
        server, client = self.handshake()
        before = bios(server)
        self.assertTrue(compact_bios(server))
        after = bios(server)
        self.assertNotEqual(after[0], before[0])
        self.assertNotEqual(after[1], before[1])
        self.exchange(server, client, 40_000)
        self.assertTrue(compact_bios(server))
        self.exchange(server, client, 1_000)

    def test_leaves_bios_holding_data(self) -> None:
        server, client = self.handshake()
        client.send(b"still in the server's incoming BIO")
        self.move(client, server)
        before = bios(server)
        self.assertFalse(compact_bios(server))
        self.assertEqual(bios(server), before)
        self.assertEqual(server.recv(100), b"still in the server's incoming BIO")

        server.send(b"still in the server's outgoing BIO")
        self.assertFalse(compact_bios(server))
        self.assertEqual(bios(server), before)
        self.move(server, client)
        self.assertEqual(client.recv(100), b"still in the server's outgoing BIO")

    def test_does_nothing_without_memory_bios(self) -> None:
        class NotAConnection:
            pass

        self.assertFalse(compact_bios(NotAConnection()))


class CompactTLSTransportTests(TLSTestCase):
    """The transport of ``ssl:`` listeners compacts after the handshake and big bursts."""

    def test_compacts_after_handshake_and_large_chunks(self) -> None:
        compacted: list[Any] = []

        def counting(connection: Any) -> bool:
            done = compact_bios(connection)
            if done:
                compacted.append(connection)
            return done

        self.patch(openssl, "compact_bios", counting)
        clock = Clock()
        collect, server, pump = self.pair(Echo, clock)
        collect.write(b"hello\n")
        pump.flush()
        self.assertEqual(collect.wrappedProtocol.received, b"hello\n")  # type: ignore[attr-defined]
        self.assertEqual(len(compacted), 1)  # once the handshake is done

        collect.write(b"small\n")
        pump.flush()
        self.assertEqual(len(compacted), 1)  # small chunks leave the BIOs alone

        big = b"x" * (COMPACT_AFTER * 5)
        collect.write(big)
        pump.flush()
        self.assertEqual(
            collect.wrappedProtocol.received,  # type: ignore[attr-defined]
            b"hello\nsmall\n" + big,
        )
        # Not after each burst: once, a while after the first of them.
        self.assertEqual(len(compacted), 1)
        collect.write(big)
        pump.flush()
        clock.advance(COMPACT_DELAY)
        self.assertEqual(len(compacted), 2)
        clock.advance(COMPACT_DELAY)
        self.assertEqual(len(compacted), 2)
        self.assertTrue(all(c is server._tlsConnection for c in compacted))

        # A compaction still waiting when the connection closes is cancelled.
        collect.write(big)
        pump.flush()
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        collect.transport.loseConnection()  # type: ignore[union-attr]
        pump.flush()
        self.assertEqual(clock.getDelayedCalls(), [])


class LineEcho(Protocol):
    """Greets before the handshake is done; echoes each line with a write of its own."""

    def connectionMade(self) -> None:
        self.transport.write(b"welcome\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        for line in data.splitlines(keepends=True):
            self.transport.write(line)  # type: ignore[union-attr]


class CountingLib:
    """OpenSSL's cffi lib, counting the bytes of each ``SSL_write``."""

    def __init__(self, lib: Any) -> None:
        self.lib = lib
        self.writes: list[int] = []

    def SSL_write(self, ssl: Any, buf: Any, n: int) -> int:  # noqa: N802 - OpenSSL's name
        self.writes.append(n)
        return int(self.lib.SSL_write(ssl, buf, n))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, name)


class TurnWritesTests(TLSTestCase):
    """With a TurnFlusher as its clock, a turn's writes are one SSL_write, in order."""

    def connect(self) -> tuple[Any, Any, Any, CountingLib]:
        lib = CountingLib(openssl.lib)
        self.patch(openssl, "lib", lib)
        clock = Clock()
        collect, server, pump = self.pair(LineEcho, clock, TurnFlusher(clock))
        return collect, server, pump, lib

    def test_a_turns_writes_become_one_ssl_write(self) -> None:
        collect, _server, pump, lib = self.connect()
        pump.flush()
        received = collect.wrappedProtocol  # type: ignore[attr-defined]
        # Written before the handshake was done, and not lost.
        self.assertEqual(received.received, b"welcome\n")
        del lib.writes[:]
        collect.write(b"one\ntwo\nthree\n")
        pump.flush()
        self.assertEqual(received.received, b"welcome\none\ntwo\nthree\n")
        self.assertEqual(lib.writes, [len(b"one\ntwo\nthree\n")])

    def test_large_writes_and_writes_after_the_end(self) -> None:
        collect, server, pump, lib = self.connect()
        pump.flush()
        del lib.writes[:]
        big = bytes(range(256)) * 300 + b"\n"  # more than a TLS record: Twisted's path
        collect.write(big)
        pump.flush()
        received = collect.wrappedProtocol  # type: ignore[attr-defined]
        self.assertEqual(received.received, b"welcome\n" + big)
        self.assertEqual(lib.writes, [])
        collect.write(b"last\n")
        pump.flush()
        self.assertEqual(lib.writes, [5])
        collect.transport.loseConnection()  # type: ignore[union-attr]
        pump.flush()
        server.write(b"too late\n")  # dropped, as Twisted's transport drops it
        pump.flush()
        self.assertEqual(received.received, b"welcome\n" + big + b"last\n")
        self.assertEqual(lib.writes, [5])


class Lines(Protocol):
    """Keeps what arrives, chunk by chunk, and how the connection ended."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.reason: Any = None

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.reason = reason


class ReadCountingLib(CountingLib):
    """OpenSSL's cffi lib, also counting ``SSL_read`` calls and their results."""

    def __init__(self, lib: Any) -> None:
        super().__init__(lib)
        self.reads: list[int] = []

    def SSL_read(self, ssl: Any, buf: Any, n: int) -> int:  # noqa: N802 - OpenSSL's name
        result = int(self.lib.SSL_read(ssl, buf, n))
        self.reads.append(result)
        return result


class FastReadTests(TLSTestCase):
    """After the handshake, records are decrypted by SSL_read until OpenSSL wants more."""

    def connect(self) -> tuple[Any, Any, Any, Clock, ReadCountingLib]:
        lib = ReadCountingLib(openssl.lib)
        self.patch(openssl, "lib", lib)
        clock = Clock()
        collect, server, pump = self.pair(Lines, clock, TurnFlusher(clock))
        pump.flush()
        self.assertTrue(server._handshakeDone)
        del lib.reads[:]
        return collect, server, pump, clock, lib

    def records(self, collect: Any, clock: Clock, pump: Any, *writes: bytes) -> bytes:
        """What the client's TLS puts on the wire for *writes*, one record each."""
        for data in writes:
            collect.write(data)
            clock.advance(0)  # the client's small-write aggregation
        wire: bytes = pump.clientIO.getOutBuffer()
        return wire

    def test_records_whole_and_split_arrive_in_order(self) -> None:
        collect, server, pump, clock, lib = self.connect()
        wire = self.records(collect, clock, pump, b"one\n", b"two\n", b"three\n")
        server.dataReceived(wire)
        lines = server.wrappedProtocol
        self.assertEqual(b"".join(lines.chunks), b"one\ntwo\nthree\n")
        # One SSL_read per record, then one that found nothing more.
        self.assertEqual(lib.reads[-1], -1)
        self.assertEqual([n for n in lib.reads if n > 0], [4, 4, 6])

        # A record cut anywhere waits for its end, then arrives whole.
        for cut in (1, 5, 20, -1):
            lines.chunks.clear()
            wire = self.records(collect, clock, pump, b"split %d\n" % cut)
            server.dataReceived(wire[:cut])
            self.assertEqual(lines.chunks, [])
            server.dataReceived(wire[cut:])
            self.assertEqual(lines.chunks, [b"split %d\n" % cut])

    def test_close_notify_and_garbage_are_twisteds_to_handle(self) -> None:
        collect, server, pump, _clock, lib = self.connect()
        lines = server.wrappedProtocol
        collect.write(b"last words\n")
        collect.loseConnection()  # sends close_notify after the data
        pump.flush()
        self.assertEqual(lines.chunks, [b"last words\n"])
        self.assertIsNotNone(lines.reason)
        self.assertIn(0, lib.reads)  # SSL_read saw the shutdown; Twisted handled it

        _collect, server, pump, _clock, lib = self.connect()
        lines = server.wrappedProtocol
        # An application-data record that does not decrypt.
        server.dataReceived(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        pump.flush()
        self.assertIn(-1, lib.reads)
        self.assertEqual(lines.chunks, [])
        self.assertIsNotNone(lines.reason)
        self.assertIn("SSL", str(lines.reason.value))
