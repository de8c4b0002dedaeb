"""docs/e2e.md's worked example is the browser client's contract: every JSON
line in it is what the server accepts and sends, and its envelopes open, with
the real cryptography, for the devices it says and for the terminal client."""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nacl.public import Box, PrivateKey, PublicKey
from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase

from pingchat.client.configdir import ConfigDir
from pingchat.client.e2e import Identity, PeerKeys
from pingchat.client.keyring import OTHER_DEVICES, KeyRing
from pingchat.model import (
    Message,
    check_device_id,
    check_device_label,
    check_envelopes,
    check_public_key,
    key_fingerprint,
    parse_iso_ms,
)

DOC = Path(__file__).parents[1] / "docs" / "e2e.md"
TEXT = "the door code is 4711"


def blocks() -> list[str]:
    return re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)


def objects() -> list[dict[str, Any]]:
    found = []
    for block in blocks():
        if block.startswith('{"test_vectors"'):
            continue
        found += [json.loads(line) for line in block.splitlines() if line.strip()]
    return found


def b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class WorkedExampleTests(SynchronousTestCase):
    def setUp(self) -> None:
        [vectors] = [json.loads(b)["test_vectors"] for b in blocks()
                     if b.startswith('{"test_vectors"')]
        self.private = {(v["user"], v["device"]): PrivateKey(b64decode(v["private_key"]))
                        for v in vectors}
        self.public = {(v["user"], v["device"]): v["public_key"] for v in vectors}
        self.objects = objects()

    def one(self, **match: Any) -> dict[str, Any]:
        [found] = [o for o in self.objects if all(o.get(k) == v for k, v in match.items())]
        return found

    def test_the_test_vectors_are_key_pairs(self) -> None:
        for who, private in self.private.items():
            self.assertEqual(base64.b64encode(bytes(private.public_key)).decode(),
                             self.public[who])

    def test_publish_and_its_reply_and_event(self) -> None:
        request = self.one(op="key.publish")
        self.assertEqual(check_public_key(request["public_key"]), request["public_key"])
        check_device_id(request["device"])
        check_device_label(request["label"])
        fingerprint = key_fingerprint(request["public_key"])
        self.assertEqual(self.one(id=request["id"], ok=True),
                         {"id": 1, "ok": True, "device": request["device"],
                          "fingerprint": fingerprint})
        self.assertEqual(self.one(event="key"),
                         {"event": "key", "user": "alice", "device": request["device"],
                          "action": "published", "fingerprint": fingerprint})

    def test_key_get_lists_the_devices_with_their_fingerprints(self) -> None:
        reply = self.one(id=2, ok=True)
        for d in reply["devices"]:
            self.assertEqual(d["public_key"], self.public[(reply["user"], d["device"])])
            self.assertEqual(d["fingerprint"], key_fingerprint(d["public_key"]))
            parse_iso_ms(d["published_at"])
        self.assertEqual((reply["public_key"], reply["fingerprint"]),
                         (reply["devices"][-1]["public_key"],
                          reply["devices"][-1]["fingerprint"]))

    def test_the_dm_passes_the_servers_checks_and_the_event_is_what_it_sends(self) -> None:
        dm = self.one(op="dm")
        check_device_id(dm["device"])
        self.assertEqual(check_envelopes(dm["envelopes"], dm["to"], "alice"), dm["envelopes"])
        reply = self.one(id=dm["id"], ok=True)
        stored = Message(id=reply["msg_id"], ts=parse_iso_ms(reply["ts"]), sender="alice",
                         text=None, to=dm["to"], sender_account="alice",
                         sender_device=dm["device"], envelopes=dm["envelopes"])
        self.assertEqual(self.one(event="message"), {"event": "message", **stored.to_event()})

    def test_each_device_opens_its_envelope_and_the_sender_any(self) -> None:
        dm = self.one(op="dm")
        sender = ("alice", dm["device"])
        for e in dm["envelopes"]:
            reader = (e["user"], e["device"])
            box = Box(self.private[reader], PublicKey(b64decode(self.public[sender])))
            plain = box.decrypt(b64decode(e["ciphertext"]), b64decode(e["nonce"]))
            self.assertEqual(plain.decode(), TEXT)
            back = Box(self.private[sender], PublicKey(b64decode(self.public[reader])))
            self.assertEqual(back.decrypt(b64decode(e["ciphertext"]), b64decode(e["nonce"]))
                             .decode(), TEXT)

    def test_the_terminal_clients_key_ring_reads_it_as_the_doc_says(self) -> None:
        event = self.one(event="message")
        directory = {
            user: {"user": user, "devices": [
                {"device": d, "public_key": self.public[(u, d)], "label": None}
                for (u, d) in self.public if u == user]}
            for user in ("alice", "bob")
        }
        folder = Path(tempfile.mkdtemp(prefix="pingchat-e2e-doc-"))
        self.addCleanup(shutil.rmtree, folder, True)

        def ring(user: str, device: str, identity: Identity | None = None) -> KeyRing:
            identity = identity or Identity(self.private[(user, device)])
            return KeyRing(user, identity, device,
                           PeerKeys(ConfigDir(folder), folder / f"{user}-{device}.json"),
                           lambda op, **a: succeed(directory[a["user"]]),
                           lambda *note: None)

        for user, device in self.private:
            opened = self.successResultOf(ring(user, device).open(event))
            self.assertEqual(opened.text, TEXT, (user, device))
        bob_tomorrow = ring("bob", "NewDeviceOfBob01", Identity.generate())
        self.assertEqual(self.successResultOf(bob_tomorrow.open(event)).note, OTHER_DEVICES)
