// Deleting one's own account in the web client: `account.delete`, what the
// page forgets afterwards, the server's refusals, and the dialog's words.

import assert from "node:assert/strict";
import { test } from "node:test";
import { js, settle, until } from "./helpers.mjs";

const { accountDeletedText } = await import(js("client.js"));
const { memoryKv } = await import(js("storage.js"));
const { checkDeletion, deletionRefusal, deletionWarning } = await import(js("ui/delete-account.js"));
const { setup, synced } = await import("./fake-server.mjs");

/** Logged in as alice, with things this browser keeps for her (and for bob,
 * another account of this browser, which must stay). */
async function loggedIn() {
  const kv = memoryKv();
  await kv.set("device:bob", { id: "bobs-device-id-0001", secretKey: [1] });
  await kv.set("trust:bob:carol", { seen: true, devices: {}, warnings: [] });
  await kv.set("trust:alice:carol", { seen: true, devices: {}, warnings: [] });
  const t = setup({ kv });
  t.kv = kv;
  t.toasts = [];
  t.client.on("toast", (text, level) => t.toasts.push([text, level]));
  t.server.attach(t.sockets[0]);
  await until(() => synced(t) === 1);
  t.client.openDm("carol");
  t.client.saveRead();
  // A message the server has not acknowledged yet: in the outbox.
  t.server.hold = "say";
  t.client.post(t.store.find("room", "#lobby"), "still on its way");
  await settle();
  return t;
}

function keysOf(storage) {
  return [...storage.map.keys()].filter((k) => k.startsWith("pingchat.")).sort();
}

test("deleting the account forgets the token, the lists, the outbox and this account's keys, then shows the login page", async () => {
  const t = await loggedIn();
  assert.ok(t.kv.map.has("device:alice"), "the page made a device key at login");
  assert.notDeepEqual(keysOf(t.sessions.session), []);
  assert.ok(keysOf(t.tab).some((k) => k.startsWith("pingchat.outbox.")));

  const reply = await t.client.deleteAccount({ password: "the password" });
  assert.equal(reply.removed, 7);
  const request = t.sockets[0].sent.find((r) => r.op === "account.delete");
  assert.deepEqual({ ...request, id: undefined }, { op: "account.delete", password: "the password", id: undefined });

  // Nothing of alice is left in the browser's storage; bob's things stay.
  assert.equal(t.sessions.load(), null);
  assert.deepEqual(keysOf(t.sessions.session), []);
  assert.deepEqual(keysOf(t.sessions.local), []);
  assert.deepEqual(keysOf(t.tab), []);
  assert.deepEqual([...t.kv.map.keys()].sort(), ["device:bob", "trust:bob:carol"]);
  assert.equal(t.client.user, null);
  assert.equal(t.client.outbox, null);
  assert.equal(t.store.conversations.size, 0);
  assert.equal(t.client.secure.available, false);

  const [, shown] = t.seen.find((s) => s[0] === "need-login");
  assert.equal(shown.message, "Your account was deleted. 7 messages were deleted with it: what you wrote, and"
    + " the direct messages you received. The name alice cannot be registered again for 30 days.");

  // The server's goodbye and close are not "reconnecting" news: the page
  // left that connection and opened a new one at once, for the login page.
  await settle();
  assert.deepEqual(t.toasts, []);
  assert.equal(t.sockets[0].closed, true);
  assert.equal(t.sockets.length, 2);
  assert.deepEqual(t.timers.pendingDelays().filter((ms) => ms < 15000), [], "no back-off wait");
  const resumes = t.server.ops.filter((op) => op === "resume").length;
  t.server.attach(t.sockets[1]);
  await settle();
  assert.equal(t.server.ops.filter((op) => op === "resume").length, resumes, "nothing to resume");
  assert.equal(t.seen.filter((s) => s[0] === "need-login").length, 1);
});

