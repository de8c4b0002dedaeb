"""docs/protocol.md is normative: it lists exactly the operations served."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from pingchat.native.protocol import NativeProtocol

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
