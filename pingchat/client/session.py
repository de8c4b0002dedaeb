"""The account on this server: logging in, and everything done to the account.

:class:`Session` knows who is logged in over which connection, resumes the
saved token, and runs the account flows on the screen (log in with a password
and a TOTP code, register and store the recovery codes, recover a forgotten
password) and the account commands (``/logout``, ``/passwd``, ``/recovery``,
``/otp``, ``/deleteaccount``). Once logged in, it tells the client, which
sets up the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from pingchat.client.commands import Command
from pingchat.client.configdir import SessionStore
from pingchat.client.connection import ClientProtocol, NotConnected, RequestFailed
from pingchat.client.screen import Screen
from pingchat.client.view import Line, qr_lines
from pingchat.model import fold

LoggedIn = Callable[[ClientProtocol, dict[str, Any], bool], None]
"""``logged_in(proto, reply, again)``: *again* when a resumed session is the
same account as before (a reconnection)."""

AccountDeleted = Callable[[ClientProtocol, str], None]
"""``account_deleted(proto, user)``: the server deleted *user*'s account and
is closing *proto*; the session here is forgotten already."""

_SHOWN_ERRORS = frozenset({"auth_failed", "account_disabled", "user_exists", "invalid_name",
                           "weak_password", "bad_request", "otp_required",
                           "registration_closed", "invite_invalid"})


class Account(Protocol):
    """What the other parts of the client need to know of the session."""

    user: str | None
    proto: ClientProtocol | None
    server_name: str | None
    registration: str

    def need_proto(self) -> ClientProtocol: ...

    def is_me(self, user: str) -> bool: ...


class Session:
    """Who is logged in (``user``), over which connection (``proto``, set once
    the client is ready for commands), on which server (``server_name``)."""

    def __init__(self, screen: Screen, sessions: SessionStore, clock: IReactorTime,
                 user_hint: str | None, logged_in: LoggedIn,
                 account_deleted: AccountDeleted | None = None) -> None:
        self.screen = screen
        self.sessions = sessions
        self.clock = clock
        self.user_hint = user_hint
        self._logged_in_hook = logged_in
        self._deleted_hook = account_deleted
        self.user: str | None = None
        self.proto: ClientProtocol | None = None
        self.server_name: str | None = None
        self.registration = "open"  # the server's policy, from its hello

    def need_proto(self) -> ClientProtocol:
        """The connection of the logged-in session, or :exc:`NotConnected`."""
        if self.proto is None:
            raise NotConnected("not connected")
        return self.proto

    def is_me(self, user: str) -> bool:
        return self.user is not None and fold(user) == fold(self.user)

    # -- logging in -----------------------------------------------------------------

    async def authenticate(self, proto: ClientProtocol) -> None:
        """A new connection: resume the saved session, else ask how to log in."""
        saved = self.sessions.load()
        if saved and (self.user_hint is None or fold(saved[0]) == fold(self.user_hint)):
            user, token = saved
            try:
                reply = await proto.request("resume", token=token)
            except RequestFailed as e:
                if e.code not in ("auth_failed", "account_disabled", "bad_request"):
                    raise
                self.sessions.forget()
                self.screen.warning(f"the saved session of {user} ended ({e.message});"
                                    " please log in again", self.screen.windows.status)
            else:
                self._logged_in(proto, reply, resumed=True)
                return
        await self.account_menu(proto)

    async def account_menu(self, proto: ClientProtocol) -> None:
        screen = self.screen
        screen.windows.switch(screen.windows.status)
        if self.user_hint:
            while not await self._login_flow(proto, self.user_hint):
                pass
            return
        while True:
            choice = await screen.ask(
                "Type  login  if you have an account on this server,  register  to create"
                " one, or  recover  to reset a forgotten password with a recovery code."
            )
            choice = choice.strip().lower().lstrip("/")
            if choice in ("login", "l", "log in"):
                done = await self._login_flow(proto, None)
            elif choice in ("register", "r", "reg"):
                done = await self._register_flow(proto)
            elif choice in ("recover", "reset"):
                done = await self._recover_flow(proto)
            else:
                screen.error("please type login, register or recover (or /quit)")
                continue
            if done:
                return

    async def _ask_name(self, question: str) -> str:
        while True:
            name = (await self.screen.ask(question)).strip()
            if name:
                return name

    async def _new_password(self, what: str = "Choose a password") -> str:
        while True:
            password = await self.screen.ask(f"{what} (at least 8 characters):", secret=True)
            if not password:
                continue
            again = await self.screen.ask("Type it again:", secret=True)
            if password == again:
                return password
            self.screen.error("the two passwords differ; once more")

    async def _login_flow(self, proto: ClientProtocol, name: str | None) -> bool:
        if name is None:
            name = await self._ask_name("User name:")
        password = await self.screen.ask(f"Password for {name}:", secret=True)
        otp: str | None = None
        while True:
            try:
                reply = await self._password_login(proto, name, password, otp)
            except RequestFailed as e:
                if e.code == "otp_required" and otp is None:
                    otp = (await self.screen.ask(
                        "This account has two-factor authentication: the 6-digit code from"
                        " your authenticator app:")).strip().replace(" ", "")
                    continue
                await self._auth_error(e)
                return False
            self._logged_in(proto, reply)
            return True

    async def _password_login(self, proto: ClientProtocol, name: str, password: str,
                              otp: str | None = None) -> dict[str, Any]:
        """``login``, with this account's device secret from an earlier login
        (the server lets a known device in even while it holds the account
        back from wide password guessing), keeping the one the reply gives."""
        args: dict[str, Any] = {"user": name, "password": password}
        if otp is not None:
            args["otp"] = otp
        device = self.sessions.device(name)
        if device is not None:
            args["device"] = device
        reply = await proto.request("login", **args)
        if isinstance(reply.get("device"), str):
            self.sessions.save_device(str(reply.get("user", name)), reply["device"])
        return reply

    async def _auth_error(self, e: RequestFailed) -> None:
        if e.code == "rate_limited":
            wait = max(1.0, e.retry_after)
            self.screen.error(f"{e.message} (waiting {wait:.0f}s)")
            await deferLater(self.clock, wait)
        elif e.code in _SHOWN_ERRORS:
            self.screen.error(e.message)
        else:
            raise e

    async def _register_flow(self, proto: ClientProtocol) -> bool:
        if self.registration == "closed":
            self.screen.error("this server does not take registrations: ask an administrator"
                              " for an account")
            return False
        invite: dict[str, str] = {}
        if self.registration == "invite":
            code = (await self.screen.ask("Registering here needs an invite code from an"
                                          " administrator. Invite code:", secret=True)).strip()
            if not code:
                return False
            invite["invite"] = code
        name = await self._ask_name(
            "Choose a user name (a letter or _ first, then letters, digits, _ - [ ] { } |"
            " ^ `; at most 32):")
        password = await self._new_password()
        try:
            reply = await proto.request("register", user=name, password=password, **invite)
        except RequestFailed as e:
            await self._auth_error(e)
            return False
        name = reply["user"]
        codes = [str(c) for c in reply.get("recovery_codes", [])]
        await self._show_recovery_codes(
            f"Account {name} created. These are your recovery codes:", codes)
        try:
            login = await self._password_login(proto, name, password)
        except RequestFailed as e:
            await self._auth_error(e)
            return False
        self._logged_in(proto, login)
        return True

    async def _show_recovery_codes(self, heading: str, codes: list[str]) -> None:
        window = self.screen.here
        lines = [Line(heading, "warning")]
        lines += [Line(f"    {code}", "info") for code in codes]
        lines.append(Line(
            "Each code resets your password once if you forget it. They are shown only"
            " now: store them in your password manager or on paper, away from this"
            " computer.", "warning"))
        for line in lines:
            self.screen.add(window, line)
        while (await self.screen.ask("Type  stored  once you have stored them:")).strip() \
                .lower() not in ("stored", "yes", "y", "ok", "done"):
            pass
        for line in lines[1:-1]:
            line.text = "    ****-****-****-****"
        self.screen.info("(the codes are hidden now)", window)

    async def _recover_flow(self, proto: ClientProtocol) -> bool:
        name = await self._ask_name("User name:")
        code = (await self.screen.ask("One of your recovery codes:", secret=True)).strip()
        password = await self._new_password("Choose a new password")
        try:
            reply = await proto.request("recover", user=name, code=code, new_password=password)
        except RequestFailed as e:
            await self._auth_error(e)
            return False
        left = reply.get("recovery_codes_left")
        self.screen.info(f"The password of {reply.get('user', name)} is reset; every old"
                         f" session was logged out. Recovery codes left: {left}.")
        try:
            login = await self._password_login(proto, reply.get("user", name), password)
        except RequestFailed as e:
            await self._auth_error(e)
            return False
        self._logged_in(proto, login)
        return True

    def _logged_in(self, proto: ClientProtocol, reply: dict[str, Any],
                   resumed: bool = False) -> None:
        user = str(reply["user"])
        again = resumed and self.is_me(user)
        self.user = user
        self.sessions.save(user, str(reply["token"]))
        self._logged_in_hook(proto, reply, again)

    # -- account commands -------------------------------------------------------------

    async def cmd_register(self, cmd: Command) -> None:
        self.screen.error(f"you are logged in as {self.user}; /logout first")

    cmd_login = cmd_register
    cmd_recover = cmd_register

    async def cmd_logout(self, cmd: Command) -> None:
        proto = self.need_proto()
        await proto.request("logout")
        self.sessions.forget(self.user)
        self.screen.info(f"logged out {self.user}; the saved session is gone")
        self.proto = None
        self.user = None
        self.screen.windows.switch(self.screen.windows.status)
        self.screen.refresh()
        await self.account_menu(proto)

    async def cmd_deleteaccount(self, cmd: Command) -> None:
        """Delete the account for good (``account.delete``): say what goes and
        what stays, have the name typed back, then the password (and the
        TOTP code when the server asks); then forget it on this computer."""
        proto = self.need_proto()
        user = self.user
        assert user is not None
        screen = self.screen
        where = self.server_name or "this server"
        screen.warning(f"Deleting your account {user} on {where} cannot be undone.")
        screen.warning(
            "Deleted: the account (password, two-factor authentication, recovery codes,"
            " contacts, the encryption keys of all its devices; every session is logged"
            " out); every direct message you sent or received, for both people; your"
            " messages in rooms, deleted too or kept without your name under a placeholder"
            " (deleted-...), as this server's administrators chose; on this computer, the"
            " saved session, the device secret and this device's encryption key for"
            f" {user}.")
        screen.warning(
            "Stays: what other people wrote, even where it quotes or names you; the"
            " server's security log, under the placeholder instead of your name. Nobody,"
            f" you included, can register the name {user} for 30 days.")
        typed = await screen.ask(f"To delete it, type the account's name ({user});"
                                 " anything else keeps it:")
        if fold(typed.strip()) != fold(user):
            screen.info(f"{user} was not deleted")
            return
        password = await screen.ask(f"Password of {user}:", secret=True)
        if not password:
            screen.info(f"{user} was not deleted")
            return
        args: dict[str, Any] = {"password": password}
        while True:
            try:
                reply = await proto.request("account.delete", **args)
            except RequestFailed as e:
                if e.code == "otp_required" and "otp" not in args:
                    code = (await screen.ask(
                        "This account has two-factor authentication: the 6-digit code from"
                        " your authenticator app (empty keeps the account):")).strip()
                    if not code:
                        screen.info(f"{user} was not deleted")
                        return
                    args["otp"] = code.replace(" ", "")
                    continue
                screen.error(_deletion_refused(e))
                return
            except ConnectionLost:
                screen.error("the connection dropped before the server answered, so the"
                             f" account may or may not be deleted: if {user} cannot log in"
                             " again, it was")
                return
            break
        self.sessions.forget_account(user)
        self.proto = None
        self.user = None
        if self.user_hint is not None and fold(self.user_hint) == fold(user):
            self.user_hint = None
        screen.windows.switch(screen.windows.status)
        screen.info(deleted_text(reply, user), screen.windows.status)
        if self._deleted_hook is not None:
            self._deleted_hook(proto, user)
        screen.refresh()

    async def cmd_passwd(self, cmd: Command) -> None:
        proto = self.need_proto()
        old = await self.screen.ask("Current password:", secret=True)
        new = await self._new_password("New password")
        await proto.request("passwd", old=old, new=new)
        self.screen.info("password changed; your other sessions were logged out")

    async def cmd_recovery(self, cmd: Command) -> None:
        proto = self.need_proto()
        password = await self.screen.ask("Your password (to get new recovery codes):",
                                         secret=True)
        reply = await proto.request("recovery.regenerate", password=password)
        await self._show_recovery_codes(
            "New recovery codes (the old ones no longer work):",
            [str(c) for c in reply.get("recovery_codes", [])])

    async def cmd_otp(self, cmd: Command) -> None:
        proto = self.need_proto()
        screen = self.screen
        if cmd.args["action"] == "disable":
            password = await screen.ask("Your password:", secret=True)
            code = await screen.ask("A current code from your authenticator app:")
            await proto.request("otp.disable", password=password, code=code.strip())
            screen.info("two-factor authentication is off")
            return
        setup = await proto.request("otp.setup")
        uri, secret = str(setup["uri"]), str(setup["secret"])
        screen.info("Scan this QR code with an authenticator app (FreeOTP, Aegis, Google"
                    " Authenticator, 1Password...):")
        screen.info("\n".join(qr_lines(uri)))
        screen.info(f"or add it by hand: secret {secret}")
        screen.info(f"({uri})")
        for _ in range(3):
            code = (await screen.ask("Type the 6-digit code the app shows, to confirm (empty"
                                     " cancels):")).strip().replace(" ", "")
            if not code:
                screen.info("two-factor authentication stays off")
                return
            try:
                await proto.request("otp.enable", code=code)
            except RequestFailed as e:
                screen.error(f"{e.message}; check the phone's clock, and try the next code")
                continue
            screen.info("two-factor authentication is on: logging in with a password now"
                        " also asks for a code.")
            return
        screen.error("two-factor authentication stays off; /otp enable to try again")


def _deletion_refused(e: RequestFailed) -> str:
    if e.code == "auth_failed":
        return "wrong password or code: the account was not deleted"
    if e.code == "rate_limited":
        wait = max(1.0, e.retry_after)
        return f"{e.message}; try again in {wait:.0f}s. The account was not deleted"
    return f"{e.message}: the account was not deleted"


def deleted_text(reply: dict[str, Any], user: str) -> str:
    """What the client says once ``account.delete`` answered *reply*."""
    name = str(reply.get("user") or user)
    removed = int(reply.get("removed") or 0)
    kept = int(reply.get("anonymised") or 0)

    def count(n: int, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"

    def were(n: int) -> str:
        return "was" if n == 1 else "were"

    if not removed and not kept:
        what = "It had no messages"
    elif reply.get("messages") == "anonymise":
        what = (f"{count(removed, 'direct message')} (sent and received) {were(removed)}"
                f" deleted with it; {count(kept, 'room message')} you wrote"
                f" {'stays' if kept == 1 else 'stay'}, under a placeholder name")
    else:
        what = (f"{count(removed, 'message')} {were(removed)} deleted with it: what you"
                " wrote, and the direct messages you received")
    return (f"Your account {name} was deleted. {what}. The name {name} cannot be registered"
            " again for 30 days.")
