"""End to end: how ``twistd -n pingchat`` starts, or refuses to, as real processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.client import LineClient
from tests.e2e.harness import PINGCHAT, ServerProcess

PASSWORD = "correct horse"


class StartupEndToEndTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-e2e-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.data_dir = self.dir / "data"

    def server(self, *extra: str, **kwargs: object) -> ServerProcess:
        kwargs.setdefault("data_dir", self.data_dir)
        server = ServerProcess(*extra, **kwargs)  # type: ignore[arg-type]
        self.addCleanup(server.cleanup)
        return server

    def busy_port(self) -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        self.addCleanup(s.close)
        return int(s.getsockname()[1])

    def logs_in(self, port: int, name: str) -> bool:
        c = LineClient("127.0.0.1", port)
        try:
            return bool(c.request("login", user=name, password=PASSWORD)["ok"])
        finally:
            c.close()

    def test_a_busy_port_ends_the_start_with_one_line_and_status_1(self) -> None:
        port = self.busy_port()
        chat = f"ssl:{port}:interface=127.0.0.1"
        failing = self.server(chat=chat, irc="tcp:0:interface=127.0.0.1")
        code = failing.run_to_exit()
        output = failing.output()
        self.assertNotEqual(code, 0, output)
        line = (
            f"--chat {chat}: cannot listen on port {port}: address already in use;"
            " choose another port (--chat ssl:PORT) or disable this door (--chat none)"
        )
        self.assertEqual(len([x for x in output.splitlines() if line in x]), 1, output)
        self.assertNotIn("Unhandled Error", output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("pingchat ready", output)
        # Nothing was left behind: the next server takes the data dir and starts.
        self.server().start()

    def test_a_second_server_on_the_same_data_dir_exits_and_the_first_serves_on(self) -> None:
        first = self.server().start()
        second = self.server(irc="tcp:0:interface=127.0.0.1")
        code = second.run_to_exit()
        self.assertEqual(code, 1, second.output())
        assert first.proc is not None
        [line] = [x for x in second.output().splitlines() if "in use by" in x]
        self.assertEqual(
            line,
            f"pingchat: data dir {self.data_dir} is in use by another pingchat server"
            f" (pid {first.proc.pid}): stop that one, or give this one its own --data-dir",
        )
        self.assertNotIn("Traceback", second.output())
        # The pingchat command still works beside the running server (WAL).
        made = first.pingchat("user", "add", "ann", "--password-stdin", stdin=PASSWORD + "\n")
        self.assertEqual(made.returncode, 0, made.stderr)
        self.assertTrue(self.logs_in(first.port(), "ann"))
        first.stop()
        self.server().start()  # the lock went with the first server

    def test_the_command_finds_the_servers_data_dir_through_the_environment(self) -> None:
        env = {"PINGCHAT_DATA_DIR": str(self.data_dir)}
        server = self.server(env=env, data_dir_option=False).start()
        elsewhere = self.dir / "elsewhere"
        elsewhere.mkdir()

        def pingchat(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
            environ = {k: v for k, v in server.env.items() if k != "PINGCHAT_DATA_DIR"}
            return subprocess.run(
                [PINGCHAT, *args], input=PASSWORD + "\n", capture_output=True, text=True,
                env={**environ, **env}, cwd=elsewhere, timeout=60,
            )

        lost = pingchat("user", "add", "zed", "--password-stdin")
        self.assertEqual(lost.returncode, 1)
        self.assertIn(str(elsewhere / "pingchat-data"), lost.stderr)
        self.assertEqual(os.listdir(elsewhere), [])
        made = pingchat("user", "add", "zed", "--password-stdin", **env)
        self.assertEqual(made.returncode, 0, made.stderr)
        self.assertTrue(self.logs_in(server.port(), "zed"))
        self.assertEqual(os.listdir(elsewhere), [])

    def test_an_invite_only_server_takes_a_code_made_by_the_command_beside_it(self) -> None:
        server = self.server("--registration", "invite").start()
        self.assertIn("registration invite", server.output())
        self.assertNotIn("listening on all interfaces", server.output())
        made = server.pingchat("invite", "create")
        self.assertEqual(made.returncode, 0, made.stderr)
        code = made.stdout.strip()
        c = LineClient("127.0.0.1", server.port())
        try:
            self.assertEqual(c.hello["registration"], "invite")
            refused = c.request("register", user="ann", password=PASSWORD)
            self.assertEqual(refused["error"]["code"], "invite_invalid")
            reply = c.request("register", user="ann", password=PASSWORD, invite=code)
            self.assertTrue(reply["ok"], reply)
            again = c.request("register", user="bob", password=PASSWORD, invite=code)
            self.assertEqual(again["error"]["code"], "invite_invalid")
        finally:
            c.close()
        self.assertTrue(self.logs_in(server.port(), "ann"))
        self.assertNotIn(code, server.output())
