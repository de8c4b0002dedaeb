"""The client's files: server addresses, private writes, the saved session."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from twisted.trial.unittest import TestCase

from pingchat.client.configdir import (
    ConfigDir,
    ServerAddress,
    SessionStore,
    default_config_dir,
    write_private,
)


class ServerAddressTests(TestCase):
    def test_forms_of_host_and_port(self) -> None:
        cases = {
            "localhost": ("localhost", 7464),
            "chat.example:7000": ("chat.example", 7000),
            "127.0.0.1": ("127.0.0.1", 7464),
            "127.0.0.1:1": ("127.0.0.1", 1),
            "::1": ("::1", 7464),
            "[::1]": ("::1", 7464),
            "[::1]:9000": ("::1", 9000),
            " host ": ("host", 7464),
        }
        for text, (host, port) in cases.items():
            self.assertEqual(ServerAddress.parse(text), ServerAddress(host, port), text)

    def test_bad_addresses_are_refused_with_the_reason(self) -> None:
        for text in ("", ":7464", "host:", "host:http", "host:70000", "host:0", "[::1",
                     "[::1]x"):
            self.assertRaises(ValueError, ServerAddress.parse, text)

    def test_text_and_file_name_forms(self) -> None:
        self.assertEqual(str(ServerAddress("::1", 7464)), "[::1]:7464")
        self.assertEqual(str(ServerAddress("localhost", 7)), "localhost:7")
        self.assertEqual(ServerAddress("::1", 7464).slug, "__1_7464")
        self.assertEqual(ServerAddress("chat.example", 1).slug, "chat.example_1")


class FileTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-client-test-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_default_dir_follows_xdg(self) -> None:
        old = os.environ.get("XDG_CONFIG_HOME")
        self.addCleanup(lambda: os.environ.__setitem__("XDG_CONFIG_HOME", old) if old
                        else os.environ.pop("XDG_CONFIG_HOME", None))
        os.environ["XDG_CONFIG_HOME"] = str(self.dir)
        self.assertEqual(default_config_dir(), self.dir / "pingchat")
        os.environ.pop("XDG_CONFIG_HOME")
        self.assertEqual(default_config_dir(), Path.home() / ".config" / "pingchat")

    def test_write_private_replaces_atomically_with_mode_0600(self) -> None:
        path = self.dir / "sub" / "secret"
        path.parent.mkdir()
        path.write_text("old")
        os.chmod(path, 0o644)
        write_private(path, b"new")
        self.assertEqual(path.read_bytes(), b"new")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(sorted(os.listdir(path.parent)), ["secret"])

    def test_config_dir_is_private(self) -> None:
        config = ConfigDir(self.dir / "pingchat")
        config.ensure()
        self.assertEqual(stat.S_IMODE(os.stat(config.path).st_mode), 0o700)

    def test_session_token_is_saved_private_loaded_and_forgotten(self) -> None:
        config = ConfigDir(self.dir)
        store = SessionStore(config, ServerAddress("chat.example"))
        self.assertIsNone(store.load())
        store.save("alice", "t0ken")
        self.assertEqual(store.load(), ("alice", "t0ken"))
        self.assertEqual(stat.S_IMODE(os.stat(store.path).st_mode), 0o600)
        other = SessionStore(config, ServerAddress("chat.example", 7000))
        self.assertIsNone(other.load())
        store.forget()
        self.assertIsNone(store.load())
        self.assertEqual(store.last_user(), "alice")
        self.assertNotIn("t0ken", store.path.read_text())

    def test_device_secrets_are_kept_per_account_private_and_survive_logout(self) -> None:
        config = ConfigDir(self.dir)
        store = SessionStore(config, ServerAddress("chat.example"))
        self.assertIsNone(store.device("alice"))
        store.save("alice", "t0ken")
        store.save_device("alice", "dev-a")
        store.save_device("bob", "dev-b")
        store.forget()
        self.assertEqual(store.device("ALICE"), "dev-a")
        self.assertEqual(store.device("bob"), "dev-b")
        self.assertEqual(stat.S_IMODE(os.stat(store.devices_path).st_mode), 0o600)
        self.assertIsNone(SessionStore(config, ServerAddress("chat.example", 7000)).device("alice"))
        store.devices_path.write_text("{damaged")
        self.assertIsNone(store.device("alice"))
        store.save_device("alice", "dev-a2")
        self.assertEqual(store.device("alice"), "dev-a2")

    def test_a_damaged_file_is_reported(self) -> None:
        config = ConfigDir(self.dir)
        (self.dir / "x.json").write_text("{nope")
        with self.assertRaises(ValueError) as caught:
            config.read_json(self.dir / "x.json")
        self.assertIn("remove it", str(caught.exception))
