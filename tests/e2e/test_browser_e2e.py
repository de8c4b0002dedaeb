"""End to end in a real browser: headless Chromium (Debian's) runs the web
client against ``twistd -n pingchat`` in a subprocess, beside irssi, the
terminal client and native clients (tests/e2e/browser.py says how the browser
is driven)."""

from __future__ import annotations

import http.server
import json
import shutil
import socketserver
import sqlite3
import tempfile
import threading
import time
from base64 import b64decode, b64encode
from pathlib import Path
from typing import Any

import pyotp
from nacl.public import Box, PrivateKey, PublicKey

from bench.web_first_load import measure_files
from tests.client import LineClient
from tests.e2e.browser import (
    PASSWORD,
    RECOVERY_CODE,
    BrowserTestCase,
    expect,
    join,
    log_in,
    message,
    native,
    send,
)
from tests.e2e.harness import PINGCHAT, ServerProcess, wait_until
from tests.e2e.irc_clients import Irssi
from tests.e2e.terminal import Tmux, free_port


class WebServerTestCase(BrowserTestCase):
    """A server with the native door (TLS) and the web door (plain HTTP)."""

    def start_server(self, **options: Any) -> ServerProcess:
        server = ServerProcess(**{"web": "tcp:0:interface=127.0.0.1", **options}).start()
        self.addCleanup(server.cleanup)
        return server

    def setUp(self) -> None:
        self.server = self.start_server()
        self.url = f"http://localhost:{self.server.port('WebSite')}/"
        self.native_port = self.server.port()

    def native(self, user: str, register: bool = True) -> Any:
        client = native(self.native_port, user, register)
        self.addCleanup(client.close)
        return client


class AccountTests(WebServerTestCase):
    def test_registering_in_the_page_shows_ten_working_recovery_codes(self) -> None:
        page = self.open_page(self.url)
        page.locator("#tab-register").click()
        form = page.locator("#auth-panel form")
        form.get_by_label("User name").fill("alice")
        form.get_by_label("Password", exact=True).fill(PASSWORD)
        form.get_by_label("Password again").fill(PASSWORD)
        form.get_by_role("button", name="Create account").click()

        dialog = page.get_by_role("dialog", name="Account alice created: your recovery codes")
        codes = dialog.locator("ol.codes code")
        expect(codes).to_have_count(10)
        shown = codes.all_inner_texts()
        self.assertEqual(len(set(shown)), 10)
        for code in shown:
            self.assertRegex(code, RECOVERY_CODE)
        # The page goes on only once the user says the codes are saved.
        go = dialog.get_by_role("button", name="Continue")
        expect(go).to_be_disabled()
        dialog.get_by_label("I have saved these codes somewhere safe").check()
        go.click()
        expect(page.locator(".me-name")).to_have_text("alice")
        expect(page.locator("dialog")).to_have_count(0)  # the codes are gone from the page

        # The codes are the server's: one resets the password over the native protocol...
        bob = self.native("bob")
        reply = bob.request("recover", user="alice", code=shown[3], new_password="new secret 1")
        self.assertTrue(reply["ok"], reply)
        self.assertEqual(reply["recovery_codes_left"], 9)
        again = bob.request("recover", user="alice", code=shown[3], new_password="new secret 2")
        self.assertFalse(again["ok"])
        # ... and another one through the page's "Forgot password", which logs in.
        page = self.open_page(self.url)
        page.locator("#tab-recover").click()
        form = page.locator("#auth-panel form")
        form.get_by_label("User name").fill("alice")
        form.get_by_label("Recovery code").fill(shown[7])
        form.get_by_label("New password", exact=True).fill("new secret 3")
        form.get_by_label("New password again").fill("new secret 3")
        form.get_by_role("button", name="Set the new password").click()
        expect(page.locator(".me-name")).to_have_text("alice")
        expect(page.locator(".toast")).to_contain_text("Recovery codes left: 8")
        check = LineClient("127.0.0.1", self.native_port)
        self.addCleanup(check.close)
        self.assertTrue(check.request("login", user="alice", password="new secret 3")["ok"])

    def test_a_reload_resumes_the_session_and_the_open_conversation(self) -> None:
        self.native("alice")
        page = self.open_page(self.url)
        log_in(page, "alice")
        join(page, "#first")
        join(page, "#second")
        send(page, "said before the reload")
        expect(message(page, "alice", "said before the reload")).to_be_visible()
        page.locator("nav .conv", has_text="#first").click()
        expect(page.locator(".conv-title")).to_have_text("#first")
        page.locator("nav .conv", has_text="#second").click()
        expect(page.locator(".conv-title")).to_have_text("#second")

        page.reload()
        expect(page.locator(".me-name")).to_have_text("alice")
        expect(page.locator(".conn")).to_contain_text("Connected")
        expect(page.locator("#tab-login")).to_have_count(0)
        expect(page.locator(".conv-title")).to_have_text("#second")
        expect(message(page, "alice", "said before the reload")).to_be_visible()
        # The resumed session is a live one: it can still talk.
        send(page, "and after it")
        expect(message(page, "alice", "and after it")).to_be_visible()
        bob = self.native("bob")
        self.assertTrue(bob.request("join", room="#second")["ok"])
        history = bob.request("history", room="#second")
        self.assertEqual([m["text"] for m in history["messages"]],
                         ["said before the reload", "and after it"])


