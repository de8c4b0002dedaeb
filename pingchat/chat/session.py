"""A session: one authenticated connection, the avatar a door acts through."""

from __future__ import annotations

from zope.interface import implementer

from pingchat.interfaces import IChatAvatar, IChatMind
from pingchat.model import Account, fold, hostmask


@implementer(IChatAvatar)
class Session:
    """One authenticated connection: the avatar a door acts through.

    An account may have many sessions at once (phone, laptop, IRC); each
    receives all of the account's traffic.
    """

    def __init__(
        self,
        account: Account | None,
        name: str,
        mind: IChatMind,
        address: str | None,
        now: int,
    ) -> None:
        self.account = account
        self.name = name
        self.folded = fold(name)
        self.mind = mind
        self.address = address
        self.connected_at = now
        self.token_hash: bytes | None = None
        self.attached = True
        # A guest's user name as its door knows it (IRC ``USER``), for its mask.
        self.user: str | None = None
        # The administrator account that makes this session a server operator
        # (docs/irc.md, "Operators"): an admin's own sessions from the start,
        # or one that IRC OPER vouched for. See pingchat.chat.moderation.
        self.operator: str | None = (
            account.name if account is not None and account.is_admin else None
        )

    @property
    def guest(self) -> bool:
        return self.account is None

    @property
    def hostmask(self) -> str:
        return hostmask(self.name, self.guest, self.user if self.guest else None)

    def __repr__(self) -> str:
        return f"<Session {self.name} via {getattr(self.mind, 'door', '?')}>"
