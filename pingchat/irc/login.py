"""Logging an IRC connection in to an account: PASS at registration, SASL PLAIN, NickServ.

Part of :class:`~pingchat.irc.protocol.IRCProtocol`, which inherits it.
Every way goes through the portal (:func:`login_with_secret`), with a
session token accepted where the password goes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure
from zope.interface import Interface

from pingchat.auth.checkers import PasswordCredentials, TokenCredentials
from pingchat.chat.session import Session
from pingchat.errors import ChatError
from pingchat.interfaces import IChatAvatar
from pingchat.irc import numerics as n
from pingchat.irc import wire
from pingchat.irc.base import IRCBase
from pingchat.irc.nickserv import NickServ, how_to_register
from pingchat.irc.reply import Reply
from pingchat.model import fold

# A session token from the native door (secrets.token_urlsafe(32)).
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{40,64}")
SASL_CHUNK = 400
SASL_MAX = 4096


def login_with_secret(
    portal: Portal,
    account: str,
    secret: str,
    otp: str | None,
    address: str | None,
    mind: object,
    interface: type[Interface],
) -> Deferred[Any]:
    """``portal.login`` with *secret* as a session token of *account*'s, else its password.

    IRC clients give a token where the password goes. Something shaped like
    a token is tried as one first, so that a token login never counts as a
    wrong password (nor waits behind a password guesser's back-off); the
    password is tried if it is not a token of this account (a login by
    another account's token is logged out at once).
    """
    creds = PasswordCredentials(account, secret, otp, address)
    if not TOKEN_RE.fullmatch(secret):
        d: Deferred[Any] = portal.login(creds, mind, interface)
        return d

    def same_account(result: tuple[Any, Any, Callable[[], None]]) -> Any:
        if fold(result[1].name) != fold(account):
            result[2]()
            raise UnauthorizedLogin("a token of another account")
        return result

    def try_password(f: Failure) -> Deferred[Any]:
        f.trap(UnauthorizedLogin)
        if getattr(f.value, "code", None) == "account_disabled":
            return fail(f)
        return portal.login(creds, mind, interface)

    d = portal.login(TokenCredentials(secret, address), mind, interface)
    return d.addCallback(same_account).addErrback(try_password)


class LoginMixin(IRCBase):
    """Logging in (PASS, SASL, NickServ), what follows it, and what a refusal says."""

    def authenticate(
        self, account: str, secret: str, otp: str | None = None, announce: bool = True
    ) -> Deferred[Session]:
        """Log in through the portal; a session token is accepted as the password
        (:func:`login_with_secret`)."""
        d = login_with_secret(
            self.factory.portal, account, secret, otp, self.address, self, IChatAvatar
        )
        return d.addCallback(self._logged_in, announce)

    def _logged_in(
        self, result: tuple[Any, Session, Callable[[], None]], announce: bool = True
    ) -> Session:
        _iface, session, logout = result
        if self.closed:
            logout()
            raise UnauthorizedLogin("connection closed")
        previous_mask = self.my_mask
        guest = self.session
        if guest is not None:
            # A guest who logs in leaves its guest life (and rooms) behind.
            rooms = self.service.rooms_of(guest.name)
            self._end_session("Logged in")
            for room in rooms:
                self.event(f":{previous_mask} PART {room.name} :Logged in")
        self.session, self._logout = session, logout
        self.factory.logged_in += 1
        if not self.registered and self._held is None:
            self._held = []  # the account's traffic waits for the welcome burst
        self.write(
            self.numeric(
                n.RPL_LOGGEDIN, session.hostmask, session.name,
                f"You are now logged in as {session.name}",
            )
        )
        if announce:
            self._after_login(session, previous_mask)
        return session

    def _after_login(self, session: Session, previous_mask: str) -> None:
        """A registered client that logged in: its nick becomes the account's, then the burst.

        The NICK comes from the mask the client had until then (a guest's, or
        ``@unregistered``), as every other line from it did.
        """
        if not self.registered:
            return
        if self.nick != session.name:
            self.write(wire.format_line("NICK", [session.name], previous_mask))
        self.nick = session.name
        self._timer_after_welcome()
        self._account_burst()

    def auth_failure_text(self, failure: Failure) -> str:
        e = failure.value
        code = getattr(e, "code", "auth_failed")
        if code == "otp_required":
            return (
                "This account has a second factor: use a session token from the"
                " pingchat client as the password, or /msg NickServ IDENTIFY"
                " <account> <password> <code>"
            )
        if code == "rate_limited":
            return f"Too many attempts; retry after {getattr(e, 'retry_after', 1.0):.0f}s"
        if code == "account_disabled":
            return "This account is disabled"
        if isinstance(e, ChatError):
            return e.message
        return "Wrong account name or password"

    def _login_hint(self) -> str:
        return (
            "You need an account here. Log in with SASL PLAIN, or"
            " /msg NickServ IDENTIFY <account> <password>; "
            + how_to_register(self.factory.accounts.registration)
        )

    def irc_AUTHENTICATE(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        self.need(msg, 1)
        arg = msg.params[0]
        if self.session is not None and not self.session.guest:
            r.num(n.ERR_SASLALREADY, "You have already authenticated using SASL")
            return None
        if "sasl" not in self.caps:
            r.num(n.ERR_SASLFAIL, "SASL authentication failed: request the sasl capability first")
            return None
        if arg == "*":
            if self._sasl is not None:
                self._sasl, self._sasl_buffer = None, ""
                r.num(n.ERR_SASLABORTED, "SASL authentication aborted")
            else:
                r.num(n.ERR_SASLFAIL, "SASL authentication failed")
            return None
        if self._sasl is None:
            if arg.upper() != "PLAIN":
                r.num(n.RPL_SASLMECHS, "PLAIN", "are available SASL mechanisms")
                r.num(n.ERR_SASLFAIL, "SASL authentication failed")
                return None
            self._sasl, self._sasl_buffer = "PLAIN", ""
            r.send("AUTHENTICATE +")
            return None
        if len(arg) > SASL_CHUNK:
            self._sasl, self._sasl_buffer = None, ""
            r.num(n.ERR_SASLTOOLONG, "SASL message too long")
            return None
        if arg != "+":
            self._sasl_buffer += arg
        if len(self._sasl_buffer) > SASL_MAX:
            # 905 is for one line over 400 bytes; a whole exchange longer than
            # the server keeps is a failure like any other (modern.ircdocs.horse;
            # irctest's PlainInfiniteMessages expects 904).
            self._sasl, self._sasl_buffer = None, ""
            r.num(n.ERR_SASLFAIL, "SASL authentication failed: the exchange is too long")
            return None
        if len(arg) == SASL_CHUNK:
            return None  # more to come
        data, self._sasl, self._sasl_buffer = self._sasl_buffer, None, ""
        try:
            raw = base64.b64decode(data, validate=True)
            authzid, authcid, password = wire.decode(raw).split("\x00")
        except (binascii.Error, ValueError):
            r.num(n.ERR_SASLFAIL, "SASL authentication failed: malformed PLAIN message")
            return self._maybe_register()
        if authzid and fold(authzid) != fold(authcid):
            r.num(n.ERR_SASLFAIL, "SASL authentication failed: authzid must be the account")
            return self._maybe_register()
        previous_mask = self.my_mask
        d = self.authenticate(authcid, password, announce=False)

        def ok(session: Session) -> Deferred[Any] | None:
            r.num(n.RPL_SASLSUCCESS, "SASL authentication successful")
            self._after_login(session, previous_mask)
            return self._maybe_register()

        def bad(f: Failure) -> Deferred[Any] | None:
            f.trap(UnauthorizedLogin, ChatError)
            r.num(n.ERR_SASLFAIL, f"SASL authentication failed: {self.auth_failure_text(f)}")
            return self._maybe_register()

        return d.addCallbacks(ok, bad)

    def irc_NICKSERV(self, msg: wire.Message, r: Reply) -> Deferred[Any] | None:
        return NickServ(self).handle(r, " ".join(msg.params))

    irc_NS = irc_NICKSERV
