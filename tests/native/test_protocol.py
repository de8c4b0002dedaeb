"""The native protocol door against an inline server (StringTransport + Clock)."""

from __future__ import annotations

from typing import Any

from pingchat.auth.tokens import token_hash
from pingchat.native.protocol import NativeProtocol
from pingchat.testing import NativeTestClient, strict_json
from tests.backends import on_postgresql
from tests.helpers import PASSWORD, ServerTestCase
from tests.logged import errors_logged


class ConnectionTests(ServerTestCase):
    def test_hello_is_sent_on_connect(self) -> None:
        c = self.client()
        self.assertEqual(c.hello["event"], "hello")
        self.assertEqual(c.hello["protocol"], 1)
        self.assertEqual(c.hello["server"], "test.pingchat")
        self.assertIn("version", c.hello)

    def test_ping_works_before_login(self) -> None:
        reply = self.client().request("ping")
        self.assertTrue(reply["ok"])

    def test_reply_carries_the_request_id(self) -> None:
        c = self.client()
        c.send_line(b'{"id": "abc", "op": "ping"}\n')
        self.assertEqual(c.reply("abc")["ok"], True)

    def test_ops_need_login(self) -> None:
        c = self.client()
        for op, args in [
            ("join", {"room": "#a"}),
            ("say", {"room": "#a", "text": "x"}),
            ("who", {}),
            ("logout", {}),
            ("dm", {"to": "a", "text": "b"}),
        ]:
            self.assertError(c.request(op, **args), "not_authenticated")

    def test_unknown_op(self) -> None:
        self.assertError(self.client().request("teleport"), "unknown_op")
        self.assertError(self.client().request("__init__"), "unknown_op")

    def test_line_too_long_keeps_the_connection_usable(self) -> None:
        c = self.client()
        c.send_line(b'{"op":"ping","x":"' + b"a" * 20000 + b'"}\n')
        c.pump()
        self.assertEqual(c.replies.pop()["error"]["code"], "line_too_long")
        self.assertTrue(c.request("ping")["ok"])
        self.assertTrue(c.transport.connected)

    def test_invalid_utf8_and_bad_json(self) -> None:
        c = self.client()
        c.send_line(b'{"op": "ping", "x": "\xc3\x28"}\n{"op":\n')
        c.pump()
        self.assertEqual([r["error"]["code"] for r in c.replies], ["bad_json", "bad_json"])

    def test_missing_and_mistyped_fields_are_bad_request(self) -> None:
        c = self.account("alice")
        self.assertError(c.request("say", room="#a"), "bad_request")
        self.assertError(c.request("say", room=5, text="x"), "bad_request")
        self.assertError(c.request("history", room="#a", limit="ten"), "bad_request")
        self.assertError(c.request("history", room="#a", limit=500), "bad_request")
        self.assertError(c.request("history", room="#a", limit=0), "bad_request")
        self.assertError(c.request("dm", to="bob"), "bad_request")

    def test_request_rate_limit_answers_rate_limited_and_recovers(self) -> None:
        c = self.client()
        codes = [c.request("ping").get("error", {}).get("code") for _ in range(100)]
        self.assertIn("rate_limited", codes)
        limited = next(r for r in [c.request("ping")] if not r["ok"])
        self.assertGreater(limited["error"]["retry_after"], 0)
        self.clock.advance(10)
        self.assertTrue(c.request("ping")["ok"])

    def test_refused_lines_count_toward_the_request_rate(self) -> None:
        c = self.client()
        for line in (b'{"id":1,"op":null}', b'{"id":1,"op":"ping","x":NaN}', b"not json"):
            c.send_line(line + b"\n")
        for _ in range(100):
            c.send_line(b'{"id":1,"op":null}\n')
        c.pump()
        self.assertEqual(len(c.replies), 103)
        limited = [r for r in c.replies if r["error"]["code"] == "rate_limited"]
        self.assertGreater(len(limited), 30)
        self.assertEqual({r["id"] for r in limited}, {1})
        c.replies.clear()
        self.clock.advance(10)
        self.assertTrue(c.request("ping")["ok"])