# What the page keeps in the browser's storage and IndexedDB, as text.
STORED = """
async () => {
  const kv = await new Promise((resolve, reject) => {
    const req = indexedDB.open("pingchat", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("kv");
    req.onerror = () => reject(req.error);
    req.onsuccess = () => {
      const tx = req.result.transaction("kv", "readonly");
      const keys = tx.objectStore("kv").getAllKeys();
      tx.oncomplete = () => { resolve(keys.result.map(String)); req.result.close(); };
    };
  });
  const of = (s) => Object.keys(s).map((k) => k + "=" + s.getItem(k));
  return { kv, local: of(localStorage), session: of(sessionStorage) };
}
"""

IN_DIALOG = "() => !!document.activeElement?.closest('dialog.delete-account')"
FOCUSED = "() => document.activeElement?.outerHTML.slice(0, 80)"


class DeleteAccountTests(WebServerTestCase):
    def test_an_account_deleted_in_the_page_is_gone_and_its_name_reserved(self) -> None:
        alice = self.native("alice")
        bob = self.native("bob")
        self.assertTrue(bob.request("dm", to="alice", text="meet at noon")["ok"])
        page = self.open_page(self.url)
        log_in(page, "alice", remember=True)
        # Two-factor authentication turned on elsewhere: the deletion asks for a code.
        secret = alice.request("otp.setup")["secret"]
        totp = pyotp.TOTP(secret)
        self.assertTrue(alice.request("otp.enable", code=totp.now())["ok"])
        stored = page.evaluate(STORED)
        self.assertIn("device:alice", stored["kv"])
        self.assertTrue(any("alice" in item for item in stored["local"]), stored)

        page.get_by_role("button", name="Settings").click()
        settings = page.get_by_role("dialog", name="Settings")
        opener = settings.get_by_role("button", name="Delete account…")
        opener.click()
        dialog = page.get_by_role("dialog", name="Delete your account")
        expect(dialog).to_contain_text("This cannot be undone.")
        expect(dialog).to_contain_text("every direct message you sent or received")
        expect(dialog).to_contain_text("can register it for 30 days")
        self.assertIn("cannot be undone",
                      dialog.evaluate("d => document.getElementById("
                                      "d.getAttribute('aria-describedby')).textContent"))
        confirm_name = dialog.get_by_label("Type the account's name, alice, to confirm")
        expect(confirm_name).to_be_focused()
        # Escape cancels, and the focus goes back to the button that opened it.
        page.keyboard.press("Escape")
        expect(dialog).to_have_count(0)
        expect(opener).to_be_focused()
        opener.press("Enter")
        expect(confirm_name).to_be_focused()
        # Tab and Shift+Tab go round the dialog's controls and never leave it.
        for key in ["Tab"] * 6 + ["Shift+Tab"] * 6:
            page.keyboard.press(key)
            self.assertTrue(page.evaluate(IN_DIALOG), f"{key}: {page.evaluate(FOCUSED)}")

        error = dialog.get_by_role("alert")
        confirm_name.fill("alicia")
        dialog.get_by_label("Your password").fill(PASSWORD)
        dialog.get_by_role("button", name="Delete my account").click()
        expect(error).to_have_text("To confirm, type the name of the account, alice.")
        confirm_name.fill("Alice")
        dialog.get_by_label("Your password").fill("not the password")
        dialog.get_by_label("Your password").press("Enter")
        expect(error).to_have_text("Wrong password or code: the account was not deleted.")
        dialog.get_by_label("Your password").fill(PASSWORD)
        dialog.get_by_role("button", name="Delete my account").click()
        expect(error).to_contain_text("two-factor authentication")
        code = dialog.get_by_label("Code from your authenticator app")
        expect(code).to_be_focused()
        code.fill(totp.at(time.time() + 30))  # the next code: the current one was used
        code.press("Enter")

        expect(page.locator(".auth-message")).to_contain_text("Your account was deleted.")
        expect(page.locator(".auth-message")).to_contain_text(
            "The name alice cannot be registered again for 30 days")
        expect(page.locator("dialog")).to_have_count(0)
        expect(page.locator("#tab-login")).to_be_visible()
        stored = page.evaluate(STORED)
        self.assertEqual([k for k in stored["kv"] if "alice" in k], [], stored)
        self.assertEqual([k for k in stored["local"] + stored["session"] if "alice" in k], [],
                         stored)

        # Over the native protocol: the account is gone, its name reserved.
        check = LineClient("127.0.0.1", self.native_port)
        self.addCleanup(check.close)
        login = check.request("login", user="alice", password=PASSWORD)
        self.assertEqual(login["error"]["code"], "auth_failed", login)
        again = check.request("register", user="alice", password=PASSWORD)
        self.assertEqual(again["error"]["code"], "invalid_name", again)
        self.assertEqual(page.errors, [])


