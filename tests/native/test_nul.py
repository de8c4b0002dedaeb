"""U+0000 in a request: refused with bad_request, on SQLite and PostgreSQL alike.

PostgreSQL's ``text`` cannot hold NUL (psycopg raises ``DataError``) where
SQLite stores it: a NUL that reached the store became an ``internal_error``
with a traceback on one backend and a stored string on the other. A request
holding one anywhere is refused whole at the door (docs/protocol.md).
"""

from __future__ import annotations

import json
from typing import Any

from pingchat.testing import NativeTestClient
from tests.backends import on_postgresql
from tests.helpers import PASSWORD, ServerTestCase
from tests.logged import errors_logged

NUL = "\x00"


class NulTests(ServerTestCase):
    settings = {"rate": 0}

    def setUp(self) -> None:
        super().setUp()
        self.logged = errors_logged(self)

    def ask(self, client: NativeTestClient, op: str, **args: Any) -> dict[str, Any]:
        """The reply to *op*, sent as JSON with NUL as the ``\\u0000`` escape."""
        reply = client.request(op, **args)
        self.clock.advance(0)
        return reply

    def test_every_string_field_holding_nul_is_bad_request_and_nothing_is_stored(self) -> None:
        alice = self.account("alice")
        bob = self.account("bob")
        for c in (alice, bob):
            self.assertTrue(c.request("join", room="#a")["ok"])
        self.server.chat.get_room("#a")  # exists
        said = alice.request("say", room="#a", text="to delete")
        anonymous = self.client()
        requests: list[tuple[NativeTestClient, str, dict[str, Any]]] = [
            (anonymous, "register", {"user": "carol", "password": f"pass{NUL}word long"}),
            (anonymous, "register", {"user": f"ca{NUL}rol", "password": PASSWORD}),
            (anonymous, "register", {"user": "carol", "password": PASSWORD, "invite": NUL}),
            (anonymous, "login", {"user": f"nobody{NUL}", "password": PASSWORD}),
            (anonymous, "login", {"user": f"alice{NUL}", "password": PASSWORD}),
            (anonymous, "login", {"user": "alice", "password": f"{PASSWORD}{NUL}"}),
            (anonymous, "login", {"user": "alice", "password": PASSWORD, "device": NUL}),
            (anonymous, "login", {"user": "alice", "password": PASSWORD, "otp": f"1{NUL}"}),
            (anonymous, "resume", {"token": f"x{NUL}"}),
            (anonymous, "recover", {"user": f"alice{NUL}", "code": "x", "new_password": "y" * 12}),
            (alice, "passwd", {"old": PASSWORD, "new": f"another{NUL}password"}),
            (alice, "away", {"text": f"gone{NUL}"}),
            (alice, "topic", {"room": "#a", "topic": f"a {NUL} topic"}),
            (alice, "say", {"room": "#a", "text": f"hi{NUL}"}),
            (alice, "dm", {"to": "bob", "text": f"hi{NUL}"}),
            (alice, "dm", {"to": f"bob{NUL}", "text": "hi"}),
            (alice, "kick", {"room": "#a", "user": "bob", "reason": f"bye{NUL}"}),
            (alice, "mode", {"room": "#a", "key": f"k{NUL}"}),
            (alice, "message.delete", {"msg_id": said["msg_id"], "reason": f"spam{NUL}"}),
            (alice, "part", {"room": "#a", "reason": f"bye{NUL}"}),
            (alice, "contact_add", {"user": f"bob{NUL}"}),
            (alice, "kill", {"user": "bob", "reason": f"bye{NUL}"}),
            (alice, "key.publish", {
                "device": "device-0001", "public_key": "A" * 43 + "=", "label": f"phone{NUL}",
            }),
            (alice, "whois", {"user": f"bob{NUL}"}),
            (alice, "history", {"room": f"#a{NUL}"}),
            # in a key, or deep inside a value: the request is refused whole
            (alice, "ping", {f"x{NUL}": 1}),
            (alice, "ping", {"x": [{"y": f"z{NUL}"}]}),
        ]
        for client, op, args in requests:
            reply = self.ask(client, op, **args)
            self.assertEqual(reply["error"]["code"], "bad_request", (op, args, reply))
            self.assertIn("NUL", reply["error"]["message"], (op, args, reply))
        self.assertEqual(self.logged, [])
        # Nothing changed, and everything still works.
        room = self.server.chat.get_room("#a")
        self.assertIsNone(room.topic or None)
        self.assertIsNone(room.key)
        self.assertEqual(sorted(room.members), ["alice", "bob"])
        self.assertTrue(self.login("alice").request("say", room="#a", text="still here")["ok"])
        history = alice.request("history", room="#a")
        self.assertEqual(
            [m["text"] for m in history["messages"]], ["to delete", "still here"]
        )
        self.assertTrue(self.client().request(
            "register", user="carol", password=PASSWORD)["ok"])

    def test_the_nul_escape_is_refused_whatever_its_spelling_but_an_escaped_backslash_is_not(
        self,
    ) -> None:
        alice = self.account("alice")
        alice.request("join", room="#a")
        alice.send_line(b'{"id":7,"op":"say","room":"#a","text":"a\\u0000b"}\n')
        self.clock.advance(0)
        self.assertEqual(alice.reply(7)["error"]["code"], "bad_request")
        # "\\u0000" is a backslash and five characters, not NUL.
        text = json.loads('"a\\\\u0000b"')
        reply = alice.request("say", room="#a", text=text)
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(alice.request("history", room="#a")["messages"][-1]["text"], text)


NulTestsOnPostgreSQL = on_postgresql(NulTests)
