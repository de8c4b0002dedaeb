"""Account security and the social layer over the native protocol (issue 3):
TOTP, recovery codes, password changes, throttling, audit, contacts, keys."""

from __future__ import annotations

import base64
import io
import sqlite3

import pyotp
from twisted.logger import globalLogPublisher, textFileLogObserver

from tests.helpers import PASSWORD, ServerTestCase

NEW_PASSWORD = "a brand new passphrase"


class OTPTests(ServerTestCase):
    def enable_otp(self, c: object) -> str:
        setup = c.request("otp.setup")  # type: ignore[attr-defined]
        self.assertTrue(setup["uri"].startswith("otpauth://totp/"))
        secret = setup["secret"]
        code = pyotp.TOTP(secret).at(self.clock.seconds())
        self.assertTrue(c.request("otp.enable", code=code)["ok"])  # type: ignore[attr-defined]
        return str(secret)

    def code(self, secret: str, offset: float = 0) -> str:
        return str(pyotp.TOTP(secret).at(self.clock.seconds() + offset))

    def test_enable_needs_a_correct_code(self) -> None:
        c = self.account("alice")
        c.request("otp.setup")
        self.assertError(c.request("otp.enable", code="000000"), "auth_failed")
        self.assertError(c.request("otp.enable"), "bad_request")
        # Still off: a password alone logs in.
        self.login("alice")

    def test_login_needs_the_code_once_enabled(self) -> None:
        secret = self.enable_otp(self.account("alice"))
        self.clock.advance(30)
        self.assertError(
            self.client().request("login", user="alice", password=PASSWORD), "otp_required"
        )
        self.assertError(
            self.client().request("login", user="alice", password=PASSWORD, otp="123456"),
            "auth_failed",
        )
        self.login("alice", otp=self.code(secret))

    def test_a_code_cannot_be_replayed(self) -> None:
        secret = self.enable_otp(self.account("alice"))
        self.clock.advance(30)
        code = self.code(secret)
        self.login("alice", otp=code)
        self.assertError(
            self.client().request("login", user="alice", password=PASSWORD, otp=code), "auth_failed"
        )
        self.clock.advance(30)
        self.login("alice", otp=self.code(secret))

    def test_clock_drift_of_one_step_is_accepted_two_are_not(self) -> None:
        secret = self.enable_otp(self.account("alice"))
        self.clock.advance(300)
        self.login("alice", otp=self.code(secret, -30))
        self.assertError(
            self.client().request(
                "login", user="alice", password=PASSWORD, otp=self.code(secret, 90)
            ),
            "auth_failed",
        )

    def test_wrong_password_with_right_code_fails(self) -> None:
        secret = self.enable_otp(self.account("alice"))
        self.clock.advance(30)
        reply = self.client().request(
            "login", user="alice", password="not it at all", otp=self.code(secret)
        )
        self.assertError(reply, "auth_failed")

    def test_tokens_keep_working_with_otp(self) -> None:
        c = self.account("alice")
        self.enable_otp(c)
        self.assertTrue(self.client().request("resume", token=c.token)["ok"])  # type: ignore[attr-defined]

    def test_disable_needs_password_and_code(self) -> None:
        c = self.account("alice")
        secret = self.enable_otp(c)
        self.clock.advance(30)
        self.assertError(
            c.request("otp.disable", password="wrong one!", code=self.code(secret)), "auth_failed"
        )
        self.assertError(c.request("otp.disable", password=PASSWORD, code="111111"), "auth_failed")
        self.assertTrue(c.request("otp.disable", password=PASSWORD, code=self.code(secret))["ok"])
        self.login("alice")

    def test_the_secret_is_not_stored_in_clear(self) -> None:
        secret = self.enable_otp(self.account("alice"))
        dump = "\n".join(sqlite3.connect(self.server.settings.database_path).iterdump())
        self.assertNotIn(secret, dump)


