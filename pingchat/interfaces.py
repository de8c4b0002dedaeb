"""The seams of pingchat, as zope Interfaces.

Data flows from a door (a protocol, which is the *mind*) through the portal to
an *avatar* (a :class:`~pingchat.chat.session.Session`), into the chat service
and the store, and back out to the minds of the recipients.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from pingchat.model import Account, Message, RoomInfo, RoomSnapshot


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

    def message_deleted(message: Message, by: str, reason: str | None) -> None:
        """A message this account could see was deleted by *by*.

        *message* is its tombstone: id, time, sender and room or recipient,
        without a body (``deleted_at`` and ``deleted_by`` set).
        """

    def wallops(text: str, sender: str) -> None:
        """A message from the server operator *sender* to the operators: the door
        shows it if this session is an operator (or, on IRC, has user mode +w)."""

    def disconnect(reason: str) -> None:
        """Close this connection (kicked by an admin, account disabled...)."""


class IChatAvatar(Interface):
    """What an authenticated connection may do: the avatar the realm hands out."""

    name = Attribute("The account (or guest) name.")
    account = Attribute("The stored Account, or None for an IRC guest.")


class IOperatorAvatar(Interface):
    """An administrator's account, as the portal hands it out to vouch for a
    connection's operator status (IRC ``OPER``): the realm gives it only for
    accounts with the admin role, and attaches no session."""

    name = Attribute("The administrator's account name.")


class IStore(Interface):
    """Persistent state of the chat world; each method is one named transaction.

    Every method returns a Deferred that fires on the reactor thread after the
    transaction has committed (reads: after it has read), or fails with a
    :class:`~pingchat.errors.ChatError` the doors can show (``UserExists``,
    ``NoSuchUser``..., and ``StoreUnavailable`` when the database cannot be
    reached). Implementations: :class:`pingchat.store.SQLiteStore` and
    :class:`pingchat.store.postgresql.PostgreSQLStore`, the same methods and
    SQL on two databases (docs/architecture.md). The chat service, the
    account manager, the checkers, the auditor, the manhole and the
    ``pingchat`` command use only these; the doors never call the store.
    Times are integer milliseconds since the epoch.
    """

    # -- accounts and tokens ------------------------------------------------------

    def create_account(
        name: str, password_hash: bytes, now: int, role: str = "user"
    ) -> Deferred[Account]:
        """Create an account; fails with ``UserExists`` if the name (case-folded) is taken."""

    def get_account(name: str) -> Deferred[Account | None]:
        """The account of a name (case-insensitive), or ``None``."""

    def get_credentials(name: str) -> Deferred[tuple[Account, bytes] | None]:
        """``(Account, password_hash)`` or ``None``."""

    def set_password(
        name: str, password_hash: bytes, keep_token: bytes | None = None
    ) -> Deferred[Account]:
        """Change the password, revoke every token except *keep_token*, forget devices;
        fails with ``NoSuchUser``."""

    def set_disabled(name: str, disabled: bool) -> Deferred[Account]:
        """Disable (revoking every token) or enable an account; fails with ``NoSuchUser``."""

    def set_role(name: str, role: str) -> Deferred[Account]:
        """Make an account ``user`` or ``admin``; fails with ``NoSuchUser``."""

    def set_dm_policy(name: str, policy: str) -> Deferred[Account]:
        """Who may DM the account: ``anyone`` or ``contacts``."""

    def list_accounts() -> Deferred[list[Account]]:
        """Every account, by case-folded name."""

    def touch_last_seen(account_id: int, now: int) -> Deferred[None]:
        """Note when the account was last online."""

    def add_token(account_id: int, token_hash: bytes, now: int, ttl: int) -> Deferred[int]:
        """Store a session token's hash; fires with its expiry."""

    def use_token(token_hash: bytes, now: int, ttl: int) -> Deferred[tuple[Account, int] | None]:
        """``(Account, expires_at)`` for a live token, sliding its expiry; else ``None``
        (an expired token is deleted)."""

    def revoke_token(token_hash: bytes) -> Deferred[bool]:
        """Delete a token; whether there was one."""

    def purge_expired_tokens(now: int) -> Deferred[int]:
        """Delete expired tokens; how many."""

    # -- rooms ----------------------------------------------------------------------

    def create_room(name: str, now: int) -> Deferred[RoomInfo]:
        """Create a room (its name not yet taken, case-folded)."""

    def add_member(room_id: int, account: str, op: bool, now: int) -> Deferred[None]:
        """Make an account a member (no-op for a guest or a member); clears its invite."""

    def remove_member(room_id: int, account: str) -> Deferred[None]:
        """Remove an account from a room."""

    def set_topic(room_id: int, topic: str, by: str, now: int) -> Deferred[None]:
        """Set a room's topic."""

    def save_room_modes(
        room_id: int,
        modes: str,
        key: str | None,
        limit: int | None,
        privileges: list[tuple[str, bool, bool]],
        bans: list[tuple[str, bool]],
        by: str,
        now: int,
        history_days: int | None = None,
    ) -> Deferred[None]:
        """Store a room's modes (with +H, *history_days*), member privileges
        ``(account, op, voice)`` and ban changes ``(mask, on)`` at once."""

    def add_invite(room_id: int, account: str) -> Deferred[None]:
        """Invite an account (no-op for a guest) to an invite-only room."""

    # -- messages ------------------------------------------------------------------

    def add_room_message(
        room_id: int,
        room: str,
        sender: str,
        sender_id: int | None,
        text: str,
        now: int,
        kind: str = "privmsg",
    ) -> Deferred[Message]:
        """Store a room message; fires with the stored ``Message`` (its id is the
        store's, increasing)."""

    def add_dm(
        sender_id: int,
        sender: str,
        recipient: str,
        now: int,
        *,
        text: str | None = None,
        ciphertext: str | None = None,
        nonce: str | None = None,
        sender_device: str | None = None,
        envelopes: list[dict[str, str]] | None = None,
        kind: str = "privmsg",
        queue: bool = False,
    ) -> Deferred[Message]:
        """Store a DM (one of *text*, *ciphertext* + *nonce*, or *envelopes*); with
        *queue*, also hold it for the recipient's next login. Fails with
        ``NoSuchUser``, or ``Forbidden`` if the recipient takes DMs only from contacts."""

    def queue_offline(message_id: int) -> Deferred[None]:
        """Hold an already stored DM for its recipient's next login."""

    def take_queued(account_id: int) -> Deferred[tuple[list[Message], list[dict[str, Any]]]]:
        """Remove and return an account's queued DMs (oldest first) and contact events."""

    def room_history(
        room_id: int,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> Deferred[list[Message]]:
        """Messages of a room between two ids (exclusive), oldest first; the newest
        *limit* of them, or with ``newest_first=False`` the oldest."""

    def dm_history(
        me_id: int,
        other: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
        newest_first: bool = True,
    ) -> Deferred[list[Message]]:
        """:meth:`room_history` for the DM conversation of two accounts; fails with
        ``NoSuchUser``."""

    def first_id_at(
        ts: int,
        *,
        room_id: int | None = None,
        me_id: int | None = None,
        other: str | None = None,
    ) -> Deferred[int | None]:
        """Id of the first message at or after *ts* in a room or a DM conversation."""

    def conversation_targets(
        me_id: int | None, room_ids: list[int], after_ts: int, before_ts: int, limit: int
    ) -> Deferred[list[tuple[str, int]]]:
        """``(room or peer, latest ts)`` of the conversations whose latest message is
        between two times (exclusive), oldest first (IRC ``CHATHISTORY TARGETS``)."""

    def message_by_id(msg_id: int) -> Deferred[Message | None]:
        """The stored message (or its tombstone, ``deleted_at`` set), with its room
        or recipient; ``None`` if there is none."""

    def delete_message(msg_id: int, by: str, now: int) -> Deferred[bool]:
        """Empty a message into a tombstone (body, ciphertext, nonce, envelopes and
        sending device gone; a queued DM unqueued), its text gone from the
        database files where the backend can see to it; ``False`` if there was no
        such message or it was deleted already."""

    # -- account deletion and retention (docs/admin.md) --------------------------------

    def begin_account_deletion(
        name: str, name_digest: bytes, now: int, reserved_until: int
    ) -> Deferred[Any]:
        """Disable an account, end its tokens and memberships and record the
        deletion (a ``Deletion``, its placeholder ``deleted-<n>``); an unfinished
        one of the same account goes on. Fails with ``NoSuchUser``."""

    def erase_messages(deletion: Any, mode: str, limit: int = 200) -> Deferred[Any]:
        """Up to *limit* of the account's messages removed (or with ``anonymise``,
        its room messages kept under the placeholder); DMs to and from it
        removed. Fires with an ``Erased``, empty once none are left."""

    def finish_account_deletion(deletion: Any, mode: str, now: int) -> Deferred[Any]:
        """Erase stragglers, put the placeholder where the name was beside
        others' data, delete the account row (and all that hangs from it)."""

    def name_reserved(name_digest: bytes, now: int) -> Deferred[int | None]:
        """Until when a deleted account's name is kept from registration, or None."""

    def deletions_since(after: int) -> Deferred[list[tuple[int, bytes]]]:
        """``(number, name digest)`` of the deletions numbered above *after*."""

    def forget_reservations(now: int) -> Deferred[int]:
        """Blank the digests of names free again; how many."""

    def expiry_bound(cutoff: int, room_id: int | None = None) -> Deferred[int]:
        """The id below which messages (all, or a room's) may be stamped before *cutoff*."""

    def expire_messages(
        room_id: int | None, cursor: int, bound: int, cutoff: int, limit: int = 500
    ) -> Deferred[Any]:
        """Delete the messages stamped before *cutoff* among the next *limit* ids
        after *cursor*, below *bound*, keeping queued DMs; an ``Expired``."""

    def expire_offline(bound: int, limit: int = 500) -> Deferred[Any]:
        """Drop from the offline queue up to *limit* DMs with ids below *bound*."""

    def scrub_wal() -> Deferred[None]:
        """After deletions: no old copy of a deleted row left in the database's
        files (SQLite: checkpoint and truncate the WAL; fails while readers keep
        it from finishing). Nothing to do on PostgreSQL."""

    def backfill_wal() -> Deferred[None]:
        """Between batches of a long deletion: the WAL copied into the database
        from the reader, so that the writer's COMMITs do not do it."""

    def conversation_after(
        conversation: str, after: int, limit: int
    ) -> Deferred[list[Message]]:
        """The messages of a conversation (``r:<room id>`` or ``d:<low>:<high>``)
        with ids above *after*, oldest first, at most *limit*: what a node of a
        cluster missed (pingchat.cluster)."""

    def conversation_since(
        conversation: str, since_ts: int, limit: int
    ) -> Deferred[list[Message]]:
        """The messages of a conversation stamped at or after *since_ts*, oldest first."""

    def conversation_heads() -> Deferred[list[tuple[str, int, int]]]:
        """``(conversation, last seq, last id)`` of every room: where each room's
        numbering stands (0, 0 for a room without numbered messages)."""

    def dm_threads_since(account_id: int, since_ts: int) -> Deferred[list[str]]:
        """The DM conversations of an account with a message at or after *since_ts*."""

    def load_rooms() -> Deferred[list[RoomSnapshot]]:
        """Every room with its members, bans and invites, as at start-up."""

    # -- audit ---------------------------------------------------------------------

    def add_audit(
        now: int,
        event: str,
        account: str | None = None,
        actor: str | None = None,
        address: str | None = None,
        **detail: Any,
    ) -> Deferred[None]:
        """Record a security event; *detail* is stored as JSON. Never a secret."""

    def recent_audit(limit: int = 50) -> Deferred[list[dict[str, Any]]]:
        """The latest audit events, newest first, as dicts of their columns."""

    # -- second factor, recovery codes, known devices ------------------------------

    def otp_state(account_id: int) -> Deferred[Any]:
        """The account's ``OTPState`` (pingchat.store.security)."""

    def set_otp_pending(account_id: int, secret: str) -> Deferred[None]:
        """Keep a (sealed) TOTP secret until the account confirms it."""

    def enable_otp(account_id: int, secret: str, step: int) -> Deferred[bool]:
        """Turn TOTP on with the pending *secret*; false if it is not the pending one."""

    def disable_otp(account_id: int) -> Deferred[None]:
        """Turn TOTP off and forget its secrets."""

    def consume_otp_step(account_id: int, step: int) -> Deferred[bool]:
        """Record a TOTP time step as used; false if it (or a later one) was used."""

    def set_recovery_codes(account_id: int, hashes: list[bytes]) -> Deferred[None]:
        """Replace the account's recovery codes (their hashes)."""

    def recover(
        name: str, code_hash: bytes, password_hash: bytes, now: int
    ) -> Deferred[str | None]:
        """Spend a recovery code: set the password, revoke tokens and devices; the
        account's name, or ``None`` if the name or the code is wrong."""

    def recovery_codes_left(name: str) -> Deferred[int]:
        """How many unused recovery codes the account has; fails with ``NoSuchUser``."""

    def known_device(name: str, device_hash: bytes) -> Deferred[bool]:
        """Whether a device with this secret's hash logged in to *name* before."""

    def remember_device(
        account_id: int, presented: bytes | None, fresh: bytes, now: int, keep: int
    ) -> Deferred[bool]:
        """Note a password login's device: true if *presented* was known, else *fresh*
        is recorded; only the *keep* latest devices are remembered."""

    # -- contacts ------------------------------------------------------------------

    def contact_add(me_id: int, peer: str, now: int) -> Deferred[Any]:
        """Ask to be contacts with *peer*; a ``ContactChange`` (pingchat.store.contacts).
        Fails with ``NoSuchUser``."""

    def contact_remove(me_id: int, peer: str) -> Deferred[Any]:
        """End a contact (or withdraw a request) both ways; a ``ContactChange``."""

    def contacts(me_id: int) -> Deferred[dict[str, list[str]]]:
        """``{"contacts": mutual, "outgoing": asked, "incoming": asking}``, names sorted."""

    def add_pending_event(account_id: int, now: int, payload: dict[str, Any]) -> Deferred[None]:
        """Keep a contact event for an account that is offline (see :meth:`take_queued`)."""

    # -- invite codes --------------------------------------------------------------

    def add_invite_code(
        code_hash: bytes, now: int, created_by: str, expires_at: int | None, uses: int
    ) -> Deferred[int]:
        """Store a new invite code's hash; fires with its id."""

    def invite_code_usable(code_hash: bytes, now: int) -> Deferred[bool]:
        """Whether a code is valid now (not used up, expired or revoked)."""

    def create_invited_account(
        name: str, password_hash: bytes, now: int, role: str, code_hash: bytes
    ) -> Deferred[tuple[Account, int]]:
        """Spend one use of the invite and create the account, or neither:
        ``(Account, invite id)``; fails with ``InviteInvalid`` or ``UserExists``."""

    def list_invite_codes() -> Deferred[list[Any]]:
        """Every invite code's ``InviteCode`` record (pingchat.store.invite_codes), oldest
        first; never the codes themselves."""

    def find_invite_code(code_hash: bytes) -> Deferred[int | None]:
        """The id of the invite code with this hash, or ``None``."""

    def revoke_invite_code(invite_id: int, now: int) -> Deferred[bool]:
        """Revoke an invite; false if there is none or it was revoked already."""

    # -- end-to-end keys -----------------------------------------------------------

    def publish_device_key(
        account_id: int, device: str, key: str, label: str | None, now: int, max_devices: int
    ) -> Deferred[Any]:
        """Publish or replace one device's E2E key; fires with a ``KeyChange``
        (pingchat.store.keys); fails with ``TooManyDevices``."""

    def revoke_device_key(account_id: int, device: str) -> Deferred[Any]:
        """Remove one device's key (a ``KeyChange``); fails with ``NoSuchDevice``."""

    def device_keys(name: str) -> Deferred[tuple[str, list[Any]]]:
        """``(account name, [DeviceKey])``, oldest first; fails with ``NoSuchUser``."""