test("with two-factor authentication the server asks for the code; nothing changes until it is right", async () => {
  const t = await loggedIn();
  t.server.account.otp = "123456";
  await assert.rejects(t.client.deleteAccount({ password: "the password" }), (e) => e.code === "otp_required");
  await assert.rejects(t.client.deleteAccount({ password: "the password", otp: "654321" }), (e) => e.code === "auth_failed");
  assert.equal(t.client.user, "alice");
  assert.deepEqual(t.sessions.load(), { user: "alice", token: "good-token", remember: false });
  assert.ok(t.kv.map.has("device:alice"));
  assert.equal(t.client.outbox.entries.length, 1, "the outbox is kept while the account is");

  t.server.account.messages = "anonymise";
  const reply = await t.client.deleteAccount({ password: "the password", otp: "123456" });
  assert.equal(reply.anonymised, 5);
  const sent = t.sockets[0].sent.filter((r) => r.op === "account.delete").map((r) => r.otp);
  assert.deepEqual(sent, [undefined, "654321", "123456"]);
  assert.equal(t.sessions.load(), null);
  assert.ok(!t.kv.map.has("device:alice"));
  const [, shown] = t.seen.find((s) => s[0] === "need-login");
  assert.match(shown.message, /^Your account was deleted\. 2 direct messages \(sent and received\) were deleted with it; 5 room messages you wrote stay, under a placeholder name\./);
});

test("a wrong password deletes nothing and keeps the session", async () => {
  const t = await loggedIn();
  await assert.rejects(t.client.deleteAccount({ password: "not it" }), (e) => e.code === "auth_failed");
  assert.equal(t.client.user, "alice");
  assert.equal(t.client.loggedIn, true);
  assert.deepEqual(t.sessions.load(), { user: "alice", token: "good-token", remember: false });
  assert.ok(t.kv.map.has("device:alice") && t.kv.map.has("trust:alice:carol"));
  assert.equal(t.sockets.length, 1);
  assert.equal(t.sockets[0].closed, false);
  assert.equal(t.seen.filter((s) => s[0] === "need-login").length, 0);
});

test("the warning says what goes, what stays, and that the name is reserved for 30 days", () => {
  const { deleted, stays } = deletionWarning("alice");
  const text = deleted.join("\n");
  assert.match(text, /every direct message you sent or received/);
  assert.match(text, /placeholder/);
  assert.match(text, /this browser's encryption key/);
  assert.match(stays.join("\n"), /the name alice: nobody, you included, can register it for 30 days/);
});

test("the form asks for the account's name (any case), the password, and a 6-digit code once needed", () => {
  const base = { user: "Alice", typed: "alice ", password: "pw", otpShown: false, otp: "" };
  assert.equal(checkDeletion(base), null);
  assert.equal(checkDeletion({ ...base, typed: "alic" }).focus, "name");
  assert.match(checkDeletion({ ...base, typed: "" }).message, /type the name of the account, Alice/);
  assert.equal(checkDeletion({ ...base, password: "" }).focus, "password");
  assert.equal(checkDeletion({ ...base, otpShown: true, otp: "12345" }).focus, "otp");
  assert.equal(checkDeletion({ ...base, otpShown: true, otp: "123 456" }), null);
});

test("the server's refusals are said plainly, and otp_required shows the code field", () => {
  assert.deepEqual(deletionRefusal({ code: "otp_required" }).otp, true);
  assert.equal(deletionRefusal({ code: "otp_required" }).focus, "otp");
  assert.equal(deletionRefusal({ code: "auth_failed" }).message, "Wrong password or code: the account was not deleted.");
  const limited = deletionRefusal({ code: "rate_limited", message: "too many attempts", retryAfter: 41.2 });
  assert.equal(limited.message, "too many attempts (wait 42 s). The account was not deleted.");
  assert.match(deletionRefusal({ code: "connection_lost" }).message, /may or may not be deleted/);
  assert.match(deletionRefusal({ code: "not_connected" }).message, /nothing was deleted/);
});

test("one message, one room message: the login page's words agree in number", () => {
  assert.equal(accountDeletedText({ user: "bob", messages: "remove", removed: 1, anonymised: 0 }),
    "Your account was deleted. 1 message was deleted with it: what you wrote, and the direct messages you"
    + " received. The name bob cannot be registered again for 30 days.");
  assert.match(accountDeletedText({ user: "bob", messages: "anonymise", removed: 0, anonymised: 1 }),
    /0 direct messages \(sent and received\) were deleted with it; 1 room message you wrote stays,/);
  assert.match(accountDeletedText({ user: "bob", messages: "remove", removed: 0, anonymised: 0 }),
    /^Your account was deleted\. It had no messages\. The name bob/);
});

test("memoryKv.deletePrefix deletes exactly the keys with that prefix", async () => {
  const kv = memoryKv();
  for (const k of ["trust:al:x", "trust:al:y", "trust:alice:x", "trust:a", "device:al"]) await kv.set(k, 1);
  await kv.deletePrefix("trust:al:");
  assert.deepEqual([...kv.map.keys()].sort(), ["device:al", "trust:a", "trust:alice:x"]);
});
