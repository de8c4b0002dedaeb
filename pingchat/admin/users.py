"""The manhole's helpers that act on accounts: kick, disable, enable, reset, adduser,
promote, demote, and invite codes."""

from __future__ import annotations

import secrets
from typing import Any

from twisted.internet.defer import Deferred

from pingchat.admin.tools import Done, Table, Toolbox
from pingchat.errors import BadRequest, Forbidden
from pingchat.model import Account, check_account_name, check_text, fold, iso_ms

KICK_REASON = "disconnected by an administrator"


DISABLE_REASON = "this account has been disabled"


RESET_PASSWORD_LENGTH = 16


class AccountTools(Toolbox):
    """Sessions ended, logins refused or allowed, passwords, roles, invitations."""

    helpers = (
        "kick", "disable", "enable", "delete_user", "reset", "adduser", "promote", "demote",
        "invite", "invites", "revoke_invite",
    )  # fmt: skip

    def kick(self, user: str, reason: str = KICK_REASON) -> Done:
        """Close every session of *user*, through every door (native and IRC)."""
        sessions = self._connected(user)
        reason = check_text(reason, "reason")[:300]
        name = sessions[0].name
        n = self.chat.disconnect_user(name, reason)
        self._audit("admin_kick", name, reason=reason, sessions=n)
        return Done(f"kicked {name}: {n} session(s) closed")

    def disable(self, user: str, reason: str = DISABLE_REASON) -> Deferred[Done]:
        """Disable *user*'s account: its sessions end, its tokens and logins are refused."""
        check_account_name(user)
        if fold(user) == fold(self.actor):
            raise Forbidden("you cannot disable your own account from its manhole")
        reason = check_text(reason, "reason")[:300]

        def disabled(account: Account) -> Done:
            n = self.chat.disconnect_user(account.name, reason)
            self._audit("admin_disable", account.name, sessions=n)
            return Done(f"{account.name} disabled; {n} session(s) closed")

        d: Deferred[Account] = self.store.set_disabled(user, True)
        return d.addCallback(disabled)

    def enable(self, user: str) -> Deferred[Done]:
        """Enable *user*'s account again."""
        check_account_name(user)

        def enabled(account: Account) -> Done:
            self._audit("admin_enable", account.name)
            return Done(f"{account.name} enabled")

        d: Deferred[Account] = self.store.set_disabled(user, False)
        return d.addCallback(enabled)

    def delete_user(self, user: str) -> Deferred[Done]:
        """Delete *user*'s account for good: sessions end, messages go as
        --deleted-messages says (remove or anonymise), the name is freed after 30 days."""
        check_account_name(user)
        if fold(user) == fold(self.actor):
            raise Forbidden("you cannot delete your own account from its manhole")

        def done(r: dict[str, Any]) -> Done:
            return Done(
                f"{r['user']} deleted (now {r['placeholder']} in the audit log);"
                f" {r['removed']} message(s) removed, {r['anonymised']} anonymised;"
                f" {r['sessions']} session(s) closed; the name is free again from"
                f" {iso_ms(r['reserved_until'])}"
            )

        eraser = self.server.accounts.eraser
        assert eraser is not None
        d: Deferred[dict[str, Any]] = eraser.erase(
            user, self.actor, self.address, "this account has been deleted by an administrator"
        )
        return d.addCallback(done)

    def reset(self, user: str) -> Deferred[Done]:
        """Give *user* a new random password, shown here once; their tokens are revoked."""
        check_account_name(user)
        length = max(RESET_PASSWORD_LENGTH, self.server.accounts.min_password_length)
        password = secrets.token_urlsafe(length)[:length]

        def done(account: Account) -> Done:
            return Done(
                f"new password for {account.name} (shown once, pass it on safely): {password}"
            )

        d: Deferred[Account] = self.server.accounts.set_password_admin(
            user, password, self.actor
        )
        return d.addCallback(done)

    def adduser(self, user: str, admin: bool = False) -> Deferred[Done]:
        """Create an account with a random password, shown here once (any registration policy)."""
        length = max(RESET_PASSWORD_LENGTH, self.server.accounts.min_password_length)
        password = secrets.token_urlsafe(length)[:length]
        role = "admin" if admin else "user"

        def done(result: dict[str, Any]) -> Done:
            name = result["account"].name
            codes = "\n".join(f"  {c}" for c in result["recovery_codes"])
            return Done(
                f"created {role} {name}; password (shown once, pass it on safely): {password}\n"
                f"recovery codes (shown once; each resets the password once):\n{codes}"
            )

        d: Deferred[dict[str, Any]] = self.server.accounts.create_account_admin(
            user, password, self.actor, role
        )
        return d.addCallback(done)

    def promote(self, user: str) -> Deferred[Done]:
        """Give *user* the admin role (manhole access)."""
        return self._set_role(user, "admin", "admin_promote")

    def demote(self, user: str) -> Deferred[Done]:
        """Take the admin role from *user*."""
        check_account_name(user)
        if fold(user) == fold(self.actor):
            raise Forbidden("you cannot demote yourself")
        return self._set_role(user, "user", "admin_demote")

    def invite(self, uses: int = 1, expires_days: float = 7.0) -> Deferred[Done]:
        """A new invite code for --registration invite: *uses* accounts, valid *expires_days*
        days (0: for ever). The code is shown here once."""

        def done(made: dict[str, Any]) -> Done:
            until = iso_ms(made["expires_at"]) if made["expires_at"] is not None else "never"
            return Done(
                f"invite {made['id']} (shown once): {made['code']}"
                f"  [{made['uses']} use(s), expires {until}]"
            )

        d: Deferred[dict[str, Any]] = self.server.accounts.create_invite(
            self.actor, uses, expires_days
        )
        return d.addCallback(done)

    def invites(self) -> Deferred[Table]:
        """Every invite code's state, uses and expiry (the codes themselves are not kept)."""
        now = int(self.clock.seconds() * 1000)

        def shape(found: list[Any]) -> Table:
            return Table(
                ("id", "state", "left", "used", "expires", "by"),
                (
                    {
                        "id": i.id,
                        "state": i.state(now),
                        "left": i.uses_left,
                        "used": i.used,
                        "expires": iso_ms(i.expires_at) if i.expires_at is not None else "never",
                        "by": i.created_by,
                    }
                    for i in found
                ),
            )

        d: Deferred[list[Any]] = self.store.list_invite_codes()
        return d.addCallback(shape)

    def revoke_invite(self, invite_id: int) -> Deferred[Done]:
        """Revoke an invite code by its id (see invites())."""
        if isinstance(invite_id, bool) or not isinstance(invite_id, int):
            raise BadRequest("give the invite's id, a number (see invites())")

        def done(revoked: bool) -> Done:
            if not revoked:
                raise BadRequest(f"no invite {invite_id}, or it is revoked already")
            self._audit("invite_revoke", invite=invite_id)
            return Done(f"invite {invite_id} revoked")

        d: Deferred[bool] = self.store.revoke_invite_code(
            invite_id, int(self.clock.seconds() * 1000)
        )
        return d.addCallback(done)

    def _set_role(self, user: str, role: str, event: str) -> Deferred[Done]:
        check_account_name(user)

        def changed(account: Account) -> Done:
            self._audit(event, account.name, role=role)
            n = self.chat.moderation.role_changed(account)
            live = f"; {n} live session(s) changed operator status" if n else ""
            return Done(f"{account.name} is now {role}{live}")

        d: Deferred[Account] = self.store.set_role(user, role)
        return d.addCallback(changed)
