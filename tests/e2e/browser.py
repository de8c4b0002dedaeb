"""A real browser for the end-to-end tests: Debian's Chromium, headless,
driven by Playwright for Python (its sync API) through ``executable_path``.

No browser is downloaded (never ``playwright install``): the one under test
is the system's ``/usr/bin/chromium`` (``.ci/run`` installs the ``chromium``
package). Playwright gives it a fresh profile in a temporary directory for
each launch and deletes it at ``close()``; each test gets a new browser
context (its own cookies, storage and IndexedDB) inside one browser process
per test class.

In CI (``CI`` set) a missing Chromium or Playwright is a failure; elsewhere
the tests are skipped with a note saying what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import unittest
from typing import Any, ClassVar

from twisted.trial.unittest import TestCase

from tests.client import LineClient

CHROMIUM = os.environ.get("PINGCHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000
PASSWORD = "correct horse battery"
RECOVERY_CODE = re.compile(r"^[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}$")


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        raise AssertionError(f"{what}; CI installs it in .ci/run")
    raise unittest.SkipTest(what)


class BrowserTestCase(TestCase):
    """One headless Chromium for the whole class; a new context per page."""

    playwright: ClassVar[Any] = None
    browser: ClassVar[Any] = None

    @classmethod
    def setUpClass(cls) -> None:
        if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
            _missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
        try:
            from playwright.sync_api import expect, sync_playwright
        except ImportError:
            _missing("playwright is not installed (pip install -e '.[dev]')")
        expect.set_options(timeout=TIMEOUT_MS)
        cls.playwright = sync_playwright().start()
        try:
            cls.browser = cls.playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
            )
        except BaseException:
            cls.playwright.stop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.browser is not None:
            cls.browser.close()
            cls.browser = None
        if cls.playwright is not None:
            cls.playwright.stop()
            cls.playwright = None

    def context(self, **options: Any) -> Any:
        """A fresh browser context (a new profile's worth of storage), closed after the test."""
        ctx = self.browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **options})
        ctx.set_default_timeout(TIMEOUT_MS)
        self.addCleanup(ctx.close)
        return ctx

    def open_page(self, url: str, **options: Any) -> Any:
        """A new context with one page at *url*; its console errors fail loudly in the log."""
        page = self.context(**options).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.errors = errors
        page.goto(url)
        return page


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


# -- what a person does in the web client ------------------------------------------------


def log_in(page: Any, user: str, password: str = PASSWORD, remember: bool = False) -> None:
    """Fill the login form and wait until the chat screen shows *user*."""
    page.locator("#tab-login").click()
    form = page.locator("#auth-panel form")
    form.get_by_label("User name").fill(user)
    form.get_by_label("Password", exact=True).fill(password)
    if remember:
        form.get_by_label(re.compile("Remember this browser")).check()
    form.get_by_role("button", name="Log in").click()
    expect(page.locator(".me-name")).to_have_text(user)
    expect(page.locator(".conn")).to_contain_text("Connected")


def send(page: Any, text: str) -> None:
    """Type *text* into the composer and press Enter."""
    composer = page.locator("#composer")
    composer.fill(text)
    composer.press("Enter")


def join(page: Any, room: str) -> None:
    send(page, f"/join {room}")
    expect(page.locator(".conv-title")).to_have_text(room)


def message(page: Any, sender: str, text: str) -> Any:
    """The locator of a delivered (not pending) message by *sender* with *text*."""
    return page.locator("ol.message-list li.msg:not(.pending)").filter(
        has=page.locator(".msg-head .from", has_text=re.compile(f"^{re.escape(sender)}$"))
    ).filter(has=page.locator(".msg-text", has_text=text))


def message_text(page: Any, text: str) -> Any:
    """Any delivered message whose text contains *text* (grouped ones hide the sender)."""
    return page.locator("ol.message-list li.msg:not(.pending) .msg-text", has_text=text)


def native(port: int, user: str, register: bool = True) -> LineClient:
    """A native-protocol client over TLS, logged in as *user*."""
    client = LineClient("127.0.0.1", port, timeout=20)
    if register:
        assert client.request("register", user=user, password=PASSWORD)["ok"]
    reply = client.request("login", user=user, password=PASSWORD)
    assert reply["ok"], reply
    return client