class FirstLoadTests(WebServerTestCase):
    def test_the_bench_counts_what_chromium_fetches_on_the_first_load(self) -> None:
        page = self.context().new_page()
        fetched: list[str] = []
        page.on("request", lambda request: fetched.append(request.url))
        page.goto(self.url, wait_until="networkidle")
        expect(page.locator("#tab-login")).to_be_visible()
        page.wait_for_load_state("networkidle")
        base = self.url.rstrip("/")
        paths = sorted({url.removeprefix(base).lstrip("/") or "index.html" for url in fetched})
        self.assertEqual(paths, sorted(f.path for f in measure_files()))


class _OnePage(http.server.BaseHTTPRequestHandler):
    """Serves one HTML page (another site's) at every path."""

    body = b""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


PROBE = """
(url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onmessage = (e) => { resolve("message: " + e.data); ws.close(); };
  ws.onerror = () => resolve("error");
  ws.onclose = (e) => resolve("closed " + e.code);
})
"""


class OriginTests(WebServerTestCase):
    def other_site(self) -> str:
        """Another origin: a tiny HTTP server on another port of this machine."""
        handler = type("Handler", (_OnePage,), {"body": b"<!doctype html><title>elsewhere</title>"})
        httpd = socketserver.TCPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 5)
        self.addCleanup(httpd.server_close)
        self.addCleanup(httpd.shutdown)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    def test_a_page_of_another_origin_cannot_open_the_websockets(self) -> None:
        port = self.server.port("WebSite")
        ws = f"ws://localhost:{port}/ws"
        # The server's own page connects and is greeted...
        own = self.open_page(self.url)
        self.assertRegex(own.evaluate(PROBE, ws), r'^message: \{"event": ?"hello"')
        # ... a page from elsewhere, in the same browser, is refused (HTTP 403).
        other = self.open_page(self.other_site())
        expect(other).to_have_title("elsewhere")
        self.assertEqual(other.evaluate(PROBE, ws), "error")
        self.assertEqual(other.evaluate(PROBE, f"ws://localhost:{port}/irc"), "error")
        # The server's output is read as it comes: wait for both lines.
        def refusals() -> list[str]:
            return [line for line in self.server.log if "refused a WebSocket" in line]

        wait_until(lambda: len(refusals()) >= 2, what="the server to log both refusals")
        refused = refusals()
        self.assertEqual(len(refused), 2, self.server.output())
        self.assertIn("/ws", refused[0])
        self.assertRegex(refused[0], r"origin.*http://127\.0\.0\.1:\d+")


