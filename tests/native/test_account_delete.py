"""``account.delete`` over the native protocol (StringTransport, inline server)."""

from __future__ import annotations

import pyotp

from tests.backends import on_postgresql
from tests.helpers import PASSWORD, ServerTestCase


class AccountDeleteTests(ServerTestCase):
    def test_the_reply_comes_then_every_session_ends(self) -> None:
        alice = self.account("alice")
        phone = self.login("alice")
        bob = self.account("bob")
        for c in (alice, bob):
            self.assertTrue(c.request("join", room="#lobby")["ok"])
        alice.request("say", room="#lobby", text="hello from alice")
        alice.request("dm", to="bob", text="psst")
        reply = alice.request("account.delete", password=PASSWORD)
        self.assertEqual(
            reply,
            {"id": reply["id"], "ok": True, "user": "alice", "messages": "remove",
             "removed": 2, "anonymised": 0},
        )
        self.assertEqual(
            phone.take_events("disconnect"), [{"event": "disconnect",
                                               "reason": "this account has been deleted"}]
        )
        self.assertTrue(phone.transport.disconnecting)
        self.assertFalse(alice.transport.disconnecting)  # its reply first
        self.clock.advance(0)
        self.assertEqual(
            alice.take_events("disconnect"),
            [{"event": "disconnect", "reason": "your account has been deleted"}],
        )
        self.assertTrue(alice.transport.disconnecting)
        parted = bob.take_events("parted")
        self.assertEqual([(e["room"], e["user"]) for e in parted], [("#lobby", "alice")])
        self.assertEqual(bob.request("history", room="#lobby")["messages"], [])
        self.assertError(bob.request("history", **{"with": "alice"}), "no_such_user")

    def test_the_account_is_gone_for_every_way_in(self) -> None:
        alice = self.account("alice")
        alice.request("account.delete", password=PASSWORD)
        self.assertError(self.client().request("resume", token=alice.token), "auth_failed")  # type: ignore[attr-defined]
        self.assertError(
            self.client().request("login", user="alice", password=PASSWORD), "auth_failed"
        )
        self.assertError(self.account("bob").request("whois", user="alice"), "no_such_user")
        reply = self.client().request("register", user="alice", password=PASSWORD)
        self.assertError(reply, "invalid_name")
        self.assertIn("deleted account", reply["error"]["message"])

    def test_a_wrong_password_deletes_nothing(self) -> None:
        alice = self.account("alice")
        self.assertError(alice.request("account.delete", password="not it at all"), "auth_failed")
        self.assertError(alice.request("account.delete"), "bad_request")
        self.assertTrue(alice.request("join", room="#still-here")["ok"])
        self.login("alice")

    def test_with_a_second_factor_the_code_is_asked_too(self) -> None:
        alice = self.account("alice")
        secret = alice.request("otp.setup")["secret"]
        code = pyotp.TOTP(secret).at(self.clock.seconds())
        self.assertTrue(alice.request("otp.enable", code=code)["ok"])
        self.clock.advance(30)
        self.assertError(alice.request("account.delete", password=PASSWORD), "otp_required")
        self.assertError(
            alice.request("account.delete", password=PASSWORD, otp="000000"), "auth_failed"
        )
        self.assertIsNotNone(self.successResultOf(self.server.store.get_account("alice")))
        code = pyotp.TOTP(secret).at(self.clock.seconds())
        self.assertTrue(alice.request("account.delete", password=PASSWORD, otp=code)["ok"])
        self.assertIsNone(self.successResultOf(self.server.store.get_account("alice")))

    def test_failures_are_audited_and_throttled_like_logins(self) -> None:
        alice = self.account("alice")
        for _ in range(5):
            self.assertError(alice.request("account.delete", password="wrong guess"), "auth_failed")
        self.assertError(alice.request("account.delete", password=PASSWORD), "rate_limited")
        events = [r["event"] for r in self.successResultOf(self.server.store.recent_audit(10))]
        self.assertEqual(events.count("account_delete_failed"), 5)

    def test_not_before_login(self) -> None:
        self.assertError(
            self.client().request("account.delete", password=PASSWORD), "not_authenticated"
        )


class AnonymiseTests(ServerTestCase):
    settings = {"deleted_messages": "anonymise"}

    def test_room_messages_stay_under_a_placeholder(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        for c in (alice, bob):
            c.request("join", room="#lobby")
        alice.request("say", room="#lobby", text="hello from alice")
        alice.request("dm", to="bob", text="psst")
        reply = alice.request("account.delete", password=PASSWORD)
        self.assertEqual((reply["messages"], reply["removed"], reply["anonymised"]),
                         ("anonymise", 1, 1))
        history = bob.request("history", room="#lobby")["messages"]
        self.assertEqual([(m["from"], m["text"]) for m in history],
                         [("deleted-1", "hello from alice")])


AccountDeleteTestsOnPostgreSQL = on_postgresql(AccountDeleteTests)
AnonymiseTestsOnPostgreSQL = on_postgresql(AnonymiseTests)
