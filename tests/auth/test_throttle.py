"""The login throttle's policy, as pure logic on a fake clock (issue 15, defect 8).

Keys: the (account, address) pair gets ``free`` failures, the address alone
``address_free`` (across accounts); the account as a whole is throttled only
when its failures come from more than ``spread`` addresses. Bad session
tokens have their own per-address key.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from pingchat.auth.throttle import LoginThrottle, network_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BoundaryTests(SynchronousTestCase):
    """``free = 5``: five failures cost nothing; the attempt after the fifth waits."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = LoginThrottle(self.clock, free=5, base=1, cap=300, address_free=20)

    def test_four_failures_leave_the_fifth_attempt_free(self) -> None:
        for _ in range(4):
            self.throttle.failed("alice", "10.0.0.1")
        self.assertEqual(self.throttle.check("alice", "10.0.0.1"), 0)

    def test_the_sixth_attempt_after_five_failures_waits_one_base_period(self) -> None:
        # Behaviour change: the old throttle let a sixth attempt through
        # (its back-off started after the sixth failure).
        for _ in range(5):
            self.throttle.failed("alice", "10.0.0.1")
        self.assertEqual(self.throttle.check("alice", "10.0.0.1"), 1)
        self.clock.now += 1
        self.assertEqual(self.throttle.check("alice", "10.0.0.1"), 0)
        self.throttle.failed("alice", "10.0.0.1")
        self.assertEqual(self.throttle.check("alice", "10.0.0.1"), 2)

    def test_nineteen_failures_from_an_address_leave_the_twentieth_attempt_free(self) -> None:
        for i in range(19):
            self.throttle.failed(f"user{i}", "10.0.0.1")
        self.assertEqual(self.throttle.check("fresh", "10.0.0.1"), 0)

    def test_twenty_failures_from_an_address_make_the_twenty_first_attempt_wait(self) -> None:
        # Behaviour change: the old throttle allowed 21 failures per address.
        for i in range(20):
            self.throttle.failed(f"user{i}", "10.0.0.1")
        self.assertEqual(self.throttle.check("fresh", "10.0.0.1"), 1)
        self.assertEqual(self.throttle.check("fresh", "10.0.0.2"), 0)

    def test_the_backoff_doubles_up_to_the_cap(self) -> None:
        waits = []
        for _ in range(15):
            self.throttle.failed("alice", "10.0.0.1")
            waits.append(self.throttle.check("alice", "10.0.0.1"))
        self.assertEqual(waits[:4], [0, 0, 0, 0])
        self.assertEqual(waits[4:10], [1, 2, 4, 8, 16, 32])
        self.assertEqual(waits[-1], 300)

    def test_a_larger_per_account_figure_raises_the_per_address_one(self) -> None:
        throttle = LoginThrottle(self.clock, free=50)
        for i in range(49):
            throttle.failed("alice", "10.0.0.1")
            self.assertEqual(throttle.check(f"other{i}", "10.0.0.1"), 0)


class LockoutTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = LoginThrottle(self.clock, free=5, base=1, cap=300, spread=10)

    def test_failures_from_one_address_do_not_block_the_owner_elsewhere(self) -> None:
        # Behaviour change: the old throttle refused the owner from everywhere.
        for _ in range(12):
            self.throttle.failed("alice", "203.0.113.9")
        self.assertGreater(self.throttle.check("alice", "203.0.113.9"), 0)
        self.assertEqual(self.throttle.check("alice", "198.51.100.7"), 0)
        self.assertEqual(self.throttle.check("ALICE", "198.51.100.7"), 0)
        self.assertEqual(self.throttle.account_wait("alice"), 0)

    def test_a_success_clears_the_pair_only(self) -> None:
        for i in range(4):
            self.throttle.failed("alice", "10.0.0.1")
            self.throttle.failed(f"x{i}", "10.0.0.1")
        self.throttle.succeeded("alice", "10.0.0.1")
        self.throttle.failed("alice", "10.0.0.1")
        self.assertEqual(self.throttle.check("alice", "10.0.0.1"), 0)
        for i in range(11):  # the address key kept its 9 failures: 20 now
            self.throttle.failed(f"y{i}", "10.0.0.1")
        self.assertGreater(self.throttle.check("somebody", "10.0.0.1"), 0)

    def test_few_addresses_do_not_engage_the_account_wide_ceiling(self) -> None:
        for i in range(10):
            for _ in range(5):
                self.assertFalse(self.throttle.failed("alice", f"10.0.0.{i}"))
        self.assertEqual(self.throttle.account_wait("alice"), 0)
        self.assertEqual(self.throttle.check("alice", "10.9.9.9"), 0)

    def test_many_addresses_engage_the_account_wide_ceiling_once(self) -> None:
        engaged = [self.throttle.failed("alice", f"10.0.0.{i}") for i in range(11)]
        self.assertEqual(engaged, [False] * 10 + [True])
        self.assertEqual(self.throttle.account_wait("ALICE"), 1)
        # The pair and address keys of a clean address are still free:
        # the ceiling is a separate question the checker asks.
        self.assertEqual(self.throttle.check("alice", "10.9.9.9"), 0)
        self.clock.now += 1
        self.assertFalse(self.throttle.failed("alice", "10.0.0.99"))
        self.assertEqual(self.throttle.account_wait("alice"), 2)
        self.assertEqual(self.throttle.account_wait("bob"), 0)

    def test_the_ceiling_grows_to_the_cap_and_is_forgotten_after_a_quiet_hour(self) -> None:
        for i in range(30):
            self.throttle.failed("alice", f"10.0.{i}.1")
        self.assertEqual(self.throttle.account_wait("alice"), 300)
        self.clock.now += 3601
        self.assertEqual(self.throttle.account_wait("alice"), 0)
        self.assertFalse(self.throttle.failed("alice", "10.0.0.1"))
        self.assertEqual(self.throttle.account_wait("alice"), 0)

    def test_a_success_does_not_reset_the_ceiling(self) -> None:
        for i in range(11):
            self.throttle.failed("alice", f"10.0.0.{i}")
        self.throttle.succeeded("alice", "10.9.9.9")
        self.assertGreater(self.throttle.account_wait("alice"), 0)


class TokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = LoginThrottle(self.clock, free=5, address_free=20)

    def test_password_failures_never_delay_a_token_resume(self) -> None:
        for i in range(40):
            self.throttle.failed("alice", "10.0.0.1")
            self.throttle.failed(f"user{i}", "10.0.0.1")
        self.assertGreater(self.throttle.check("alice", "10.0.0.1"), 0)
        self.assertEqual(self.throttle.token_check("10.0.0.1"), 0)

    def test_bad_tokens_delay_tokens_from_that_address_only(self) -> None:
        for _ in range(20):
            self.throttle.token_failed("10.0.0.1")
        self.assertEqual(self.throttle.token_check("10.0.0.1"), 1)
        self.assertEqual(self.throttle.token_check("10.0.0.2"), 0)
        self.assertEqual(self.throttle.check("alice", "10.0.0.1"), 0)


class AddressTests(SynchronousTestCase):
    def test_ipv6_addresses_count_per_slash_64(self) -> None:
        self.assertEqual(network_of("2001:db8:1:2:aaaa::1"), network_of("2001:db8:1:2::ffff"))
        self.assertNotEqual(network_of("2001:db8:1:2::1"), network_of("2001:db8:1:3::1"))
        self.assertEqual(network_of("::ffff:192.0.2.7"), "192.0.2.7")
        self.assertEqual(network_of("192.0.2.7"), "192.0.2.7")
        self.assertEqual(network_of(None), "")
        self.assertEqual(network_of("not an address"), "not an address")
        throttle = LoginThrottle(Clock(), free=5, address_free=20)
        for i in range(20):
            throttle.failed(f"user{i}", f"2001:db8:1:2::{i + 1:x}")
        self.assertGreater(throttle.check("fresh", "2001:db8:1:2::abcd"), 0)
        self.assertEqual(throttle.check("fresh", "2001:db8:1:3::1"), 0)

    def test_memory_stays_bounded_under_a_flood_of_fresh_keys(self) -> None:
        clock = Clock()
        throttle = LoginThrottle(clock, max_entries=1000)
        for i in range(5000):
            throttle.failed(f"user{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
            clock.now += 0.001
        self.assertLessEqual(throttle.size(), 1000)
        # The most recent keys are the ones kept.
        for _ in range(4):
            throttle.failed("user4999", "10.0.19.135")
        self.assertGreater(throttle.check("user4999", "10.0.19.135"), 0)
