"""The wiring of the web door's listeners (``--web``)."""

from __future__ import annotations

import ipaddress
from functools import partial
from pathlib import Path
from typing import Any

from pingchat.proxy import behind_proxy
from pingchat.web.policy import OriginPolicy, TrustedProxies
from pingchat.web.site import StaticFiles, TextGzip, WebRoot, WebSite
from pingchat.web.upgrade import IRCEndpoint, NativeEndpoint

STATIC = Path(__file__).parent / "static"


def client_urls(opened: list[Any], server_name: str) -> list[str]:
    """The web client's address for each open ``--web`` listener (an ``Opened``).

    A listener on loopback is named ``localhost`` (a secure context for
    browsers even over plain HTTP); one on every interface by the server's
    name; any other by its address. A PROXY listener (``haproxy:``) has none:
    browsers reach it through the balancer.
    """
    urls = []
    for o in opened:
        if o.listener.option != "web" or behind_proxy(o.listener.description)[0]:
            continue
        address = o.port.getHost()
        host = str(getattr(address, "host", ""))
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            host = "localhost"
        elif ip is None or ip.is_unspecified:
            host = server_name
        elif ip.version == 6:
            host = f"[{host}]"
        scheme = "https" if o.listener.description.startswith("ssl:") else "http"
        urls.append(f"{scheme}://{host}:{address.port}/")
    return urls


def make_site(
    native: Any,
    irc: Any,
    clock: Any,
    *,
    origins: OriginPolicy = OriginPolicy(),  # noqa: B008 - immutable
    proxies: TrustedProxies = TrustedProxies(),  # noqa: B008 - immutable
    static: Path = STATIC,
    **endpoint_options: Any,
) -> WebSite:
    """The web door's site: the static client at ``/``, ``/ws`` and ``/irc``."""
    root = WebRoot(
        TextGzip(StaticFiles(static)),
        {
            b"ws": NativeEndpoint(native, origins, clock, **endpoint_options),
            b"irc": IRCEndpoint(irc, origins, clock, **endpoint_options),
        },
    )
    return WebSite(root, proxies, clock)


def attach_web(server: Any, reactor: Any) -> None:
    """Attach the ``--web`` listeners to ``server.top`` (after :func:`attach_irc`)."""
    from pingchat.tls import server_endpoint

    settings = server.settings
    if not settings.web:
        return
    site = make_site(
        server.native,
        server.extras["irc"],
        reactor,
        origins=OriginPolicy.parse(settings.web_origin),
        proxies=server.proxies,
    )
    server.extras["web"] = site
    for description in settings.web:
        server.listeners.add(
            "web",
            description,
            partial(server_endpoint, reactor, description, server.tls, server.proxies),
            site,
            registers=True,
        )
