"""The native door's ops on one's own account: ``passwd``, ``otp.*``,
``account.delete``, ``recovery.regenerate``, ``contacts``, ``contact.*``,
``settings``, ``key.*``.

Part of :class:`~pingchat.native.protocol.NativeProtocol`, which inherits it;
the rules are :class:`~pingchat.chat.accounts.AccountManager`'s.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from pingchat.model import check_device_id, check_device_label
from pingchat.native.base import NativeBase, field


class AccountOps(NativeBase):
    """Password, two-factor codes, deleting the account, recovery codes, contacts,
    settings and device keys."""

    def op_passwd(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        old = field(req, "old")
        new = field(req, "new")
        return self.factory.accounts.change_password(self.me, old, new).addCallback(lambda _: {})

    def op_otp_setup(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.otp_setup(self.me)

    def op_otp_enable(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.otp_enable(self.me, field(req, "code"))

    def op_otp_disable(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.otp_disable(
            self.me, field(req, "password"), field(req, "code")
        )

    def op_account_delete(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``account.delete {password, otp?}``: reply, then this connection's session ends."""
        d = self.factory.accounts.delete_account(self.me, field(req, "password"), req.get("otp"))

        def deleted(result: dict[str, Any]) -> dict[str, Any]:
            self.factory.clock.callLater(0, self.disconnect, "your account has been deleted")
            keys = ("user", "messages", "removed", "anonymised")
            return {k: result[k] for k in keys}

        return d.addCallback(deleted)

    def op_recovery_regenerate(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        d = self.factory.accounts.regenerate_recovery_codes(self.me, field(req, "password"))
        return d.addCallback(lambda codes: {"recovery_codes": codes})

    def op_contacts(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.contacts(self.me)

    def op_contact_add(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.contact_add(self.me, field(req, "user"))

    def op_contact_remove(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.contact_remove(self.me, field(req, "user"))

    def op_settings(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``settings {dm_policy?}``: read or change per-account settings."""
        policy = field(req, "dm_policy", required=False)
        if policy is None:
            d = self.factory.accounts.account_settings(self.me)
        else:
            d = self.factory.accounts.set_dm_policy(self.me, policy)
        return d.addCallback(lambda a: {"dm_policy": a.dm_policy})

    def op_key_publish(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``key.publish {public_key, device?, label?}`` -> ``device``, ``fingerprint``."""
        device = field(req, "device", required=False)
        if device is not None:
            device = check_device_id(device)
        label = check_device_label(req.get("label"))
        return self.factory.accounts.publish_key(
            self.me, field(req, "public_key"), device, label
        )

    def op_key_revoke(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """``key.revoke {device}``: remove one of the caller's own device keys."""
        device = check_device_id(field(req, "device"), legacy=True)
        return self.factory.accounts.revoke_key(self.me, device)

    def op_key_get(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.get_key(field(req, "user"))
