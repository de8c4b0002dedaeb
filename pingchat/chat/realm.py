"""The realm: turns an authenticated account name into a chat session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.cred.portal import IRealm
from twisted.internet.defer import Deferred
from zope.interface import Interface, implementer

from pingchat.auth.checkers import LoginDisabled, LoginFailed
from pingchat.chat.service import ChatService
from pingchat.interfaces import IChatAvatar, IChatMind, IOperatorAvatar, IStore
from pingchat.model import Account


@implementer(IRealm)
class ChatRealm:
    """Hands out one :class:`Session` per connection, bound to its account."""

    def __init__(self, service: ChatService, store: IStore) -> None:
        self.service = service
        self.store = store

    def requestAvatar(
        self, avatarId: Any, mind: Any, *interfaces: Any
    ) -> Deferred[tuple[type[Interface], object, Callable[[], None]]]:
        name = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        if IOperatorAvatar in interfaces:
            return self.store.get_account(name).addCallback(self._operator)
        if IChatAvatar not in interfaces:
            raise NotImplementedError("pingchat's realm provides IChatAvatar and IOperatorAvatar")

        def attach(account: Account | None) -> tuple[type[Interface], object, Callable[[], None]]:
            if account is None:
                raise LoginFailed("the account no longer exists")
            if account.disabled:
                # Disabled while its password was being checked: the admin's
                # disable() has already swept the live sessions, so stop here.
                raise LoginDisabled("this account is disabled")
            session = self.service.attach(account, IChatMind(mind), getattr(mind, "address", None))
            return IChatAvatar, session, lambda: self.service.detach(session)

        return self.store.get_account(name).addCallback(attach)

    @staticmethod
    def _operator(
        account: Account | None,
    ) -> tuple[type[Interface], object, Callable[[], None]]:
        """An administrator's account vouches for an operator; anyone else is refused
        with the answer a wrong password gets."""
        if account is None or account.disabled or not account.is_admin:
            raise LoginFailed("wrong operator name or password")
        return IOperatorAvatar, account, lambda: None
