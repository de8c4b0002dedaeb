"""Bad input never reaches an internal error: random requests, documented answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.helpers import ServerTestCase

DOC = Path(__file__).parents[2] / "docs" / "protocol.md"
OPS = sorted(set(re.findall(r"^### `([a-z.]+)", DOC.read_text(), re.M)))
CODES = set(re.findall(r"^\| `([a-z_]+)` \|", DOC.read_text(), re.M)) - {"internal_error"}
FIELDS = [
    "user",
    "password",
    "otp",
    "token",
    "code",
    "new_password",
    "old",
    "new",
    "room",
    "key",
    "topic",
    "text",
    "to",
    "ciphertext",
    "nonce",
    "with",
    "before",
    "after",
    "limit",
    "reason",
    "set",
    "give_op",
    "ban",
    "public_key",
    "dm_policy",
    "id",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(["#room", "alice", "bob", "#x", "", "contacts"]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)
requests = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(OPS), st.text(max_size=12))},
    optional={name: values for name in FIELDS},
)


class FuzzTests(ServerTestCase):
    settings = {"rate": 0}

    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("alice")
        self.account("bob").request("join", room="#room")
        self.alice.request("join", room="#x")
        self.anonymous = self.client()

    @hypothesis_settings(
        max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.lists(requests, min_size=1, max_size=5), st.booleans())
    def test_random_requests_get_documented_answers(
        self, batch: list[dict[str, Any]], logged_in: bool
    ) -> None:
        client = self.alice if logged_in else self.anonymous
        for req in batch:
            if req.get("op") in ("logout", "passwd", "otp.setup", "recovery.regenerate"):
                continue  # these would change the fixture's own account
            line = json.dumps(req).encode() + b"\n"
            client.send_line(line)
            self.clock.advance(0)
            client.pump()
            for reply in client.replies:
                if not reply.get("ok"):
                    self.assertIn(reply["error"]["code"], CODES, (req, reply))
            client.replies.clear()
            client.events.clear()
        self.assertTrue(client.transport.connected)
