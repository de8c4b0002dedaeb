"""The IRC gateway's factory (shared settings) and the wiring of its listeners."""

from __future__ import annotations

from collections import Counter, deque
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
from twisted.cred.portal import Portal
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory

from pingchat import __version__
from pingchat.auth.throttle import TokenBucket
from pingchat.chat.accounts import AccountManager
from pingchat.chat.service import ChatService
from pingchat.chat.session import Session
from pingchat.irc import isupport, wire
from pingchat.irc.protocol import IRCProtocol
from pingchat.model import Message, iso_ms

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

WHOWAS_MAX = 200

# Input a connection may have waiting for the rate limit (fake lag) before it
# is "Excess Flood": a 400-line paste stays under both. Reading stops well
# before (pingchat.irc.protocol.PAUSE_LINES, PAUSE_BYTES), so only a client
# that sends more than this in one socket read (up to 64 KiB) reaches it.
MAX_QUEUE_LINES = 512
MAX_QUEUE_BYTES = 128 * 1024


@attrs.frozen
class WasUser:
    """What WHOWAS remembers of a nick that left."""

    nick: str
    user: str
    host: str
    realname: str
    left_at: int


def default_motd(server_name: str, guests: bool, registration: str = "open") -> list[str]:
    lines = [
        f"Welcome to {server_name}, a pingchat server.",
        "Rooms here are shared with the native pingchat clients: #room on IRC",
        "is #room everywhere, and your nick is your account name.",
        "",
        "Log in with SASL PLAIN in your client, with PASS <account>:<password>,",
        "or with /msg NickServ IDENTIFY <account> <password>.",
    ]
    if registration == "closed":
        lines += ["New accounts are created by the administrators of this server."]
    elif registration == "invite":
        lines += [
            "New here? With an invite code from an administrator,",
            "/msg NickServ REGISTER <password> <invite-code> creates an account",
            "named after your current nick.",
        ]
    else:
        lines += [
            "New here? /msg NickServ REGISTER <password> creates an account named",
            "after your current nick.",
        ]
    lines += ["/msg NickServ HELP lists the other commands."]
    if guests:
        lines += ["", "Guests may chat in rooms without an account, under a nick",
                  "that is not a registered account name."]
    return lines


class IRCFactory(Factory):
    """Builds :class:`~pingchat.irc.protocol.IRCProtocol` connections."""

    def __init__(
        self,
        service: ChatService,
        portal: Portal,
        accounts: AccountManager,
        clock: IReactorTime,
        *,
        server_name: str | None = None,
        guests: bool = False,
        rate: float = 20.0,
        burst: float = 60.0,
        max_backlog: int = 1024 * 1024,
        max_queue: int = MAX_QUEUE_LINES,
        max_queue_bytes: int = MAX_QUEUE_BYTES,
        registration_timeout: float = 60.0,
        login_timeout: float = 600.0,
        ping_interval: float = 120.0,
        ping_timeout: float = 60.0,
        motd: list[str] | None = None,
    ) -> None:
        self.service = service
        self.portal = portal
        self.accounts = accounts
        self.clock = clock
        self.server_name = server_name or service.server_name
        self.guests = guests
        self.rate = rate
        self.burst = burst
        self.max_backlog = max_backlog
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.registration_timeout = registration_timeout
        self.login_timeout = login_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        if motd is None:
            motd = default_motd(self.server_name, guests, accounts.registration)
        self.motd = motd
        self.created = iso_ms(service.now())
        self.version = f"pingchat-{__version__}"
        self.connections: set[IRCProtocol] = set()
        # Clients dropped past max_backlog, by door ("irc", or "web-irc" for /irc).
        self.backlog_drops: Counter[str] = Counter()
        # Connections with a session: LUSERS counts the others without a scan
        # (a scan per login made logging in O(connections)).
        self.logged_in = 0
        self.max_users = 0
        self.whowas: deque[WasUser] = deque(maxlen=WHOWAS_MAX)
        # A guest's mask and reason while its session ends (others show a QUIT).
        self.quitting: dict[str, tuple[str, str]] = {}
        self._live_ids = 0
        self._last_message: Message | None = None
        self._message_data: dict[tuple[bool, bool, bool], bytes] = {}

    def buildProtocol(self, addr: IAddress | None) -> IRCProtocol:
        return IRCProtocol(self)

    def remember_left(self, session: Session, realname: str) -> None:
        """Remember a nick that left this gateway, for WHOWAS (the newest first)."""
        user, host = session.hostmask.split("!", 1)[1].split("@", 1)
        self.whowas.appendleft(WasUser(session.name, user, host, realname, self.service.now()))

    def room_message_data(self, message: Message, proto: IRCProtocol) -> bytes:
        """The encoded lines showing a room *message* to clients like *proto*.

        A room message reads the same for every recipient but for the tags
        their capabilities ask for, and the service hands one message to all
        recipients in turn: caching the last message's encodings per tag set
        formats it a handful of times per fan-out instead of once per client.
        """
        key = proto.tags_wanted
        if self._last_message is not message:
            self._last_message = message
            self._message_data = {}
        data = self._message_data.get(key)
        if data is None:
            data = b"".join(wire.encode(line, tags) for line, tags in proto.message_lines(message))
            self._message_data[key] = data
        return data

    def new_live_id(self) -> int:
        """A negative id for a message delivered live and never stored (its msgid)."""
        self._live_ids += 1
        return -self._live_ids

    def new_bucket(self) -> TokenBucket:
        return TokenBucket(self.rate, self.burst)

    def isupport(self) -> list[str]:
        """RPL_ISUPPORT tokens; each one describes what the gateway really does."""
        return isupport.tokens(self.server_name)


def attach_irc(server: Any, reactor: Any) -> None:
    """Attach the ``--irc`` and ``--ircs`` listeners to ``server.top``."""
    from pingchat.tls import server_endpoint

    settings = server.settings
    factory = IRCFactory(
        server.chat,
        server.portal,
        server.accounts,
        reactor,
        server_name=settings.server_name,
        guests=settings.guests,
        rate=settings.rate,
        burst=settings.rate_burst,
        max_backlog=settings.max_backlog,
    )
    server.extras["irc"] = factory
    for option, descriptions in (("irc", settings.irc), ("ircs", settings.ircs)):
        for description in descriptions:
            server.listeners.add(
                option,
                description,
                partial(server_endpoint, reactor, description, server.tls, server.proxies),
                factory,
                registers=True,
            )
