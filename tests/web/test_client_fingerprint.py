"""The web client's key fingerprints are the server's and the terminal client's, byte for byte.

A user compares fingerprints between devices to tell a friend's new key from
an impostor's: a browser that computed them differently would raise a false
alarm (or hide a real one). ``pingchat.model.key_fingerprint`` is the one
definition in Python; the web client has its own in JavaScript
(``fingerprint`` in ``pingchat/web/static/js/e2e.js``), run here under node
on keys whose fingerprints Python computed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import unittest
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from pingchat.model import key_fingerprint

E2E_JS = Path(__file__).resolve().parents[2] / "pingchat" / "web" / "static" / "js" / "e2e.js"

# Reads base64 keys (a JSON list) on stdin, prints their fingerprints (a JSON list).
SCRIPT = """
import { webcrypto } from "node:crypto";
const { fingerprint } = await import(process.argv[1]);
let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const key of JSON.parse(input)) out.push(await fingerprint(webcrypto.subtle, key));
console.log(JSON.stringify(out));
"""


def node_fingerprints(keys: list[str]) -> list[str]:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            raise AssertionError("node is not installed; CI installs it in .ci/run")
        raise unittest.SkipTest("node is not installed (apt-get install nodejs)")
    done = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT, E2E_JS.as_uri()],
        input=json.dumps(keys),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


class FingerprintTests(SynchronousTestCase):
    def test_the_web_clients_fingerprints_are_the_python_ones(self) -> None:
        raw = [bytes(32), b"\xff" * 32, bytes(range(1, 33)), *(os.urandom(32) for _ in range(20))]
        keys = [base64.b64encode(k).decode("ascii") for k in raw]
        self.assertEqual(node_fingerprints(keys), [key_fingerprint(k) for k in keys])

    def test_a_known_key(self) -> None:
        # PyNaCl's public key of PrivateKey(bytes(range(1, 33))), the vector of
        # tests/web_client/e2e.test.mjs.
        key = "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw="
        self.assertEqual(key_fingerprint(key), "aaa8 fff7 03b5 0b22 97f4 f6e1 3508 f724")
        self.assertEqual(node_fingerprints([key]), [key_fingerprint(key)])
