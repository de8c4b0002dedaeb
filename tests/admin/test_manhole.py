"""The SSH manhole: host key, authentication, the realm, the prompt, the wiring."""

from __future__ import annotations

import re
import stat
import struct
from pathlib import Path
from typing import Any

import pyotp
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application.internet import TimerService
from twisted.conch import error as conch_error
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.manhole_ssh import ConchFactory
from twisted.conch.ssh import keys
from twisted.conch.ssh.common import NS, getNS
from twisted.conch.ssh.userauth import MSG_USERAUTH_INFO_REQUEST
from twisted.cred.credentials import SSHPrivateKey, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import TestCase

from pingchat.admin import manhole
from pingchat.admin.manhole import (
    AUTHORIZED_KEYS_FILE,
    HOST_KEY_FILE,
    AdminKeyChecker,
    AdminManhole,
    AdminSession,
    AdminUserAuth,
    AuthorizedKeys,
    ManholeFactory,
    build_factory,
    ensure_host_key,
)
from pingchat.admin.namespace import Done
from pingchat.auth.checkers import (
    LoginDisabled,
    LoginFailed,
    LoginThrottled,
    OTPNeeded,
    PasswordCredentials,
)
from pingchat.errors import NoSuchUser
from pingchat.testing import make_server
from tests.helpers import PASSWORD, ServerTestCase

_ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[c78DEHM=>]")


def plain(data: bytes) -> str:
    """Terminal output without escape sequences or carriage returns."""
    return _ESCAPES.sub(b"", data).replace(b"\r", b"").decode("utf-8", "replace")


def new_key() -> keys.Key:
    return keys.Key(ed25519.Ed25519PrivateKey.generate())


class HostKeyTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp_dir())

    def mktemp_dir(self) -> str:
        import shutil
        import tempfile

        path = tempfile.mkdtemp(prefix="pingchat-test-")
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def test_host_key_is_generated_once_with_mode_0600(self) -> None:
        first = ensure_host_key(self.dir)
        path = self.dir / HOST_KEY_FILE
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertTrue(first.isPublic() is False)
        again = ensure_host_key(self.dir)
        self.assertEqual(first.fingerprint(), again.fingerprint())
        self.assertEqual(first.sshType(), b"ssh-ed25519")

    def test_each_data_dir_gets_its_own_key(self) -> None:
        other = Path(self.mktemp_dir())
        self.assertNotEqual(
            ensure_host_key(self.dir).fingerprint(), ensure_host_key(other).fingerprint()
        )

    def test_a_key_readable_by_others_is_tightened_not_replaced(self) -> None:
        first = ensure_host_key(self.dir)
        path = self.dir / HOST_KEY_FILE
        path.chmod(0o644)
        again = ensure_host_key(self.dir)
        self.assertEqual(first.fingerprint(), again.fingerprint())
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)

    def test_fingerprint_is_in_openssh_form(self) -> None:
        self.assertTrue(manhole.fingerprint(ensure_host_key(self.dir)).startswith("SHA256:"))


class AuthorizedKeysTests(TestCase):
    def setUp(self) -> None:
        import shutil
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-test-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = self.dir / AUTHORIZED_KEYS_FILE
        self.alice_key, self.bob_key = new_key(), new_key()
        self.write(
            b"# admins' keys\n\n"
            b"alice " + self.alice_key.public().toString("openssh") + b" alice@laptop\n"
            b"bob " + self.bob_key.public().toString("openssh") + b"\n"
            b"carol not-a-key\n"
        )

    def write(self, data: bytes, mode: int = 0o600) -> None:
        self.path.write_bytes(data)
        self.path.chmod(mode)

    def test_keys_are_listed_per_account(self) -> None:
        authorized = AuthorizedKeys(self.path)
        self.assertEqual(list(authorized.keys_of("ALICE")), [self.alice_key.public()])
        self.assertEqual(list(authorized.keys_of("bob")), [self.bob_key.public()])
        self.assertEqual(list(authorized.keys_of("carol")), [])
        self.assertEqual(list(authorized.keys_of("dave")), [])

    def test_a_file_others_may_write_is_ignored(self) -> None:
        self.path.chmod(0o666)
        self.assertEqual(list(AuthorizedKeys(self.path).keys_of("alice")), [])

    def test_no_file_no_keys(self) -> None:
        self.assertEqual(list(AuthorizedKeys(self.dir / "absent").keys_of("alice")), [])

    def credentials(self, key: keys.Key, user: bytes, sign: bool = True, data: bytes = b"x") -> Any:
        blob = key.public().blob()
        signature = key.sign(data) if sign else None
        return SSHPrivateKey(user, key.sshType(), blob, data if sign else None, signature)

    def test_listed_key_with_good_signature_is_accepted(self) -> None:
        checker = AdminKeyChecker(AuthorizedKeys(self.path))
        d = checker.requestAvatarId(self.credentials(self.alice_key, b"alice"))
        self.assertEqual(self.successResultOf(d), "alice")

    def test_listed_key_without_signature_is_invited_to_sign(self) -> None:
        checker = AdminKeyChecker(AuthorizedKeys(self.path))
        d = checker.requestAvatarId(self.credentials(self.alice_key, b"alice", sign=False))
        self.failureResultOf(d, conch_error.ValidPublicKey)

    def test_key_of_someone_else_is_refused_before_any_signature(self) -> None:
        checker = AdminKeyChecker(AuthorizedKeys(self.path))
        for sign in (False, True):
            d = checker.requestAvatarId(self.credentials(self.bob_key, b"alice", sign=sign))
            self.failureResultOf(d, UnauthorizedLogin)

    def test_bad_signature_is_refused(self) -> None:
        checker = AdminKeyChecker(AuthorizedKeys(self.path))
        creds = self.credentials(self.alice_key, b"alice")
        creds.sigData = b"something else"
        self.failureResultOf(checker.requestAvatarId(creds), UnauthorizedLogin)


class LoginTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.factory = build_factory(self.server, self.clock)
        self.portal = self.factory.portal
        self.register("root1", role="admin")
        self.register("alice")

    def register(self, name: str, role: str = "user") -> None:
        self.successResultOf(self.server.accounts.register(name, PASSWORD, role=role))

    def login(self, name: str, password: str = PASSWORD, address: str = "192.0.2.1") -> Any:
        creds = PasswordCredentials(name, password, None, address)
        return self.portal.login(creds, address, IConchUser)

    def audit_rows(self) -> list[dict[str, Any]]:
        return self.successResultOf(self.server.store.recent_audit(100))[::-1]  # type: ignore[no-any-return]

    def test_an_admin_gets_a_terminal_and_the_login_is_audited(self) -> None:
        interface, avatar, logout = self.successResultOf(self.login("root1"))
        self.assertIs(interface, IConchUser)
        self.assertIsInstance(ISession(avatar), AdminSession)
        logout()
        events = [(r["event"], r["account"], r["actor"], r["address"]) for r in self.audit_rows()]
        self.assertIn(("manhole_login", "root1", "root1", "192.0.2.1"), events)
        self.assertIn(("manhole_logout", "root1", "root1", "192.0.2.1"), events)

    def test_plain_conch_credentials_work_too(self) -> None:
        creds = UsernamePassword(b"root1", PASSWORD.encode())
        self.successResultOf(self.portal.login(creds, None, IConchUser))

    def test_a_non_admin_is_refused_and_audited(self) -> None:
        self.failureResultOf(self.login("alice"), UnauthorizedLogin)
        rows = self.audit_rows()
        refused = [r for r in rows if r["event"] == "manhole_refused"]
        self.assertEqual(len(refused), 1)
        self.assertEqual(refused[0]["account"], "alice")
        self.assertIn("not an admin", refused[0]["detail"])
        self.assertNotIn("manhole_login", [r["event"] for r in rows])
        # The password was right, but no plain "login" event says it got in.
        self.assertNotIn("login", [r["event"] for r in rows])

    def test_a_disabled_admin_is_refused_and_audited(self) -> None:
        self.successResultOf(self.server.store.set_disabled("root1", True))
        self.failureResultOf(self.login("root1"), LoginDisabled)
        [row] = [r for r in self.audit_rows() if r["event"] == "login_disabled"]
        self.assertIn("manhole", row["detail"])

    def test_a_wrong_password_is_refused_and_audited(self) -> None:
        self.failureResultOf(self.login("root1", "wrong password"), LoginFailed)
        self.failureResultOf(self.login("nobody", "wrong password"), LoginFailed)
        failed = [r for r in self.audit_rows() if r["event"] == "login_failed"]
        self.assertEqual([r["account"] for r in failed], ["root1", "nobody"])
        self.assertIn("manhole", failed[0]["detail"])

    def test_login_throttling_applies(self) -> None:
        # --login-free-attempts failures are free; the next attempt waits.
        for _ in range(self.server.settings.login_free_attempts):
            self.failureResultOf(self.login("root1", "wrong password"), LoginFailed)
        self.failureResultOf(self.login("root1"), LoginThrottled)
        self.clock.advance(self.server.settings.login_backoff_max + 1)
        self.successResultOf(self.login("root1"))

    def test_a_listed_key_logs_an_admin_in_but_not_a_non_admin(self) -> None:
        root_key, alice_key = new_key(), new_key()
        path = self.data_dir / AUTHORIZED_KEYS_FILE
        path.write_bytes(
            b"root1 " + root_key.public().toString("openssh") + b"\n"
            b"alice " + alice_key.public().toString("openssh") + b"\n"
        )
        path.chmod(0o600)

        def key_login(key: keys.Key, user: bytes) -> Deferred[Any]:
            creds = SSHPrivateKey(user, key.sshType(), key.public().blob(), b"d", key.sign(b"d"))
            return self.portal.login(creds, None, IConchUser)

        self.successResultOf(key_login(root_key, b"root1"))
        self.failureResultOf(key_login(alice_key, b"alice"), UnauthorizedLogin)
        self.failureResultOf(key_login(alice_key, b"root1"), UnauthorizedLogin)


