// Deleted messages in the web client: the store, the `deleted` event, history
// tombstones, who is offered the delete button, and the button itself.

import assert from "node:assert/strict";
import { test } from "node:test";
import { js, settle, until } from "./helpers.mjs";

const { Store } = await import(js("store.js"));
const { setup, synced } = await import("./fake-server.mjs");

function msg(id, from, text, extra = {}) {
  return { msg_id: id, from, text, ts: "2026-11-21T10:00:00.000Z", room: "#a", ...extra };
}

test("a deleted message keeps its place, loses its text and stops counting as unread", () => {
  const store = new Store();
  store.reset("me");
  const conv = store.open("room", "#a");
  store.addHistory(conv, []);
  store.addMessage(conv, msg(1, "bob", "hello me"));
  store.addMessage(conv, msg(2, "bob", "spam"));
  assert.deepEqual([conv.unread, conv.mentions], [2, 1]);
  const seen = [];
  store.subscribe((what) => seen.push(what));
  const item = store.deleteMessage(conv, 1, { by: "carol", reason: "rude" });
  assert.equal(item.deleted, true);
  assert.equal(item.text, "");
  assert.deepEqual([item.deletedBy, item.deletedReason], ["carol", "rude"]);
  assert.deepEqual(conv.items.map((i) => i.msgId), [1, 2]);
  assert.deepEqual([conv.unread, conv.mentions], [1, 0]);
  assert.ok(seen.includes("messages"));
  assert.equal(store.deleteMessage(conv, 99), null);
});

test("history tombstones show as deleted, and delete a message shown before", () => {
  const store = new Store();
  store.reset("me");
  const conv = store.open("room", "#a");
  store.addMessage(conv, msg(5, "bob", "still here"));
  store.addMessage(conv, msg(6, "bob", "about to go"));
  store.addHistory(conv, [
    { msg_id: 4, from: "bob", room: "#a", ts: "2026-11-21T09:00:00.000Z", deleted: true },
    { msg_id: 5, from: "bob", room: "#a", text: "still here", ts: "2026-11-21T10:00:00.000Z" },
    { msg_id: 6, from: "bob", room: "#a", ts: "2026-11-21T10:00:00.000Z", deleted: true },
  ]);
  assert.deepEqual(conv.items.map((i) => [i.msgId, i.deleted, i.text]),
    [[4, true, ""], [5, false, "still here"], [6, true, ""]]);
});

async function loggedIn(reply = {}) {
  const t = setup();
  const answer = t.server.answer.bind(t.server);
  t.server.answer = (ws, req) => {
    if ((req.op === "resume" || req.op === "login") && reply.operator !== undefined) {
      return ws.receive({ id: req.id, ok: true, user: "alice", token: "good-token", expires_at: "x",
        rooms: t.server.rooms, operator: reply.operator });
    }
    if (req.op === "message.delete" && reply.refuse) {
      return ws.receive({ id: req.id, ok: false, error: { code: "forbidden", message: reply.refuse } });
    }
    return answer(ws, req);
  };
  t.server.messages.push(
    { room: "#lobby", from: "bob", text: "bob's words", msg_id: 10, ts: "2026-11-21T10:00:00.000Z" },
    { room: "#lobby", from: "alice", text: "my words", msg_id: 11, ts: "2026-11-21T10:00:01.000Z" },
  );
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  const ws = t.sockets[0];
  const send = async (ev) => {
    ws.receive(ev);
    await settle();
  };
  return { ...t, ws, send };
}

test("a deleted event marks the message in its room or DM, and opens nothing", async () => {
  const t = await loggedIn();
  const lobby = t.store.find("room", "#lobby");
  await t.send({ event: "deleted", msg_id: 10, ts: "x", from: "bob", room: "#lobby", by: "alice", reason: null });
  assert.equal(lobby.items.find((i) => i.msgId === 10).deleted, true);
  assert.equal(lobby.items.find((i) => i.msgId === 11).deleted, false);
  await t.send({ event: "message", msg_id: 20, ts: "x", from: "bob", to: "alice", text: "psst" });
  await t.send({ event: "message", msg_id: 21, ts: "x", from: "alice", to: "bob", text: "hm" });
  await t.send({ event: "deleted", msg_id: 20, ts: "x", from: "bob", to: "alice", by: "bob", reason: null });
  await t.send({ event: "deleted", msg_id: 21, ts: "x", from: "alice", to: "bob", by: "alice", reason: null });
  const dm = t.store.find("dm", "bob");
  assert.deepEqual(dm.items.filter((i) => i.type === "message").map((i) => i.deleted), [true, true]);
  const before = t.store.conversations.size;
  await t.send({ event: "deleted", msg_id: 30, ts: "x", from: "zed", to: "alice", by: "zed", reason: null });
  await t.send({ event: "deleted", msg_id: 31, ts: "x", from: "zed", room: "#elsewhere", by: "zed", reason: null });
  assert.equal(t.store.conversations.size, before);
});

