"""OpenSSL through cffi, past pyOpenSSL: the TLS fast paths and BIO compaction.

Used only through :class:`pingchat.twisted_internals.TLSTransport`, and only
while the assumptions ``tls-connection-state``, ``tls-write-hook`` or
``tls-receive-loop``, ``pyopenssl-memory-bios`` and ``openssl-cffi-functions``
hold. ``lib`` and ``ffi`` are cryptography's binding (None if it is gone).
"""

from __future__ import annotations

from typing import Any

from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol

try:
    from cryptography.hazmat.bindings.openssl.binding import Binding

    lib: Any = Binding.lib
    ffi: Any = Binding.ffi
except ImportError:  # pragma: no cover - openssl-cffi-functions says why
    lib = ffi = None

# fast_write: at most one TLS record's worth of data (larger writes take
# Twisted's path, which splits them), and the buffer records are read into
# (the reactor thread's only).
FAST_WRITE_MAX = 2**14
_RECORDS: Any = ffi.new("char[]", 2**16) if ffi is not None else None
# fast_read decrypts into this (as Twisted, 32 KiB a read).
_PLAIN: Any = ffi.new("char[]", 2**15) if ffi is not None else None


def compact_bios(connection: Any) -> bool:
    """Give a memory-BIO ``OpenSSL.SSL.Connection`` two new, empty BIOs.

    pyOpenSSL's memory BIOs (OpenSSL ``BIO_s_mem``) never give back what
    they grew to: after the handshake they hold ~1.7 KiB (~4.5 KiB with a
    post-quantum key share), and the largest record or read ever seen (up to
    ~22 KiB out, a whole socket read in) stays allocated for as long as the
    connection lives. Only when both BIOs are empty are they swapped (the
    old ones are freed by ``SSL_set_bio``); returns whether they were. The
    TLS state itself is untouched. If the BIOs are not where pyOpenSSL
    keeps them, nothing is done.
    """
    ssl, into, out = (
        getattr(connection, name, None) for name in ("_ssl", "_into_ssl", "_from_ssl")
    )
    if ssl is None or into is None or out is None:
        return False
    null = ffi.NULL
    # BIO_get_mem_data: the number of bytes not yet read
    if lib.BIO_get_mem_data(into, null) != 0 or lib.BIO_get_mem_data(out, null) != 0:
        return False
    new_into = lib.BIO_new(lib.BIO_s_mem())
    new_out = lib.BIO_new(lib.BIO_s_mem())
    if new_into == null or new_out == null:
        for bio in (new_into, new_out):
            if bio != null:
                lib.BIO_free(bio)
        return False
    lib.SSL_set_bio(ssl, new_into, new_out)
    connection._into_ssl, connection._from_ssl = new_into, new_out
    return True


def fast_read(layer: Any, data: bytes) -> bool:
    """Decrypt *data* and hand what it holds to the protocol; False leaves it to Twisted.

    Twisted's ``dataReceived`` asks pyOpenSSL's ``recv`` for 32 KiB until
    it raises ``WantReadError``: two calls for a one-line request, a
    fresh buffer and an exception each time (~13 µs against ~6 here for
    a 60-byte request). This loop stops on ``SSL_ERROR_WANT_READ``
    itself. Before the handshake is done, with writes held back by TLS,
    or on any other result (the peer's ``close_notify``, an error) the
    rest is Twisted's: it reads the same result again and handles it.
    """
    if not layer._handshakeDone or layer._lostTLSConnection or layer._appSendBuffer:
        return False
    connection = layer._tlsConnection
    ssl = getattr(connection, "_ssl", None)
    into = getattr(connection, "_into_ssl", None)
    if ssl is None or into is None:
        return False
    # A memory BIO takes all or nothing; on nothing, Twisted's path tries again.
    if lib.BIO_write(into, ffi.from_buffer(data), len(data)) != len(data):
        return False
    while not layer._lostTLSConnection:
        n = lib.SSL_read(ssl, _PLAIN, len(_PLAIN))
        if n > 0:
            if not layer._aborted:
                ProtocolWrapper.dataReceived(layer, ffi.buffer(_PLAIN, n)[:])
        elif lib.SSL_get_error(ssl, n) == lib.SSL_ERROR_WANT_READ:
            break
        else:
            layer._flushReceiveBIO()
            return True
    # Reading can make TLS answer (a TLS 1.3 key update, an alert).
    if not layer._lostTLSConnection and lib.BIO_get_mem_data(connection._from_ssl, ffi.NULL):
        send_records(layer, connection)
    return True


def fast_write(layer: Any, data: bytes) -> bool:
    """Encrypt and send *data* in one go; False leaves it to Twisted's ``_write``.

    pyOpenSSL's ``send`` and ``bio_read`` around the same two OpenSSL
    calls, and Twisted's loop around those, cost about as much again as
    the encryption. Anything unusual (the handshake not done, data held
    back by TLS, an error, more than one record's worth) is Twisted's.
    """
    if (
        not layer._handshakeDone
        or layer._lostTLSConnection
        or layer._appSendBuffer
        or not 0 < len(data) <= FAST_WRITE_MAX
    ):
        return False
    connection = layer._tlsConnection
    ssl = getattr(connection, "_ssl", None)
    if ssl is None or getattr(connection, "_from_ssl", None) is None:
        return False
    written = lib.SSL_write(ssl, ffi.from_buffer(data), len(data))
    if written <= 0:
        # Nothing was taken. OpenSSL wants the same data offered again,
        # which Twisted's path does, and it turns the error into the
        # right exception (and clears OpenSSL's error queue).
        return False
    send_records(layer, connection)
    if written < len(data):
        TLSMemoryBIOProtocol._write(layer, data[written:])
    return True


def send_records(layer: Any, connection: Any) -> None:
    """Hand everything in the outgoing BIO to the transport."""
    write = layer.transport.write
    while True:
        n = lib.BIO_read(connection._from_ssl, _RECORDS, len(_RECORDS))
        if n <= 0:
            return
        write(ffi.buffer(_RECORDS, n)[:])
