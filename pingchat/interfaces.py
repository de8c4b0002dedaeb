"""The seams of pingchat, as zope Interfaces.

Data flows from a door (a protocol, which is the *mind*) through the portal to
an *avatar* (a :class:`~pingchat.chat.service.Session`), into the chat service
and the store, and back out to the minds of the recipients.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

from pingchat.model import Message


class IChatMind(Interface):
    """A connected client, as the chat world sees it; implemented by each door.

    The service calls these on the reactor thread; a mind must not block and
    must not raise.
    """

    door = Attribute(
        "Which door this client came through: 'native' or 'irc', or over the web"
        " door's WebSockets 'web' (/ws) or 'web-irc' (/irc)."
    )

    def message(message: Message, offline: bool = False) -> None:
        """A room message or DM the account should see.

        ``kind == "tagmsg"``: client-only tags without text (IRC ``TAGMSG``:
        typing, reactions), live and never stored; a door that cannot show
        them ignores it. Any message may carry ``client_tags`` likewise.
        """

    def joined(room: str, user: str) -> None:
        """*user* joined *room* (also sent for the account's own joins)."""

    def parted(room: str, user: str, reason: str | None) -> None:
        """*user* left *room*."""

    def kicked(room: str, user: str, by: str, reason: str | None) -> None:
        """*user* was removed from *room* by *by*."""

    def topic_changed(room: str, topic: str, by: str) -> None:
        """The topic of *room* changed."""

    def presence_changed(user: str, presence: str, away: str | None) -> None:
        """*user* (who shares a room with this account) changed presence."""

    def modes_changed(room: str, by: str, changes: list[tuple[str, str | None]]) -> None:
        """Room modes changed: each change is ``('+o', 'alice')``, ``('-i', None)``..."""

    def invited(room: str, by: str) -> None:
        """This account was invited to *room*."""

    def contact_event(user: str, status: str) -> None:
        """A contact request (``request``), acceptance (``accepted``) or removal."""

    def key_changed(user: str, device: str, action: str, fingerprint: str) -> None:
        """*user* (this account, a contact or a DM partner) ``published`` or
        ``revoked`` the end-to-end key of one of its devices (docs/e2e.md)."""

    def notice(text: str, sender: str) -> None:
        """A notice from the server or an administrator."""

    def disconnect(reason: str) -> None:
        """Close this connection (kicked by an admin, account disabled...)."""


class IChatAvatar(Interface):
    """What an authenticated connection may do: the avatar the realm hands out."""

    name = Attribute("The account (or guest) name.")
    account = Attribute("The stored Account, or None for an IRC guest.")


class IStore(Interface):
    """Persistent state of the chat world; each method is one transaction.

    Every method returns a Deferred that fires on the reactor thread after the
    transaction has committed. The SQLite implementation is
    :class:`pingchat.store.SQLiteStore`; another backend (PostgreSQL) would
    implement the same methods.
    """

    def create_account(name: str, password_hash: bytes, now: int, role: str = "user") -> object:
        """Create an account; fails with ``UserExists``."""

    def get_credentials(name: str) -> object:
        """``(Account, password_hash)`` or ``None``."""

    def use_token(token_hash: bytes, now: int, ttl: int) -> object:
        """``(Account, expires_at)`` for a live token, sliding its expiry; else ``None``."""

    def add_room_message(
        room_id: int, room: str, sender: str, sender_id: int | None, text: str, now: int
    ) -> object:
        """Store a room message; fires with the stored ``Message``."""

    def add_dm(sender_id: int, sender: str, recipient: str, now: int) -> object:
        """Store a direct message (optionally queueing it for an offline recipient)."""

    def publish_device_key(
        account_id: int, device: str, key: str, label: str | None, now: int, max_devices: int
    ) -> object:
        """Publish or replace one device's E2E key; fires with a ``KeyChange``."""

    def revoke_device_key(account_id: int, device: str) -> object:
        """Remove one device's key; fails with ``NoSuchDevice``."""

    def device_keys(name: str) -> object:
        """``(account name, [DeviceKey])``, oldest first; fails with ``NoSuchUser``."""

    def take_queued(account_id: int) -> object:
        """Remove and return an account's queued DMs (oldest first) and contact events."""
