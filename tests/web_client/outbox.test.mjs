import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeTimers, js, memoryStorage, settle } from "./helpers.mjs";

const { Outbox } = await import(js("outbox.js"));
const { ConnectionLost, NotConnected, RequestError } = await import(js("connection.js"));

/** A send() the test answers: each call waits in `calls` for resolve/reject. */
function fakeSend() {
  const calls = [];
  const send = (entry) => new Promise((resolve, reject) => calls.push({ entry, resolve, reject }));
  return { send, calls };
}

test("typed while offline, it waits, then goes in order once the session is up", async () => {
  const { send, calls } = fakeSend();
  const box = new Outbox({ send });
  box.add("#a", "one");
  box.add("#a", "two");
  assert.equal(calls.length, 0);
  assert.deepEqual(box.of("#A").map((e) => e.state), ["queued", "queued"]);
  const resumed = box.resume("me", async () => []);
  await settle();
  assert.equal(calls.length, 1);
  assert.equal(calls[0].entry.text, "one");
  calls[0].resolve({ msg_id: 1 });
  await settle();
  assert.equal(calls[1].entry.text, "two");
  calls[1].resolve({ msg_id: 2 });
  await resumed;
  assert.equal(box.entries.length, 0);
});

test("the server's refusal marks it not sent with the reason; retry sends it again", async () => {
  const { send, calls } = fakeSend();
  const box = new Outbox({ send });
  const sent = [];
  box.onSent = (e) => sent.push(e.text);
  await box.resume("me", async () => []);
  const entry = box.add("#a", "hello");
  await settle();
  calls[0].reject(new RequestError("not_in_room", "you are not in #a"));
  await settle();
  assert.equal(entry.state, "failed");
  assert.equal(entry.error, "you are not in #a");
  box.retry(entry.id);
  await settle();
  assert.equal(calls.length, 2);
  calls[1].resolve({ msg_id: 5 });
  await settle();
  assert.deepEqual(sent, ["hello"]);
  assert.equal(box.entries.length, 0);
});

test("a failed message can be discarded", async () => {
  const { send, calls } = fakeSend();
  const box = new Outbox({ send });
  await box.resume("me", async () => []);
  const entry = box.add("bob", "hi");
  await settle();
  calls[0].reject(new RequestError("forbidden", "bob accepts messages from contacts only"));
  await settle();
  box.discard(entry.id);
  assert.equal(box.entries.length, 0);
});

test("a drop while sending makes it unsure; found in what came meanwhile, it is not sent twice", async () => {
  const { send, calls } = fakeSend();
  const box = new Outbox({ send });
  await box.resume("me", async () => []);
  const entry = box.add("#a", "did it arrive?");
  await settle();
  calls[0].reject(new ConnectionLost());
  await settle();
  box.offline();
  assert.equal(entry.state, "unsure");
  await box.resume("Me", async (target) => {
    assert.equal(target, "#a");
    return [{ from: "bob", text: "did it arrive?" }, { from: "ME", text: "did it arrive?" }];
  });
  assert.equal(calls.length, 1);
  assert.equal(box.entries.length, 0);
});

test("an unsure message not found after the reconnection is sent again", async () => {
  const { send, calls } = fakeSend();
  const box = new Outbox({ send });
  await box.resume("me", async () => []);
  box.add("#a", "lost on the way");
  await settle();
  calls[0].reject(new ConnectionLost());
  await settle();
  box.offline();
  const resumed = box.resume("me", async () => [{ from: "bob", text: "something else" }]);
  await settle();
  assert.equal(calls.length, 2);
  assert.equal(calls[1].entry.text, "lost on the way");
  calls[1].resolve({ msg_id: 9 });
  await resumed;
  assert.equal(box.entries.length, 0);
});

test("two identical unsure messages need two stored copies", async () => {
  const { send, calls } = fakeSend();
  const box = new Outbox({ send });
  box.entries.push({ id: "o1", target: "#a", text: "ok", state: "unsure" }, { id: "o2", target: "#a", text: "ok", state: "unsure" });
  const resumed = box.resume("me", async () => [{ from: "me", text: "ok" }]);
  await settle();
  assert.equal(calls.length, 1);
  calls[0].resolve({});
  await resumed;
});

test("NotConnected means it never left: it stays queued", async () => {
  const { send, calls } = fakeSend();
  const box = new Outbox({ send });
  await box.resume("me", async () => []);
  const entry = box.add("#a", "x");
  await settle();
  calls[0].reject(new NotConnected());
  await settle();
  assert.equal(entry.state, "queued");
  assert.equal(box.online, false);
});

test("rate_limited waits retry_after, then sends again", async () => {
  const { send, calls } = fakeSend();
  const timers = new FakeTimers();
  const box = new Outbox({ send, timers });
  await box.resume("me", async () => []);
  box.add("#a", "x");
  await settle();
  const err = new RequestError("rate_limited", "slow", { error: { retry_after: 3 } });
  calls[0].reject(err);
  await settle();
  assert.deepEqual(timers.pendingDelays(), [3000]);
  timers.advance(3000);
  await settle();
  assert.equal(calls.length, 2);
});

test("the list survives a reload of the tab; what was sending comes back unsure", async () => {
  const storage = memoryStorage();
  const { send, calls } = fakeSend();
  const box = new Outbox({ send, storage, key: "k" });
  await box.resume("me", async () => []);
  box.add("#a", "in flight");
  await settle();
  assert.equal(calls.length, 1);
  const again = new Outbox({ send: fakeSend().send, storage, key: "k" });
  assert.deepEqual(again.entries.map((e) => [e.text, e.state]), [["in flight", "unsure"]]);
  const next = again.add("#a", "later");
  assert.notEqual(next.id, again.entries[0].id);
  assert.deepEqual(JSON.parse(storage.getItem("k")).map((e) => e.text), ["in flight", "later"]);
});

test("once everything is sent, nothing is left in storage", async () => {
  const storage = memoryStorage();
  const { send, calls } = fakeSend();
  const box = new Outbox({ send, storage, key: "k" });
  await box.resume("me", async () => []);
  box.add("#a", "x");
  await settle();
  assert.notEqual(storage.getItem("k"), null);
  calls[0].resolve({});
  await settle();
  assert.equal(storage.getItem("k"), null);
});

test("clear() forgets everything, in storage too (logging out)", async () => {
  const storage = memoryStorage();
  const box = new Outbox({ send: fakeSend().send, storage, key: "k" });
  box.add("#a", "never sent");
  assert.notEqual(storage.getItem("k"), null);
  box.clear();
  assert.equal(box.entries.length, 0);
  assert.equal(storage.getItem("k"), null);
});
