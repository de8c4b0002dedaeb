"""``/deleteaccount`` in the terminal client (scripted server): the warning,
the confirmations, the server's refusals, and what the client forgets."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pingchat.client.app import ChatClient
from pingchat.client.commands import Command, CommandError, parse
from pingchat.client.configdir import ConfigDir, ServerAddress, SessionStore
from pingchat.client.session import deleted_text
from pingchat.client.testing import FakeConnector, FakeFrontend, FakeServer, refuse
from pingchat.client.trust import Insecure
from tests.helpers import temp_dir

PASSWORD = "the password"


class DeleteAccountTests(TestCase):
    def setUp(self) -> None:
        self.dir = temp_dir(self, "pingchat-client-test-")
        self.config = ConfigDir(self.dir)
        self.server = ServerAddress("chat.example")
        self.folder = self.config.server_dir(self.server)
        self.fake = FakeServer()
        self.fake.on("key.get", lambda a: {"user": a["user"], "public_key": None,
                                           "fingerprint": None})
        self.fake.on("key.publish", lambda a: {"fingerprint": "f"})
        self.fake.on("history", lambda a: {"messages": []})
        self.fake.on("login", lambda a: {"user": a["user"], "token": "token-of-alice",
                                         "expires_at": "x", "rooms": ["#hall"],
                                         "device": "secret-of-alice"})
        self.fake.on("account.delete", self.delete)
        self.otp: str | None = None
        self.messages = "remove"
        # Another account of this computer, whose files must stay.
        sessions = SessionStore(self.config, self.server)
        sessions.save_device("bob", "secret-of-bob")
        for name in ("keys/bob.key", "keys/bob.device", "peer-keys-bob.json"):
            (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / name).write_text("bob's\n")

    def delete(self, args: dict[str, Any]) -> dict[str, Any]:
        if args["password"] != PASSWORD:
            raise refuse("auth_failed", "wrong password")
        if self.otp is not None and "otp" not in args:
            raise refuse("otp_required", "this account has a second factor: repeat with otp")
        if self.otp is not None and args["otp"] != self.otp:
            raise refuse("auth_failed", "wrong code")
        anonymise = self.messages == "anonymise"
        return {"user": "alice", "messages": self.messages, "removed": 2 if anonymise else 7,
                "anonymised": 5 if anonymise else 0}

    def login(self, *answers: str) -> tuple[ChatClient, FakeFrontend, FakeConnector]:
        connector = FakeConnector()
        client = ChatClient(Clock(), self.server, self.config, Insecure(), user_hint="alice",
                            connector=connector)  # type: ignore[arg-type]
        frontend = FakeFrontend("pw", *answers)
        client.start(frontend)
        client.state_changed("logging in", "")
        self.successResultOf(client.session_started(self.fake))  # type: ignore[arg-type]
        (self.folder / "peer-keys-alice.json").write_text("{}\n")
        client.windows.open("dm", "carol")
        return client, frontend, connector

    def alice_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*alice*"))

    def test_it_warns_asks_for_the_name_and_password_then_forgets_the_account_here(self) -> None:
        client, frontend, connector = self.login("Alice", PASSWORD)
        self.assertEqual(self.alice_files(),
                         ["keys/alice.device", "keys/alice.key", "peer-keys-alice.json"])
        questions: list[bool] = []
        ask = frontend.ask
        frontend.ask = lambda q, secret=False: questions.append(secret) or ask(q, secret)  # type: ignore[method-assign]
        self.successResultOf(client.input("/deleteaccount"))

        self.assertEqual(self.fake.sent("account.delete"),
                         [{"op": "account.delete", "password": PASSWORD}])
        self.assertEqual(questions, [False, True])  # the name, then the password, masked
        text = frontend.text()
        for said in ("Deleting your account alice on this server cannot be undone.",
                     "every direct message you sent or received, for both people",
                     "kept without your name under a placeholder (deleted-...)",
                     "the saved session, the device secret and this device's encryption key",
                     "Stays: what other people wrote",
                     "Nobody, you included, can register the name alice for 30 days.",
                     "Your account alice was deleted. 7 messages were deleted with it",
                     "This computer forgot its saved session, device secret and encryption key"
                     " for alice."):
            self.assertIn(said, text)
        self.assertNotIn(PASSWORD, text)
        # Nothing of alice's is left on this computer; bob's files stay.
        sessions = SessionStore(self.config, self.server)
        self.assertFalse((self.folder / "session.json").exists())
        self.assertIsNone(sessions.device("alice"))
        self.assertEqual(sessions.device("bob"), "secret-of-bob")
        self.assertEqual(self.alice_files(), [])
        for name in ("keys/bob.key", "keys/bob.device", "peer-keys-bob.json"):
            self.assertTrue((self.folder / name).exists(), name)
        self.assertIsNone(client.dms.keyring)
        # The account's windows are closed; the server's goodbye on the old
        # connection is not shown; a new connection starts at once...
        self.assertEqual(client.windows.items, [client.windows.status])
        shown = len(frontend.shown)
        client.event(self.fake, {"event": "disconnect",  # type: ignore[arg-type]
                                 "reason": "your account has been deleted"})
        self.assertEqual(len(frontend.shown), shown)
        self.assertEqual(connector.reconnects, 1)
        self.assertIsNone(client.session.user)
        # ... and goes to the account menu (not to alice's login, though --user said alice).
        client.session_started(self.fake)  # type: ignore[arg-type]
        self.assertEqual(len(self.fake.sent("resume")), 0)
        self.assertIn("Type  login  if you have an account", frontend.text())

    def test_a_name_typed_wrong_deletes_nothing_and_asks_no_password(self) -> None:
        client, frontend, connector = self.login("alicia")
        self.successResultOf(client.input("/deleteaccount"))
        self.assertEqual(self.fake.sent("account.delete"), [])
        self.assertIn("alice was not deleted", frontend.text())
        self.assertEqual(frontend.questions, [])
        self.assertEqual(client.session.user, "alice")
        self.assertEqual(connector.reconnects, 0)

    def test_the_totp_code_is_asked_when_the_server_wants_it(self) -> None:
        self.otp = "123456"
        self.messages = "anonymise"
        client, frontend, _ = self.login("alice", PASSWORD, "123 456")
        self.successResultOf(client.input("/deleteaccount"))
        self.assertEqual([r.get("otp") for r in self.fake.sent("account.delete")],
                         [None, "123456"])
        text = frontend.text()
        self.assertIn("the 6-digit code from your authenticator app", text)
        self.assertIn("2 direct messages (sent and received) were deleted with it; 5 room"
                      " messages you wrote stay, under a placeholder name.", text)
        self.assertIsNone(client.session.user)

    def test_a_wrong_code_or_password_is_said_and_nothing_is_forgotten(self) -> None:
        self.otp = "123456"
        client, frontend, connector = self.login("alice", PASSWORD, "654321",
                                                 "alice", "not it")
        self.successResultOf(client.input("/deleteaccount"))
        self.successResultOf(client.input("/deleteaccount"))
        self.assertEqual(frontend.text().count(
            "! wrong password or code: the account was not deleted"), 2)
        self.assertEqual(client.session.user, "alice")
        self.assertEqual(SessionStore(self.config, self.server).load(),
                         ("alice", "token-of-alice"))
        self.assertEqual(len(self.alice_files()), 3)
        self.assertEqual(connector.reconnects, 0)

    def test_too_many_tries_say_when_to_try_again(self) -> None:
        client, frontend, _ = self.login("alice", PASSWORD)
        self.fake.on("account.delete", lambda a: (_ for _ in ()).throw(
            refuse("rate_limited", "too many attempts", retry_after=41.2)))
        self.successResultOf(client.input("/deleteaccount"))
        self.assertIn("! too many attempts; try again in 41s. The account was not deleted",
                      frontend.text())

    def test_the_command_takes_no_arguments(self) -> None:
        self.assertEqual(parse("/deleteaccount"), Command("deleteaccount"))
        with self.assertRaises(CommandError):
            parse("/deleteaccount alice")

    def test_one_message_reads_in_the_singular(self) -> None:
        self.assertEqual(
            deleted_text({"user": "bob", "messages": "remove", "removed": 1}, "bob"),
            "Your account bob was deleted. 1 message was deleted with it: what you wrote, and"
            " the direct messages you received. The name bob cannot be registered again for"
            " 30 days.")
        self.assertIn("deleted. It had no messages. The name",
                      deleted_text({"user": "bob", "messages": "remove", "removed": 0}, "bob"))

    def test_forgetting_a_deleted_account_keeps_another_accounts_saved_session(self) -> None:
        sessions = SessionStore(self.config, self.server)
        sessions.save("bob", "token-of-bob")
        sessions.save_device("alice", "secret-of-alice")
        sessions.forget_account("alice")
        self.assertEqual(sessions.load(), ("bob", "token-of-bob"))
        self.assertIsNone(sessions.device("alice"))
        self.assertEqual(sessions.device("bob"), "secret-of-bob")
