"""The client's behaviour with a scripted server: account flows, messages,
end-to-end encrypted DMs and key-change warnings."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pingchat.client.app import ChatClient, command_handlers
from pingchat.client.commands import SPECS, Command
from pingchat.client.configdir import ConfigDir, ServerAddress, SessionStore
from pingchat.client.e2e import Identity
from pingchat.client.testing import FakeConnector, FakeFrontend, FakeServer, login_reply, refuse
from pingchat.client.trust import Insecure
from pingchat.client.view import qr_lines


class ClientTestCase(TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-client-test-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.config = ConfigDir(self.dir)
        self.server = ServerAddress("chat.example")
        self.keys: dict[str, str | None] = {}
        self.fake = FakeServer()
        self.fake.on("key.get", lambda a: {"user": a["user"], "public_key": self.keys.get(
            a["user"]), "fingerprint": None})
        self.fake.on("key.publish", lambda a: self.keys.__setitem__("alice", a["public_key"])
                     or {"fingerprint": "f"})
        self.fake.on("dm", lambda a: {"msg_id": 10, "ts": "2026-01-01T10:00:00.000Z",
                                      "delivered": True})
        self.fake.on("history", lambda a: {"messages": []})

    def client(self, *answers: str, user: str | None = None) -> tuple[ChatClient, FakeFrontend]:
        client = ChatClient(Clock(), self.server, self.config, Insecure(), user_hint=user,
                            connector=FakeConnector())  # type: ignore[arg-type]
        frontend = FakeFrontend(*answers)
        client.start(frontend)
        client.state_changed("logging in", "")
        return client, frontend

    def login(self, *answers: str) -> tuple[ChatClient, FakeFrontend]:
        self.fake.on("login", lambda a: login_reply(a["user"]))
        client, frontend = self.client("login", "alice", "pw", *answers)
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        return client, frontend


class AccountFlowTests(ClientTestCase):
    def test_login_asks_for_the_totp_code_when_the_account_needs_one(self) -> None:
        def login(args: dict[str, Any]) -> dict[str, Any]:
            if "otp" not in args:
                raise refuse("otp_required", "a code is needed")
            self.assertEqual(args["otp"], "123456")
            return login_reply("alice")

        self.fake.on("login", login)
        client, frontend = self.client("login", "alice", "secret pw", "123 456")
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertEqual(client.session.user, "alice")
        self.assertIn("authenticator app", frontend.text())
        self.assertEqual(SessionStore(self.config, self.server).load(),
                         ("alice", "token-of-alice"))

    def test_the_device_secret_is_kept_and_sent_with_every_later_password_login(self) -> None:
        self.fake.on("login", lambda a: {**login_reply(a["user"]), "device": "device-of-alice"})
        client, _ = self.client("login", "alice", "pw")
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertNotIn("device", self.fake.sent("login")[0])
        sessions = SessionStore(self.config, self.server)
        self.assertEqual(sessions.device("alice"), "device-of-alice")
        sessions.forget()  # logged out: the next start asks for the password
        client, _ = self.client("login", "Alice", "pw")
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertEqual(self.fake.sent("login")[1]["device"], "device-of-alice")

    def test_wrong_password_says_so_and_asks_again(self) -> None:
        passwords = iter(["wrong", "right"])

        def login(args: dict[str, Any]) -> dict[str, Any]:
            if args["password"] != "right":
                raise refuse("auth_failed", "wrong user name or password")
            return login_reply("alice")

        self.fake.on("login", login)
        client, frontend = self.client("login", "alice", next(passwords), "login", "alice",
                                       next(passwords))
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertIn("! wrong user name or password", frontend.text())
        self.assertEqual(client.session.user, "alice")

    def test_register_shows_the_codes_once_then_hides_them_and_logs_in(self) -> None:
        codes = [f"code-{i}" for i in range(10)]
        self.fake.on("register", lambda a: {"user": a["user"], "recovery_codes": codes})
        self.fake.on("login", lambda a: login_reply(a["user"]))
        client, frontend = self.client("register", "alice", "long password", "long password",
                                       "not yet", "stored")
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        shown = frontend.text()
        for code in codes:
            self.assertIn(code, shown)
        self.assertIn("shown only now", shown)
        window_text = "\n".join(line.text for line in client.windows.status.lines)
        self.assertNotIn("code-3", window_text)
        self.assertEqual(client.session.user, "alice")
        self.assertEqual(self.fake.sent("register")[0]["password"], "long password")

    def test_mismatched_passwords_at_registration_are_asked_again(self) -> None:
        self.fake.on("register", lambda a: {"user": a["user"], "recovery_codes": []})
        self.fake.on("login", lambda a: login_reply(a["user"]))
        client, frontend = self.client("register", "alice", "one password", "another one",
                                       "same password", "same password", "stored")
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertIn("differ", frontend.text())
        self.assertEqual(self.fake.sent("register")[0]["password"], "same password")

    def test_where_registration_needs_an_invite_the_code_is_asked_and_sent(self) -> None:
        def register(args: dict[str, Any]) -> dict[str, Any]:
            if args.get("invite") != "good-code":
                raise refuse("invite_invalid", "this invite code is not valid")
            return {"user": args["user"], "recovery_codes": []}

        self.fake.on("register", register)
        self.fake.on("login", lambda a: login_reply(a["user"]))
        client, frontend = self.client(
            "register", "bad-code", "alice", "long password", "long password",
            "register", "good-code", "alice", "long password", "long password", "stored",
        )
        client.events.ev_hello(
            {"event": "hello", "server": "chat.example", "registration": "invite"})
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertIn("! this invite code is not valid", frontend.text())
        self.assertEqual([a["invite"] for a in self.fake.sent("register")],
                         ["bad-code", "good-code"])
        self.assertEqual(client.session.user, "alice")

    def test_where_registration_is_closed_the_client_says_so_without_asking(self) -> None:
        self.fake.on("login", lambda a: login_reply(a["user"]))
        client, frontend = self.client("register", "login", "alice", "pw")
        client.events.ev_hello(
            {"event": "hello", "server": "chat.example", "registration": "closed"})
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertIn("ask an administrator", frontend.text())
        self.assertEqual(self.fake.sent("register"), [])
        self.assertEqual(client.session.user, "alice")

    def test_a_saved_token_resumes_without_questions(self) -> None:
        SessionStore(self.config, self.server).save("alice", "saved")
        self.fake.on("resume", lambda a: login_reply("alice", ["#lobby"]))
        client, frontend = self.client()
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertEqual(self.fake.sent("resume")[0]["token"], "saved")
        self.assertEqual(frontend.questions, [])
        self.assertIsNotNone(client.windows.find("#lobby"))

    def test_an_expired_token_is_forgotten_and_the_user_asked_to_log_in(self) -> None:
        SessionStore(self.config, self.server).save("alice", "old")

        def resume(args: dict[str, Any]) -> dict[str, Any]:
            raise refuse("auth_failed", "invalid or expired token")

        self.fake.on("resume", resume)
        self.fake.on("login", lambda a: login_reply(a["user"]))
        client, frontend = self.client("login", "alice", "pw")
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertIn("please log in again", frontend.text())
        self.assertEqual(SessionStore(self.config, self.server).load(),
                         ("alice", "token-of-alice"))

    def test_the_key_is_published_after_login(self) -> None:
        client, _ = self.login()
        self.assertEqual(self.fake.sent("key.publish")[0]["public_key"],
                         client.dms.identity.public_key)  # type: ignore[union-attr]

    def test_logout_forgets_the_token_and_goes_back_to_the_question(self) -> None:
        client, frontend = self.login()
        client.input("/logout")
        self.assertEqual(len(self.fake.sent("logout")), 1)
        self.assertIsNone(SessionStore(self.config, self.server).load())
        self.assertIsNone(client.session.user)
        self.assertEqual(len(frontend.questions), 1)

    def test_recover_resets_the_password_with_a_code_then_logs_in(self) -> None:
        self.fake.on("recover", lambda a: {"user": "alice", "recovery_codes_left": 9})
        self.fake.on("login", lambda a: login_reply(a["user"]))
        client, frontend = self.client("recover", "alice", "abcd-efgh-jkmn-pqrs",
                                       "new password", "new password")
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertEqual(self.fake.sent("recover")[0],
                         {"op": "recover", "user": "alice", "code": "abcd-efgh-jkmn-pqrs",
                          "new_password": "new password"})
        self.assertEqual(self.fake.sent("login")[0]["password"], "new password")
        self.assertIn("Recovery codes left: 9", frontend.text())
        self.assertEqual(client.session.user, "alice")

    def test_passwd_checks_the_new_password_twice(self) -> None:
        client, frontend = self.login("old pw", "new pw 1", "new pw 2", "new pw 1", "new pw 1")
        client.input("/passwd")
        self.assertEqual(self.fake.sent("passwd"), [{"op": "passwd", "old": "old pw",
                                                     "new": "new pw 1"}])
        self.assertIn("differ", frontend.text())
        self.assertIn("password changed", frontend.text())

    def test_secret_questions_are_asked_as_secrets(self) -> None:
        self.fake.on("login", lambda a: login_reply(a["user"]))
        client, frontend = self.client()
        d = client.session_started(self.fake)  # type: ignore[arg-type]
        frontend.answer("login")
        self.assertFalse(frontend.questions[0][1])  # the user name is not secret
        frontend.answer("alice")
        self.assertTrue(frontend.questions[0][1])  # the password is
        frontend.answer("pw")
        self.successResultOf(d)

    def test_enabling_totp_shows_a_qr_code_and_confirms_with_a_code(self) -> None:
        uri = "otpauth://totp/pingchat:alice?secret=ABCDEFGH&issuer=pingchat"
        self.fake.on("otp.setup", lambda a: {"secret": "ABCDEFGH", "uri": uri})
        self.fake.on("otp.enable", lambda a: {"enabled": True})
        client, frontend = self.login("654321")
        client.input("/otp enable")
        self.assertEqual(self.fake.sent("otp.enable")[0]["code"], "654321")
        text = frontend.text()
        self.assertIn(uri, text)
        self.assertIn("\n".join("* " + row for row in qr_lines(uri)), text)
        self.assertIn("two-factor authentication is on", text)


class WiringTests(ClientTestCase):
    def test_every_command_the_parser_knows_has_exactly_one_handler(self) -> None:
        client, _ = self.client()
        self.assertEqual(set(client.handlers), {s.name for s in SPECS} | {"say"})

    def test_two_parts_handling_the_same_command_are_refused(self) -> None:
        class Part:
            async def cmd_join(self, cmd: Command) -> None:
                pass

        with self.assertRaises(ValueError):
            command_handlers(Part(), Part())


class MessageTests(ClientTestCase):
    def test_room_messages_land_in_their_window_and_other_windows_count_unread(self) -> None:
        client, frontend = self.login()
        self.fake.on("join", lambda a: {"room": a["room"], "topic": "hi", "members": [
            {"user": "alice", "op": True}]})
        client.input("/join #a")
        client.input("/join #b")
        self.assertEqual(client.windows.current.title, "#b")
        client.event(self.fake, {"event": "message", "room": "#a", "from": "bob",  # type: ignore[arg-type]
                                 "text": "psst", "msg_id": 5, "ts": "2026-01-01T10:00:00.000Z"})
        room_a = client.windows.find("#a")
        self.assertEqual(room_a.lines[-1].text, "psst")  # type: ignore[union-attr]
        self.assertEqual(room_a.unread, 1)  # type: ignore[union-attr]
        self.assertIn("#a <bob> psst", frontend.text())
        client.event(self.fake, {"event": "message", "room": "#a", "from": "bob",  # type: ignore[arg-type]
                                 "text": "psst", "msg_id": 5})
        self.assertEqual(room_a.unread, 1)  # type: ignore[union-attr]

    def test_text_in_a_room_window_is_said_there(self) -> None:
        client, _ = self.login()
        self.fake.on("join", lambda a: {"room": a["room"], "topic": None, "members": []})
        self.fake.on("say", lambda a: {"msg_id": 3, "ts": "2026-01-01T10:00:00.000Z"})
        client.input("/join #a")
        client.input("hello all")
        self.assertEqual(self.fake.sent("say")[0], {"op": "say", "room": "#a",
                                                   "text": "hello all"})
        self.assertEqual(client.windows.current.lines[-1].kind, "own")

    def test_me_sends_an_irc_style_action_and_actions_show_as_such(self) -> None:
        client, frontend = self.login()
        self.fake.on("join", lambda a: {"room": a["room"], "topic": None, "members": []})
        self.fake.on("say", lambda a: {"msg_id": 3, "ts": "2026-01-01T10:00:00.000Z"})
        client.input("/join #a")
        client.input("/me waves")
        self.assertEqual(self.fake.sent("say")[0]["text"], "\x01ACTION waves\x01")
        client.event(self.fake, {"event": "message", "room": "#a", "from": "bob",  # type: ignore[arg-type]
                                 "text": "\x01ACTION bows\x01", "msg_id": 4})
        text = frontend.text()
        self.assertIn("#a * alice waves", text)
        self.assertIn("#a * bob bows", text)
        self.assertNotIn("\x01", text)

    def test_errors_from_the_server_are_shown(self) -> None:
        client, frontend = self.login()

        def join(args: dict[str, Any]) -> dict[str, Any]:
            raise refuse("forbidden", "you are banned from #a")

        self.fake.on("join", join)
        client.input("/join #a")
        self.assertIn("! you are banned from #a", frontend.text())

    def test_commands_typed_before_login_run_after_it(self) -> None:
        self.fake.on("login", lambda a: login_reply(a["user"]))
        client, frontend = self.client()
        client.input("/who")
        self.assertEqual(self.fake.sent("who"), [])
        frontend.answers = ["login", "alice", "pw"]
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        self.assertEqual(len(self.fake.sent("who")), 1)


class EncryptedDMTests(ClientTestCase):
    """Against a server from before device keys (``key.get`` without ``devices``):
    one key per account, the single-key form of ``dm``."""

    def setUp(self) -> None:
        super().setUp()
        self.bob = Identity.generate()
        self.keys["bob"] = self.bob.public_key

    def test_a_dm_to_someone_with_a_key_is_sent_as_ciphertext_only(self) -> None:
        client, frontend = self.login()
        client.input("/msg bob the vault code is 1234")
        [dm] = self.fake.sent("dm")
        self.assertNotIn("text", dm)
        self.assertNotIn("1234", repr(dm))
        alice_key = self.keys["alice"]
        self.assertEqual(self.bob.open(alice_key, dm["ciphertext"], dm["nonce"]),  # type: ignore[arg-type]
                         "the vault code is 1234")
        self.assertIn("@bob <alice> [e2e] the vault code is 1234", frontend.text())

    def test_a_dm_to_someone_without_a_key_goes_in_clear_with_a_warning(self) -> None:
        self.keys["bob"] = None
        client, frontend = self.login()
        client.input("/msg bob hello")
        [dm] = self.fake.sent("dm")
        self.assertEqual(dm["text"], "hello")
        self.assertIn("NOT end-to-end encrypted", frontend.text())

    def test_received_ciphertext_is_decrypted_and_marked(self) -> None:
        client, frontend = self.login()
        ciphertext, nonce = self.bob.seal(self.keys["alice"], "hi alice")  # type: ignore[arg-type]
        client.event(self.fake, {"event": "message", "to": "alice", "from": "bob",  # type: ignore[arg-type]
                                 "ciphertext": ciphertext, "nonce": nonce, "msg_id": 7})
        window = client.windows.find("bob")
        line = window.lines[-1]  # type: ignore[union-attr]
        self.assertEqual((line.text, line.encrypted), ("hi alice", True))
        self.assertIn("@bob <bob> [e2e] hi alice", frontend.text())
        # Not the current window: marked there, and counted.
        self.assertEqual(window.unread, 1)  # type: ignore[union-attr]
        self.assertIn("[bob, window 2] <bob> [e2e] hi alice",
                      client.windows.current.lines[-1].text)

    def test_tampered_ciphertext_is_shown_as_undecryptable(self) -> None:
        client, frontend = self.login()
        ciphertext, nonce = self.bob.seal(self.keys["alice"], "hi")  # type: ignore[arg-type]
        tampered = ("A" if ciphertext[0] != "A" else "B") + ciphertext[1:]
        client.event(self.fake, {"event": "message", "to": "alice", "from": "bob",  # type: ignore[arg-type]
                                 "ciphertext": tampered, "nonce": nonce, "msg_id": 8})
        self.assertIn("cannot decrypt", frontend.text())
        self.assertNotIn("[e2e] hi", frontend.text())

    def test_a_changed_key_of_a_contact_is_a_warning_until_accepted(self) -> None:
        client, frontend = self.login()
        client.input("/msg bob first")
        self.assertNotIn("CHANGED", frontend.text())
        self.keys["bob"] = Identity.generate().public_key
        client.input("/msg bob second")
        text = frontend.text()
        self.assertIn("WARNING: bob's encryption key has CHANGED", text)
        client.input("/msg bob third")
        self.assertEqual(frontend.text().count("has CHANGED"), 2)  # again, until /trust
        client.input("/trust bob")
        self.assertIn("you now trust bob's changed key(s)", frontend.text())
        client.input("/msg bob fourth")
        self.assertEqual(frontend.text().count("has CHANGED"), 2)


class QRTests(TestCase):
    def test_qr_code_text_encodes_exactly_the_qr_matrix(self) -> None:
        import qrcode

        data = "otpauth://totp/pingchat:bob?secret=JBSWY3DPEHPK3PXP&issuer=pingchat"
        qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
        qr.add_data(data)
        qr.make(fit=True)
        matrix = qr.get_matrix()
        dark = {"█": (False, False), "▀": (False, True), "▄": (True, False), " ": (True, True)}
        decoded: list[list[bool]] = []
        for row in qr_lines(data):
            pairs = [dark[ch] for ch in row]
            decoded.append([top for top, _ in pairs])
            decoded.append([bottom for _, bottom in pairs])
        self.assertEqual(decoded[: len(matrix)], matrix)

    def test_qr_code_is_square_text_of_block_characters(self) -> None:
        lines = qr_lines("otpauth://totp/pingchat:alice?secret=JBSWY3DPEHPK3PXP&issuer=pingchat")
        self.assertTrue(15 <= len(lines) <= 30)
        self.assertEqual(len({len(line) for line in lines}), 1)
        self.assertLessEqual(set("".join(lines)), set("█▀▄ "))
