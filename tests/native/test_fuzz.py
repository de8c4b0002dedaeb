"""Bad input never reaches an internal error: every line gets one strict-JSON answer.

Property-based tests (Hypothesis) of the native door's input edge, on the
inline server (``StringTransport`` + ``Clock``): arbitrary bytes, arbitrary
JSON values, and requests for every documented op, before and after login,
whose values hold arbitrary Unicode, lone surrogates (escaped, or raw as
bytes that are not UTF-8), NaN, Infinity and numbers beyond a double; and a
sweep of awkward values through every field of every op, which finds what a
few dozen random examples miss. The property, for each line: exactly one
reply line, and every line written is strict JSON (RFC 8259: no NaN, no
Infinity, UTF-8); the reply carries the request's id whenever the request
had a valid one; its error code is a documented one, never
``internal_error``; nothing is logged as an error; the connection stays
open.

The example counts keep the whole module to a few seconds in CI; raise them
(``HYPOTHESIS_EXAMPLES=20000``) to hunt.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pingchat.native.protocol import PUBLIC_OPS
from pingchat.testing import NativeTestClient, strict_json
from tests.helpers import PASSWORD, ServerTestCase
from tests.logged import errors_logged

DOC = Path(__file__).parents[2] / "docs" / "protocol.md"
# every documented op with the fields its heading names: "### `say {room, text}`"
OP_FIELDS = {
    op: sorted(set(re.findall(r"[a-z_]+", " ".join(re.findall(r"\{([^}]*)\}", rest)))))
    for op, rest in re.findall(r"^### `([a-z.]+)(.*)$", DOC.read_text(), re.M)
}
OPS = sorted(OP_FIELDS)
FIELDS = sorted({field for fields in OP_FIELDS.values() for field in fields})
CODES = set(re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text(), re.M)) - {"internal_error"}


def fuzz_settings(examples: int) -> Any:
    return hypothesis_settings(
        max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", examples)),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@attrs.frozen
class Raw:
    """JSON-like text written into a line as it is: ``NaN``, ``Infinity``, ``1e400``."""

    text: str


NON_FINITE = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("-2E+999")]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of *choices* by weight (``st.one_of`` flattens nested ones and weighs
    every branch the same)."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(lambda s: s)


# st.text() leaves out surrogates; a third of these strings may hold them,
# lone or paired (half of their characters).
unicode_text = weighted(
    (2, st.text(max_size=30)),
    (1, st.text(st.characters() | st.integers(0xD800, 0xDFFF).map(chr), max_size=30)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    unicode_text,
    st.sampled_from(["#mine", "#mine", "#room", "alice", "bob", "", "contacts", "+i-t", "AAAA"]),
    st.sampled_from(NON_FINITE),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(unicode_text, inner, max_size=3),
    max_leaves=8,
)
ids = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), unicode_text
)
# Values of the type each field expects, so that a request gets past the first
# checks and into the op's own validation; one field at a time gets any value.
rooms = weighted(
    (3, st.just("#mine")),
    (1, st.sampled_from(["#room", "#nowhere"])),
    (1, unicode_text.map("#".__add__)),
)
users = weighted((3, st.sampled_from(["alice", "bob", "nobody"])), (1, unicode_text))
# the edges of the ranges ops take, of 32- and 64-bit integers, and beyond
EDGES = [0, -1, 1, 200, 201, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**400]
numbers = st.sampled_from(EDGES) | st.integers()
TYPICAL = {
    "room": rooms,
    **dict.fromkeys(
        ["user", "to", "with", "give_op", "take_op", "give_voice", "take_voice"], users
    ),
    **dict.fromkeys(["ban", "unban"], users | unicode_text),
    **dict.fromkeys(["before", "after", "limit", "msg_id"], numbers),
    "set": st.text("+-imnstkblov", max_size=6),
    "dm_policy": st.sampled_from(["anyone", "contacts"]) | unicode_text,
    "device": st.sampled_from(["laptop-0001", "default", "x" * 65]) | unicode_text,
    **dict.fromkeys(
        ["ciphertext", "nonce", "public_key"], st.binary().map(base64.b64encode).map(bytes.decode)
    ),
}


def op_request(op: str) -> st.SearchStrategy[dict[str, Any]]:
    """A request for *op* with some of its fields, of the expected types but one."""
    fields = OP_FIELDS[op]
    typed = st.fixed_dictionaries(
        {"op": st.just(op)},
        optional={"id": ids, **{name: TYPICAL.get(name, unicode_text) for name in fields}},
    )
    odd_one = st.none() | st.tuples(st.sampled_from([*fields, "id"]), values)
    return st.builds(
        lambda req, odd: req if odd is None else {**req, odd[0]: odd[1]}, typed, odd_one
    )


# A well-formed request for every op, as alice (operator of #mine, where bob
# is too) would send it; the argument property changes one or two fields.
TEMPLATES: dict[str, dict[str, Any]] = {
    "ping": {},
    "register": {"user": "carol", "password": PASSWORD},
    "login": {"user": "alice", "password": "not her password"},
    "resume": {"token": "not a token"},
    "recover": {"user": "alice", "code": "aaaa-bbbb-cccc-dddd", "new_password": PASSWORD},
    "passwd": {"old": "not her password", "new": "another password"},
    "otp.setup": {},
    "otp.enable": {"code": "123456"},
    "otp.disable": {"password": "not her password", "code": "123456"},
    "recovery.regenerate": {"password": "not her password"},
    "account.delete": {"password": "not her password"},
    "join": {"room": "#mine"},
    "rooms": {},
    "members": {"room": "#mine"},
    "topic": {"room": "#mine", "topic": "a topic"},
    "say": {"room": "#mine", "text": "hello"},
    "dm": {"to": "bob", "text": "hello"},
    "history": {"room": "#mine", "limit": 5},
    "who": {},
    "whois": {"user": "bob"},
    "away": {"text": "lunch"},
    "kick": {"room": "#mine", "user": "bob", "reason": "testing"},
    "invite": {"room": "#mine", "user": "bob"},
    "mode": {"room": "#mine", "set": "+n"},
    "contacts": {},
    "contact.add": {"user": "bob"},
    "contact.remove": {"user": "bob"},
    "settings": {"dm_policy": "anyone"},
    "key.publish": {
        "public_key": base64.b64encode(bytes(32)).decode(),
        "device": "laptop-0001",
        "label": "fuzz",
    },
    "key.revoke": {"device": "laptop-0001"},
    "key.get": {"user": "bob"},
    "message.delete": {"msg_id": 1, "reason": "a mistake"},
    "kill": {"user": "bob", "reason": "testing"},
    # last: these end what the others need
    "part": {"room": "#mine"},
    "logout": {},
}


def changed_field(op: str) -> st.SearchStrategy[tuple[str, Any]]:
    """One field of *op* (or id, or a stray one) and a new value for it."""
    names = weighted((3, st.sampled_from([*OP_FIELDS[op], "id"])), (1, unicode_text))
    return names.flatmap(
        lambda name: st.tuples(st.just(name), weighted((2, TYPICAL.get(name, values)), (1, values)))
    )


changes = st.lists(
    st.sampled_from(OPS).flatmap(
        lambda op: st.tuples(st.just(op), st.lists(changed_field(op), min_size=1, max_size=2))
    ),
    max_size=8,
).map(lambda pairs: {op: dict(fields) for op, fields in pairs})

# Awkward values for the sweep: every field of every op gets each of them.
AWKWARD: list[Any] = [
    *EDGES,
    None,
    True,
    False,
    0.5,
    -0.0,
    1e308,
    "",
    " ",
    "\x00",
    "\r\n",
    "a\u2028b\u0085",
    "\ud800",
    "\ud83d\ude00",
    "é" * 2100,
    "#",
    "#mine",
    "alice",
    [],
    ["#mine"],
    {},
    {"room": "#mine"},
    [[[{"": None}]]],
    Raw("NaN"),
    Raw("-Infinity"),
    Raw("1e400"),
]

requests = st.one_of(
    # a documented op with its own fields
    st.sampled_from(OPS).flatmap(op_request),
    # anything at all, in a JSON object
    st.dictionaries(
        st.sampled_from([*FIELDS, "id", "op"]) | unicode_text,
        values | ids | st.sampled_from(OPS),
        max_size=4,
    ),
)


def dump(value: Any, ascii: bool) -> str:
    """JSON text of *value*, with ``Raw`` pieces as they are and lone surrogates
    escaped (``ascii``) or left in, to be written as bytes that are not UTF-8."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        items = (json.dumps(k, ensure_ascii=ascii) + ":" + dump(v, ascii) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii)


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value, *(x for v in value.values() for x in leaves(v))]
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    return [value]


