"""The manhole's ``delete_user()``."""

from __future__ import annotations

from pingchat.auth.checkers import LoginFailed
from pingchat.errors import Forbidden, NoSuchUser
from tests.admin.test_namespace import AdminTestCase


class DeleteUserTests(AdminTestCase):
    def test_sessions_on_every_door_end_and_the_account_is_gone(self) -> None:
        native = self.account("alice")
        irc = self.irc_session("alice")
        native.request("join", room="#lobby")
        native.request("say", room="#lobby", text="hello")
        done = self.result(self.ns["delete_user"]("alice"))
        self.assertTrue(done.startswith(
            "alice deleted (now deleted-1 in the audit log); 1 message(s) removed, 0 anonymised;"
            " 2 session(s) closed; the name is free again from "
        ), done)
        self.assertTrue(native.transport.disconnecting)
        self.assertEqual(irc.disconnected, "this account has been deleted by an administrator")
        self.failureResultOf(self.password_login("alice"), LoginFailed)
        [row] = self.audit_rows("account_deleted")
        self.assertEqual((row["account"], row["actor"], row["address"]),
                         ("deleted-1", "root", "192.0.2.7"))

    def test_not_oneself_and_not_nobody(self) -> None:
        self.assertRaises(Forbidden, self.ns["delete_user"], "ROOT")
        self.failureResultOf(self.ns["delete_user"]("ghost"), NoSuchUser)
        self.assertEqual(self.audit_rows("account_deleted"), [])
