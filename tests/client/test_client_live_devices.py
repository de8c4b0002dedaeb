"""Keys per device end to end over real TLS sockets: the real server in-process
(writer thread, bcrypt pool, TLS on 127.0.0.1:0) and three real terminal
clients (their connections, key files and device ids), two of them alice's."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from pingchat.client.app import ChatClient
from pingchat.client.configdir import ConfigDir, ServerAddress
from pingchat.client.e2e import Identity
from pingchat.client.testing import FakeFrontend
from pingchat.client.trust import Insecure
from tests.live import PASSWORD, LiveServer


class Device:
    """A terminal client install (its own config dir) logged in as *user*."""

    def __init__(self, case: LiveDeviceTests, user: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pingchat-live-device-"))
        case.addCleanup(shutil.rmtree, self.dir, True)
        address = ServerAddress("127.0.0.1", case.port.getHost().port)
        self.client = ChatClient(reactor, address, ConfigDir(self.dir), Insecure(),
                                 user_hint=user)
        self.frontend = FakeFrontend(PASSWORD)
        self.client.start(self.frontend)
        case.addCleanup(self.client.connector.closed)
        case.addCleanup(self.client.quit)

    def text(self) -> str:
        return self.frontend.text()

    def shows(self, text: str) -> bool:
        return text in self.text()


class LiveDeviceTests(LiveServer):
    @inlineCallbacks
    def wait_for(self, device: Device, text: str) -> Any:
        yield self.until(lambda: device.shows(text))
        self.assertIn(text, device.text())

    @inlineCallbacks
    def test_two_devices_of_alice_and_one_of_bob_read_each_others_dms(self) -> Any:
        for name in ("alice", "bob"):
            yield self.server.accounts.register(name, PASSWORD, "127.0.0.1")
        alice1 = Device(self, "alice")
        yield self.wait_for(alice1, "Published your encryption key for this device")
        alice2 = Device(self, "alice")
        yield self.wait_for(alice2, "Published your encryption key for this device")
        bob = Device(self, "bob")
        yield self.wait_for(bob, "Published your encryption key for this device")
        _, keys = yield self.server.store.device_keys("alice")
        self.assertEqual(len(keys), 2)

        alice1.client.input("/msg bob the key is under the mat")
        yield self.wait_for(bob, "@alice <alice> [e2e] the key is under the mat")
        yield self.wait_for(alice2, "@bob <alice> [e2e] the key is under the mat")

        bob.client.input("/msg alice thanks, found it")
        for device in (alice1, alice2):
            yield self.wait_for(device, "@bob <bob> [e2e] thanks, found it")

        # The server holds envelopes it cannot read, one per device.
        account = yield self.server.store.get_account("alice")
        [first, reply] = yield self.server.store.dm_history(account.id, "bob")
        for m in (first, reply):
            self.assertIsNone(m.text)
            self.assertEqual(len(m.envelopes), 2)  # the two devices that did not send it
        self.assertNotIn("mat", repr(first))

        # bob's device gets a new key (a reinstall, or an impostor): alice is warned.
        assert bob.client.dms.keyring is not None and bob.client.session.proto is not None
        new = Identity.generate()
        yield bob.client.session.proto.request("key.publish", public_key=new.public_key,
                                               device=bob.client.dms.keyring.device,
                                               label=bob.client.dms.keyring.label)
        alice1.client.input("/msg bob is that still you?")
        yield self.wait_for(alice1, "WARNING: bob's encryption key has CHANGED on the device")
