import assert from "node:assert/strict";
import { test } from "node:test";
import { js } from "./helpers.mjs";

const { Store, countUnread } = await import(js("store.js"));

function msg(id, from, text, extra = {}) {
  return { msg_id: id, from, text, ts: "2026-11-21T10:00:00.000Z", room: "#a", ...extra };
}

test("messages are kept in server order and each shown once", () => {
  const store = new Store();
  store.reset("me");
  const conv = store.open("room", "#a");
  store.addMessage(conv, msg(5, "bob", "five"));
  store.addMessage(conv, msg(3, "bob", "three"));
  assert.equal(store.addMessage(conv, msg(5, "bob", "again")), null);
  store.addHistory(conv, [msg(1, "bob", "one"), msg(3, "bob", "three")]);
  assert.deepEqual(conv.items.map((i) => i.msgId), [1, 3, 5]);
  assert.equal(conv.oldestId, 1);
  assert.equal(conv.newestId, 5);
});

test("the client's own lines go after the newest message they followed", () => {
  const store = new Store();
  store.reset("me");
  const conv = store.open("room", "#a");
  store.addMessage(conv, msg(10, "bob", "ten"));
  store.addSystem(conv, "carol joined");
  store.addMessage(conv, msg(11, "carol", "hi"));
  store.addHistory(conv, [msg(4, "bob", "older")]);
  assert.deepEqual(conv.items.map((i) => i.text), ["older", "ten", "carol joined", "hi"]);
});

test("unread counts what others said after the read marker; mentions apart", () => {
  const items = [
    { type: "message", msgId: 1, mine: false, mention: false },
    { type: "message", msgId: 2, mine: true, mention: false },
    { type: "message", msgId: 3, mine: false, mention: true },
    { type: "system", msgId: null },
    { type: "message", msgId: 4, mine: false, mention: false },
  ];
  assert.deepEqual(countUnread(items, 1, "me"), { unread: 2, mentions: 1 });
  assert.deepEqual(countUnread(items, 4, "me"), { unread: 0, mentions: 0 });
});

test("a room's first history is read; what comes while it is not on screen is unread", () => {
  const store = new Store();
  store.reset("me");
  const a = store.open("room", "#a");
  const b = store.open("room", "#b");
  store.setActive(a);
  store.addHistory(b, [msg(1, "bob", "old news", { room: "#b" })]);
  assert.equal(b.unread, 0);
  store.addMessage(b, msg(2, "bob", "hey me", { room: "#b" }), { live: true });
  store.addMessage(b, msg(3, "bob", "plain", { room: "#b" }), { live: true });
  assert.equal(b.unread, 2);
  assert.equal(b.mentions, 1);
  assert.equal(store.totalUnread(), 1); // rooms count their mentions, DMs everything
  store.setActive(b);
  assert.equal(b.unread, 0);
  assert.equal(b.lastRead, 3);
});

test("what arrives in the conversation on screen is read at once", () => {
  const store = new Store();
  store.reset("me");
  const a = store.open("room", "#a");
  store.addHistory(a, []);
  store.setActive(a);
  store.addMessage(a, msg(7, "bob", "hi"), { live: true });
  assert.equal(a.unread, 0);
  store.visible = false; // the tab is hidden
  store.addMessage(a, msg(8, "bob", "still there?"), { live: true });
  assert.equal(a.unread, 1);
});

test("offline DMs from a new conversation count as unread, with the sender as the conversation", () => {
  const store = new Store();
  store.reset("me");
  const m = { msg_id: 4, from: "Bob", to: "me", text: "while you were out", offline: true };
  const conv = store.conversationOf(m);
  assert.equal(conv.kind, "dm");
  assert.equal(conv.name, "Bob");
  store.addMessage(conv, m);
  assert.equal(conv.unread, 1);
  assert.equal(store.totalUnread(), 1);
  const mine = store.conversationOf({ from: "ME", to: "bob", text: "x" });
  assert.equal(mine, conv); // my own message to bob goes to bob's conversation
});

test("a saved read marker applies when the conversation comes back", () => {
  const store = new Store();
  store.reset("me");
  store.readMarkers = { "#a": 5 };
  const conv = store.open("room", "#A");
  store.addHistory(conv, [msg(4, "bob", "read"), msg(5, "bob", "read"), msg(6, "bob", "new")]);
  assert.equal(conv.unread, 1);
});

test("mentions of me are flagged; my own messages never are", () => {
  const store = new Store();
  store.reset("alice");
  const conv = store.open("room", "#a");
  const a = store.addMessage(conv, msg(1, "bob", "ALICE: look"));
  const b = store.addMessage(conv, msg(2, "alice", "I am alice"));
  const c = store.addMessage(conv, msg(3, "bob", "malice"));
  assert.deepEqual([a.mention, b.mention, c.mention], [true, false, false]);
});

test("members and presence follow the events", () => {
  const store = new Store();
  store.reset("me");
  const conv = store.open("room", "#a");
  store.setMembers(conv, [{ user: "bob", op: true, presence: "away" }]);
  assert.equal(store.presenceOf("BOB"), "away");
  store.addMember(conv, "carol");
  assert.equal(store.presenceOf("carol"), "online");
  store.setPresence("bob", "online", null);
  store.removeMember(conv, "Carol");
  assert.deepEqual([...conv.members.keys()], ["bob"]);
  assert.equal(store.presenceOf("bob"), "online");
  assert.equal(store.presenceOf("nobody"), "offline");
});
