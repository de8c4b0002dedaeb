"""Nobody can lock an account out (issue 15, defect 8), over the native door
of an inline server on a task.Clock.

An attacker's wrong passwords delay the attacker's own (account, address)
pair and address; the owner still gets in from an address that has not
failed, with a known device during wide, distributed guessing, and always
with a session token.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import PASSWORD, ServerTestCase

ATTACKER = "203.0.113.9"
OWNER = "198.51.100.7"


class LockoutTests(ServerTestCase):
    def guess(self, address: str, user: str = "alice", times: int = 1, **args: Any) -> list[str]:
        c = self.client(address)
        return [
            c.request("login", user=user, password=f"wrong guess {i}", **args)["error"]["code"]
            for i in range(times)
        ]

    def test_the_owner_gets_in_from_a_clean_address_while_the_attacker_is_blocked(self) -> None:
        # Behaviour change: the old throttle refused the owner from everywhere.
        self.account("alice")
        codes = self.guess(ATTACKER, times=8)
        self.assertEqual(codes[:5], ["auth_failed"] * 5)
        self.assertEqual(codes[5:], ["rate_limited"] * 3)
        refused = self.client(ATTACKER).request("login", user="alice", password=PASSWORD)
        self.assertError(refused, "rate_limited")
        owner = self.client(OWNER).request("login", user="alice", password=PASSWORD)
        self.assertTrue(owner["ok"], owner)

    def test_five_failures_are_free_and_the_sixth_attempt_waits(self) -> None:
        # Behaviour change: the old throttle let a sixth attempt through.
        self.account("alice")
        self.assertEqual(self.guess(ATTACKER, times=5), ["auth_failed"] * 5)
        sixth = self.client(ATTACKER).request("login", user="alice", password=PASSWORD)
        self.assertError(sixth, "rate_limited")
        self.assertEqual(sixth["error"]["retry_after"], 1.0)
        self.clock.advance(1)
        self.assertTrue(
            self.client(ATTACKER).request("login", user="alice", password=PASSWORD)["ok"]
        )

    def test_four_failures_leave_the_fifth_attempt_free(self) -> None:
        self.account("alice")
        self.assertEqual(self.guess(ATTACKER, times=4), ["auth_failed"] * 4)
        self.assertTrue(
            self.client(ATTACKER).request("login", user="alice", password=PASSWORD)["ok"]
        )

    def test_twenty_failures_per_address_are_free_and_the_twenty_first_waits(self) -> None:
        # Behaviour change: the old throttle allowed 21 failures per address.
        self.account("alice")
        codes = [self.guess(ATTACKER, user=f"user{i}")[0] for i in range(20)]
        self.assertEqual(codes, ["auth_failed"] * 20)
        refused = self.client(ATTACKER).request("login", user="alice", password=PASSWORD)
        self.assertError(refused, "rate_limited")
        self.assertTrue(self.client(OWNER).request("login", user="alice", password=PASSWORD)["ok"])

    def test_nineteen_failures_per_address_leave_the_twentieth_attempt_free(self) -> None:
        self.account("alice")
        codes = [self.guess(ATTACKER, user=f"user{i}")[0] for i in range(19)]
        self.assertEqual(codes, ["auth_failed"] * 19)
        self.assertTrue(
            self.client(ATTACKER).request("login", user="alice", password=PASSWORD)["ok"]
        )

    def test_recovery_guesses_from_one_address_do_not_lock_the_owner_out(self) -> None:
        # Behaviour change: recovery failures used to block the account everywhere.
        self.account("alice")
        attacker = self.client(ATTACKER)
        codes = [
            attacker.request(
                "recover", user="alice", code=f"zzzz-zzzz-zzzz-zzz{i}", new_password="x" * 12
            )["error"]["code"]
            for i in range(7)
        ]
        self.assertEqual(codes, ["auth_failed"] * 5 + ["rate_limited"] * 2)
        self.assertTrue(self.client(OWNER).request("login", user="alice", password=PASSWORD)["ok"])


class DistributedGuessingTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.account("alice")
        first = self.client(OWNER).request("login", user="alice", password=PASSWORD)
        self.assertTrue(first["ok"], first)
        self.device = first["device"]
        self.token = first["token"]

    def rotate(self, addresses: int, start: int = 0) -> list[str]:
        """One wrong guess from each of *addresses* fresh addresses."""
        return [
            self.client(f"10.66.{i // 250}.{i % 250 + 1}")
            .request("login", user="alice", password="a wrong guess")["error"]["code"]
            for i in range(start, start + addresses)
        ]

    def audit_events(self, event: str) -> list[dict[str, Any]]:
        rows = self.successResultOf(self.server.store.recent_audit(500))[::-1]
        return [r for r in rows if r["event"] == event]

    def test_eleven_addresses_engage_the_audited_account_wide_ceiling(self) -> None:
        self.assertEqual(self.rotate(11), ["auth_failed"] * 11)
        [row] = self.audit_events("login_throttled_account_wide")
        self.assertEqual(row["account"], "alice")
        self.assertIn("11", row["detail"])
        # A twelfth address, even with the right password, is refused ...
        refused = self.client("10.99.0.1").request("login", user="alice", password=PASSWORD)
        self.assertError(refused, "rate_limited")
        self.assertIn("account", self.audit_events("login_throttled")[-1]["detail"])
        # ... but the owner's known device gets in (from anywhere).
        owner = self.client("10.99.0.2").request(
            "login", user="alice", password=PASSWORD, device=self.device
        )
        self.assertTrue(owner["ok"], owner)
        self.assertEqual(owner["device"], self.device)
        # Engaging is audited once, not at every refused attempt.
        self.assertEqual(len(self.audit_events("login_throttled_account_wide")), 1)

    def test_ten_addresses_do_not_engage_the_ceiling(self) -> None:
        self.assertEqual(self.rotate(10), ["auth_failed"] * 10)
        ok = self.client("10.99.0.1").request("login", user="alice", password=PASSWORD)
        self.assertTrue(ok["ok"], ok)
        self.assertEqual(self.audit_events("login_throttled_account_wide"), [])

    def test_an_unknown_device_does_not_pass_the_ceiling(self) -> None:
        self.account("bob")
        bobs = self.client(OWNER).request("login", user="bob", password=PASSWORD)["device"]
        self.rotate(11)
        for device in ("x" * 43, bobs):
            refused = self.client("10.99.0.3").request(
                "login", user="alice", password=PASSWORD, device=device
            )
            self.assertError(refused, "rate_limited")

    def test_the_ceiling_keeps_growing_while_the_guessing_goes_on(self) -> None:
        self.rotate(11)
        waits = []
        for i in range(6):
            self.clock.advance(300)
            self.assertEqual(self.rotate(1, start=100 + i), ["auth_failed"])
            refused = self.client("10.99.0.4").request("login", user="alice", password=PASSWORD)
            waits.append(refused["error"]["retry_after"])
        self.assertEqual(waits, [2, 4, 8, 16, 32, 64])

    def test_a_known_device_is_still_subject_to_its_own_pair(self) -> None:
        c = self.client(ATTACKER)
        codes = [
            c.request("login", user="alice", password="wrong", device=self.device)["error"]["code"]
            for _ in range(6)
        ]
        self.assertEqual(codes, ["auth_failed"] * 5 + ["rate_limited"])

    def test_a_session_token_resumes_during_the_attack(self) -> None:
        self.rotate(40)
        resumed = self.client("10.99.0.5").request("resume", token=self.token)
        self.assertTrue(resumed["ok"], resumed)


class TokenResumeTests(ServerTestCase):
    def test_a_token_resumes_during_password_guessing_from_the_same_address(self) -> None:
        # Behaviour change: password failures from a shared address (a NAT)
        # used to block every resume from it.
        c = self.account("alice")
        token = c.token  # type: ignore[attr-defined]
        attacker = self.client("127.0.0.1")
        failures = 0
        while failures < 25:
            reply = attacker.request("login", user="alice", password="a wrong guess")
            if reply["error"]["code"] == "rate_limited":
                self.clock.advance(reply["error"]["retry_after"])
            else:
                failures += 1
        resumed = self.client("127.0.0.1").request("resume", token=token)
        self.assertTrue(resumed["ok"], resumed)

    def test_bad_tokens_delay_resumes_from_that_address_only(self) -> None:
        c = self.account("alice")
        token = c.token  # type: ignore[attr-defined]
        guesser = self.client(ATTACKER)
        codes = [guesser.request("resume", token="x" * 43)["error"]["code"] for _ in range(21)]
        self.assertEqual(codes, ["auth_failed"] * 20 + ["rate_limited"])
        self.assertError(self.client(ATTACKER).request("resume", token=token), "rate_limited")
        self.assertTrue(self.client(OWNER).request("resume", token=token)["ok"])
        # Bad tokens are not password guesses: passwords from there still work.
        self.assertTrue(
            self.client(ATTACKER).request("login", user="alice", password=PASSWORD)["ok"]
        )


class DeviceTests(ServerTestCase):
    def test_login_hands_out_a_device_secret_and_keeps_a_known_one(self) -> None:
        self.account("alice")
        first = self.client().request("login", user="alice", password=PASSWORD)
        device = first["device"]
        self.assertIsInstance(device, str)
        self.assertGreaterEqual(len(device), 43)
        again = self.client().request("login", user="alice", password=PASSWORD, device=device)
        self.assertEqual(again["device"], device)
        fresh = self.client().request("login", user="alice", password=PASSWORD, device="made up")
        self.assertNotIn(fresh["device"], (device, "made up"))

    def test_only_the_hash_of_a_device_secret_is_stored(self) -> None:
        import sqlite3

        self.account("alice")
        device = self.client().request("login", user="alice", password=PASSWORD)["device"]
        self.clock.advance(0)
        conn = sqlite3.connect(self.server.settings.database_path)
        dump = "\n".join(conn.iterdump())
        conn.close()
        self.assertNotIn(device, dump)

    def test_a_device_of_another_account_is_not_known_here(self) -> None:
        self.account("alice")
        self.account("bob")
        bobs = self.client().request("login", user="bob", password=PASSWORD)["device"]
        alices = self.client().request("login", user="alice", password=PASSWORD, device=bobs)
        self.assertNotEqual(alices["device"], bobs)

    def test_a_password_change_forgets_the_accounts_devices(self) -> None:
        c = self.account("alice")
        device = self.client().request("login", user="alice", password=PASSWORD)["device"]
        self.assertTrue(c.request("passwd", old=PASSWORD, new="another long one")["ok"])
        again = self.client().request(
            "login", user="alice", password="another long one", device=device
        )
        self.assertNotEqual(again["device"], device)

    def test_a_device_that_is_not_a_string_is_a_bad_request(self) -> None:
        self.account("alice")
        reply = self.client().request("login", user="alice", password=PASSWORD, device=42)
        self.assertError(reply, "bad_request")
