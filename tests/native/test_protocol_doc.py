"""docs/protocol.md is normative: it lists exactly the operations served, and
what its table of bad input says is what the server answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from pingchat.native.protocol import NativeProtocol
from pingchat.testing import strict_json
from tests.helpers import ServerTestCase

DOC = Path(__file__).parents[2] / "docs" / "protocol.md"


class ProtocolDocTests(SynchronousTestCase):
    def test_every_operation_is_documented_and_every_documented_one_exists(self) -> None:
        documented = set(re.findall(r"^### `([a-z.]+)", DOC.read_text(), re.M))
        served = {
            name.removeprefix("op_").replace("_", ".", 1)
            for name in dir(NativeProtocol)
            if name.startswith("op_")
        }
        self.assertEqual(documented, served)

    def test_every_error_code_used_is_documented(self) -> None:
        import pingchat.errors as errors

        text = DOC.read_text()
        codes = {
            cls.code
            for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.ChatError) and cls.code != "error"
        }
        for code in codes | {"bad_json", "line_too_long", "internal_error"}:
            self.assertIn(f"`{code}`", text)


class BadInputDocTests(ServerTestCase):
    settings = {"rate": 0}

    def test_each_line_of_the_bad_input_table_gets_the_documented_answer(self) -> None:
        section = DOC.read_text().split("## Bad input", 1)[1].split("\n## ", 1)[0]
        rows = re.findall(r"^\| `(\{.*\})` \| (.*) \| `(.*)` \|$", section, re.M)
        self.assertGreaterEqual(len(rows), 10)
        client = self.client()
        for line, code, request_id in rows:
            client.transport.clear()
            client.send_line(line.encode() + b"\n")
            written = client.transport.value().splitlines()
            self.assertEqual(len(written), 1, line)
            reply = strict_json(written[0])
            self.assertEqual(reply["id"], json.loads(request_id), line)
            expected = re.search(r"`([a-z_]+)`", code)
            assert expected is not None
            if expected.group(1) == "ok":
                self.assertTrue(reply["ok"], (line, reply))
            else:
                self.assertEqual(reply["error"]["code"], expected.group(1), (line, reply))