class AccountTests(ServerTestCase):
    def test_register_returns_ten_recovery_codes(self) -> None:
        reply = self.client().request("register", user="alice", password=PASSWORD)
        self.assertEqual(reply["user"], "alice")
        self.assertEqual(len(set(reply["recovery_codes"])), 10)

    def test_names_are_unique_case_insensitively(self) -> None:
        self.account("Alice")
        reply = self.client().request("register", user="aLICE", password=PASSWORD)
        self.assertError(reply, "user_exists")

    def test_invalid_names(self) -> None:
        c = self.client()
        for name in ["", "1abc", "a b", "x" * 33, "#room", "nick!", 5, "NickServ"]:
            self.assertError(
                c.request("register", user=name, password=PASSWORD),
                "invalid_name" if isinstance(name, str) else "bad_request",
            )

    def test_weak_password(self) -> None:
        c = self.client()
        self.assertError(c.request("register", user="alice", password="short"), "weak_password")
        self.assertError(c.request("register", user="bob", password="x" * 1025), "weak_password")

    def test_long_passwords_work_and_are_not_truncated(self) -> None:
        long = "p" * 1024
        self.account("alice", password=long)
        self.login("alice", password=long)
        c = self.client()
        self.assertError(c.request("login", user="alice", password="p" * 1023 + "q"), "auth_failed")
        self.assertError(c.request("login", user="alice", password="p" * 72), "auth_failed")

    def test_unknown_user_and_wrong_password_get_the_same_answer(self) -> None:
        self.account("alice")
        wrong = self.client().request("login", user="alice", password="wrong password")
        unknown = self.client().request("login", user="nobody", password="wrong password")
        self.assertEqual(wrong["error"], unknown["error"])
        self.assertEqual(wrong["error"]["code"], "auth_failed")

    def test_login_twice_on_one_connection_is_refused(self) -> None:
        c = self.account("alice")
        self.assertError(c.request("login", user="alice", password=PASSWORD), "bad_request")

    def test_resume_with_a_token_and_logout_revokes_it(self) -> None:
        c = self.account("alice")
        token = c.token  # type: ignore[attr-defined]
        again = self.client()
        reply = again.request("resume", token=token)
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["user"], "alice")
        self.assertTrue(again.request("logout")["ok"])
        self.assertError(again.request("who"), "not_authenticated")
        self.assertError(self.client().request("resume", token=token), "auth_failed")

    def test_only_the_token_hash_is_stored(self) -> None:
        c = self.account("alice")
        token = c.token  # type: ignore[attr-defined]
        rows = self.server.db.run_sync(
            lambda conn: conn.execute("SELECT token_hash FROM tokens").fetchall()
        )
        self.assertEqual([bytes(r[0]) for r in rows], [token_hash(token)])
        self.assertGreaterEqual(len(token), 22)  # >= 128 bits, base64url

    def test_tokens_expire_after_idle_period_and_use_slides_it(self) -> None:
        token = self.account("alice").token  # type: ignore[attr-defined]
        self.clock.advance(29 * 86400)
        self.assertTrue(self.client().request("resume", token=token)["ok"])
        self.clock.advance(29 * 86400)
        self.assertTrue(self.client().request("resume", token=token)["ok"])
        self.clock.advance(31 * 86400)
        self.assertError(self.client().request("resume", token=token), "auth_failed")

    def test_disabled_account_cannot_log_in(self) -> None:
        self.account("alice")
        self.successResultOf(self.server.store.set_disabled("alice", True))
        reply = self.client().request("login", user="alice", password=PASSWORD)
        self.assertError(reply, "account_disabled")


class RoomTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("alice")
        self.bob = self.account("bob")

    def test_join_creates_the_room_and_the_creator_is_operator(self) -> None:
        reply = self.alice.request("join", room="#lobby")
        self.assertEqual(reply["room"], "#lobby")
        self.assertEqual(reply["members"][0]["user"], "alice")
        self.assertTrue(reply["members"][0]["op"])
        reply = self.bob.request("join", room="#LOBBY")
        self.assertEqual(reply["room"], "#lobby")
        bob = next(m for m in reply["members"] if m["user"] == "bob")
        self.assertFalse(bob["op"])
        self.assertEqual(self.alice.take_events("joined")[-1]["user"], "bob")

    def test_a_join_is_encoded_once_for_all_members(self) -> None:
        from pingchat.native import wire

        carol = self.account("carol")
        for c in (self.alice, self.bob):
            c.request("join", room="#lobby")
        encoded: list[dict[str, Any]] = []
        real = wire.encode

        def counting(obj: dict[str, Any]) -> bytes:
            encoded.append(obj)
            return real(obj)

        self.patch(wire, "encode", counting)
        carol.request("join", room="#lobby")
        joins = [o for o in encoded if o.get("event") == "joined"]
        self.assertEqual(joins, [{"event": "joined", "room": "#lobby", "user": "carol"}])
        for c in (self.alice, self.bob):
            self.assertEqual(c.take_events("joined")[-1]["user"], "carol")
        # a different event is encoded again, not served from the last one
        self.alice.request("part", room="#lobby")
        self.assertEqual(self.bob.take_events("parted")[-1]["user"], "alice")

    def test_invalid_room_names(self) -> None:
        for name in ["lobby", "#", "#a b", "#" + "x" * 50, "#a,b"]:
            self.assertError(self.alice.request("join", room=name), "invalid_name")

    def test_say_reaches_other_members_with_id_and_timestamp(self) -> None:
        self.alice.request("join", room="#lobby")
        self.bob.request("join", room="#lobby")
        reply = self.alice.request("say", room="#lobby", text="hello")
        self.assertTrue(reply["ok"])
        self.assertRegex(reply["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        [event] = self.bob.take_events("message")
        self.assertEqual(
            (event["room"], event["from"], event["text"], event["msg_id"], event["ts"]),
            ("#lobby", "alice", "hello", reply["msg_id"], reply["ts"]),
        )
        self.assertEqual(self.alice.take_events("message"), [])

    def test_cr_lf_are_never_relayed_and_nul_is_refused(self) -> None:
        self.alice.request("join", room="#lobby")
        self.bob.request("join", room="#lobby")
        reply = self.alice.request("say", room="#lobby", text="hi\r\nQUIT :bye\x00!")
        self.assertError(reply, "bad_request")
        self.alice.request("say", room="#lobby", text="hi\r\nQUIT :bye!")
        [event] = self.bob.take_events("message")
        self.assertEqual(event["text"], "hi QUIT :bye!")

    def test_say_errors(self) -> None:
        self.assertError(self.alice.request("say", room="#nowhere", text="x"), "no_such_room")
        self.alice.request("join", room="#lobby")
        self.assertError(self.bob.request("say", room="#lobby", text="x"), "not_in_room")
        self.assertError(self.alice.request("say", room="#lobby", text="   "), "bad_request")
        self.assertError(self.bob.request("part", room="#lobby"), "not_in_room")
        self.assertError(self.bob.request("members", room="#none"), "no_such_room")

    def test_part_tells_the_others(self) -> None:
        self.alice.request("join", room="#lobby")
        self.bob.request("join", room="#lobby")
        self.assertTrue(self.bob.request("part", room="#lobby")["ok"])
        self.assertEqual(self.alice.take_events("parted")[-1]["user"], "bob")
        self.assertEqual(len(self.alice.request("members", room="#lobby")["members"]), 1)

    def test_topic_is_set_by_an_operator_and_announced(self) -> None:
        self.alice.request("join", room="#lobby")
        self.bob.request("join", room="#lobby")
        self.assertTrue(self.alice.request("topic", room="#lobby", topic="welcome")["ok"])
        self.assertEqual(self.bob.take_events("topic")[-1]["topic"], "welcome")
        self.assertError(self.bob.request("topic", room="#lobby", topic="mine"), "forbidden")
        rooms = self.bob.request("rooms")["rooms"]
        self.assertEqual(rooms, [{"name": "#lobby", "topic": "welcome", "members": 2}])

    def test_kick_by_operator(self) -> None:
        self.alice.request("join", room="#lobby")
        self.bob.request("join", room="#lobby")
        self.assertError(self.bob.request("kick", room="#lobby", user="alice"), "forbidden")
        self.assertTrue(self.alice.request("kick", room="#lobby", user="bob", reason="spam")["ok"])
        kicked = self.bob.take_events("kicked")[-1]
        self.assertEqual((kicked["user"], kicked["by"], kicked["reason"]), ("bob", "alice", "spam"))
        self.assertError(self.bob.request("say", room="#lobby", text="x"), "not_in_room")

    def test_invite_only_key_limit_and_ban(self) -> None:
        self.alice.request("join", room="#club")
        self.assertTrue(self.alice.request("mode", room="#club", set="+i")["ok"])
        self.assertError(self.bob.request("join", room="#club"), "forbidden")
        self.assertTrue(self.alice.request("invite", room="#club", user="bob")["ok"])
        self.assertEqual(self.bob.take_events("invited")[-1]["room"], "#club")
        self.assertTrue(self.bob.request("join", room="#club")["ok"])
        self.bob.request("part", room="#club")
        self.alice.request("mode", room="#club", set="-i", key="sesame")
        self.assertError(self.bob.request("join", room="#club"), "forbidden")
        self.assertTrue(self.bob.request("join", room="#club", key="sesame")["ok"])
        self.alice.request("kick", room="#club", user="bob")
        self.alice.request("mode", room="#club", key=None, ban="bob")
        self.assertError(self.bob.request("join", room="#club"), "forbidden")
        modes = self.alice.request("mode", room="#club")
        self.assertEqual(modes["bans"], ["bob!*@*"])

    def test_moderated_room_needs_voice(self) -> None:
        self.alice.request("join", room="#talk")
        self.bob.request("join", room="#talk")
        self.alice.request("mode", room="#talk", set="+m")
        self.assertError(self.bob.request("say", room="#talk", text="x"), "forbidden")
        self.alice.request("mode", room="#talk", give_voice="bob")
        self.assertTrue(self.bob.request("say", room="#talk", text="x")["ok"])

    def test_secret_rooms_are_listed_only_for_members(self) -> None:
        self.alice.request("join", room="#hidden")
        self.assertTrue(self.alice.request("mode", room="#hidden", set="+s")["ok"])
        self.assertEqual([r["name"] for r in self.bob.request("rooms")["rooms"]], [])
        self.assertEqual([r["name"] for r in self.alice.request("rooms")["rooms"]], ["#hidden"])
        self.assertError(self.alice.request("mode", room="#hidden", set="+x"), "bad_request")

    def test_bad_mode_change_changes_nothing(self) -> None:
        self.alice.request("join", room="#talk")
        reply = self.alice.request("mode", room="#talk", set="+m", give_op="nobody")
        self.assertError(reply, "not_in_room")
        self.assertEqual(self.alice.request("mode", room="#talk")["modes"], "+nt")

    def test_history_pages_backwards(self) -> None:
        self.alice.request("join", room="#log")
        ids = [self.alice.request("say", room="#log", text=f"m{i}")["msg_id"] for i in range(10)]
        page = self.alice.request("history", room="#log", limit=4)["messages"]
        self.assertEqual([m["text"] for m in page], ["m6", "m7", "m8", "m9"])
        older = self.alice.request("history", room="#log", limit=4, before=page[0]["msg_id"])
        self.assertEqual([m["msg_id"] for m in older["messages"]], ids[2:6])
        self.assertError(self.bob.request("history", room="#log"), "not_in_room")

    def test_membership_belongs_to_the_account_across_sessions(self) -> None:
        self.alice.request("join", room="#lobby")
        laptop = self.login("alice")
        self.bob.request("join", room="#lobby")
        self.bob.request("say", room="#lobby", text="to both")
        self.assertEqual(len(self.alice.take_events("message")), 1)
        self.assertEqual(len(laptop.take_events("message")), 1)


class DirectMessageTests(ServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("alice")
        self.bob = self.account("bob")

    def test_dm_is_delivered_and_stored(self) -> None:
        reply = self.alice.request("dm", to="bob", text="psst")
        self.assertTrue(reply["delivered"])
        [event] = self.bob.take_events("message")
        self.assertEqual((event["from"], event["to"], event["text"]), ("alice", "bob", "psst"))
        history = self.bob.request("history", **{"with": "alice"})["messages"]
        self.assertEqual([m["text"] for m in history], ["psst"])

    def test_dm_to_unknown_user(self) -> None:
        self.assertError(self.alice.request("dm", to="nobody", text="x"), "no_such_user")
        self.assertError(self.alice.request("dm", to="bad name", text="x"), "invalid_name")

    def test_every_session_of_both_accounts_sees_the_dm(self) -> None:
        phone = self.login("alice")
        bob_laptop = self.login("bob")
        self.alice.request("dm", to="bob", text="hi")
        self.assertEqual(len(self.bob.take_events("message")), 1)
        self.assertEqual(len(bob_laptop.take_events("message")), 1)
        self.assertEqual(phone.take_events("message")[0]["to"], "bob")
        self.assertEqual(self.alice.take_events("message"), [])

    def test_offline_dms_are_queued_and_delivered_in_order_once(self) -> None:
        self.bob.request("logout")
        self.bob.disconnect()
        replies = [self.alice.request("dm", to="bob", text=f"m{i}") for i in range(3)]
        self.assertEqual([r["delivered"] for r in replies], [False, False, False])
        bob = self.login("bob")
        events = bob.take_events("message")
        self.assertEqual([e["text"] for e in events], ["m0", "m1", "m2"])
        self.assertTrue(all(e["offline"] for e in events))
        again = self.login("bob")
        self.assertEqual(again.take_events("message"), [])

    def test_presence_and_whois(self) -> None:
        self.alice.request("join", room="#x")
        self.bob.request("join", room="#x")
        self.bob.request("away", text="lunch")
        event = self.alice.take_events("presence")[-1]
        self.assertEqual(
            (event["user"], event["presence"], event["away"]), ("bob", "away", "lunch")
        )
        whois = self.alice.request("whois", user="bob")
        self.assertEqual((whois["presence"], whois["away"]), ("away", "lunch"))
        self.bob.disconnect()
        self.assertEqual(self.alice.take_events("presence")[-1]["presence"], "offline")
        whois = self.alice.request("whois", user="bob")
        self.assertEqual(whois["presence"], "offline")
        self.assertIsNotNone(whois["last_seen"])
        self.assertError(self.alice.request("whois", user="nobody"), "no_such_user")
        users = [u["user"] for u in self.alice.request("who")["users"]]
        self.assertEqual(users, ["alice"])


class HistoryCatchUpTests(ServerTestCase):
    def test_after_pages_forward_from_a_message(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#log")
        ids = [alice.request("say", room="#log", text=f"m{i}")["msg_id"] for i in range(10)]
        page = alice.request("history", room="#log", after=ids[2], limit=3)["messages"]
        self.assertEqual([m["text"] for m in page], ["m3", "m4", "m5"])
        between = alice.request("history", room="#log", after=ids[2], before=ids[8], limit=2)
        self.assertEqual([m["text"] for m in between["messages"]], ["m6", "m7"])
        self.assertEqual(alice.request("history", room="#log", after=ids[9])["messages"], [])


class InputEdgeTests(ServerTestCase):
    """What no op may ever see: text that is not Unicode, numbers that are not JSON."""

    settings = {"rate": 0}

    def setUp(self) -> None:
        super().setUp()
        self.logged = errors_logged(self)

    def answer(self, client: NativeTestClient, line: bytes) -> dict[str, Any]:
        """The one line that answers *line*, parsed as strict JSON (no NaN, no Infinity)."""
        client.send_line(line + b"\n")
        self.clock.advance(0)
        lines = client.transport.value().splitlines()
        client.transport.clear()
        replies = [r for r in map(strict_json, lines) if "event" not in r]
        self.assertEqual(len(replies), 1, lines)
        return replies[0]

    def test_a_lone_surrogate_in_any_op_is_bad_request_and_nothing_is_logged(self) -> None:
        alice = self.account("alice")
        alice.request("join", room="#a")
        anonymous = self.client()
        for client, request in [
            (anonymous, rb'"op":"login","user":"bob","password":"\ud800x"'),
            (anonymous, rb'"op":"login","user":"b\udfffob","password":"secret password"'),
            (anonymous, rb'"op":"register","user":"bob","password":"\ud800xxxxxxxxxxxxx"'),
            (anonymous, rb'"op":"resume","token":"\ud800"'),
            (anonymous, rb'"op":"recover","user":"alice","code":"\ud800","new_password":"x"'),
            (alice, rb'"op":"say","room":"#a","text":"hi \ud800"'),
            (alice, rb'"op":"dm","to":"alice","text":"\udc00"'),
            (alice, rb'"op":"away","text":"\ud800"'),
            (alice, rb'"op":"join","room":"#\ud800"'),
            (alice, rb'"op":"passwd","old":"\ud800","new":"another password"'),
            (alice, rb'"op":"topic","room":"#a","topic":"\ud800","\ud801":["\ud802"]'),
        ]:
            reply = self.answer(client, b'{"id":1,' + request + b"}")
            self.assertEqual(reply["id"], 1, request)
            self.assertEqual(reply["error"]["code"], "bad_request", request)
        self.assertEqual(self.logged, [])
        # nothing changed: the account still has its password, the rooms are as they were
        self.assertTrue(self.login("alice").request("say", room="#a", text="still here")["ok"])
        self.assertNotIn("#\ud800", [r["name"] for r in alice.request("rooms")["rooms"]])

    def test_nan_infinity_and_huge_numbers_get_bad_json_in_strict_json(self) -> None:
        c = self.client()
        for line, request_id in [
            (b'{"id":NaN,"op":"ping"}', None),
            (b'{"id":Infinity,"op":"ping"}', None),
            (b'{"id":-Infinity,"op":"ping"}', None),
            (b'{"id":1e400,"op":"ping"}', None),
            (b'{"id":3,"op":"ping","x":NaN}', 3),
            (b'{"id":"z","op":"history","limit":1e999}', "z"),
        ]:
            reply = self.answer(c, line)
            self.assertEqual(reply["error"]["code"], "bad_json", line)
            self.assertEqual(reply["id"], request_id, line)
        self.assertTrue(c.request("ping")["ok"])
        self.assertEqual(self.logged, [])

    def test_the_id_is_echoed_whatever_is_wrong_with_the_op(self) -> None:
        c = self.client()
        for line, code in [
            (b'{"id":4,"op":null}', "bad_request"),
            (b'{"id":4}', "bad_request"),
            (b'{"id":4,"op":{"x":1}}', "bad_request"),
            (b'{"id":4,"op":"teleport"}', "unknown_op"),
            (b'{"id":4,"op":"say","room":"#a","text":"x"}', "not_authenticated"),
        ]:
            reply = self.answer(c, line)
            self.assertEqual((reply["id"], reply["error"]["code"]), (4, code), line)

    def test_a_reply_that_cannot_be_encoded_is_an_internal_error_not_a_broken_line(
        self,
    ) -> None:
        c = self.client()
        self.patch(NativeProtocol, "op_ping", lambda self, req: {"x": float("nan")})
        reply = self.answer(c, b'{"id":9,"op":"ping"}')
        self.assertEqual((reply["id"], reply["error"]["code"]), (9, "internal_error"))
        self.assertEqual(len(self.logged), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


# The same tests on the PostgreSQL store (tests/backends.py).
AccountTestsOnPostgreSQL = on_postgresql(AccountTests)
RoomTestsOnPostgreSQL = on_postgresql(RoomTests)
DirectMessageTestsOnPostgreSQL = on_postgresql(DirectMessageTests)
HistoryCatchUpTestsOnPostgreSQL = on_postgresql(HistoryCatchUpTests)