class RecoveryTests(ServerTestCase):
    def test_a_code_resets_the_password_once_and_revokes_tokens(self) -> None:
        c = self.account("alice")
        code = c.recovery_codes[0]  # type: ignore[attr-defined]
        reply = self.client().request("recover", user="alice", code=code, new_password=NEW_PASSWORD)
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["recovery_codes_left"], 9)
        self.assertError(self.client().request("resume", token=c.token), "auth_failed")  # type: ignore[attr-defined]
        self.login("alice", password=NEW_PASSWORD)
        self.assertError(
            self.client().request("login", user="alice", password=PASSWORD), "auth_failed"
        )
        again = self.client().request("recover", user="alice", code=code, new_password=PASSWORD)
        self.assertError(again, "auth_failed")

    def test_code_format_is_forgiving(self) -> None:
        c = self.account("alice")
        code = c.recovery_codes[1].upper().replace("-", " ")  # type: ignore[attr-defined]
        reply = self.client().request("recover", user="alice", code=code, new_password=NEW_PASSWORD)
        self.assertTrue(reply["ok"], reply)

    def test_wrong_code_unknown_user_and_weak_password(self) -> None:
        self.account("alice")
        c = self.client()
        self.assertError(
            c.request(
                "recover", user="alice", code="aaaa-bbbb-cccc-dddd", new_password=NEW_PASSWORD
            ),
            "auth_failed",
        )
        self.assertError(
            c.request(
                "recover", user="nobody", code="aaaa-bbbb-cccc-dddd", new_password=NEW_PASSWORD
            ),
            "auth_failed",
        )
        self.assertError(
            c.request("recover", user="alice", code="x", new_password="short"), "weak_password"
        )

    def test_regenerate_replaces_the_codes(self) -> None:
        c = self.account("alice")
        old = c.recovery_codes[0]  # type: ignore[attr-defined]
        self.assertError(c.request("recovery.regenerate", password="wrong pass"), "auth_failed")
        new = c.request("recovery.regenerate", password=PASSWORD)["recovery_codes"]
        self.assertEqual(len(new), 10)
        self.assertError(
            self.client().request("recover", user="alice", code=old, new_password=NEW_PASSWORD),
            "auth_failed",
        )
        self.assertTrue(
            self.client().request("recover", user="alice", code=new[0], new_password=NEW_PASSWORD)[
                "ok"
            ]
        )

    def test_codes_are_stored_hashed(self) -> None:
        c = self.account("alice")
        dump = "\n".join(sqlite3.connect(self.server.settings.database_path).iterdump())
        for code in c.recovery_codes:  # type: ignore[attr-defined]
            self.assertNotIn(code, dump)
            self.assertNotIn(code.replace("-", ""), dump)


class PasswordChangeTests(ServerTestCase):
    def test_passwd_revokes_other_tokens_and_keeps_this_session(self) -> None:
        c = self.account("alice")
        other = self.login("alice")
        self.assertTrue(c.request("passwd", old=PASSWORD, new=NEW_PASSWORD)["ok"])
        self.assertError(self.client().request("resume", token=other.token), "auth_failed")  # type: ignore[attr-defined]
        self.assertTrue(self.client().request("resume", token=c.token)["ok"])  # type: ignore[attr-defined]
        self.assertTrue(c.request("who")["ok"])
        self.login("alice", password=NEW_PASSWORD)

    def test_passwd_errors(self) -> None:
        c = self.account("alice")
        self.assertError(c.request("passwd", old="wrong pass", new=NEW_PASSWORD), "auth_failed")
        self.assertError(c.request("passwd", old=PASSWORD, new="short"), "weak_password")
        self.login("alice")


