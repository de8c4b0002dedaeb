"""Lines of one kind logged in the same reactor turn become one line."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from pingchat.loglines import TurnLines
from pingchat.testing import NativeTestClient, make_server


class TurnLinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.clock = Clock()
        self.lines = TurnLines(
            Logger(observer=self.events.append),
            self.clock,
            "hello {user} from {address}",
            "{count} hellos: {entries}",
            "{user} from {address}",
        )

    def texts(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def test_alone_the_usual_line_at_the_end_of_the_turn(self) -> None:
        self.lines(user="alice", address="::1")
        self.assertEqual(self.events, [])
        self.clock.advance(0)
        self.assertEqual(self.texts(), ["hello alice from ::1"])
        self.assertEqual(self.events[0]["user"], "alice")

    def test_a_turns_lines_together_then_the_next_turns(self) -> None:
        self.lines(user="alice", address="::1")
        self.lines(user="bob", address="127.0.0.1")
        self.lines(user="{carol}", address="127.0.0.1")  # braces are text, not fields
        self.clock.advance(0)
        self.lines(user="dave", address="::1")
        self.clock.advance(0)
        self.assertEqual(
            self.texts(),
            [
                "3 hellos: alice from ::1; bob from 127.0.0.1; {carol} from 127.0.0.1",
                "hello dave from ::1",
            ],
        )
        self.assertEqual(
            [f["user"] for f in self.events[0]["entry_fields"]], ["alice", "bob", "{carol}"]
        )

    def test_flush_logs_what_is_pending_now_and_only_once(self) -> None:
        self.lines(user="alice", address="::1")
        self.lines.flush()
        self.assertEqual(self.texts(), ["hello alice from ::1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0)
        self.lines.flush()
        self.assertEqual(len(self.events), 1)


class SessionLinesTests(SynchronousTestCase):
    def test_sessions_started_in_one_turn_share_a_line(self) -> None:
        server = make_server()
        clock = server.extras["clock"]
        with capturedLogs() as events:
            a = NativeTestClient(server)
            a.request("register", user="alice", password="password123")
            a.request("login", user="alice", password="password123")
            clock.advance(0)
            b, c = NativeTestClient(server), NativeTestClient(server)
            b.request("register", user="bob", password="password123")
            c.request("register", user="carol", password="password123")
            b.request("login", user="bob", password="password123")
            c.request("login", user="carol", password="password123")
            clock.advance(0)
        service = [e for e in events if e.get("log_namespace") == "pingchat.chat.service"]
        texts = [formatEvent(e) for e in service]
        started = [t for t in texts if "started" in t]
        self.assertEqual(len(started), 2, texts)
        self.assertTrue(started[0].startswith("session started: alice via native"), started)
        self.assertTrue(started[1].startswith("2 sessions started: bob via native"), started)
        self.assertIn("; carol via native", started[1])
