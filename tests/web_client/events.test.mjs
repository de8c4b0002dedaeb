// Server events, as the logged-in client handles them.

import assert from "node:assert/strict";
import { test } from "node:test";
import { js, loadNacl, settle, until } from "./helpers.mjs";

const { setup, synced } = await import("./fake-server.mjs");
const { toBase64 } = await import(js("e2e.js"));

async function loggedIn() {
  const t = setup();
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  const ws = t.sockets[0];
  const send = async (ev) => {
    ws.receive(ev);
    await settle();
  };
  return { ...t, send };
}

function texts(conv) {
  return conv.items.map((i) => i.text);
}

test("joins, parts, kicks, topics and modes show in the room and change its members", async () => {
  const t = await loggedIn();
  const lobby = t.store.find("room", "#lobby");
  await t.send({ event: "joined", room: "#lobby", user: "carol" });
  assert.ok(lobby.members.has("carol"));
  await t.send({ event: "mode", room: "#lobby", by: "alice", changes: [["+o", "carol"]] });
  assert.equal(lobby.members.get("carol").op, true);
  await t.send({ event: "topic", room: "#lobby", topic: "new topic", by: "carol" });
  assert.equal(lobby.topic, "new topic");
  await t.send({ event: "parted", room: "#lobby", user: "carol", reason: "bye" });
  assert.ok(!lobby.members.has("carol"));
  await t.send({ event: "kicked", room: "#lobby", user: "alice", by: "bob", reason: "spam" });
  assert.equal(lobby.joined, false);
  assert.deepEqual(texts(lobby).slice(-5), [
    "carol joined #lobby", "alice set mode +o carol", "carol set the topic: new topic",
    "carol left #lobby (bye)", "You were removed from #lobby by bob (spam)",
  ]);
});

test("a room joined from another session of the account appears here", async () => {
  const t = await loggedIn();
  await t.send({ event: "joined", room: "#elsewhere", user: "ALICE" });
  const conv = t.store.find("room", "#elsewhere");
  assert.ok(conv && conv.joined);
  await until(() => t.server.ops.filter((op) => op === "members").length === 2);
});

test("presence events update the people's presence", async () => {
  const t = await loggedIn();
  await t.send({ event: "presence", user: "bob", presence: "online", away: null });
  assert.equal(t.store.presenceOf("bob"), "online");
});

test("a contact request is noted and the contacts fetched again", async () => {
  const t = await loggedIn();
  const toasts = [];
  t.client.on("toast", (text, level) => toasts.push([text, level]));
  const before = t.server.ops.filter((op) => op === "contacts").length;
  await t.send({ event: "contact", user: "dave", status: "request" });
  await until(() => t.server.ops.filter((op) => op === "contacts").length === before + 1);
  assert.deepEqual(toasts, [["dave asks to be your contact.", "warning"]]);
  assert.deepEqual(texts(t.store.find("server", "")).slice(-1), ["dave asks to be your contact."]);
});

test("a notice from the server goes to the server's conversation", async () => {
  const t = await loggedIn();
  await t.send({ event: "notice", from: "admin", text: "restart at 22:00" });
  const item = t.store.find("server", "").items.find((i) => i.type === "message");
  assert.equal(item.text, "restart at 22:00");
  assert.ok(item.notice);
});

test("a changed key of someone you write to is a warning that waits to be acknowledged", async () => {
  const t = await loggedIn();
  const nacl = loadNacl();
  const first = toBase64(nacl.box.keyPair().publicKey);
  t.server.devices.bob = [{ device: "bob-laptop", public_key: first, label: "terminal on laptop" }];
  t.client.post(t.client.openDm("bob"), "hello"); // fetches (and so remembers) bob's key
  await until(() => t.server.messages.length === 1);
  const conv = t.store.find("dm", "bob");
  await until(() => texts(conv).some((x) => /fingerprint/.test(x)));
  t.server.devices.bob = [{ device: "bob-laptop", public_key: toBase64(nacl.box.keyPair().publicKey), label: "terminal on laptop" }];
  await t.send({ event: "key", user: "bob", device: "bob-laptop", action: "published", fingerprint: "x" });
  await until(() => conv.items.some((i) => i.level === "warning" && /CHANGED/.test(i.text)));
  const warnings = await t.secure.warnings("bob");
  assert.deepEqual(warnings.map((w) => w.device), ["bob-laptop"]);
  await t.secure.acknowledge("bob", "bob-laptop");
  assert.deepEqual(await t.secure.warnings("bob"), []);
});

test("a new device of a contact is announced with its label and fingerprint", async () => {
  const t = await loggedIn();
  const nacl = loadNacl();
  t.server.devices.bob = [{ device: "bob-laptop", public_key: toBase64(nacl.box.keyPair().publicKey), label: "terminal on laptop" }];
  t.client.post(t.client.openDm("bob"), "hello");
  await until(() => t.server.messages.length === 1);
  const conv = t.store.find("dm", "bob");
  t.server.devices.bob.push({ device: "bob-phone", public_key: toBase64(nacl.box.keyPair().publicKey), label: "Firefox on Android" });
  await t.send({ event: "key", user: "bob", device: "bob-phone", action: "published", fingerprint: "x" });
  await until(() => texts(conv).some((x) => /new device/.test(x)));
  assert.match(texts(conv).find((x) => /new device/.test(x)), /^bob has a new device: Firefox on Android, fingerprint [0-9a-f]{4}( [0-9a-f]{4}){7}\.$/);
});

test("an error without a request id is shown", async () => {
  const t = await loggedIn();
  const toasts = [];
  t.client.on("toast", (text, level) => toasts.push([text, level]));
  await t.send({ id: null, ok: false, error: { code: "line_too_long", message: "a line may be at most 16384 bytes" } });
  assert.deepEqual(toasts, [["Server: a line may be at most 16384 bytes", "error"]]);
});