def has_surrogate(value: Any) -> bool:
    return any(isinstance(x, str) and re.search("[\ud800-\udfff]", x) for x in leaves(value))


def has_nul(value: Any) -> bool:
    """NUL anywhere refuses a request (docs/protocol.md, tests/native/test_nul.py)."""
    return any(isinstance(x, str) and "\x00" in x for x in leaves(value))


def has_non_finite(value: Any) -> bool:
    return any(isinstance(x, Raw) for x in leaves(value))


def as_read(value: Any) -> Any:
    """*value* as the server reads it from an ASCII line: a high surrogate
    followed by a low one, escaped, is one character (``\\ud800\\udc00``)."""
    if isinstance(value, str):
        return json.loads(json.dumps(value))
    if isinstance(value, dict):
        return {as_read(k): as_read(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_read(v) for v in value]
    return value


def valid_id(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return not has_surrogate(value)
    return value is None or isinstance(value, int)


def expected_answer(value: Any, ascii: bool) -> tuple[str | None, Any]:
    """The error code the edge must answer (None: up to the op) and the id to echo."""
    if not ascii and has_surrogate(value):
        return "bad_json", None  # surrogates as bytes: not UTF-8
    value = as_read(value)
    request_id = value.get("id") if isinstance(value, dict) else None
    echoed = request_id if valid_id(request_id) else None
    if has_non_finite(value):
        return "bad_json", echoed
    if not isinstance(value, dict) or has_surrogate(value) or echoed is not request_id:
        return "bad_request", echoed
    if has_nul(value):
        return "bad_request", echoed
    if not isinstance(value.get("op"), str):
        return "bad_request", echoed
    return None, echoed


def same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON type (1 is not true, 1.0 is not 1)."""
    return type(a) is type(b) and a == b


class FuzzTests(ServerTestCase):
    # no request rate limit, and no login back-off per address for alice:
    # the fuzzed passwd/otp.disable/recovery.regenerate tries fail as alice
    settings = {"rate": 0, "login_free_attempts": 10**9}

    def setUp(self) -> None:
        super().setUp()
        self.account("alice")
        reply = self.client().request("login", user="alice", password=PASSWORD)
        # the device secret lets alice back in while the fuzzed password
        # tries (passwd, otp.disable, ... from many addresses) hold her
        # account back as a whole
        self.token, self.device = reply["token"], reply["device"]
        self.bob = self.account("bob")
        self.bob.request("join", room="#room")
        self.examples = 0
        self.logged = errors_logged(self)

    def fresh_client(self, logged_in: bool) -> NativeTestClient:
        """A new connection from a new address (no throttle carries over).

        Logged in, it is alice, operator of a new room of her own, which the
        example's requests name ``#mine``.
        """
        self.examples += 1
        self.logged.clear()  # what an earlier example left (Hypothesis replays failures)
        address = f"10.{self.examples >> 16 & 255}.{self.examples >> 8 & 255}.{self.examples & 255}"
        client = NativeTestClient(self.server, address)
        if logged_in:
            reply = client.request("resume", token=self.token)
            if not reply["ok"]:  # a fuzzed logout revoked it
                reply = client.request("login", user="alice", password=PASSWORD, device=self.device)
                self.assertTrue(reply["ok"], reply)
                self.token, self.device = reply["token"], reply["device"]
            self.assertTrue(client.request("join", room=self.mine())["ok"])
            self.clock.advance(0)
            client.pump()
            client.events.clear()
        return client

    def bob_joins(self) -> None:
        self.assertTrue(self.bob.request("join", room=self.mine())["ok"])
        self.bob.transport.clear()

    def mine(self) -> str:
        return f"#mine{self.examples}"

    def with_my_room(self, value: Any) -> Any:
        """*value*, where ``#mine`` is this example's room."""
        if value == "#mine":
            return self.mine()
        if isinstance(value, list):
            return [self.with_my_room(v) for v in value]
        if isinstance(value, dict):
            return {k: self.with_my_room(v) for k, v in value.items()}
        return value

    def answer(self, client: NativeTestClient, line: bytes) -> dict[str, Any] | None:
        """Send *line*; check what comes back; return the one reply (None for a blank line)."""
        client.send_line(line + b"\n")
        self.clock.advance(0)
        out = client.transport.value()
        client.transport.clear()
        written = out.split(b"\n")
        self.assertEqual(written.pop(), b"", (line, out))  # every line written is whole
        objs = []
        for raw in written:
            obj = strict_json(raw)  # raises on NaN/Infinity and text that is not UTF-8
            self.assertIsInstance(obj, dict, (line, raw))
            self.assertTrue(("event" in obj) != ("ok" in obj), (line, raw))
            objs.append(obj)
        replies = [obj for obj in objs if "ok" in obj]
        self.assertEqual(len(replies), 1 if line.strip() else 0, (line, out))
        self.assertEqual(self.logged, [], line)
        self.assertTrue(client.transport.connected, line)
        if not replies:
            return None
        reply = replies[0]
        if not reply["ok"]:
            self.assertIn(reply["error"]["code"], CODES, (line, reply))
            self.assertTrue(reply["error"]["message"], (line, reply))
        return reply

    def done(self, client: NativeTestClient) -> None:
        client.disconnect()
        self.clock.advance(0)

    @fuzz_settings(75)
    @given(st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=5))
    @example([b"\xff\xfe", b"\xed\xa0\x80", b"{", b"\r", b" \t", b"\x00", b"{}", b"[]", b"nul"])
    def test_any_bytes_get_one_strict_json_answer_per_line(self, lines: list[bytes]) -> None:
        client = self.fresh_client(logged_in=False)
        for line in lines:
            reply = self.answer(client, line)
            if reply is not None:
                self.assertFalse(reply["ok"], (line, reply))
        self.done(client)

    @fuzz_settings(75)
    @given(st.binary(max_size=300), st.integers(1, 50))
    def test_any_byte_stream_gets_one_answer_per_nonblank_line(
        self, stream: bytes, chunk: int
    ) -> None:
        client = self.fresh_client(logged_in=False)
        for start in range(0, len(stream), chunk):
            client.send_line(stream[start : start + chunk])
        client.send_line(b"\n")
        self.clock.advance(0)
        lines = [raw[:-1] if raw.endswith(b"\r") else raw for raw in (stream + b"\n").split(b"\n")]
        expected = sum(1 for raw in lines[:-1] if raw.strip())
        written = [strict_json(raw) for raw in client.transport.value().splitlines()]
        self.assertEqual(len([obj for obj in written if "ok" in obj]), expected, stream)
        self.assertEqual(self.logged, [])
        self.done(client)

    @fuzz_settings(75)
    @given(values, st.booleans())
    @example([Raw("NaN")], True)
    @example("\ud800", True)
    @example("\ud800", False)
    def test_any_json_value_gets_one_strict_json_answer(self, value: Any, ascii: bool) -> None:
        client = self.fresh_client(logged_in=False)
        line = dump(value, ascii).encode("utf-8", "surrogatepass")
        reply = self.answer(client, line)
        assert reply is not None
        code, request_id = expected_answer(value, ascii)
        self.assertTrue(same(reply["id"], request_id), (line, reply))
        if code is not None:
            self.assertEqual(reply.get("error", {}).get("code"), code, (line, reply))
        self.done(client)

    @fuzz_settings(150)
    @given(st.lists(st.tuples(requests, st.booleans()), min_size=1, max_size=4), st.booleans())
    # the defects of issue 15: a lone surrogate in any string, ids that are not JSON
    @example([({"id": 1, "op": "login", "user": "bob", "password": "\ud800x"}, True)], False)
    @example([({"id": 1, "op": "register", "user": "bob", "password": "\ud800" * 9}, True)], False)
    @example([({"id": 1, "op": "resume", "token": "\udfff"}, True)], False)
    @example([({"id": 1, "op": "say", "room": "#mine", "text": "\ud800"}, True)], True)
    @example([({"id": 1, "op": "dm", "to": "bob", "text": "a\udc00"}, True)], True)
    @example([({"id": 1, "op": "away", "text": "\ud800"}, True)], True)
    @example([({"id": 1, "op": "join", "room": "#\ud800"}, True)], True)
    @example([({"id": 1, "op": "passwd", "old": "\ud800", "new": "x" * 9}, True)], True)
    @example([({"id": 1, "op": "ping", "\ud800": [{"k": "\udfff"}]}, True)], True)
    @example([({"id": "\ud800", "op": "ping"}, True)], False)
    @example([({"id": 1, "op": "say", "room": "#mine", "text": "\ud800"}, False)], True)
    @example([({"id": Raw("NaN"), "op": "ping"}, True)], False)
    @example([({"id": Raw("Infinity"), "op": "ping"}, True)], False)
    @example([({"id": Raw("1e400"), "op": "ping"}, True)], False)
    @example([({"id": 2, "op": "history", "room": "#mine", "limit": Raw("1e400")}, True)], True)
    @example([({"id": 4, "op": None}, True)], False)
    @example([({"id": 4, "op": "teleport"}, True)], True)
    def test_random_requests_get_one_documented_answer_with_their_id(
        self, batch: list[tuple[dict[str, Any], bool]], logged_in: bool
    ) -> None:
        client = self.fresh_client(logged_in)
        for fuzzed, ascii in batch:
            req = self.with_my_room(fuzzed)
            line = dump(req, ascii).encode("utf-8", "surrogatepass")
            reply = self.answer(client, line)
            assert reply is not None
            code, request_id = expected_answer(req, ascii)
            self.assertTrue(same(reply["id"], request_id), (line, reply))
            if code is not None:
                self.assertFalse(reply["ok"], (line, reply))
                self.assertEqual(reply["error"]["code"], code, (line, reply))
        self.done(client)

    def test_every_field_of_every_op_takes_every_awkward_value(self) -> None:
        """A sweep, as a complement to the random search: each field of each op
        (and id, and a stray key), set to each of AWKWARD in turn."""
        for op, args in TEMPLATES.items():
            anonymous = self.fresh_client(logged_in=False)
            alice = self.fresh_client(logged_in=True)
            self.bob_joins()
            for name in [*OP_FIELDS[op], "id", "stray"]:
                for value in AWKWARD:
                    if op in ("part", "logout") and not alice.protocol.session:
                        alice = self.fresh_client(logged_in=True)
                    if op == "part":
                        alice.request("join", room=self.mine())
                    client = anonymous if op in PUBLIC_OPS else alice
                    req = self.with_my_room({"id": 1, "op": op, **args, name: value})
                    line = dump(req, True).encode()
                    reply = self.answer(client, line)
                    assert reply is not None
                    code, request_id = expected_answer(req, True)
                    self.assertTrue(same(reply["id"], request_id), (line, reply))
                    if code is not None:
                        self.assertEqual(reply["error"]["code"], code, (line, reply))
            self.done(anonymous)
            self.done(alice)

    def test_every_template_is_well_formed_and_every_op_has_one(self) -> None:
        # the argument property starts from requests that get past validation
        self.assertEqual(set(TEMPLATES), set(OPS))
        anonymous = self.fresh_client(logged_in=False)
        alice = self.fresh_client(logged_in=True)
        self.bob_joins()
        for op, args in TEMPLATES.items():
            client = anonymous if op in PUBLIC_OPS else alice
            req = self.with_my_room({"id": op, "op": op, **args})
            reply = self.answer(client, json.dumps(req).encode())
            assert reply is not None
            self.assertNotIn(reply.get("error", {}).get("code"), ("bad_request", "bad_json"), reply)

    @fuzz_settings(30)
    @given(changes, st.booleans())
    # crashes found in op arguments (by the AWKWARD sweep): numbers beyond
    # what SQLite holds reached it (fixed in ChatService.history/change_modes)
    @example({"history": {"before": 2**70}}, True)
    @example({"history": {"after": -(2**63) - 1}}, True)
    @example({"mode": {"limit": 2**63}}, True)
    def test_every_op_validates_its_arguments(
        self, changes: dict[str, dict[str, Any]], ascii: bool
    ) -> None:
        """Each op with one or two fields changed to anything (as alice, or before login)."""
        anonymous = self.fresh_client(logged_in=False)
        alice = self.fresh_client(logged_in=True)
        self.bob_joins()
        for op, args in TEMPLATES.items():
            client = anonymous if op in PUBLIC_OPS else alice
            req = self.with_my_room({"id": op, "op": op, **args, **changes.get(op, {})})
            line = dump(req, ascii).encode("utf-8", "surrogatepass")
            reply = self.answer(client, line)
            assert reply is not None
            code, request_id = expected_answer(req, ascii)
            self.assertTrue(same(reply["id"], request_id), (line, reply))
            if code is not None:
                self.assertEqual(reply.get("error", {}).get("code"), code, (line, reply))
        self.done(anonymous)
        self.done(alice)
