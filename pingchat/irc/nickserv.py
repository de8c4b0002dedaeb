"""NickServ: the pseudo-user through which IRC clients log in and manage accounts.

A :class:`NickServ` is made for each line sent to it and keeps nothing but
the IRC connection it serves; it answers with NOTICEs from
``NickServ!NickServ@services``. Everything it does goes through the same
portal and account manager as every other door.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from pingchat.chat.session import Session
from pingchat.errors import ChatError, InvalidName, NoSuchUser
from pingchat.irc import wire
from pingchat.irc.base import IRCBase
from pingchat.irc.reply import Reply
from pingchat.model import ACCOUNT_NAME_RE, fold, iso_ms

NICKSERV = "NickServ"
NICKSERV_MASK = "NickServ!NickServ@services"

NICKSERV_HELP = [
    "NickServ manages pingchat accounts (the same accounts as the native clients).",
    "IDENTIFY [account] <password>      log in (the password may be a session token)",
    "IDENTIFY <account> <password> <code>   log in with a second-factor code",
    "REGISTER <password>                create an account named after your nick",
    "REGISTER <password> <invite-code>  the same, where registering needs an invite",
    "SET PASSWORD <current> <new>       change your password (no spaces in either)",
    "INFO [account]                     show what is known about an account",
]


def how_to_register(registration: str) -> str:
    """How a new user gets an account here, as the registration policy says."""
    if registration == "closed":
        return "accounts here are created by an administrator"
    code = " <invite-code>" if registration == "invite" else ""
    return f"to create one, /msg NickServ REGISTER <password>{code}"


class NickServ:
    """NickServ as one connection sees it: IDENTIFY, REGISTER, SET PASSWORD, INFO, HELP."""

    def __init__(self, proto: IRCBase) -> None:
        self.proto = proto

    def notice(self, r: Reply, text: str) -> None:
        r.send(wire.format_line("NOTICE", [self.proto.me, text], NICKSERV_MASK))

    def handle(self, r: Reply, text: str) -> Deferred[Any] | None:
        words = text.split()
        command = words[0].upper() if words else "HELP"
        args = words[1:]
        if command == "HELP":
            for line in NICKSERV_HELP:
                self.notice(r, line)
            return None
        if command in ("IDENTIFY", "LOGIN"):
            return self.identify(r, args)
        if command == "REGISTER":
            return self.register(r, args)
        if command == "SET" and args and args[0].upper() == "PASSWORD":
            return self.set_password(r, args[1:])
        if command == "INFO":
            return self.info(r, args)
        self.notice(r, f"Unknown command {command}. /msg NickServ HELP lists the commands.")
        return None

    def identify(self, r: Reply, args: list[str]) -> Deferred[Any] | None:
        if self.proto.session is not None and not self.proto.session.guest:
            self.notice(r, f"You are already logged in as {self.proto.session.name}.")
            return None
        otp = None
        if len(args) == 1:
            account, secret = self.proto.nick or "", args[0]
        elif len(args) >= 2:
            account, rest = args[0], args[1:]
            if len(rest) > 1 and wire.number(rest[-1]) is not None and 6 <= len(rest[-1]) <= 8:
                rest, otp = rest[:-1], rest[-1]
            secret = " ".join(rest)
        else:
            self.notice(r, "Syntax: IDENTIFY [account] <password>")
            return None
        d = self.proto.authenticate(account, secret, otp)

        def ok(session: Session) -> None:
            self.notice(r, f"You are now identified as {session.name}.")

        def bad(f: Failure) -> None:
            f.trap(UnauthorizedLogin, ChatError)
            self.notice(r, f"Login failed: {self.proto.auth_failure_text(f)}")

        return d.addCallbacks(ok, bad)

    def register(self, r: Reply, args: list[str]) -> Deferred[Any] | None:
        """``REGISTER <password> [<email>] [<invite-code>]``: an account named after the nick.

        Where registration needs an invite (``--registration invite``) the
        last word is the code; an e-mail address is accepted and ignored.
        Refusals come as a NOTICE and, for clients that read standard
        replies, ``FAIL REGISTER <CODE> <account> :<text>``.
        """
        if self.proto.session is not None and not self.proto.session.guest:
            self.notice(r, f"You are already logged in as {self.proto.session.name}.")
            return None
        accounts = self.proto.factory.accounts
        invite = None
        if accounts.registration == "invite" and len(args) > 1:
            invite, args = args[-1], args[:-1]
        if len(args) > 1 and "@" in args[-1]:
            args = args[:-1]  # "REGISTER <password> <email>": pingchat keeps no e-mail
        if not args or not self.proto.nick:
            code = " <invite-code>" if accounts.registration == "invite" else ""
            self.notice(
                r, f"Syntax: REGISTER <password>{code}  (the account takes your current nick)"
            )
            return None
        name, password = self.proto.nick, " ".join(args)
        d = accounts.register(name, password, self.proto.address, invite=invite)

        def registered(result: dict[str, Any]) -> Deferred[Any]:
            account = result["account"].name
            self.notice(r, f"Account {account} created.")
            self.notice(
                r,
                "Your recovery codes (each resets the password once; they are"
                " shown only now, so keep them somewhere safe):",
            )
            for code in result["recovery_codes"]:
                self.notice(r, f"  {code}")
            return self.proto.authenticate(account, password).addCallback(
                lambda s: self.notice(r, f"You are now identified as {s.name}.")
            )

        def bad(f: Failure) -> None:
            f.trap(ChatError, UnauthorizedLogin)
            text = self.proto.auth_failure_text(f)
            self.notice(r, f"Registration failed: {text}")
            if isinstance(f.value, ChatError):
                r.send(
                    wire.format_line(
                        "FAIL", ["REGISTER", f.value.code.upper(), name, text], self.proto.server
                    )
                )

        return d.addCallback(registered).addErrback(bad)

    def set_password(self, r: Reply, args: list[str]) -> Deferred[Any] | None:
        if self.proto.session is None or self.proto.session.guest:
            self.notice(r, "Log in first: /msg NickServ IDENTIFY <account> <password>")
            return None
        if len(args) != 2:
            self.notice(r, "Syntax: SET PASSWORD <current password> <new password>")
            return None
        d = self.proto.factory.accounts.change_password(self.proto.session, args[0], args[1])

        def ok(_: Any) -> None:
            self.notice(r, "Password changed. Other sessions' tokens were revoked.")

        def bad(f: Failure) -> None:
            f.trap(ChatError)
            self.notice(r, f"Password not changed: {f.value.message}")  # type: ignore[union-attr]

        return d.addCallbacks(ok, bad)

    def info(self, r: Reply, args: list[str]) -> Deferred[Any] | None:
        name = args[0] if args else (self.proto.me if self.proto.me != "*" else "")
        if not name or not ACCOUNT_NAME_RE.fullmatch(name):
            self.notice(r, "Syntax: INFO [account]")
            return None

        def show(info: dict[str, Any]) -> None:
            if info["guest"]:
                self.notice(r, f"{info['user']} is a guest, not a registered account.")
                return
            self.notice(r, f"Account: {info['user']}")
            state = info["presence"]
            if info.get("away"):
                state += f" ({info['away']})"
            self.notice(r, f"Status: {state}")
            if info.get("last_seen"):
                self.notice(r, f"Last seen: {iso_ms(info['last_seen'])}")
            if fold(info["user"]) == fold(self.proto.me):
                self.notice(r, f"Rooms: {' '.join(info['rooms']) or '(none)'}")

        def missing(f: Failure) -> None:
            f.trap(NoSuchUser, InvalidName)
            self.notice(r, f"{name} is not registered.")

        return self.proto.service.whois(name).addCallbacks(show, missing)
