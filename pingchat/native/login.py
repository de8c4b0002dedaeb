"""The native door's ops before a session, and logging out: ``ping``, ``register``,
``login``, ``resume``, ``recover``, ``logout``.

Part of :class:`~pingchat.native.protocol.NativeProtocol`, which inherits it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from pingchat.auth.checkers import PasswordCredentials, TokenCredentials
from pingchat.chat.session import Session
from pingchat.errors import BadRequest, NotAuthenticated
from pingchat.interfaces import IChatAvatar
from pingchat.model import iso_ms
from pingchat.native.base import NativeBase, field

log = Logger()


class LoginOps(NativeBase):
    """Registering, logging in (password or token), account recovery, logging out."""

    def op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "ts": iso_ms(self.factory.service.now())}

    def op_register(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        name = field(req, "user")
        password = field(req, "password")
        invite = req.get("invite")
        d = self.factory.accounts.register(name, password, self.address, invite=invite)
        return d.addCallback(
            lambda result: {
                "user": result["account"].name,
                "recovery_codes": result["recovery_codes"],
            }
        )

    def _login(self, credentials: Any, on_login: Callable[[Session], Any]) -> Deferred[Any]:
        if self.session is not None or self._authenticating:
            raise BadRequest("this connection is already logged in")
        self._authenticating = True

        def logged_in(result: tuple[Any, Session, Callable[[], None]]) -> Any:
            _iface, session, logout = result
            if self.closed:
                logout()
                raise NotAuthenticated("connection closed")
            self.session, self._logout = session, logout
            return maybeDeferred(on_login, session)

        def done(result: Any) -> Any:
            self._authenticating = False
            return result

        d = self.factory.portal.login(credentials, self, IChatAvatar)
        return d.addCallback(logged_in).addBoth(done)

    def _after_login(self, session: Session, result: dict[str, Any]) -> dict[str, Any]:
        """Reply first, then the offline DMs and the rooms the account is in."""
        self.factory.clock.callLater(0, self._deliver_offline, session)
        rooms = [r.name for r in self.factory.service.rooms_of(session.name)]
        operator = session.operator is not None
        return {"user": session.name, **result, "rooms": rooms, "operator": operator}

    def _deliver_offline(self, session: Session) -> None:
        if self.session is session:
            self.factory.service.deliver_offline(session).addErrback(
                lambda f: log.failure("could not deliver offline messages", f)
            )

    def op_login(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        name = field(req, "user")
        password = field(req, "password")
        otp = req.get("otp")
        if otp is not None and not isinstance(otp, str):
            otp = str(otp)
        device = field(req, "device", required=False)
        if device is not None and not 0 < len(device) <= 256:
            raise BadRequest("device must be 1 to 256 characters")
        creds = PasswordCredentials(name, password, otp, self.address, device)
        accounts = self.factory.accounts

        def issue(session: Session) -> Deferred[dict[str, Any]]:
            d = accounts.issue_token(session)
            d.addCallback(
                lambda r: accounts.remember_device(session, device).addCallback(
                    lambda secret: {**r, "device": secret}
                )
            )
            return d.addCallback(lambda r: self._after_login(session, r))

        return self._login(creds, issue)

    def op_resume(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        token = field(req, "token")
        creds = TokenCredentials(token, self.address)
        return self._login(
            creds,
            lambda session: self._after_login(
                session, self.factory.accounts.resumed(session, token)
            ),
        )

    def op_recover(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return self.factory.accounts.recover(
            field(req, "user"),
            field(req, "code"),
            field(req, "new_password"),
            self.address,
        )

    def op_logout(self, req: dict[str, Any]) -> Deferred[dict[str, Any]]:
        session = self.me
        d = self.factory.accounts.logout(session)
        self._end_session()
        return d.addCallback(lambda _: {})