test("the delete is offered on one's own messages, in rooms one operates, and everywhere to an operator", async () => {
  const t = await loggedIn();
  const lobby = t.store.find("room", "#lobby");
  const [bobs, mine] = [10, 11].map((id) => lobby.items.find((i) => i.msgId === id));
  assert.equal(t.client.canDelete(lobby, mine), true);
  assert.equal(t.client.canDelete(lobby, bobs), true); // the fake server makes alice #lobby's op
  lobby.members.get("alice").op = false;
  assert.equal(t.client.canDelete(lobby, bobs), false);
  assert.equal(t.client.canDelete(lobby, mine), true);
  t.client.operator = true;
  assert.equal(t.client.canDelete(lobby, bobs), true);
  t.store.deleteMessage(lobby, 10);
  assert.equal(t.client.canDelete(lobby, bobs), false); // deleted already
  const server = t.store.open("server", "");
  assert.equal(t.client.canDelete(server, { type: "message", msgId: null, mine: false }), false);
});

test("the login reply says whether this account is a server operator", async () => {
  assert.equal((await loggedIn({ operator: true })).client.operator, true);
  assert.equal((await loggedIn({ operator: false })).client.operator, false);
});

test("deleting sends message.delete and shows the message as deleted; a refusal throws", async () => {
  const t = await loggedIn();
  const lobby = t.store.find("room", "#lobby");
  const mine = lobby.items.find((i) => i.msgId === 11);
  await t.client.deleteMessage(lobby, mine);
  assert.deepEqual(t.ws.sent.filter((r) => r.op === "message.delete").map((r) => r.msg_id), [11]);
  assert.equal(mine.deleted, true);
  const refused = await loggedIn({ refuse: "only its author may delete this" });
  const conv = refused.store.find("room", "#lobby");
  const bobs = conv.items.find((i) => i.msgId === 10);
  await assert.rejects(refused.client.deleteMessage(conv, bobs), /only its author/);
  assert.equal(bobs.deleted, false);
});

// -- the button, over a minimal DOM ---------------------------------------------------------

class FakeNode {}
class FakeElement extends FakeNode {
  constructor(tag) {
    super();
    this.tag = tag;
    this.attributes = new Map();
    this.children = [];
    this.listeners = new Map();
    this.dataset = {};
  }
  setAttribute(name, value) { this.attributes.set(name, String(value)); }
  getAttribute(name) { return this.attributes.get(name) ?? null; }
  append(...nodes) { this.children.push(...nodes); }
  addEventListener(event, fn) { this.listeners.set(event, fn); }
  click() { return this.listeners.get("click")?.(); }
  find(tag) {
    for (const c of this.children) {
      if (c instanceof FakeElement && (c.tag === tag || c.find(tag))) return c.tag === tag ? c : c.find(tag);
    }
    return null;
  }
}
globalThis.Node = FakeNode;
globalThis.document = {
  createElement: (tag) => new FakeElement(tag),
  createElementNS: (_ns, tag) => new FakeElement(tag),
  createTextNode: (text) => Object.assign(new FakeNode(), { text }),
};
const { messageActions, deleteMessage, deletedText } = await import(js("ui/message-actions.js"));

test("the delete button names the message, asks first, and deletes only when confirmed", async () => {
  const t = await loggedIn();
  const lobby = t.store.find("room", "#lobby");
  const mine = lobby.items.find((i) => i.msgId === 11);
  const asked = [];
  let answer = false;
  const confirm = async (title, text, options) => {
    asked.push([title, options.confirm]);
    return answer;
  };
  const actions = messageActions(t.client, lobby, mine, confirm);
  const button = actions.find("button");
  assert.equal(button.getAttribute("type"), "button"); // a real button: focusable, Enter and Space work
  assert.equal(button.getAttribute("aria-label"), "Delete your message");
  await button.click();
  assert.deepEqual(asked, [["Delete message", "Delete"]]);
  assert.equal(mine.deleted, false);
  answer = true;
  await button.click();
  assert.equal(mine.deleted, true);
  assert.equal(messageActions(t.client, lobby, mine, confirm), null); // nothing left to do
});

test("a refused deletion is a toast, and the text of a deleted message says who and why", async () => {
  const t = await loggedIn({ refuse: "no" });
  const toasts = [];
  t.client.on("toast", (text, level) => toasts.push([text, level]));
  const lobby = t.store.find("room", "#lobby");
  const bobs = lobby.items.find((i) => i.msgId === 10);
  assert.equal(await deleteMessage(t.client, lobby, bobs, async () => true), false);
  assert.deepEqual(toasts, [["Could not delete the message: no", "error"]]);
  assert.equal(deletedText({ from: "bob", deletedBy: "bob" }), "message deleted");
  assert.equal(deletedText({ from: "bob", deletedBy: "carol", deletedReason: "spam" }),
    "message deleted by carol (spam)");
});