class ThrottleTests(ServerTestCase):
    def test_repeated_failures_are_throttled_before_any_bcrypt(self) -> None:
        self.account("alice")
        c = self.client()
        codes = [
            c.request("login", user="alice", password=f"wrong {i}!!")["error"]["code"]
            for i in range(8)
        ]
        self.assertEqual(codes[:5], ["auth_failed"] * 5)
        self.assertIn("rate_limited", codes)
        calls = []
        original = self.server.hasher.check
        self.server.hasher.check = lambda *a: calls.append(a) or original(*a)
        limited = self.client().request("login", user="alice", password=PASSWORD)
        self.assertError(limited, "rate_limited")
        self.assertGreater(limited["error"]["retry_after"], 0)
        self.assertEqual(calls, [])
        self.clock.advance(limited["error"]["retry_after"] + 0.1)
        self.login("alice")

    def test_backoff_grows(self) -> None:
        self.account("alice")
        c = self.client()
        waits = []
        for _ in range(9):
            reply = c.request("login", user="alice", password="wrong wrong")
            if reply["error"]["code"] == "rate_limited":
                waits.append(reply["error"]["retry_after"])
                self.clock.advance(reply["error"]["retry_after"])
                c.request("login", user="alice", password="wrong wrong")
        self.assertTrue(waits)
        self.assertEqual(waits, sorted(waits))
        self.assertGreater(waits[-1], waits[0])

    def test_recovery_attempts_are_throttled(self) -> None:
        self.account("alice")
        c = self.client()
        codes = [
            c.request(
                "recover", user="alice", code=f"zzzz-zzzz-zzzz-zzz{i}", new_password=NEW_PASSWORD
            )["error"]["code"]
            for i in range(8)
        ]
        self.assertIn("rate_limited", codes)

    def test_registrations_are_limited_per_address(self) -> None:
        c = self.client(address="10.9.9.9")
        codes = [
            c.request("register", user=f"user{i}", password=PASSWORD).get("ok") or c.replies
            for i in range(25)
        ]
        self.clock.advance(0)
        last = c.request("register", user="onemore", password=PASSWORD)
        self.assertError(last, "rate_limited")
        self.assertTrue(codes[0])
        other = self.client(address="10.9.9.10")
        self.assertTrue(other.request("register", user="fromelsewhere", password=PASSWORD)["ok"])


class AuditTests(ServerTestCase):
    def test_security_events_are_audited_without_secrets(self) -> None:
        c = self.account("alice")
        self.client().request("login", user="alice", password="wrong password")
        c.request("passwd", old=PASSWORD, new=NEW_PASSWORD)
        rows = self.successResultOf(self.server.store.recent_audit(50))
        events = {r["event"] for r in rows}
        self.assertLessEqual({"register", "login", "login_failed", "passwd"}, events)
        failed = next(r for r in rows if r["event"] == "login_failed")
        self.assertEqual((failed["account"], failed["address"]), ("alice", "127.0.0.1"))
        text = repr(rows)
        for secret in (PASSWORD, NEW_PASSWORD, "wrong password", c.token):  # type: ignore[attr-defined]
            self.assertNotIn(secret, text)

    def test_no_secret_reaches_the_log(self) -> None:
        out = io.StringIO()
        observer = textFileLogObserver(out)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        c = self.account("alice")
        secrets = [PASSWORD, c.token, *c.recovery_codes]  # type: ignore[attr-defined]
        setup = c.request("otp.setup")
        secrets.append(setup["secret"])
        code = pyotp.TOTP(setup["secret"]).at(self.clock.seconds())
        c.request("otp.enable", code=code)
        self.clock.advance(30)
        code2 = pyotp.TOTP(setup["secret"]).at(self.clock.seconds())
        second = self.login("alice", otp=code2)
        secrets += [code, code2, second.token]  # type: ignore[attr-defined]
        self.client().request("login", user="alice", password="guessing wrong")
        self.client().request(
            "recover",
            user="alice",
            code=c.recovery_codes[0],  # type: ignore[attr-defined]
            new_password=NEW_PASSWORD,
        )
        third = self.login(
            "alice",
            password=NEW_PASSWORD,
            otp=pyotp.TOTP(setup["secret"]).at(self.clock.seconds() + 30),
        )
        third.request("passwd", old=NEW_PASSWORD, new="third password here")
        secrets += [NEW_PASSWORD, "third password here", "guessing wrong"]
        log = out.getvalue()
        self.assertIn("audit", log)
        for secret in secrets:
            self.assertNotIn(secret, log)


class ContactTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("alice")
        self.bob = self.account("bob")

    def test_mutual_requests_make_contacts_and_both_are_told(self) -> None:
        reply = self.alice.request("contact.add", user="bob")
        self.assertEqual(reply["status"], "requested")
        self.assertEqual(
            self.bob.take_events("contact"),
            [{"event": "contact", "user": "alice", "status": "request"}],
        )
        lists = self.bob.request("contacts")
        self.assertEqual((lists["incoming"], lists["contacts"]), (["alice"], []))
        self.assertEqual(self.alice.request("contacts")["outgoing"], ["bob"])
        self.assertEqual(self.bob.request("contact.add", user="alice")["status"], "contact")
        self.assertEqual(self.alice.take_events("contact")[-1]["status"], "accepted")
        self.assertEqual(self.alice.request("contacts")["contacts"], ["bob"])

    def test_offline_account_gets_the_contact_event_at_next_login(self) -> None:
        self.bob.request("logout")
        self.bob.disconnect()
        self.alice.request("contact.add", user="bob")
        bob = self.login("bob")
        self.assertEqual(bob.take_events("contact")[0]["user"], "alice")

    def test_remove_and_errors(self) -> None:
        self.alice.request("contact.add", user="bob")
        self.bob.request("contact.add", user="alice")
        self.assertTrue(self.alice.request("contact.remove", user="bob")["ok"])
        self.assertEqual(self.bob.request("contacts")["contacts"], [])
        self.assertEqual(self.bob.take_events("contact")[-1]["status"], "removed")
        self.assertError(self.alice.request("contact.add", user="nobody"), "no_such_user")
        self.assertError(self.alice.request("contact.add", user="alice"), "bad_request")

    def test_dm_policy_contacts_refuses_strangers(self) -> None:
        carol = self.account("carol")
        self.assertEqual(
            self.bob.request("settings", dm_policy="contacts")["dm_policy"], "contacts"
        )
        self.assertError(carol.request("dm", to="bob", text="hi"), "forbidden")
        self.alice.request("contact.add", user="bob")
        self.bob.request("contact.add", user="alice")
        self.assertTrue(self.alice.request("dm", to="bob", text="hi")["ok"])
        self.assertError(self.bob.request("settings", dm_policy="nobody"), "bad_request")
        self.assertEqual(self.bob.request("settings")["dm_policy"], "contacts")


class KeyDirectoryTests(ServerTestCase):
    def test_publish_and_fetch_a_key(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        key = base64.b64encode(bytes(range(32))).decode()
        published = alice.request("key.publish", public_key=key)
        got = bob.request("key.get", user="alice")
        self.assertEqual(got["public_key"], key)
        self.assertEqual(got["fingerprint"], published["fingerprint"])
        self.assertIsNone(bob.request("key.get", user="bob")["public_key"])
        self.assertError(bob.request("key.get", user="nobody"), "no_such_user")

    def test_malformed_keys_are_bad_request(self) -> None:
        alice = self.account("alice")
        for bad in [
            "not base64!",
            base64.b64encode(b"short").decode(),
            base64.b64encode(bytes(33)).decode(),
            42,
        ]:
            self.assertError(alice.request("key.publish", public_key=bad), "bad_request")

    def test_ciphertext_is_stored_and_relayed_unchanged(self) -> None:
        alice, bob = self.account("alice"), self.account("bob")
        ct = base64.b64encode(b"\x00opaque\xffbytes" * 5).decode()
        nonce = base64.b64encode(bytes(24)).decode()
        self.assertTrue(alice.request("dm", to="bob", ciphertext=ct, nonce=nonce)["ok"])
        [event] = bob.take_events("message")
        self.assertEqual((event["ciphertext"], event["nonce"]), (ct, nonce))
        self.assertNotIn("text", event)
        history = bob.request("history", **{"with": "alice"})["messages"]
        self.assertEqual(history[0]["ciphertext"], ct)
        self.assertError(alice.request("dm", to="bob", ciphertext="%%%"), "bad_request")
        self.assertError(alice.request("dm", to="bob", text="x", ciphertext=ct), "bad_request")