class RoomWithIrssiTests(WebServerTestCase):
    def setUp(self) -> None:
        self.server = self.start_server(ircs="ssl:0:interface=127.0.0.1")
        self.url = f"http://localhost:{self.server.port('WebSite')}/"
        self.native_port = self.server.port()

    def test_two_browsers_and_irssi_talk_in_a_room(self) -> None:
        setup = self.native("alice")
        for name in ("bob", "carol"):
            self.assertTrue(setup.request("register", user=name, password=PASSWORD)["ok"])
        alice = self.open_page(self.url)
        bob = self.open_page(self.url)
        for page, name in ((alice, "alice"), (bob, "bob")):
            log_in(page, name)
            join(page, "#team")
        carol = Irssi("carol", self.server.port("IRCFactory-tls"), PASSWORD).start()
        self.addCleanup(carol.stop)
        wait_until(lambda: "End of /MOTD" in carol.screen(), 20, what="irssi to log in")
        carol.type("/join #team")
        for page in (alice, bob):
            expect(page.locator(".member-name", has_text="carol")).to_be_visible()

        send(alice, "hello from alice's browser")
        expect(message(bob, "alice", "hello from alice's browser")).to_be_visible()
        carol.wait_log("#team", "hello from alice's browser")
        send(bob, "and from bob's")
        expect(message(alice, "bob", "and from bob's")).to_be_visible()
        carol.wait_log("#team", "and from bob's")

        carol.type("/window goto #team")
        carol.type("hi both, irssi here")
        for page in (alice, bob):
            expect(message(page, "carol", "hi both, irssi here")).to_be_visible()
        carol.type("/me waves")
        for page in (alice, bob):
            expect(page.locator("li.msg.action .msg-text", has_text="carol waves")).to_be_visible()
        self.assertIn("<alice> hello from alice's browser", carol.log("#team").replace("<@", "<"))
        self.assertEqual(alice.errors + bob.errors, [])


