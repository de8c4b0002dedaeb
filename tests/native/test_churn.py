"""Connection churn: many connections opened and closed leave nothing behind.

Not a timed test: it checks that after 500 TLS connections come and go (some
logged in, some in a room, some closed mid-request) the server holds no
session, no connection object and no file descriptor for any of them.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import gatherResults
from twisted.internet.threads import deferToThread

from tests.client import LineClient
from tests.live import PASSWORD, LiveServer

CONNECTIONS = 500
THREADS = 5  # clients churn in parallel; each has its own token


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class ChurnTests(LiveServer):
    def test_churn_leaks_no_sessions_connections_or_fds(self) -> Any:
        def setup() -> list[str]:
            clients = [self.connect() for _ in range(THREADS)]
            try:
                first = clients[0]
                assert first.request("register", user="churner", password=PASSWORD)["ok"]
                tokens = [
                    c.request("login", user="churner", password=PASSWORD)["token"]
                    for c in clients
                ]
                assert first.request("join", room="#churn")["ok"]
                return tokens
            finally:
                for c in clients:
                    c.close()

        def churn(token: str) -> None:
            for i in range(CONNECTIONS // THREADS):
                c = LineClient("127.0.0.1", self.port.getHost().port)
                try:
                    if i % 5 == 0:
                        continue  # connect and leave at once
                    assert c.request("resume", token=token)["ok"]
                    if i % 5 == 1:
                        assert c.request("say", room="#churn", text=f"churn {i}")["ok"]
                    elif i % 5 == 2:
                        # leave with a request in flight
                        c.send_raw(b'{"id": 1, "op": "history", "room": "#churn"}\n')
                    elif i % 5 == 3:
                        assert c.request("logout")["ok"]
                        token = c.request("login", user="churner", password=PASSWORD)["token"]
                finally:
                    c.close()

        state: dict[str, Any] = {}

        def baseline(tokens: list[str]) -> Any:
            state["tokens"] = tokens
            return self.until(lambda: not self.server.native.connections)

        def start(_: Any) -> Any:
            state["fds"] = open_fds()
            return gatherResults([deferToThread(churn, t) for t in state["tokens"]])

        def settle(_: Any) -> Any:
            return self.until(
                lambda: not self.server.native.connections and not self.server.chat.online_count()
            )

        def check(_: Any) -> None:
            self.assertEqual(self.server.native.connections, set())
            self.assertEqual(self.server.chat.online_count(), 0)
            # The room keeps its member (membership is durable), but no session.
            self.assertIn("churner", self.server.chat.get_room("#churn").members)
            self.assertLessEqual(open_fds(), state["fds"])

        d = deferToThread(setup)
        d.addCallback(baseline)
        d.addCallback(start)
        d.addCallback(settle)
        d.addCallback(check)
        return d
