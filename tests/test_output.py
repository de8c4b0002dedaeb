"""What pingchat.output measures of a connection's unsent output, layer by layer."""

from __future__ import annotations

from twisted.internet.abstract import FileDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase

from pingchat.runtime import turn_flusher
from pingchat.tls import CompactTLSFactory, TurnWrites
from pingchat.twisted_internals import pending_output_bytes as unsent_bytes


def socket_transport(
    held: bytes = b"", sent: int = 0, later: tuple[bytes, ...] = ()
) -> FileDescriptor:
    """A socket transport whose buffers hold *held* (*sent* bytes of it gone) and *later*."""
    fd = FileDescriptor(MemoryReactor())
    fd.dataBuffer, fd.offset = held, sent
    fd._tempDataBuffer, fd._tempDataLen = list(later), sum(map(len, later))
    return fd


def tls_over(transport: object, factory: type[TLSMemoryBIOFactory] = TLSMemoryBIOFactory,
             clock: object = None) -> BufferingTLSTransport:
    tls = factory(CertificateOptions(), False, Factory.forProtocol(Protocol),
                  clock=clock).buildProtocol(None)
    tls.transport = transport
    tls._appSendBuffer = []
    return tls  # type: ignore[no-any-return]


class UnsentBytesTests(TestCase):
    def test_a_socket_transport_holds_what_is_left_of_both_buffers(self) -> None:
        self.assertEqual(unsent_bytes(socket_transport(b"12345", 1, (b"abc", b"de"))), 9)
        self.assertEqual(unsent_bytes(socket_transport()), 0)

    def test_a_tls_layer_adds_what_it_holds_and_counts_the_socket_once(self) -> None:
        # A ProtocolWrapper forwards attributes it lacks (dataBuffer...) to
        # the transport below: the socket's buffer must not count twice.
        tls = tls_over(socket_transport(b"12345", 0, (b"abc",)))
        tls._appSendBuffer = [b"before the handshake"]
        self.assertEqual(unsent_bytes(tls), 8 + 20)

    def test_the_turns_writes_of_either_aggregator_are_counted(self) -> None:
        twisted_tls = tls_over(socket_transport(b"1"), clock=Clock())
        twisted_tls._aggregator.write(b"x" * 10)
        self.assertEqual(unsent_bytes(twisted_tls), 11)
        reactor = Clock()
        pingchat_tls = tls_over(socket_transport(b"1"), CompactTLSFactory, turn_flusher(reactor))
        pingchat_tls.write(b"y" * 7)
        self.assertEqual(unsent_bytes(pingchat_tls), 8)

    def test_the_turns_writes_are_no_longer_pending_once_given_to_tls(self) -> None:
        reactor, given = Clock(), []
        writes = TurnWrites(given.append, turn_flusher(reactor))
        writes.write(b"ab")
        writes.write(b"cde")
        self.assertEqual(writes.pending, 5)
        reactor.advance(0)
        self.assertEqual((writes.pending, given), (0, [b"abcde"]))

    def test_other_wrappers_are_looked_through(self) -> None:
        wrapper = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
        wrapper.transport = socket_transport(b"abc")
        self.assertEqual(unsent_bytes(wrapper), 3)

    def test_a_transport_it_does_not_know_cannot_be_measured(self) -> None:
        self.assertIsNone(unsent_bytes(StringTransport()))
        self.assertIsNone(unsent_bytes(tls_over(StringTransport())))
        self.assertIsNone(unsent_bytes(None))
