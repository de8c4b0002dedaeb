"""Screenshots of the web client, taken by the test run in headless Chromium:
the login page, a room and a direct message, in the light and the dark
theme, at desktop (1280x800) and phone (390x844) width.

They are written to ``$PINGCHAT_SCREENSHOTS`` (a temporary directory when it
is not set, removed afterwards); the ones in ``docs/screenshots/`` were made
with ``PINGCHAT_SCREENSHOTS=docs/screenshots`` (README.md says how).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

from tests.e2e.browser import (
    PASSWORD,
    BrowserTestCase,
    expect,
    join,
    log_in,
    message,
    native,
    send,
)
from tests.e2e.harness import ServerProcess

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
THEMES = ("light", "dark")
SCENES = ("login", "room", "dm")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


class ScreenshotTests(BrowserTestCase):
    def setUp(self) -> None:
        self.server = ServerProcess(web="tcp:0:interface=127.0.0.1").start()
        self.addCleanup(self.server.cleanup)
        self.url = f"http://localhost:{self.server.port('WebSite')}/"
        wanted = os.environ.get("PINGCHAT_SCREENSHOTS")
        if wanted:
            self.out = Path(wanted)
            self.out.mkdir(parents=True, exist_ok=True)
        else:
            self.out = Path(tempfile.mkdtemp(prefix="pingchat-screenshots-"))
            self.addCleanup(shutil.rmtree, self.out, True)

    def device(self, size: str) -> dict[str, Any]:
        width, height = SIZES[size]
        options: dict[str, Any] = {"viewport": {"width": width, "height": height},
                                   "device_scale_factor": 1}
        if size == "phone":
            options.update(is_mobile=True, has_touch=True)
        return options

    def shoot(self, page: Any, size: str, theme: str, scene: str) -> Path:
        page.emulate_media(color_scheme=theme)
        # The theme button offers the other theme, also when the system's
        # theme changed while the page was open.
        other = "dark" if theme == "light" else "light"
        expect(page.locator(".theme-button").first).to_have_attribute(
            "aria-label", f"Switch to the {other} theme")
        # Toasts come and go on their own clock: not part of the picture.
        page.evaluate("document.querySelectorAll('.toast').forEach((t) => t.remove())")
        expect(page.locator("html")).to_have_js_property("scrollWidth", SIZES[size][0])
        path = self.out / f"{scene}-{theme}-{size}.png"
        page.screenshot(path=str(path), animations="disabled", caret="hide")
        return path

    def open_conversation(self, page: Any, size: str, name: str) -> None:
        if size == "phone":
            page.get_by_role("button", name=re.compile("^Conversations")).tap()
            page.locator("nav .conv", has_text=name).tap()
        else:
            page.locator("nav .conv", has_text=name).click()
        expect(page.locator(".conv-title")).to_have_text(name)
        expect(page.locator(".shell.drawer-open")).to_have_count(0)

    def test_screenshots_of_login_room_and_dm_in_both_themes_and_sizes(self) -> None:
        setup = NativeSetup(self.server.port())
        self.addCleanup(setup.close)
        # bob writes from a browser (so that he has a key); alice uses two
        # browsers, a desktop and a phone: two devices, both able to read.
        bob = self.context().new_page()
        bob.goto(self.url)
        log_in(bob, "bob")
        alice = {size: self.context(**self.device(size)).new_page() for size in SIZES}
        for page in alice.values():
            page.goto(self.url)
            log_in(page, "alice")
        join(alice["desktop"], "#lobby")
        send(alice["desktop"], "/topic Weekly planning: the notes are in the wiki")
        join(bob, "#lobby")
        setup.room_talk()
        send(bob, "I pushed the new build to staging, have a look when you can")
        send(alice["desktop"], "Looks good! Two small things in the settings page, I'll file them")
        send(bob, "alice: can you share the slides from Monday?")
        expect(message(alice["desktop"], "bob", "share the slides")).to_be_visible()
        send(bob, "/msg alice the staging password changed, it's in the vault now")
        dm = alice["desktop"].locator("nav .conv", has_text="bob")
        expect(dm).to_be_visible()
        self.open_conversation(alice["desktop"], "desktop", "bob")
        expect(message(alice["desktop"], "bob", "staging password").locator(".lock")
               ).to_be_visible()
        send(alice["desktop"], "thanks! got it")
        expect(message(bob, "alice", "thanks! got it")).to_be_visible()

        # On a touch screen (no hover) a member's "Message" button is there.
        phone = alice["phone"]
        self.open_conversation(phone, "phone", "#lobby")
        phone.get_by_role("button", name="Members").tap()
        expect(phone.get_by_role("button", name="Message carol")).to_be_visible()
        phone.get_by_role("button", name="Close the members list").tap()
        expect(phone.locator(".shell.members-open")).to_have_count(0)

        taken = []
        for size, page in alice.items():
            for name, scene in (("#lobby", "room"), ("bob", "dm")):
                self.open_conversation(page, size, name)
                expect(message(page, "alice", "thanks! got it" if scene == "dm" else "Looks good")
                       ).to_be_visible()
                expect(page.locator("li.msg.undecryptable, li.msg.pending")).to_have_count(0)
                for theme in THEMES:
                    taken.append(self.shoot(page, size, theme, scene))
            login = self.context(**self.device(size)).new_page()
            login.goto(self.url)
            expect(login.get_by_role("button", name="Log in")).to_be_visible()
            for theme in THEMES:
                taken.append(self.shoot(login, size, theme, "login"))

        expected = [f"{scene}-{theme}-{size}.png"
                    for scene in SCENES for theme in THEMES for size in SIZES]
        self.assertEqual(sorted(p.name for p in taken), sorted(expected))
        for path in taken:
            self.assertEqual(png_size(path), SIZES[path.stem.rsplit("-", 1)[1]])


class NativeSetup:
    """Accounts and a room's earlier talk, made over the native protocol."""

    def __init__(self, port: int) -> None:
        self.carol = native(port, "carol")
        for name in ("alice", "bob"):
            assert self.carol.request("register", user=name, password=PASSWORD)["ok"]

    def room_talk(self) -> None:
        assert self.carol.request("join", room="#lobby")["ok"]
        for text in ("morning all", "the coffee machine is fixed, by the way"):
            assert self.carol.request("say", room="#lobby", text=text)["ok"]

    def close(self) -> None:
        self.carol.close()