class EncryptedDmTests(WebServerTestCase):
    """THE interop test of the browser's end-to-end encryption: a DM sealed in
    Chromium is read by the terminal client (in tmux) and its answer is read
    in the browser; each side shows the other's device fingerprint."""

    def terminal_login(self, tmux: Tmux, pane: str, name: str) -> None:
        tmux.start(pane, PINGCHAT, "client", "--config-dir", str(self.config_dir()),
                   f"127.0.0.1:{self.native_port}")
        tmux.trust_and_log_in(pane, name, PASSWORD)
        tmux.wait_for(pane, "Published your encryption key for this device")

    def config_dir(self) -> Path:
        path = Path(tempfile.mkdtemp(prefix="pingchat-client-"))
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def test_a_dm_sealed_in_the_browser_is_read_in_the_terminal_and_back(self) -> None:
        setup = self.native("bob")
        self.assertTrue(setup.request("register", user="alice", password=PASSWORD)["ok"])
        tmux = Tmux(self)
        self.terminal_login(tmux, "bob", "bob")
        # alice has a terminal too: the browser is her second device.
        self.terminal_login(tmux, "alice-tty", "alice")
        page = self.open_page(self.url)
        log_in(page, "alice")
        notices = page.locator("nav .conv", has_text="Server notices")
        notices.click()
        expect(page.locator("li.sys", has_text="Published this browser's encryption key")
               ).to_be_visible()
        tmux.wait_for("alice-tty", r"Your account has a new device: Chrom(e|ium) on Linux")

        send(page, "/msg bob the door code is 4711")
        expect(page.locator(".conv-title")).to_have_text("bob")
        sent = message(page, "alice", "the door code is 4711")
        expect(sent).to_be_visible()
        expect(sent.locator(".lock")).to_be_visible()
        expect(page.locator(".lock-state")).to_have_text("encrypted")
        tmux.wait_for("bob", r"<alice> \[e2e\] the door code is 4711")

        tmux.type("bob", "/msg alice thanks, the terminal read it")
        got = message(page, "bob", "thanks, the terminal read it")
        expect(got).to_be_visible()
        expect(got.locator(".lock")).to_be_visible()
        tmux.wait_for("alice-tty", r"\[bob, window 2\] <bob> \[e2e\] thanks, the terminal read it")
        # alice's other device read what the browser sent too (sealed for it).
        tmux.keys("alice-tty", "M-2")
        tmux.wait_for("alice-tty", r"<alice> \[e2e\] the door code is 4711")
        expect(page.locator("li.msg.undecryptable")).to_have_count(0)

        # The server holds only envelopes: one per device that did not send it.
        db = sqlite3.connect(self.server.data_dir / "pingchat.sqlite3")
        self.addCleanup(db.close)
        rows = db.execute("SELECT body, ciphertext, envelopes FROM messages"
                          " WHERE recipient_id IS NOT NULL ORDER BY id").fetchall()
        self.assertEqual(len(rows), 2)
        for body, ciphertext, envelopes in rows:
            self.assertEqual((body, ciphertext), (None, None))
            self.assertEqual(len(json.loads(envelopes)), 2)
        everything = json.dumps(db.execute("SELECT * FROM messages").fetchall())
        self.assertNotIn("4711", everything)
        self.assertNotIn("terminal read it", everything)

        # Fingerprints: what each client computed for itself is what the
        # other one shows for it (and what the server hands out).
        keys = {name: setup.request("key.get", user=name)["devices"] for name in ("alice", "bob")}
        self.assertEqual([len(keys["alice"]), len(keys["bob"])], [2, 1])
        [browser] = [d for d in keys["alice"] if "Linux" in (d["label"] or "")
                     and not d["label"].startswith("terminal")]
        self.assertRegex(browser["label"], r"^(Chrome|Chromium) on Linux$")
        terminal_fp = keys["bob"][0]["fingerprint"]
        tmux.type("bob", "/keys")
        tmux.wait_for("bob", rf"this device: .* fingerprint {terminal_fp}")
        tmux.type("bob", "/keys alice")
        tmux.wait_for("bob", rf"{browser['label']} +{browser['device']} +fingerprint"
                             rf" {browser['fingerprint']}")

        page.get_by_role("button", name="Keys & contact").click()
        contact = page.get_by_role("dialog", name="bob")
        row = contact.locator("table.devices tbody tr")
        expect(row).to_have_count(1)
        expect(row.locator(".fingerprint")).to_have_text(terminal_fp)
        contact.get_by_role("button", name="Close").click()
        page.get_by_role("button", name="Settings").click()
        settings = page.get_by_role("dialog", name="Settings")
        expect(settings.locator("section", has_text="End-to-end encryption")
               .locator("code.fingerprint").first).to_have_text(browser["fingerprint"])

        # From the server's history after a reload: the browser reads its own
        # message back (the box is symmetric) and the terminal's answer.
        page.reload()
        expect(page.locator(".conv-title")).to_have_text("bob")
        for sender, text in (("alice", "the door code is 4711"),
                             ("bob", "thanks, the terminal read it")):
            expect(message(page, sender, text).locator(".lock")).to_be_visible()
        expect(page.locator("li.msg.undecryptable")).to_have_count(0)

        # bob revokes his terminal's key (a lost laptop): what it sealed and
        # what was sealed for it stays readable here, with the key the
        # browser remembered for that device (docs/e2e.md).
        self.assertTrue(setup.request("key.revoke", device=keys["bob"][0]["device"])["ok"])
        page.reload()
        expect(page.locator(".conv-title")).to_have_text("bob")
        for sender, text in (("alice", "the door code is 4711"),
                             ("bob", "thanks, the terminal read it")):
            expect(message(page, sender, text).locator(".lock")).to_be_visible()
        expect(page.locator("li.msg.undecryptable")).to_have_count(0)
        self.assertEqual(page.errors, [])


    def test_a_client_from_before_device_keys_reads_the_browsers_dm_and_answers(self) -> None:
        # carol's client predates device ids: one key for the account, the
        # single-key form only (docs/e2e.md). Her side is PyNaCl here.
        carol = self.native("carol")
        self.assertTrue(carol.request("register", user="alice", password=PASSWORD)["ok"])
        key = PrivateKey.generate()
        public = b64encode(bytes(key.public_key)).decode()
        published = carol.request("key.publish", public_key=public)
        self.assertEqual(published["device"], "default")
        page = self.open_page(self.url)
        log_in(page, "alice")
        send(page, "/msg carol sealed for your one key")
        expect(message(page, "alice", "sealed for your one key").locator(".lock")).to_be_visible()

        event = carol.event("message", to="carol")
        self.assertNotIn("envelopes", event)
        browser_key = PublicKey(b64decode(carol.request("key.get", user="alice")["public_key"]))
        box = Box(key, browser_key)
        opened = box.decrypt(b64decode(event["ciphertext"]), b64decode(event["nonce"]))
        self.assertEqual(opened.decode(), "sealed for your one key")

        sealed = box.encrypt(b"and back, in the old form")
        reply = carol.request("dm", to="alice", ciphertext=b64encode(sealed.ciphertext).decode(),
                              nonce=b64encode(sealed.nonce).decode())
        self.assertTrue(reply["ok"], reply)
        got = message(page, "carol", "and back, in the old form")
        expect(got.locator(".lock")).to_be_visible()
        expect(page.locator("li.msg.undecryptable")).to_have_count(0)
        self.assertEqual(page.errors, [])


