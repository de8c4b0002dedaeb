"""Account operations shared by the doors (chat/accounts.py)."""

from __future__ import annotations

from pingchat.errors import NoSuchUser
from pingchat.model import Account
from pingchat.testing import RecordingMind
from tests.backends import on_postgresql
from tests.helpers import ServerTestCase


class AccountSettingsTests(ServerTestCase):
    def test_account_settings_are_read_from_the_store(self) -> None:
        account = self.successResultOf(self.server.accounts.register("alice", "password one"))
        session = self.server.chat.attach(account["account"], RecordingMind(), "127.0.0.1")
        # Changed behind the session's back (its copy is the one it logged in with).
        self.successResultOf(self.server.store.set_dm_policy("alice", "contacts"))
        self.assertEqual(session.account.dm_policy, "anyone")  # type: ignore[union-attr]
        stored = self.successResultOf(self.server.accounts.account_settings(session))
        self.assertEqual(stored.dm_policy, "contacts")

    def test_account_settings_of_an_account_not_stored_is_no_such_user(self) -> None:
        ghost = Account(id=999, name="ghost")
        session = self.server.chat.attach(ghost, RecordingMind(), "127.0.0.1")
        self.failureResultOf(self.server.accounts.account_settings(session), NoSuchUser)


# The same tests on the PostgreSQL store (tests/backends.py).
AccountSettingsTestsOnPostgreSQL = on_postgresql(AccountSettingsTests)
