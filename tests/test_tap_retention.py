"""The retention and deletion options: parsed, checked, wired."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pingchat.tap import Options
from pingchat.testing import make_server

SHIPPED = Path(__file__).parents[1] / "etc" / "pingchat.toml"


class RetentionOptionsTests(SynchronousTestCase):
    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults_keep_history_forever_and_remove_a_deleted_account_s_messages(self) -> None:
        s = self.parse().settings
        self.assertEqual((s.history_days, s.offline_days, s.deleted_messages), (0, 30, "remove"))

    def test_values_and_refusals(self) -> None:
        s = self.parse(
            "--history-days", "90", "--offline-days", "0", "--deleted-messages", "Anonymize"
        ).settings
        self.assertEqual((s.history_days, s.offline_days, s.deleted_messages),
                         (90, 0, "anonymise"))
        for argv in (
            ("--history-days", "-1"),
            ("--offline-days", "soon"),
            ("--deleted-messages", "shred"),
        ):
            with self.assertRaises(usage.UsageError, msg=str(argv)):
                self.parse(*argv)

    def test_the_shipped_config_file_is_valid_and_says_the_defaults(self) -> None:
        s = self.parse("--config", str(SHIPPED)).settings
        self.assertEqual((s.history_days, s.offline_days, s.deleted_messages), (0, 30, "remove"))

    def test_the_server_is_wired_with_them(self) -> None:
        data_dir = Path(tempfile.mkdtemp(prefix="pingchat-test-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        server = make_server(
            data_dir, history_days=7.0, offline_days=2.0, deleted_messages="anonymise"
        )
        self.addCleanup(server.db.stop)
        retention = server.top.getServiceNamed("retention")
        self.assertEqual((retention.history_days, retention.offline_days), (7.0, 2.0))
        self.assertEqual(server.accounts.eraser.mode, "anonymise")
        self.assertIsNotNone(server.top.getServiceNamed("deletion-watcher"))
