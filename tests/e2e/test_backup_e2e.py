"""End to end: ``pingchat backup`` of a running server under write load, restored
into another data dir and served by another server.

The promise tested: every message whose ``say`` was acknowledged before
``pingchat backup`` started is in the restored server's history; nothing is
there that was never acknowledged. (Messages acknowledged while the backup
ran may or may not be in it: the copy is the database as of a moment during
the backup.)
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from twisted.trial.unittest import TestCase

from tests.client import LineClient
from tests.e2e.harness import PINGCHAT, ServerProcess, wait_until

WRITERS = 3
PASSWORD = "correct horse"


def fingerprint(port: int) -> str:
    c = LineClient("127.0.0.1", port)
    try:
        der = c.sock.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()
    finally:
        c.close()


class BackupUnderLoadTests(TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="pingchat-backup-e2e-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # --rate 0: the writers are limited by their round trips, not the throttle.
        self.server = ServerProcess("--rate", "0").start()
        self.addCleanup(self.server.cleanup)
        self.clients: list[LineClient] = []
        self.addCleanup(lambda: [c.close() for c in self.clients])

    def writer(self, name: str) -> LineClient:
        c = LineClient("127.0.0.1", self.server.port())
        self.clients.append(c)
        self.assertTrue(c.request("register", user=name, password=PASSWORD)["ok"])
        self.assertTrue(c.request("login", user=name, password=PASSWORD)["ok"])
        self.assertTrue(c.request("join", room="#load")["ok"])
        return c

    def test_restore_of_a_backup_under_load_has_every_message_acked_before_it(self) -> None:
        writers = [self.writer(f"writer{i}") for i in range(WRITERS)]
        acked: list[tuple[float, int]] = []  # (when the ack was read, msg_id)
        errors: list[object] = []
        stop = threading.Event()

        def write(c: LineClient, n: int) -> None:
            i = 0
            try:
                while not stop.is_set():
                    reply = c.request("say", room="#load", text=f"w{n} line {i}")
                    if not reply.get("ok"):
                        errors.append(reply)
                        return
                    acked.append((time.monotonic(), reply["msg_id"]))
                    i += 1
            except Exception as e:  # reported below, not lost in the thread
                errors.append(e)

        threads = [threading.Thread(target=write, args=(c, n)) for n, c in enumerate(writers)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(acked) >= 300 or errors, 30, what="300 acknowledged messages")
            started = time.monotonic()
            made = subprocess.run(
                [PINGCHAT, "--data-dir", str(self.server.data_dir), "backup", str(self.tmp)],
                capture_output=True,
                text=True,
                env=self.server.env,
                timeout=120,
            )
            ended = time.monotonic()
            count = len(acked)
            wait_until(lambda: len(acked) > count + 100 or errors, 30, what="more writes")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(made.returncode, 0, made.stderr)
        before = {msg_id for when, msg_id in acked if when < started}
        during = [msg_id for when, msg_id in acked if started <= when <= ended]
        everything = {msg_id for _, msg_id in acked}
        self.assertTrue(during, "no message was acknowledged while the backup ran")

        (archive,) = self.tmp.glob("pingchat-backup-*.tar.gz")
        restored_dir = self.tmp / "restored"
        done = subprocess.run(
            [PINGCHAT, "restore", str(archive), "--data-dir", str(restored_dir)],
            capture_output=True,
            text=True,
            env=self.server.env,
            timeout=120,
        )
        self.assertEqual(done.returncode, 0, done.stderr)

        second = ServerProcess(data_dir=restored_dir).start()
        self.addCleanup(second.cleanup)
        self.assertEqual(fingerprint(second.port()), fingerprint(self.server.port()))
        reader = LineClient("127.0.0.1", second.port())
        self.clients.append(reader)
        self.assertTrue(reader.request("login", user="writer0", password=PASSWORD)["ok"])
        restored: set[int] = set()
        oldest = None
        while True:
            page = reader.request(
                "history", room="#load", limit=200, **({"before": oldest} if oldest else {})
            )
            self.assertTrue(page["ok"], page)
            ids = [m["msg_id"] for m in page["messages"]]
            restored.update(ids)
            if len(ids) < 200:
                break
            oldest = ids[0]
        self.assertEqual(sorted(before - restored), [], "acknowledged before the backup, lost")
        self.assertEqual(sorted(restored - everything), [], "never acknowledged, yet restored")
