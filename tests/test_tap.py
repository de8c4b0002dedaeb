"""``twistd pingchat`` options, the TOML config file, and the plugin."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from pingchat.tap import Options


class OptionsTests(SynchronousTestCase):
    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def config(self, text: str) -> str:
        d = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, d, True)
        path = d / "pingchat.toml"
        path.write_text(text)
        return str(path)

    def test_defaults_match_the_spec(self) -> None:
        s = self.parse().settings
        self.assertEqual(s.data_dir, Path("pingchat-data"))
        self.assertEqual(s.chat, ("ssl:7464",))
        self.assertEqual(s.irc, ("tcp:6667:interface=127.0.0.1",))
        self.assertEqual(s.ircs, ("ssl:6697",))
        self.assertEqual(s.manhole, ("tcp:2222:interface=127.0.0.1",))
        self.assertEqual(s.web, ("tcp:8080:interface=127.0.0.1", "ssl:8443"))
        self.assertEqual((s.web_origin, s.trusted_proxy), ((), ()))
        self.assertEqual(s.metrics, ("tcp:9464:interface=127.0.0.1",))
        self.assertEqual((s.guests, s.min_password_length), (False, 8))

    def test_the_metrics_listener_repeats_is_disabled_by_none_and_read_from_the_file(
        self,
    ) -> None:
        s = self.parse("--metrics", "tcp:1", "--metrics", "tcp6:1:interface=\\:\\:1").settings
        self.assertEqual(s.metrics, ("tcp:1", "tcp6:1:interface=\\:\\:1"))
        self.assertEqual(self.parse("--metrics", "none").settings.metrics, ())
        s = self.parse("--config", self.config('metrics = "tcp:9999:interface=::1"\n')).settings
        self.assertEqual(s.metrics, ("tcp:9999:interface=::1",))
        s = self.parse("--config", self.config('metrics = "none"\n')).settings
        self.assertEqual(s.metrics, ())
        with self.assertRaises(usage.UsageError):
            self.parse("--metrics", "none", "--metrics", "tcp:1")

    def test_listeners_repeat_and_none_disables(self) -> None:
        s = self.parse("--chat", "ssl:1", "--chat", "ssl:2:interface=::1", "--irc", "none").settings
        self.assertEqual(s.chat, ("ssl:1", "ssl:2:interface=::1"))
        self.assertEqual(s.irc, ())

    def test_web_options_repeat_and_are_validated(self) -> None:
        s = self.parse(
            "--web", "tcp:8080", "--web-origin", "https://gamja.example",
            "--web-origin", "http://localhost:3000", "--trusted-proxy", "127.0.0.1",
            "--trusted-proxy", "10.0.0.0/8",
        ).settings
        self.assertEqual(s.web, ("tcp:8080",))
        self.assertEqual(s.web_origin, ("https://gamja.example", "http://localhost:3000"))
        self.assertEqual(s.trusted_proxy, ("127.0.0.1", "10.0.0.0/8"))
        self.assertEqual(self.parse("--web", "none").settings.web, ())
        path = self.config('web = "none"\nweb-origin = ["https://a.example"]\n'
                           'trusted-proxy = "::1"\n')
        s = self.parse("--config", path).settings
        self.assertEqual(s.web, ())
        self.assertEqual((s.web_origin, s.trusted_proxy), (("https://a.example",), ("::1",)))
        for argv in (
            ("--web-origin", "gamja.example"),
            ("--web-origin", "https://gamja.example/path"),
            ("--trusted-proxy", "proxy.example"),
            ("--trusted-proxy", "10.0.0.0/40"),
        ):
            with self.assertRaises(usage.UsageError, msg=str(argv)):
                self.parse(*argv)

    def test_proxy_listeners_on_the_doors_with_a_trusted_proxy(self) -> None:
        s = self.parse(
            "--chat", "haproxy:ssl:7464", "--ircs", "HAProxy:ssl:6697",
            "--irc", "haproxy:tcp:6667:interface=10.0.0.11", "--web", "haproxy:tcp:8080",
            "--trusted-proxy", "10.0.0.10",
        ).settings  # fmt: skip
        self.assertEqual(s.chat, ("haproxy:ssl:7464",))
        self.assertEqual(s.ircs, ("HAProxy:ssl:6697",))
        self.assertEqual(s.irc, ("haproxy:tcp:6667:interface=10.0.0.11",))
        self.assertEqual(s.web, ("haproxy:tcp:8080",))
        path = self.config('chat = "haproxy:ssl:7464"\ntrusted-proxy = ["10.0.0.10"]\n')
        self.assertEqual(self.parse("--config", path).settings.chat, ("haproxy:ssl:7464",))
        trusted = ("--trusted-proxy", "10.0.0.10")
        for argv, why in (
            (("--chat", "haproxy:tcp:7464", *trusted), "TLS only"),
            (("--ircs", "haproxy:tcp:6697", *trusted), "IRC over TLS"),
            (("--irc", "haproxy:tcp:6667"), "--trusted-proxy"),
            (("--chat", "haproxy:ssl:7464"), "--trusted-proxy"),
            (("--manhole", "haproxy:tcp:2222", *trusted), "doors clients reach"),
            (("--metrics", "HAPROXY:tcp:9464", *trusted), "doors clients reach"),
        ):
            with self.assertRaises(usage.UsageError, msg=str(argv)) as e:
                self.parse(*argv)
            self.assertIn(why, str(e.exception))

    def test_toml_file_and_command_line_wins(self) -> None:
        path = self.config(
            'data-dir = "/tmp/x"\nmin_password_length = 12\nchat = ["ssl:9000"]\n'
            'guests = true\nserver-name = "chat.example"\n'
        )
        s = self.parse("--config", path, "--min-password-length", "10").settings
        self.assertEqual(s.data_dir, Path("/tmp/x"))
        self.assertEqual(s.min_password_length, 10)
        self.assertEqual(s.chat, ("ssl:9000",))
        self.assertTrue(s.guests)
        self.assertEqual(s.server_name, "chat.example")

    def test_bad_input_is_a_clear_usage_error(self) -> None:
        bad = [
            ("--min-password-length", "many"),
            ("--rate", "-1"),
            ("--sqlite-synchronous", "sometimes"),
            ("--tls-cert", "/x.pem"),
            ("--config", "/nonexistent/pingchat.toml"),
            ("--config", self.config("unknown_option = 1\n")),
            ("--config", self.config("this is not toml")),
            ("--chat", "none", "--chat", "ssl:1"),
            ("--chat", "tcp:7464"),  # the native protocol is TLS only
            ("--ircs", "tcp:6697"),
        ]
        for argv in bad:
            with self.assertRaises(usage.UsageError, msg=str(argv)):
                self.parse(*argv)

    def test_plugin_is_found_by_twistd(self) -> None:
        import twisted.plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertIn("pingchat", makers)
        self.assertIs(makers["pingchat"].options, Options)

    def test_data_dir_from_command_line_then_environment_then_config_file(self) -> None:
        path = self.config('data_dir = "/from/file"\n')
        environ = {k: v for k, v in os.environ.items() if k != "PINGCHAT_DATA_DIR"}
        self.patch(os, "environ", environ)
        self.assertEqual(self.parse("--config", path).settings.data_dir, Path("/from/file"))
        self.assertEqual(self.parse().settings.data_dir, Path("pingchat-data"))
        environ["PINGCHAT_DATA_DIR"] = "/from/env"
        self.assertEqual(self.parse("--config", path).settings.data_dir, Path("/from/env"))
        self.assertEqual(
            self.parse("--config", path, "--data-dir", "/line").settings.data_dir, Path("/line")
        )

    def test_registration_policy(self) -> None:
        self.assertEqual(self.parse().settings.registration, "open")
        self.assertEqual(self.parse("--registration", "closed").settings.registration, "closed")
        path = self.config('registration = "invite"\n')
        self.assertEqual(self.parse("--config", path).settings.registration, "invite")
        with self.assertRaises(usage.UsageError):
            self.parse("--registration", "maybe")
