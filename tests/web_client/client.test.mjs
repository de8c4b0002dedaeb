// The client against a scripted server: logging in and resuming, the sync
// after a login, what happens to typed messages across a drop, offline DMs.

import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeTimers, fakeWebSocketClass, js, loadNacl, memoryStorage, settle, subtle, until } from "./helpers.mjs";

const { Client } = await import(js("client.js"));
const { Connection } = await import(js("connection.js"));
const { Secure } = await import(js("secure.js"));
const { SessionStore, memoryKv } = await import(js("storage.js"));
const { Store } = await import(js("store.js"));
const { setup, synced } = await import("./fake-server.mjs");

test("a saved session resumes and the rooms, members, contacts and keys come in", async () => {
  const t = setup();
  t.server.messages.push({ room: "#lobby", from: "bob", text: "earlier", msg_id: 1, ts: "2026-11-21T09:00:00.000Z" });
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  assert.deepEqual(t.seen.map((s) => s[0]), ["logged-in", "synced"]);
  assert.equal(t.seen[0][1].again, false, "the first login of the page is not a reconnection");
  assert.equal(t.client.user, "alice");
  const lobby = t.store.find("room", "#lobby");
  assert.deepEqual(lobby.items.map((i) => i.text), ["earlier"]);
  assert.equal(lobby.topic, "the topic");
  assert.equal(t.store.presenceOf("bob"), "away");
  assert.equal(t.store.presenceOf("carol"), "online");
  assert.deepEqual(t.store.contacts.incoming, ["dave"]);
  assert.ok(t.store.find("dm", "carol"), "contacts have a DM conversation");
  assert.ok(t.server.ops.includes("key.publish"));
  assert.equal(t.server.devices.alice[0].label, "test browser");
  assert.match(t.server.devices.alice[0].device, /^[A-Za-z0-9_-]{22}$/);
  assert.equal(t.persisted.length, 1, "a new key asks the browser to keep the site's storage");
});

test("an expired session asks for a login and forgets the token", async () => {
  const t = setup({ token: "stale" });
  t.server.attach(t.sockets[0]);
  await settle();
  assert.equal(t.seen[0][0], "need-login");
  assert.match(t.seen[0][1].message, /the session expired/);
  assert.equal(t.sessions.load(), null);
});

test("a message typed while offline is sent once the session is back", async () => {
  const t = setup();
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  t.sockets[0].drop();
  await settle();
  const lobby = t.store.find("room", "#lobby");
  const entry = t.client.post(lobby, "typed offline");
  assert.equal(entry.state, "queued");
  t.timers.advance(1000);
  t.server.attach(t.sockets[1]);
  await until(() => synced(t) === 2);
  assert.equal(t.seen.filter((s) => s[0] === "logged-in")[1][1].again, true);
  assert.equal(t.client.outbox.entries.length, 0);
  assert.deepEqual(t.server.messages.map((m) => m.text), ["typed offline"]);
  assert.deepEqual(lobby.items.filter((i) => i.type === "message").map((i) => i.text), ["typed offline"]);
});

test("a message whose reply was lost with the connection is not sent twice", async () => {
  const t = setup();
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  const lobby = t.store.find("room", "#lobby");
  t.server.hold = "say"; // stored, but the reply never comes back
  t.client.post(lobby, "stored but unacknowledged");
  await settle();
  const { req } = t.server.held[0];
  t.server.messages.push({ room: "#lobby", from: "alice", text: req.text, msg_id: 50, ts: "2026-11-21T10:00:00.000Z" });
  t.sockets[0].drop();
  await settle();
  assert.equal(t.client.outbox.entries[0].state, "unsure");
  t.server.hold = null;
  t.timers.advance(1000);
  t.server.attach(t.sockets[1]);
  await until(() => synced(t) === 2);
  assert.equal(t.client.outbox.entries.length, 0);
  assert.equal(t.server.ops.filter((op) => op === "say").length, 1);
  assert.deepEqual(lobby.items.filter((i) => i.type === "message").map((i) => [i.msgId, i.text]), [[50, "stored but unacknowledged"]]);
});

test("typed messages survive a reload of the page while offline", async () => {
  const t = setup();
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  t.sockets[0].drop();
  await settle();
  t.client.post(t.store.find("room", "#lobby"), "before the reload");
  // A new page in the same tab: same sessionStorage.
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const conn = new Connection({ url: "ws://x/ws", WebSocket: FakeWebSocket, timers: new FakeTimers() });
  const store = new Store();
  const client = new Client({ conn, store, sessions: t.sessions, secure: new Secure({ conn, store, kv: memoryKv(), nacl: loadNacl(), subtle, label: "b" }), notifier: { maybe() {} }, tabStorage: t.tab });
  client.start();
  assert.deepEqual(client.outbox.entries.map((e) => e.text), ["before the reload"]);
  t.server.attach(sockets[0]);
  await until(() => t.server.messages.length === 1);
  assert.deepEqual(t.server.messages.map((m) => m.text), ["before the reload"]);
});

