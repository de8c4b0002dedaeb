"""Fixtures for the chat service's tests: sessions with recording minds, no door."""

from __future__ import annotations

from pingchat.chat.session import Session
from pingchat.testing import RecordingMind
from tests.helpers import ServerTestCase


class SessionTestCase(ServerTestCase):
    """An inline server whose sessions are attached directly, each with a RecordingMind."""

    def session(self, name: str, admin: bool = False) -> tuple[Session, RecordingMind]:
        """A session of *name*'s account (registered the first time; *admin*: made one)."""
        account = self.successResultOf(self.server.store.get_account(name))
        if account is None:
            self.successResultOf(self.server.accounts.register(name, "password one"))
        if admin:
            self.successResultOf(self.server.store.set_role(name, "admin"))
        account = self.successResultOf(self.server.store.get_account(name))
        mind = RecordingMind()
        return self.server.chat.attach(account, mind, "127.0.0.1"), mind

    def guest(self, name: str) -> tuple[Session, RecordingMind]:
        mind = RecordingMind()
        return self.server.chat.attach(None, mind, "127.0.0.1", name), mind
