"""Who is asking, and from which page: trusted proxies and the Origin allow-list.

Pure functions over header values; nothing here touches a transport.

*Trusted proxies.* A reverse proxy in front of the web door makes every
connection come from the proxy's address; it says who the client was in
``X-Forwarded-For`` (or the standard ``Forwarded``) and which scheme the
browser used in ``X-Forwarded-Proto`` (or ``Forwarded: proto=``). Anyone
can send those headers, so they are believed only from a connection whose
peer is in ``--trusted-proxy``, and in ``X-Forwarded-For`` only up to the
rightmost address that is not itself a trusted proxy: everything left of
it was written by the client.

*Origins.* A browser names the page that opens a WebSocket in ``Origin``;
the door accepts its own origins (the scheme, host and port the browser
used to reach it) and those given with ``--web-origin``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

import attrs

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_network(text: str) -> Network:
    """``203.0.113.7``, ``10.0.0.0/8`` or ``::1``; raises ``ValueError`` on anything else."""
    network = ipaddress.ip_network(text.strip(), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d (dual-stack sockets)
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_address(text: str) -> Address | None:
    """The IP address in one forwarded hop, or None for anything else.

    Accepts ``192.0.2.1``, ``192.0.2.1:4711``, ``2001:db8::1``,
    ``[2001:db8::1]:4711``, each optionally in double quotes (``Forwarded``
    quotes them); ``unknown`` and obfuscated names (``_hidden``) are None.
    """
    text = text.strip().strip('"').strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _split_quoted(value: str, separator: str) -> list[str]:
    """Split *value* on *separator* outside double-quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def parse_forwarded(values: Iterable[str]) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded`` header values as elements, leftmost (oldest) first."""
    elements = []
    for value in values:
        for element in _split_quoted(value, ","):
            pairs: dict[str, str] = {}
            for pair in _split_quoted(element, ";"):
                key, sep, item = pair.partition("=")
                if sep:
                    pairs[key.strip().lower()] = item.strip().strip('"')
            if pairs:
                elements.append(pairs)
    return elements


def _values(raw: Sequence[bytes] | None) -> list[str]:
    return [v.decode("latin-1") for v in raw or ()]


@attrs.frozen
class ClientView:
    """What the door believes about a connection: the client's address and scheme."""

    host: str
    scheme: str
    proxied: bool = False


@attrs.frozen
class TrustedProxies:
    """The ``--trusted-proxy`` set, and the reading of its forwarding headers."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, texts: Iterable[str]) -> TrustedProxies:
        return cls(tuple(parse_network(t) for t in texts))

    def trusts(self, host: str | Address | None) -> bool:
        if not self.networks or host is None:
            return False
        address = parse_address(host) if isinstance(host, str) else host
        return address is not None and any(address in n for n in self.networks)

    def view(
        self,
        peer: str,
        secure: bool,
        forwarded_for: Sequence[bytes] | None = None,
        forwarded_proto: Sequence[bytes] | None = None,
        forwarded: Sequence[bytes] | None = None,
    ) -> ClientView:
        """The client behind *peer*, given the request's forwarding headers.

        ``X-Forwarded-For`` is read when present (what Caddy and nginx set),
        otherwise ``Forwarded``. A proxy that sets only ``Forwarded`` must
        remove any ``X-Forwarded-For`` its client sent.
        """
        scheme = "https" if secure else "http"
        if not self.trusts(peer):
            return ClientView(_plain(peer), scheme)
        if forwarded_for:
            hops = [h for v in _values(forwarded_for) for h in v.split(",") if h.strip()]
            host, _ = self._walk(peer, hops)
            protos = [p.strip().lower() for v in _values(forwarded_proto) for p in v.split(",")]
            proto = protos[-1] if protos else ""
        elif forwarded:
            elements = parse_forwarded(_values(forwarded))
            host, index = self._walk(peer, [e.get("for", "") for e in elements])
            proto = elements[index].get("proto", "").lower() if index is not None else ""
        else:
            return ClientView(_plain(peer), scheme)
        if proto in DEFAULT_PORTS:
            scheme = proto
        return ClientView(host, scheme, proxied=True)

    def _walk(self, peer: str, hops: list[str]) -> tuple[str, int | None]:
        """From the right, the first hop that is not a trusted proxy (and its index).

        A hop that is not an address stops the walk at the last address
        believed so far: a trusted proxy's.
        """
        candidate, index = _plain(peer), None
        for i in range(len(hops) - 1, -1, -1):
            if not self.trusts(candidate):
                break
            address = parse_address(hops[i])
            if address is None:
                break
            candidate, index = str(address), i
        return candidate, index


def _plain(host: str) -> str:
    """A peer address as the doors log it (``::ffff:a.b.c.d`` as ``a.b.c.d``)."""
    address = parse_address(host)
    return str(address) if address is not None else host


def normalize_origin(text: str) -> str | None:
    """``scheme://host[:port]``, lower case, without a default port; None if not an origin.

    An ``Origin`` header is exactly that (or ``null``, which is None here);
    ``--web-origin`` values may end with ``/``.
    """
    text = text.strip()
    if not text or text == "null" or any(c.isspace() for c in text):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    return _origin(scheme, parts.hostname, port)


def _origin(scheme: str, host: str, port: int | None) -> str:
    host = host.lower()
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origin(scheme: str, host_header: str | None) -> str | None:
    """The origin of a page served on this request's scheme and ``Host``."""
    if not host_header:
        return None
    return normalize_origin(f"{scheme}://{host_header.strip()}")


@attrs.frozen
class OriginPolicy:
    """Which pages may open a WebSocket here: our own origins and ``--web-origin``."""

    extra: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, texts: Iterable[str]) -> OriginPolicy:
        origins = set()
        for text in texts:
            origin = normalize_origin(text)
            if origin is None:
                raise ValueError(f"{text!r} is not an origin (scheme://host[:port])")
            origins.add(origin)
        return cls(frozenset(origins))

    def allows(self, origin: str | None, scheme: str, host_header: str | None) -> bool:
        """Whether a WebSocket request with this ``Origin`` may go on.

        No ``Origin`` at all: not a browser (browsers always send one on a
        WebSocket request), so there is no page whose visitor could be made
        to connect against their will, and nothing to check.
        """
        if origin is None:
            return True
        normal = normalize_origin(origin)
        if normal is None:
            return False
        return normal in self.extra or normal == own_origin(scheme, host_header)
