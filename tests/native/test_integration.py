"""The native door over real TLS sockets on 127.0.0.1, with the real writer
thread and bcrypt pool: the in-process server, driven by the stdlib client in
a thread while the reactor runs."""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThread

from tests.live import LiveServer


class LiveTests(LiveServer):
    def test_two_users_chat_over_tls(self) -> Any:
        def scenario() -> list[str]:
            alice, bob = self.connect(), self.connect()
            try:
                for c, name in ((alice, "alice"), (bob, "bob")):
                    assert c.request("register", user=name, password="pass word 1")["ok"]
                    assert c.request("login", user=name, password="pass word 1")["ok"]
                    assert c.request("join", room="#live")["ok"]
                for i in range(20):
                    assert alice.request("say", room="#live", text=f"n{i}")["ok"]
                return [bob.event("message", text=f"n{i}")["text"] for i in range(20)]
            finally:
                alice.close()
                bob.close()

        d = deferToThread(scenario)
        d.addCallback(self.assertEqual, [f"n{i}" for i in range(20)])
        return d

    def test_bcrypt_and_sqlite_stay_off_the_reactor_thread(self) -> Any:
        import threading

        seen: list[str] = []
        from pingchat.auth import passwords

        original = passwords.hash_password_blocking

        def spy(*args: Any) -> bytes:
            seen.append(threading.current_thread().name)
            return original(*args)

        self.patch(passwords, "hash_password_blocking", spy)

        def scenario() -> None:
            c = self.connect()
            try:
                assert c.request("register", user="carol", password="pass word 1")["ok"]
            finally:
                c.close()

        def check(_: Any) -> None:
            self.assertTrue(seen)
            self.assertNotIn(threading.main_thread().name, seen)
            self.assertNotEqual(self.server.db._thread, None)

        return deferToThread(scenario).addCallback(check)
