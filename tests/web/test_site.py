"""The HTTP side: security headers everywhere, the static folder, caching, errors."""

from __future__ import annotations

import gzip
import os
from io import BytesIO

from twisted.web.test.requesthelper import DummyChannel

from pingchat.web.site import CONTENT_SECURITY_POLICY, HTTP_IDLE_TIMEOUT, WebRequest
from tests.web.helpers import HTTPConnection, WebTestCase

SECURITY = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeaderTests(WebTestCase):
    proxies = ("127.0.0.1",)

    def assertSecure(self, headers: dict[str, str], https: bool = False) -> None:
        for name, value in SECURITY.items():
            self.assertEqual(headers.get(name), value, name)
        self.assertIn("camera=()", headers["permissions-policy"])
        if https:
            self.assertEqual(headers.get("strict-transport-security"), "max-age=31536000")
        else:
            self.assertNotIn("strict-transport-security", headers)

    def test_every_kind_of_response_carries_the_headers(self) -> None:
        responses = {
            "file": self.get("/"),
            "404": self.get("/missing.js"),
            "405": self.get("/", method="POST", body=b"x=1"),
            "ws 400 (no upgrade)": self.get("/ws"),
            "ws 405": self.get("/irc", method="PUT"),
            "ws 403 (origin)": self.get(
                "/ws",
                {
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13",
                    "Origin": "https://evil.example",
                },
            ),
        }
        expected = {
            "file": 200,
            "404": 404,
            "405": 405,
            "ws 400 (no upgrade)": 400,
            "ws 405": 405,
            "ws 403 (origin)": 403,
        }
        for what, (status, headers, _) in responses.items():
            self.assertEqual(status, expected[what], what)
            self.assertSecure(headers)

    def test_the_policy_allows_no_inline_script_or_foreign_source(self) -> None:
        directives = dict(
            d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";") if d.strip()
        )
        self.assertEqual(directives["default-src"], "'none'")
        self.assertEqual(directives["script-src"], "'self'")
        self.assertEqual(directives["frame-ancestors"], "'none'")
        self.assertNotIn("unsafe", CONTENT_SECURITY_POLICY)

    def test_hsts_only_over_https(self) -> None:
        self.assertSecure(self.get("/", secure=True)[1], https=True)
        self.assertSecure(self.get("/ws", secure=True)[1], https=True)
        self.assertSecure(self.get("/")[1], https=False)

    def test_hsts_when_a_trusted_proxy_says_the_browser_used_https(self) -> None:
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        self.assertSecure(self.get("/", headers)[1], https=True)
        # The same claim from anyone else is ignored.
        self.assertSecure(self.get("/", headers, peer="198.51.100.7")[1], https=False)

    def test_internal_errors_carry_them_too_and_show_no_traceback(self) -> None:
        def boom(request: object) -> bytes:
            raise RuntimeError("secret detail")

        self.patch(self.site.resource.static, "render", boom)
        status, headers, body = self.get("/")
        self.assertEqual(status, 500)
        self.assertSecure(headers)
        self.assertNotIn(b"secret detail", body)
        self.flushLoggedErrors(RuntimeError)


