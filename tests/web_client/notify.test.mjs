import assert from "node:assert/strict";
import { test } from "node:test";
import { js, memoryStorage } from "./helpers.mjs";

const { Notifier, shouldNotify } = await import(js("notify.js"));

const dm = { kind: "dm", key: "@bob", name: "bob" };
const room = { kind: "room", key: "#a", name: "#a" };
const item = (extra = {}) => ({ from: "bob", text: "hi", mine: false, mention: false, offline: false, ...extra });

test("only mentions and DMs, only while the tab is hidden, only when turned on", () => {
  const base = { enabled: true, hidden: true };
  assert.ok(shouldNotify({ ...base, conv: dm, item: item() }));
  assert.ok(shouldNotify({ ...base, conv: room, item: item({ mention: true }) }));
  assert.ok(!shouldNotify({ ...base, conv: room, item: item() }));
  assert.ok(!shouldNotify({ ...base, hidden: false, conv: dm, item: item() }));
  assert.ok(!shouldNotify({ ...base, enabled: false, conv: dm, item: item() }));
  assert.ok(!shouldNotify({ ...base, conv: dm, item: item({ mine: true }) }));
});

function fakeNotification(permission, answer = permission) {
  const shown = [];
  class N {
    constructor(title, options) {
      this.title = title;
      this.options = options;
      shown.push(this);
    }

    close() {}

    static requestPermission() {
      N.permission = answer;
      return Promise.resolve(answer);
    }
  }
  N.permission = permission;
  return { N, shown };
}

test("turning notifications on asks the browser; a refusal keeps them off", async () => {
  const storage = memoryStorage();
  const refused = fakeNotification("default", "denied");
  const off = new Notifier({ Notification: refused.N, storage, document: { hidden: true } });
  assert.equal(await off.enable(), false);
  assert.equal(off.enabled, false);
  const allowed = fakeNotification("default", "granted");
  const on = new Notifier({ Notification: allowed.N, storage, document: { hidden: true } });
  assert.equal(await on.enable(), true);
  assert.equal(on.enabled, true);
  on.disable();
  assert.equal(on.enabled, false);
});

test("an encrypted DM's text stays out of the system's notification", async () => {
  const { N, shown } = fakeNotification("granted");
  const storage = memoryStorage();
  const n = new Notifier({ Notification: N, storage, document: { hidden: true } });
  await n.enable();
  n.maybe(dm, item({ text: "the secret", encrypted: true }), () => {});
  n.maybe(room, item({ text: "hey alice", mention: true }), () => {});
  assert.deepEqual(shown.map((s) => [s.title, s.options.body]), [
    ["bob (direct message)", "New encrypted message"],
    ["bob in #a", "hey alice"],
  ]);
});

test("without the Notification API nothing breaks", () => {
  const n = new Notifier({ Notification: undefined, storage: memoryStorage(), document: { hidden: true } });
  assert.equal(n.supported, false);
  assert.equal(n.maybe(dm, item(), () => {}), null);
});