class RestartTests(WebServerTestCase):
    def setUp(self) -> None:
        self.web_port, self.native_port = free_port(), free_port()
        self.server = self.start_server(web=f"tcp:{self.web_port}:interface=127.0.0.1",
                                        chat=f"ssl:{self.native_port}:interface=127.0.0.1")
        self.url = f"http://localhost:{self.web_port}/"

    def test_the_page_reconnects_after_a_restart_and_sends_what_was_typed_meanwhile(self) -> None:
        self.native("alice")
        page = self.open_page(self.url)
        log_in(page, "alice")
        join(page, "#ops")
        send(page, "before the restart")
        expect(message(page, "alice", "before the restart")).to_be_visible()

        self.server.stop()
        expect(page.locator(".banner.offline")).to_be_visible()
        send(page, "typed while the server was down")
        pending = page.locator("li.msg.pending", has_text="typed while the server was down")
        expect(pending.locator(".pending-state")).to_have_text("waiting for the connection")

        self.server.start()
        expect(page.locator(".conn")).to_contain_text("Connected", timeout=60_000)
        expect(message(page, "alice", "typed while the server was down")).to_be_visible()
        expect(page.locator("li.msg.pending")).to_have_count(0)
        expect(page.locator(".banner.offline")).to_have_count(0)

        bob = self.native("bob")
        self.assertTrue(bob.request("join", room="#ops")["ok"])
        history = bob.request("history", room="#ops")["messages"]
        self.assertEqual([(m["from"], m["text"]) for m in history],
                         [("alice", "before the restart"),
                          ("alice", "typed while the server was down")])
        self.assertEqual(page.errors, [])