class StaticTests(WebTestCase):
    def test_index_at_the_root(self) -> None:
        status, headers, body = self.get("/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(body, (self.static / "index.html").read_bytes())
        self.assertEqual(self.get("/index.html")[2], body)

    def test_content_types(self) -> None:
        for path, ctype in [
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/mod.mjs", "text/javascript; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/icon.svg", "image/svg+xml"),
            ("/manifest.webmanifest", "application/manifest+json"),
            ("/logo.png", "image/png"),
            ("/sub/page.html", "text/html; charset=utf-8"),
        ]:
            status, headers, _ = self.get(path)
            self.assertEqual((status, headers["content-type"]), (200, ctype), path)

    def test_nothing_outside_the_folder_hidden_or_of_unknown_type(self) -> None:
        for path in (
            "/.secret",
            "/notes.orig",
            "/sub",
            "/sub/",
            "/../pyproject.toml",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/sub/..%2f..%2fsecret",
            "/a%00.js",
            "//app.js",
            "/ws2",
        ):
            status, headers, body = self.get(path)
            self.assertEqual(status, 404, path)
            self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
            self.assertNotIn(b"<a href", body)  # no directory listing

    def test_text_is_gzipped_when_accepted_and_images_are_not(self) -> None:
        status, headers, body = self.get("/app.js", {"Accept-Encoding": "gzip, deflate, br"})
        self.assertEqual((status, headers["content-encoding"]), (200, "gzip"))
        self.assertEqual(gzip.decompress(body), (self.static / "app.js").read_bytes())
        self.assertEqual(headers["vary"], "Accept-Encoding")
        status, headers, body = self.get("/app.js")
        self.assertNotIn("content-encoding", headers)
        self.assertEqual(body, (self.static / "app.js").read_bytes())
        status, headers, body = self.get("/logo.png", {"Accept-Encoding": "gzip"})
        self.assertNotIn("content-encoding", headers)
        self.assertEqual(body, (self.static / "logo.png").read_bytes())

    def test_revalidated_every_time_with_an_etag(self) -> None:
        _, headers, _ = self.get("/app.js")
        self.assertEqual(headers["cache-control"], "no-cache")
        etag = headers["etag"]
        self.assertTrue(headers["last-modified"])
        status, headers2, body = self.get("/app.js", {"If-None-Match": etag})
        self.assertEqual((status, body), (304, b""))
        self.assertIn("content-security-policy", headers2)
        # Either form of the tag, in a list.
        self.assertEqual(
            self.get("/app.js", {"If-None-Match": f'"x", {etag.removeprefix("W/")}'})[0], 304
        )
        self.assertEqual(self.get("/app.js", {"If-None-Match": '"other"'})[0], 200)
        self.assertEqual(
            self.get("/app.js", {"If-Modified-Since": headers["last-modified"]})[0], 304
        )

    def test_a_changed_file_gets_a_new_etag_and_is_served_again(self) -> None:
        _, headers, _ = self.get("/app.js")
        path = self.static / "app.js"
        path.write_text("export const a = 2;\n")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
        status, headers2, body = self.get("/app.js", {"If-None-Match": headers["etag"]})
        self.assertEqual((status, body), (200, b"export const a = 2;\n"))
        self.assertNotEqual(headers2["etag"], headers["etag"])

    def test_head_has_the_headers_and_no_body(self) -> None:
        status, headers, body = self.get("/logo.png", method="HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(headers["content-type"], "image/png")
        self.assertEqual(headers["content-length"], str((self.static / "logo.png").stat().st_size))
        self.assertEqual(self.get("/missing.png", method="HEAD")[0], 404)

    def test_only_get_and_head(self) -> None:
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            status, headers, body = self.get("/app.js", method=method, body=b"data")
            self.assertEqual(status, 405, method)
            self.assertEqual(headers["allow"], "GET, HEAD")
            self.assertIn(method.encode(), body)

    def test_a_request_body_is_neither_kept_nor_spooled(self) -> None:
        request = WebRequest(DummyChannel())
        request.gotLength(10 * 1024 * 1024)  # Twisted's would spool this to a temporary file
        for _ in range(100):
            request.handleContentChunk(b"x" * 65536)
        self.assertIsInstance(request.content, BytesIO)
        self.assertEqual(request.content.getvalue(), b"")
        status, _, _ = self.get("/app.js", method="POST", body=b"x" * 200_000)
        self.assertEqual(status, 405)

    def test_idle_http_connections_are_closed(self) -> None:
        http = HTTPConnection(self.site)
        self.clock.advance(HTTP_IDLE_TIMEOUT + 1)
        self.assertTrue(http.transport.disconnecting)

    def test_no_access_log(self) -> None:
        lines: list[str] = []
        self.site.startFactory()
        self.patch(self.site, "_logFile", type("F", (), {"write": lines.append})())
        self.get("/")
        self.assertEqual(lines, [])
        # (HTTPFactory's log keeps a clock ticking every second for its dates.)
        self.assertEqual(self.clock.getDelayedCalls(), [])
