"""What an account shows others and lets them do: contacts, the DM policy, device keys.

Part of :class:`~pingchat.chat.accounts.AccountManager`, which inherits it,
as every door reaches these through the account manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from pingchat.chat.session import Session
from pingchat.errors import BadRequest, NoSuchUser
from pingchat.model import (
    LEGACY_DEVICE,
    MAX_DEVICES,
    Account,
    check_account_name,
    check_public_key,
    iso_ms,
    key_fingerprint,
)
from pingchat.store.keys import DeviceKey, KeyChange

if TYPE_CHECKING:
    from pingchat.auth.audit import Auditor
    from pingchat.chat.service import ChatService
    from pingchat.interfaces import IStore


class ContactsAndKeys:
    """Contacts (asked, accepted, removed), the account's DM policy, and its device keys."""

    if TYPE_CHECKING:
        # AccountManager's (accounts.py).
        store: IStore
        service: ChatService | None
        audit: Auditor

        def now(self) -> int: ...

    @inlineCallbacks
    def contact_add(self, session: Session, user: object) -> Any:
        assert session.account is not None
        user = check_account_name(user)
        if user.lower() == session.name.lower():
            raise BadRequest("you cannot add yourself")
        change = yield self.store.contact_add(session.account.id, user, self.now())
        if change.changed:
            if change.mutual:
                yield self._contact_event(change.peer, change.peer_id, session.name, "accepted")
                yield self._contact_event(session.name, session.account.id, change.peer, "accepted")
            else:
                yield self._contact_event(change.peer, change.peer_id, session.name, "request")
        return {"user": change.peer, "status": "contact" if change.mutual else "requested"}

    @inlineCallbacks
    def contact_remove(self, session: Session, user: object) -> Any:
        assert session.account is not None
        user = check_account_name(user)
        change = yield self.store.contact_remove(session.account.id, user)
        if change.changed and change.mutual:
            yield self._contact_event(change.peer, change.peer_id, session.name, "removed")
        return {"user": change.peer, "status": "none"}

    def _contact_event(self, to: str, to_id: int, user: str, status: str) -> Deferred[None]:
        """Tell *to* about a contact change, now or at its next login."""
        payload = {"event": "contact", "user": user, "status": status}
        sessions = self.service.sessions_of(to) if self.service else []
        if self.service is not None and self.service.is_online(to):
            for s in sessions:
                s.mind.contact_event(user, status)  # type: ignore[attr-defined]
            # and to its sessions on the other nodes of a cluster
            self.service.fanout.contact_event(to, user, status)
            return succeed(None)
        return self.store.add_pending_event(to_id, self.now(), payload)

    def contacts(self, session: Session) -> Deferred[dict[str, list[str]]]:
        assert session.account is not None
        return self.store.contacts(session.account.id)

    def account_settings(self, session: Session) -> Deferred[Account]:
        """The session's account as stored now, with its settings (``dm_policy``)."""

        def found(account: Account | None) -> Account:
            if account is None:
                raise NoSuchUser(f"no such user: {session.name}")
            return account

        return self.store.get_account(session.name).addCallback(found)

    def set_dm_policy(self, session: Session, policy: object) -> Deferred[Account]:
        if policy not in ("anyone", "contacts"):
            raise BadRequest("dm_policy is 'anyone' or 'contacts'")
        self.audit("dm_policy", account=session.name, address=session.address, policy=policy)
        return self.store.set_dm_policy(session.name, str(policy)).addCallback(self._refreshed)

    def _refreshed(self, account: Account) -> Account:
        """Live sessions hold the account they logged in with: give them the changed one."""
        for s in self.service.sessions_of(account.name) if self.service else ():
            s.account = account
        return account

    def publish_key(
        self, session: Session, key: object, device: str | None = None, label: str | None = None
    ) -> Deferred[dict[str, Any]]:
        """Publish this device's key (*device* and *label* already checked).

        Without a device id (a client from before device keys) the key is the
        account's legacy key, device ``default``.
        """
        assert session.account is not None
        key = check_public_key(key)
        device = device or LEGACY_DEVICE
        fingerprint = key_fingerprint(key)

        def published(change: KeyChange) -> dict[str, Any]:
            self.audit(
                "key_published",
                account=session.name,
                address=session.address,
                device=device,
                fingerprint=fingerprint,
            )
            if change.changed and self.service is not None:
                self.service.announce_key(
                    session, device, "published", fingerprint, change.audience
                )
            return {"device": device, "fingerprint": fingerprint}

        d = self.store.publish_device_key(
            session.account.id, device, key, label, self.now(), MAX_DEVICES
        )
        return d.addCallback(published)

    def revoke_key(self, session: Session, device: str) -> Deferred[dict[str, Any]]:
        """Remove one of the caller's device keys (*device* already checked)."""
        assert session.account is not None

        def revoked(change: KeyChange) -> dict[str, Any]:
            fingerprint = key_fingerprint(change.public_key)
            self.audit(
                "key_revoked",
                account=session.name,
                address=session.address,
                device=device,
                fingerprint=fingerprint,
            )
            if self.service is not None:
                self.service.announce_key(session, device, "revoked", fingerprint, change.audience)
            return {}

        return self.store.revoke_device_key(session.account.id, device).addCallback(revoked)

    def get_key(self, user: object) -> Deferred[dict[str, Any]]:
        """Every device key of *user*, oldest first, and the legacy single-key fields."""
        user = check_account_name(user)

        def shape(found: tuple[str, list[DeviceKey]]) -> dict[str, Any]:
            name, keys = found
            devices = [
                {
                    "device": k.device,
                    "public_key": k.public_key,
                    "fingerprint": key_fingerprint(k.public_key),
                    "label": k.label,
                    "published_at": iso_ms(k.published_at),
                }
                for k in keys
            ]
            latest = devices[-1] if devices else None
            return {
                "user": name,
                "devices": devices,
                # For clients from before device keys: the newest device's key.
                "public_key": latest["public_key"] if latest else None,
                "fingerprint": latest["fingerprint"] if latest else None,
            }

        return self.store.device_keys(user).addCallback(shape)
