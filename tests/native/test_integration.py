"""The native door over real TLS sockets on 127.0.0.1, with the real writer
thread and bcrypt pool: the in-process server, driven by the stdlib client in
a thread while the reactor runs."""

from __future__ import annotations

from typing import Any

from twisted.internet.threads import deferToThread

from tests.live import PASSWORD, LiveServer


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

    def test_a_disconnected_session_has_its_tls_connection_closed(self) -> Any:
        # The connection is its own output producer, and Twisted's TLS
        # transport holds its shutdown back while a producer is registered:
        # the server must close the socket itself, not wait for the client.
        def scenario() -> bytes:
            alice = self.account(self.connect(), "alice")
            try:
                self.on_reactor(self.server.chat.disconnect_user, "alice", "maintenance")
                assert alice.event("disconnect")["reason"] == "maintenance"
                return alice.sock.recv(1)  # b"" once the server has closed
            finally:
                alice.close()

        return deferToThread(scenario).addCallback(self.assertEqual, b"")

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


class LockoutLiveTests(LiveServer):
    def test_a_guesser_on_another_address_does_not_lock_the_owner_out(self) -> Any:
        """Issue 15, defect 8, over real TLS sockets from two loopback addresses:
        the guesser (127.0.0.2) is held back, the owner (127.0.0.1) gets in."""

        def scenario() -> tuple[list[str], dict[str, Any], dict[str, Any], dict[str, Any]]:
            owner, guesser = self.connect(), self.connect(source="127.0.0.2")
            try:
                self.account(owner, "alice")
                codes = [
                    guesser.request("login", user="alice", password=f"guess {i}")["error"]["code"]
                    for i in range(5)
                ]
                refused = guesser.request("login", user="alice", password=PASSWORD)
                again = self.connect()
                try:
                    login = again.request("login", user="alice", password=PASSWORD)
                finally:
                    again.close()
                resumed = guesser.request("resume", token=login["token"])
                return codes, refused, login, resumed
            finally:
                owner.close()
                guesser.close()

        def check(result: tuple[list[str], dict[str, Any], dict[str, Any], dict[str, Any]]) -> None:
            codes, refused, login, resumed = result
            self.assertEqual(codes, ["auth_failed"] * 5)
            self.assertEqual(refused["error"]["code"], "rate_limited")
            self.assertTrue(login["ok"], login)
            self.assertTrue(login["device"])
            # A token is never held back by password guesses, even from the
            # guesser's own address.
            self.assertTrue(resumed["ok"], resumed)

        return deferToThread(scenario).addCallback(check)