test("offline DMs delivered at login open their conversation, unread", async () => {
  const t = setup();
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  t.sockets[0].receive({ event: "message", from: "erin", to: "alice", text: "you there?", msg_id: 7, ts: "2026-11-21T08:00:00.000Z", offline: true });
  await settle();
  const conv = t.store.find("dm", "erin");
  assert.equal(conv.unread, 1);
  assert.ok(JSON.parse(t.sessions.session.getItem("pingchat.dms.alice")).includes("erin"));
});

test("a DM to someone with keys goes out sealed; to someone without, in plain text with a warning", async () => {
  const t = setup();
  const nacl = loadNacl();
  const bob = nacl.box.keyPair();
  t.server.devices.bob = [{ device: "bob-browser-1", public_key: Buffer.from(bob.publicKey).toString("base64"), label: "Firefox" }];
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  t.client.post(t.client.openDm("bob"), "sealed one");
  t.client.post(t.client.openDm("ircuser"), "plain one");
  await until(() => t.server.messages.length === 2 && t.client.outbox.entries.length === 0);
  const [sealed, plain] = t.server.messages;
  assert.equal(sealed.text, undefined);
  assert.equal(sealed.envelopes.length, 1);
  assert.equal(sealed.envelopes[0].device, "bob-browser-1");
  assert.equal(plain.text, "plain one");
  const bobConv = t.store.find("dm", "bob");
  assert.equal(bobConv.encrypted, true);
  assert.ok(bobConv.items.some((i) => i.type === "message" && i.text === "sealed one" && i.encrypted));
  const ircConv = t.store.find("dm", "ircuser");
  assert.equal(ircConv.encrypted, false);
  assert.ok(ircConv.items.some((i) => i.type === "system" && /NOT end-to-end encrypted/.test(i.text)));
  assert.ok(bobConv.items.some((i) => i.type === "system" && /offline: the message waits/.test(i.text)));
});

test("an encrypted DM queued while offline is read when it arrives right after the login", async () => {
  const nacl = loadNacl();
  const kv = memoryKv();
  const { loadOrCreateDevice, toBase64 } = await import(js("e2e.js"));
  // This browser already has its device key (an earlier visit), published.
  const mine = await loadOrCreateDevice(kv, nacl, "alice", "test browser");
  const bob = nacl.box.keyPair();
  const t = setup({ kv });
  t.server.devices.alice = [{ device: mine.id, public_key: toBase64(mine.publicKey), label: "test browser" }];
  t.server.devices.bob = [{ device: "bob-terminal-1", public_key: toBase64(bob.publicKey), label: "terminal" }];
  const nonce = nacl.randomBytes(24);
  const sealed = nacl.box(new TextEncoder().encode("sent while you were away"), nonce, mine.publicKey, bob.secretKey);
  t.server.offline.push({ from: "bob", to: "alice", device: "bob-terminal-1", msg_id: 3, ts: "2026-11-21T08:00:00.000Z",
    envelopes: [{ user: "alice", device: mine.id, ciphertext: toBase64(sealed), nonce: toBase64(nonce) }] });
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  await until(() => t.store.find("dm", "bob") && t.store.find("dm", "bob").items.length > 0);
  const item = t.store.find("dm", "bob").items.find((i) => i.type === "message");
  assert.equal(item.error, null);
  assert.equal(item.text, "sent while you were away");
  assert.ok(item.encrypted);
  assert.ok(!t.server.ops.includes("key.publish"), "the same key is not published again");
  assert.equal(t.persisted.length, 0);
});

test("a DM too long to seal for every device fits no request: it is marked not sent, with why", async () => {
  const t = setup();
  const nacl = loadNacl();
  t.server.devices.bob = ["one", "two", "three"].map((d) => ({ device: `bob-${d}-device`, public_key: Buffer.from(nacl.box.keyPair().publicKey).toString("base64") }));
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  const entry = t.client.post(t.client.openDm("bob"), "x".repeat(4000));
  await until(() => entry.state === "failed");
  assert.match(entry.error, /too long to encrypt for 3 devices/);
  assert.ok(!t.server.ops.includes("dm"));
});