class FakeSSHTransport:
    """Just enough of an SSH server transport for the userauth service."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "203.0.113.5", 5555))
        self.packets: list[tuple[int, bytes]] = []

    def isEncrypted(self, direction: str) -> bool:
        return True

    def sendPacket(self, kind: int, data: bytes) -> None:
        self.packets.append((kind, data))


class UserAuthTests(LoginTests):
    def test_password_logins_carry_the_client_address(self) -> None:
        auth = AdminUserAuth()
        auth.transport = FakeSSHTransport(self.factory)  # type: ignore[assignment]
        auth.serviceStarted()
        self.addCleanup(auth.serviceStopped)
        self.assertEqual(
            sorted(auth.supportedAuthentications),
            [b"keyboard-interactive", b"password", b"publickey"],
        )
        auth.user = b"root1"
        self.successResultOf(auth.auth_password(b"\x00" + NS(PASSWORD.encode())))
        auth.user = b"alice"
        d = auth.auth_password(b"\x00" + NS(PASSWORD.encode()))
        self.clock.advance(auth.passwordDelay)  # a failure answers after a delay
        self.failureResultOf(d, UnauthorizedLogin)
        addresses = {
            r["event"]: r["address"] for r in self.audit_rows() if r["event"].startswith("manhole")
        }
        self.assertEqual(
            addresses, {"manhole_login": "203.0.113.5", "manhole_refused": "203.0.113.5"}
        )


class KeyboardInteractiveTests(LoginTests):
    """Password and, for accounts with TOTP, the code, asked over RFC 4256."""

    def setUp(self) -> None:
        super().setUp()
        self.auth = AdminUserAuth()
        self.ssh_transport = FakeSSHTransport(self.factory)
        self.auth.transport = self.ssh_transport  # type: ignore[assignment]
        self.auth.serviceStarted()
        self.addCleanup(self.auth.serviceStopped)

    def prompts(self) -> list[tuple[bytes, bool]]:
        """The prompts of the last info request sent to the client."""
        kind, data = self.ssh_transport.packets[-1]
        self.assertEqual(kind, MSG_USERAUTH_INFO_REQUEST)
        _name, _instruction, _lang, rest = getNS(data, 3)
        (count,) = struct.unpack(">L", rest[:4])
        rest = rest[4:]
        out = []
        for _ in range(count):
            prompt, rest = getNS(rest)
            out.append((prompt, rest[:1] == b"\x01"))
            rest = rest[1:]
        return out

    def answer(self, text: str) -> None:
        self.auth.ssh_USERAUTH_INFO_RESPONSE(struct.pack(">L", 1) + NS(text.encode()))

    def start(self, user: bytes) -> Deferred[Any]:
        self.auth.user = user
        return self.auth.auth_keyboard_interactive(NS(b"") + NS(b""))

    def test_password_alone_for_an_account_without_a_second_factor(self) -> None:
        d = self.start(b"root1")
        self.assertEqual(self.prompts(), [(b"Password: ", False)])
        self.answer(PASSWORD)
        self.assertIs(self.successResultOf(d)[0], IConchUser)

    def test_wrong_password_fails_after_a_delay(self) -> None:
        d = self.start(b"root1")
        self.answer("wrong password")
        self.assertNoResult(d)
        self.clock.advance(self.auth.passwordDelay)
        self.failureResultOf(d, LoginFailed)

    def test_an_account_with_totp_is_asked_for_the_code(self) -> None:
        secret = self.enable_otp_for_admin()
        d = self.start(b"root1")
        self.answer(PASSWORD)
        self.assertEqual(self.prompts(), [(b"One-time code: ", True)])
        self.answer(pyotp.TOTP(secret).at(self.clock.seconds() + 30))
        self.assertIs(self.successResultOf(d)[0], IConchUser)

    def test_a_wrong_code_is_refused(self) -> None:
        self.enable_otp_for_admin()
        d = self.start(b"root1")
        self.answer(PASSWORD)
        self.answer("000000")
        self.clock.advance(self.auth.passwordDelay)
        self.failureResultOf(d, UnauthorizedLogin)
        self.assertIn("otp_failed", [r["event"] for r in self.audit_rows()])

    def test_a_password_alone_does_not_open_an_account_with_totp(self) -> None:
        self.enable_otp_for_admin()
        self.auth.user = b"root1"
        d = self.auth.auth_password(b"\x00" + NS(PASSWORD.encode()))
        self.clock.advance(self.auth.passwordDelay)
        self.failureResultOf(d, OTPNeeded)

    def test_a_new_request_abandons_the_exchange(self) -> None:
        d = self.start(b"root1")
        self.auth._abandon()
        self.failureResultOf(d, conch_error.IgnoreAuthentication)
        self.answer(PASSWORD)  # a late answer is ignored
        self.assertEqual(len(self.ssh_transport.packets), 1)

    def test_a_malformed_response_fails(self) -> None:
        d = self.start(b"root1")
        self.auth.ssh_USERAUTH_INFO_RESPONSE(struct.pack(">L", 2) + NS(b"a") + NS(b"b"))
        self.failureResultOf(d, UnauthorizedLogin)

    def enable_otp_for_admin(self) -> str:
        client = self.client()
        self.assertTrue(client.request("login", user="root1", password=PASSWORD)["ok"])
        secret = str(client.request("otp.setup")["secret"])
        code = pyotp.TOTP(secret).at(self.clock.seconds())
        self.assertTrue(client.request("otp.enable", code=code)["ok"])
        return secret


class PromptTests(TestCase):
    def connect(self, namespace: dict[str, Any]) -> None:
        self.transport = StringTransport()
        self.terminal = insults.ServerProtocol(AdminManhole, namespace, "the banner\n")
        self.terminal.makeConnection(self.transport)
        self.manhole = self.terminal.terminalProtocol

    def output(self) -> str:
        text = plain(self.transport.value())
        self.transport.clear()
        return text

    def type(self, line: str) -> str:
        self.terminal.dataReceived(line.encode() + b"\r")
        return self.output()

    def test_the_banner_comes_before_the_first_prompt(self) -> None:
        self.connect({})
        self.assertTrue(self.output().endswith("the banner\n>>> "))

    def test_window_size_report_does_not_wipe_the_screen(self) -> None:
        self.connect({})
        self.output()
        self.manhole.terminalSize(120, 40)
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual((self.manhole.width, self.manhole.height), (120, 40))

    def test_expressions_print_their_value(self) -> None:
        self.connect({"done": Done("it worked")})
        self.output()
        self.assertTrue(self.type("1 + 1").endswith("1 + 1\n2\n>>> "))
        self.assertTrue(self.type("done").endswith("done\nit worked\n>>> "))

    def test_the_prompt_waits_for_a_deferred_and_runs_typed_ahead_lines_after(self) -> None:
        pending: Deferred[Any] = Deferred()
        self.connect({"pending": pending})
        self.output()
        self.assertTrue(self.type("pending").endswith("pending\n"))  # no prompt yet
        self.assertNotIn("4\n", self.type("2 + 2"))
        pending.callback(Done("finished"))
        self.assertEqual(self.output(), "finished\n>>> 4\n>>> ")
        self.assertTrue(self.type("_").endswith("4\n>>> "))

    def test_a_fired_deferred_prints_its_result_at_once(self) -> None:
        self.connect({"ready": succeed(Done("ready now"))})
        self.output()
        self.assertTrue(self.type("ready").endswith("ready\nready now\n>>> "))
        self.assertTrue(self.type("_").endswith("ready now\n>>> "))

    def test_a_failed_deferred_prints_a_short_error(self) -> None:
        pending: Deferred[Any] = Deferred()
        self.connect({"pending": pending, "broken": fail(ValueError("bad"))})
        self.output()
        self.type("pending")
        pending.errback(NoSuchUser("no such user: ghost"))
        self.assertEqual(self.output(), "NoSuchUser: no such user: ghost\n>>> ")
        text = self.type("broken")
        self.assertIn("Traceback", text)
        self.assertIn("ValueError: bad", text)

    def test_ctrl_c_stops_waiting_and_the_result_still_shows(self) -> None:
        pending: Deferred[Any] = Deferred()
        self.connect({"pending": pending})
        self.output()
        self.type("pending")
        self.terminal.dataReceived(b"\x03")
        self.assertTrue(self.output().endswith(">>> "))
        self.assertTrue(self.type("3 * 3").endswith("9\n>>> "))
        pending.callback(Done("late"))
        self.assertIn("late", self.output())

    def test_chat_errors_are_short_other_errors_have_a_traceback(self) -> None:
        def no_such(name: str) -> None:
            raise NoSuchUser(f"{name} is not connected")

        self.connect({"kick": no_such})
        self.output()
        text = self.type("kick('ghost')")
        self.assertIn("NoSuchUser: ghost is not connected", text)
        self.assertNotIn("Traceback", text)
        self.assertIn("Traceback", self.type("1 / 0"))


class SessionTests(TestCase):
    def test_window_changes_reach_the_terminal_and_eof_closes(self) -> None:
        from twisted.python.components import Componentized

        session = AdminSession(Componentized())
        session.getPty(b"xterm", (0, 0, 0, 0), [])
        self.assertEqual((session.width, session.height), (80, 24))

        class Terminal:
            size: tuple[int, int] | None = None
            closed = False

            def __init__(self) -> None:
                self.terminalProtocol = self

            def terminalSize(self, width: int, height: int) -> None:
                self.size = (width, height)

            def loseConnection(self) -> None:
                self.closed = True

        terminal = Terminal()
        session.chained = terminal
        session.windowChanged((50, 132, 0, 0))
        self.assertEqual(terminal.size, (132, 50))
        session.eofReceived()
        self.assertTrue(terminal.closed)

    def test_commands_are_refused(self) -> None:
        from twisted.python.components import Componentized

        session = AdminSession(Componentized())
        self.assertRaises(conch_error.ConchError, session.execCommand, None, b"who()")


class WiringTests(TestCase):
    def setUp(self) -> None:
        import shutil
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-test-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_keys_belong_to_the_factory_not_to_conch(self) -> None:
        reactor = MemoryReactorClock()
        server = make_server(self.dir, reactor)
        self.addCleanup(server.db.stop)
        factory = build_factory(server, reactor)
        self.assertIsInstance(factory, ManholeFactory)
        self.assertEqual(list(factory.publicKeys), [b"ssh-ed25519"])
        self.assertEqual(ConchFactory.publicKeys, {})
        self.assertEqual(ConchFactory.privateKeys, {})

    def test_manhole_listens_on_its_endpoint_and_samples_rates(self) -> None:
        reactor = MemoryReactorClock()
        server = make_server(self.dir, reactor, manhole=("tcp:2222:interface=127.0.0.1",))
        self.addCleanup(server.db.stop)
        [listener] = server.listeners.listeners
        self.assertEqual((listener.option, listener.registers), ("manhole", False))
        server.listeners.startService()
        self.addCleanup(server.listeners.stopService)
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (2222, "127.0.0.1"))
        self.assertIsInstance(factory, ManholeFactory)
        self.assertTrue((self.dir / HOST_KEY_FILE).exists())
        [sampler] = [s for s in server.top if isinstance(s, TimerService)
                     and s.call[0] == server.extras["manhole_meter"].sample]
        self.assertIs(sampler.clock, reactor)

    def test_no_manhole_no_listener_and_no_key(self) -> None:
        reactor = MemoryReactorClock()
        server = make_server(self.dir, reactor)
        self.addCleanup(server.db.stop)
        self.assertEqual(server.listeners.listeners, [])
        self.assertFalse((self.dir / HOST_KEY_FILE).exists())

    def test_loopback_detection(self) -> None:
        self.assertTrue(manhole._is_loopback("tcp:2222:interface=127.0.0.1"))
        self.assertTrue(manhole._is_loopback("tcp6:2222:interface=\\:\\:1"))
        self.assertFalse(manhole._is_loopback("tcp:2222"))
        self.assertFalse(manhole._is_loopback("tcp:2222:interface=0.0.0.0"))
