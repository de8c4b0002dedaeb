"""``--registration open|closed|invite`` on the native door, and invite codes."""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import globalLogPublisher

from pingchat.chat.accounts import DAY_MS
from tests.helpers import PASSWORD, ServerTestCase


class OpenRegistrationTests(ServerTestCase):
    def test_hello_says_anyone_may_register_and_an_invite_is_ignored(self) -> None:
        c = self.client()
        self.assertEqual(c.hello["registration"], "open")
        reply = c.request("register", user="ann", password=PASSWORD, invite="whatever")
        self.assertTrue(reply["ok"], reply)


class ClosedRegistrationTests(ServerTestCase):
    settings = {"registration": "closed"}

    def test_register_is_refused_and_nothing_is_created(self) -> None:
        c = self.client()
        self.assertEqual(c.hello["registration"], "closed")
        self.assertError(c.request("register", user="ann", password=PASSWORD),
                         "registration_closed")
        self.assertEqual(self.successResultOf(self.server.store.list_accounts()), [])

    def test_an_administrator_still_creates_accounts(self) -> None:
        d = self.server.accounts.create_account_admin("ann", PASSWORD, "root", "user")
        self.assertEqual(self.successResultOf(d)["account"].name, "ann")
        self.login("ann")


class InviteRegistrationTests(ServerTestCase):
    settings = {"registration": "invite", "registrations_per_hour": 5}

    def invite(self, **terms: Any) -> str:
        made = self.successResultOf(self.server.accounts.create_invite("root", **terms))
        return str(made["code"])

    def register(self, name: str, invite: str | None, address: str = "127.0.0.1") -> Any:
        args = {"user": name, "password": PASSWORD}
        if invite is not None:
            args["invite"] = invite
        return self.client(address).request("register", **args)

    def test_a_code_creates_one_account_and_is_then_spent(self) -> None:
        code = self.invite()
        self.assertError(self.register("ann", None), "invite_invalid")
        reply = self.register("ann", code.upper().replace("-", " "))  # typed loosely
        self.assertTrue(reply["ok"], reply)
        self.login("ann")
        self.assertError(self.register("bob", code), "invite_invalid")
        [invite] = self.successResultOf(self.server.store.list_invite_codes())
        self.assertEqual((invite.uses_left, invite.used), (0, 1))

    def test_a_code_for_several_uses_and_a_taken_name_spends_nothing(self) -> None:
        code = self.invite(uses=2)
        self.assertTrue(self.register("ann", code)["ok"])
        self.assertError(self.register("ANN", code), "user_exists")
        self.assertTrue(self.register("bob", code)["ok"])
        self.assertError(self.register("cat", code), "invite_invalid")

    def test_expired_and_revoked_codes_are_refused_with_the_same_answer(self) -> None:
        expiring = self.invite(expires_days=1)
        revoked = self.invite()
        [_, second] = self.successResultOf(self.server.store.list_invite_codes())
        self.assertTrue(
            self.successResultOf(self.server.store.revoke_invite_code(second.id, 0))
        )
        self.clock.advance(DAY_MS / 1000 + 1)
        messages = set()
        for code in (expiring, revoked, "aaaa-bbbb-cccc-dddd"):
            reply = self.register("ann", code)
            self.assertError(reply, "invite_invalid")
            messages.add(reply["error"]["message"])
        self.assertEqual(len(messages), 1, messages)

    def test_guessing_codes_is_held_to_the_registration_rate(self) -> None:
        self.invite()
        answers = [
            self.register("ann", f"aaaa-bbbb-cccc-{n:04d}", "10.9.9.9")["error"]["code"]
            for n in range(7)
        ]
        self.assertEqual(answers, ["invite_invalid"] * 5 + ["rate_limited"] * 2)
        # Another address is not held back by that one.
        self.assertEqual(self.register("ann", "aaaa-bbbb-cccc-dddd")["error"]["code"],
                         "invite_invalid")

    def test_creating_and_using_codes_is_audited_and_no_code_reaches_the_log(self) -> None:
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        code = self.invite()
        self.assertError(self.register("ann", "wrong-code"), "invite_invalid")
        self.assertTrue(self.register("ann", code)["ok"])
        self.clock.advance(0)
        rows = self.successResultOf(self.server.store.recent_audit(10))
        events = [r["event"] for r in reversed(rows)]
        self.assertEqual(events[:3], ["invite_create", "invite_invalid", "register"])
        [register] = [r for r in rows if r["event"] == "register"]
        self.assertEqual(json.loads(register["detail"])["invite"], 1)
        text = repr(logged) + repr(rows)
        self.assertNotIn(code, text)
        self.assertNotIn(code.replace("-", ""), text)
