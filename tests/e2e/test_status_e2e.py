"""End to end: ``pingchat status`` and ``--metrics`` against ``twistd -n pingchat``."""

from __future__ import annotations

import shutil
import socket
import tempfile
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import TestCase

from tests.client import LineClient
from tests.e2e.harness import ServerProcess

PASSWORD = "correct horse"
LOOPBACK_ANY_PORT = "tcp:0:interface=127.0.0.1"


class StatusEndToEndTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-e2e-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.clients: list[LineClient] = []
        self.addCleanup(lambda: [c.close() for c in self.clients])

    def server(self, **kwargs: str) -> ServerProcess:
        server = ServerProcess(data_dir=self.dir / "data", **kwargs)  # type: ignore[arg-type]
        self.addCleanup(server.cleanup)
        return server

    def account(self, server: ServerProcess, name: str) -> LineClient:
        c = LineClient("127.0.0.1", server.port())
        self.clients.append(c)
        self.assertTrue(c.request("register", user=name, password=PASSWORD)["ok"])
        self.assertTrue(c.request("login", user=name, password=PASSWORD)["ok"])
        return c

    def test_status_shows_the_running_servers_doors_and_messages(self) -> None:
        server = self.server(metrics=LOOPBACK_ANY_PORT, irc=LOOPBACK_ANY_PORT).start()
        alice, bob = self.account(server, "alice"), self.account(server, "bob")
        for c in (alice, bob):
            self.assertTrue(c.request("join", room="#e2e")["ok"])
        for i in range(3):
            self.assertTrue(alice.request("say", room="#e2e", text=f"m{i}")["ok"])
        bob.event("message", text="m2")
        bad = LineClient("127.0.0.1", server.port())
        self.clients.append(bad)
        self.assertFalse(bad.request("login", user="alice", password="wrong password")["ok"])

        done = server.pingchat("status")  # finds the server through its data dir
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        port = server.ports["MetricsSite"][0]
        self.assertEqual(lines[1], f"http://127.0.0.1:{port}/metrics")
        rows = {line.split()[0]: line.split()[1:] for line in lines if line[:1].isalpha()}
        # connections, sessions, logins, failed, dropped
        self.assertEqual(rows["native"], ["3", "2", "2", "1", "0"])
        self.assertEqual(rows["irc"], ["0", "0", "0", "0", "0"])
        self.assertIn("3 stored (3 room, 0 DM), 3 delivered", done.stdout)
        self.assertIn("1 auth_failed", done.stdout)

        # What Prometheus reads there parses with the Prometheus text parser.
        with urllib.request.urlopen(lines[1], timeout=10) as answer:  # noqa: S310 - loopback
            families = {f.name for f in text_string_to_metric_families(answer.read().decode())}
        self.assertLessEqual(
            {"pingchat_sessions", "pingchat_db_commit_seconds", "process_resident_memory_bytes"},
            families,
        )

        server.stop()
        gone = server.pingchat("status", "--metrics-url", lines[1])
        self.assertEqual(gone.returncode, 1)
        self.assertEqual(gone.stdout, "")
        [line] = gone.stderr.splitlines()
        self.assertTrue(
            line.startswith(f"pingchat: error: cannot reach the server's metrics at {lines[1]}"),
            line,
        )

    def test_a_busy_metrics_port_ends_the_start_like_any_door(self) -> None:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        self.addCleanup(taken.close)
        port = taken.getsockname()[1]
        metrics = f"tcp:{port}:interface=127.0.0.1"
        failing = self.server(metrics=metrics)
        code = failing.run_to_exit()
        output = failing.output()
        self.assertEqual(code, 1, output)
        line = (
            f"--metrics {metrics}: cannot listen on port {port}: address already in use;"
            " choose another port (--metrics tcp:PORT) or disable this door (--metrics none)"
        )
        self.assertEqual(len([x for x in output.splitlines() if line in x]), 1, output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("pingchat ready", output)
