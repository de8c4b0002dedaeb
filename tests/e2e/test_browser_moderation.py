"""Deleting messages in a real browser, against ``twistd -n pingchat``: the room
operator deletes someone's message with the mouse, the author deletes their
own with the keyboard, and every client (the other browser, a native client)
sees each go."""

from __future__ import annotations

from typing import Any

from tests.e2e.browser import PASSWORD, expect, join, log_in, message, send
from tests.e2e.test_browser_e2e import WebServerTestCase


class DeletionTests(WebServerTestCase):
    def deleted(self, page: Any, text: str) -> Any:
        return page.locator("ol.message-list li.msg.deleted .msg-text", has_text=text)

    def test_a_room_operator_and_an_author_delete_and_everyone_sees_it_go(self) -> None:
        setup = self.native("alice")
        self.assertTrue(setup.request("register", user="bob", password=PASSWORD)["ok"])
        alice, bob = self.open_page(self.url), self.open_page(self.url)
        log_in(alice, "alice")
        join(alice, "#mod")  # first in the room: its operator
        log_in(bob, "bob")
        join(bob, "#mod")
        watcher = self.native("carol")
        self.assertTrue(watcher.request("join", room="#mod")["ok"])

        send(bob, "buy cheap watches")
        spam = message(alice, "bob", "buy cheap watches")
        expect(spam).to_be_visible()
        spam.hover()
        spam.get_by_role("button", name="Delete the message from bob").click()
        dialog = alice.get_by_role("dialog")
        expect(dialog).to_contain_text("for everyone")
        dialog.get_by_role("button", name="Delete").click()
        expect(self.deleted(bob, "message deleted by alice")).to_be_visible()
        expect(self.deleted(alice, "message deleted by alice")).to_be_visible()
        event = watcher.event("deleted")
        self.assertEqual((event["from"], event["by"], event["room"]), ("bob", "alice", "#mod"))

        send(bob, "oops, wrong room")
        mine = message(bob, "bob", "oops, wrong room")
        expect(mine).to_be_visible()
        button = mine.get_by_role("button", name="Delete your message")
        button.focus()  # the keyboard way: the button is in the tab order
        button.press("Enter")
        bob.get_by_role("dialog").get_by_role("button", name="Delete").press("Enter")
        for page in (alice, bob):
            expect(page.locator("ol.message-list li.msg:not(.deleted) .msg-text",
                                has_text="oops, wrong room")).to_have_count(0)
        self.assertEqual(watcher.event("deleted")["by"], "bob")

        # After a reload, history shows both as deleted: the text never comes back.
        alice.reload()
        expect(alice.locator(".conv-title")).to_have_text("#mod")
        expect(alice.locator("ol.message-list li.msg.deleted")).to_have_count(2)
        expect(alice.locator("ol.message-list", has_text="cheap watches")).to_have_count(0)
        self.assertEqual(alice.errors + bob.errors, [])
