"""Password hashing, throttling and TOTP helpers (pure, no reactor)."""

from __future__ import annotations

import pyotp
from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase

from pingchat.auth import otp, passwords
from pingchat.auth.sealing import Sealer
from pingchat.auth.throttle import LoginThrottle, TokenBucket
from pingchat.errors import WeakPassword


def inline(fn, *args):  # type: ignore[no-untyped-def]
    return succeed(fn(*args))


class PasswordTests(SynchronousTestCase):
    def test_long_passwords_are_distinct_beyond_72_bytes(self) -> None:
        base = "x" * 100
        hashed = passwords.hash_password_blocking((base + "a").encode(), 4)
        self.assertTrue(passwords.check_password_blocking((base + "a").encode(), hashed))
        self.assertFalse(passwords.check_password_blocking((base + "b").encode(), hashed))

    def test_1024_byte_password_works(self) -> None:
        pw = ("\u00e9" * 512).encode()
        self.assertEqual(len(pw), 1024)
        self.assertTrue(
            passwords.check_password_blocking(pw, passwords.hash_password_blocking(pw, 4))
        )

    def test_policy(self) -> None:
        self.assertRaises(WeakPassword, passwords.check_password_policy, "short", 8)
        self.assertRaises(WeakPassword, passwords.check_password_policy, "x" * 1025, 8)
        self.assertRaises(WeakPassword, passwords.check_password_policy, None, 8)
        self.assertEqual(passwords.check_password_policy("ok", 2), "ok")

    def test_rounds_from_environment(self) -> None:
        self.patch(passwords.os, "environ", {"PINGCHAT_BCRYPT_ROUNDS": "5"})
        self.assertEqual(passwords.bcrypt_rounds(), 5)
        self.patch(passwords.os, "environ", {})
        self.assertEqual(passwords.bcrypt_rounds(), 12)
        self.patch(passwords.os, "environ", {"PINGCHAT_BCRYPT_ROUNDS": "2"})
        self.assertRaises(ValueError, passwords.bcrypt_rounds)

    def test_unknown_user_is_checked_against_a_dummy_hash(self) -> None:
        calls = []

        def runner(fn, *args):  # type: ignore[no-untyped-def]
            calls.append(fn)
            return succeed(fn(*args))

        hasher = passwords.PasswordHasher(runner, rounds=4)
        self.assertFalse(self.successResultOf(hasher.check("anything", None)))
        self.assertEqual(len(calls), 1)  # the work ran through the thread runner


class ThrottleTests(SynchronousTestCase):
    def test_token_bucket(self) -> None:
        bucket = TokenBucket(rate=2, burst=3)
        self.assertEqual([bucket.take(0) for _ in range(3)], [0, 0, 0])
        self.assertAlmostEqual(bucket.take(0), 0.5)
        self.assertEqual(bucket.take(0.5), 0)

    def test_login_backoff_doubles_per_pair_and_resets_on_success(self) -> None:
        now = [0.0]
        throttle = LoginThrottle(lambda: now[0], free=2, base=1, cap=10)
        throttle.failed("alice", "1.2.3.4")
        self.assertEqual(throttle.check("alice", "1.2.3.4"), 0)
        throttle.failed("alice", "1.2.3.4")
        self.assertEqual(throttle.check("alice", "1.2.3.4"), 1)
        self.assertEqual(throttle.check("alice", "5.6.7.8"), 0)
        throttle.failed("alice", "1.2.3.4")
        self.assertEqual(throttle.check("alice", "1.2.3.4"), 2)
        for _ in range(10):
            throttle.failed("alice", "1.2.3.4")
        self.assertEqual(throttle.check("ALICE", "1.2.3.4"), 10)
        now[0] = 100
        throttle.succeeded("alice", "1.2.3.4")
        self.assertEqual(throttle.check("alice", "1.2.3.4"), 0)

    def test_address_is_throttled_across_accounts(self) -> None:
        throttle = LoginThrottle(lambda: 0.0, free=100, address_free=3)
        for i in range(3):
            throttle.failed(f"user{i}", "9.9.9.9")
        self.assertGreater(throttle.check("fresh", "9.9.9.9"), 0)
        self.assertEqual(throttle.check("fresh", "8.8.8.8"), 0)


class OTPTests(SynchronousTestCase):
    def test_matching_step_window_and_format(self) -> None:
        secret = otp.new_secret()
        t = 1_000_000.0
        code = pyotp.TOTP(secret).at(t)
        self.assertEqual(otp.matching_step(secret, code, t), int(t // 30))
        self.assertEqual(otp.matching_step(secret, code, t + 30), int(t // 30))
        self.assertIsNone(otp.matching_step(secret, code, t + 90))
        self.assertIsNone(otp.matching_step(secret, "12345", t))
        self.assertIsNone(otp.matching_step(secret, 123456, t))

    def test_sealer_round_trip_and_wrong_key(self) -> None:
        a, b = Sealer.generate(), Sealer.generate()
        sealed = a.seal("JBSWY3DPEHPK3PXP")
        self.assertNotIn("JBSWY3DPEHPK3PXP", sealed)
        self.assertEqual(a.unseal(sealed), "JBSWY3DPEHPK3PXP")
        self.assertRaises(ValueError, b.unseal, sealed)
