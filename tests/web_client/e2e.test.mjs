import assert from "node:assert/strict";
import { test } from "node:test";
import { js, loadNacl, subtle } from "./helpers.mjs";

const nacl = loadNacl();
const e2e = await import(js("e2e.js"));
const { memoryKv } = await import(js("storage.js"));
const { E2E, KeyCache, Trust, NOT_FOR_THIS_DEVICE, OTHER_KEY, TAMPERED, fingerprint, fromBase64, toBase64, loadOrCreateDevice } = e2e;

// Made with PyNaCl (the terminal client's library), see docs/web-client.md:
// Box(PrivateKey(bytes(range(1, 33))), PrivateKey(bytes(range(33, 65))).public_key)
// .encrypt("héllo, bob — ünïcode ✓".encode(), bytes(range(100, 124)))
const PY = {
  aSecret: "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
  aPublic: "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw=",
  bSecret: "ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A=",
  bPublic: "WGmv9FBUlzLLqu1eXfmzCm2jHLDldCutWtShp2jxpns=",
  nonce: "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7",
  ciphertext: "ds3srjzNxCy2ppMELu6Cqpb2Bp4Bto3g4Suk6ICySzDhi9YFsscjNi6I3b9U",
  combined: "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7ds3srjzNxCy2ppMELu6Cqpb2Bp4Bto3g4Suk6ICySzDhi9YFsscjNi6I3b9U",
  text: "héllo, bob — ünïcode ✓",
  fpA: "aaa8 fff7 03b5 0b22 97f4 f6e1 3508 f724",
  // pingchat.client.e2e.Identity(a).seal(b_public, "from the terminal")
  termCiphertext: "/OwWrwqyNT7u4zk8C+2o+/RMMlebRpxmJkrVOqj3nxhl",
  termNonce: "2rqpgc/XMQhH3siaub1leESW/370ryLa",
};

function deviceFrom(secretB64, id, label = id) {
  const secretKey = fromBase64(secretB64);
  return { id, label, secretKey, publicKey: nacl.box.keyPair.fromSecretKey(secretKey).publicKey };
}

function newDevice(id) {
  const pair = nacl.box.keyPair();
  return { id, label: id, secretKey: pair.secretKey, publicKey: pair.publicKey };
}

/** A pretend server: key.get answers from `accounts` (user -> devices). */
function keyServer(accounts, { perDevice = true } = {}) {
  const calls = [];
  const fetchKeys = async (user) => {
    calls.push(user);
    const name = Object.keys(accounts).find((u) => u.toLowerCase() === user.toLowerCase());
    const devices = (accounts[name] || []).map((d) => ({ device: d.id, public_key: toBase64(d.publicKey), label: d.label, published_at: "2026-11-21T10:00:00.000Z" }));
    if (!perDevice) return { user: name, public_key: devices.length ? devices[devices.length - 1].public_key : null };
    return { user: name, devices, public_key: devices.length ? devices[devices.length - 1].public_key : null };
  };
  return { fetchKeys, calls };
}

function client(me, device, accounts, options) {
  const server = keyServer(accounts, options);
  return new E2E({ nacl, me, device, keys: new KeyCache(server.fetchKeys) });
}

test("fingerprints are the server's and the terminal client's", async () => {
  assert.equal(await fingerprint(subtle, PY.aPublic), PY.fpA);
});

test("a box from PyNaCl opens here, and the same box is made here", () => {
  const bob = deviceFrom(PY.bSecret, "bobdevice1");
  const js = new E2E({ nacl, me: "bob", device: bob, keys: null });
  assert.equal(js._open(PY.ciphertext, PY.nonce, PY.aPublic), PY.text);
  assert.equal(js._open(PY.combined, null, PY.aPublic), PY.text); // nonce inside
  assert.equal(js._open(PY.termCiphertext, PY.termNonce, PY.aPublic), "from the terminal");
  const alice = deviceFrom(PY.aSecret, "alicedevice");
  const sealed = nacl.box(new TextEncoder().encode(PY.text), fromBase64(PY.nonce), fromBase64(PY.bPublic), alice.secretKey);
  assert.equal(toBase64(sealed), PY.ciphertext);
});

test("a DM is sealed for every device of the recipient and every other device of the sender", async () => {
  const a1 = newDevice("alice-phone");
  const a2 = newDevice("alice-laptop");
  const b1 = newDevice("bob-browser");
  const b2 = newDevice("bob-terminal");
  const accounts = { alice: [a1, a2], bob: [b1, b2] };
  const sender = client("alice", a1, accounts);
  const args = await sender.sealDm("BOB", "meet at noon");
  assert.equal(args.to, "bob");
  assert.equal(args.device, "alice-phone");
  assert.deepEqual(args.envelopes.map((e) => `${e.user}/${e.device}`).sort(), ["alice/alice-laptop", "bob/bob-browser", "bob/bob-terminal"]);
  const nonces = new Set(args.envelopes.map((e) => e.nonce));
  assert.equal(nonces.size, 3);
  for (const env of args.envelopes) assert.equal(fromBase64(env.nonce).length, 24);

  const event = { event: "message", from: "alice", to: "bob", device: "alice-phone", envelopes: args.envelopes, msg_id: 9 };
  for (const [me, dev] of [["bob", b1], ["bob", b2], ["alice", a2], ["alice", a1]]) {
    const reader = client(me, dev, accounts);
    assert.deepEqual(await reader.open(event), { text: "meet at noon" }, `${me}/${dev.id}`);
  }
});

test("a device the message was not sealed for says so, without an error", async () => {
  const a1 = newDevice("alice-phone");
  const b1 = newDevice("bob-browser");
  const accounts = { alice: [a1], bob: [b1] };
  const args = await client("alice", a1, accounts).sealDm("bob", "hi");
  const bNew = newDevice("bob-new-tablet");
  accounts.bob.push(bNew);
  const reader = client("bob", bNew, accounts);
  const opened = await reader.open({ from: "alice", to: "bob", device: "alice-phone", envelopes: args.envelopes });
  assert.deepEqual(opened, { error: NOT_FOR_THIS_DEVICE });
});

test("a changed envelope or an unknown sender device does not open", async () => {
  const a1 = newDevice("alice-phone");
  const b1 = newDevice("bob-browser");
  const accounts = { alice: [a1], bob: [b1] };
  const args = await client("alice", a1, accounts).sealDm("bob", "hi");
  const env = { ...args.envelopes[0] };
  const raw = fromBase64(env.ciphertext);
  raw[0] ^= 1;
  env.ciphertext = toBase64(raw);
  const reader = client("bob", b1, accounts);
  assert.deepEqual(await reader.open({ from: "alice", device: "alice-phone", envelopes: [env] }), { error: TAMPERED });
  assert.deepEqual(await reader.open({ from: "alice", device: "gone-device", envelopes: args.envelopes }), { error: TAMPERED });
  assert.deepEqual(await reader.open({ from: "alice", device: "alice-phone", envelopes: [{ user: "bob", device: "bob-browser", ciphertext: "%%%", nonce: "x" }] }), { error: TAMPERED });
});

test("the old single-key form opens with any of the peer's keys, the legacy one included", async () => {
  const alice = deviceFrom(PY.aSecret, "default");
  const bob = deviceFrom(PY.bSecret, "bob-browser");
  const accounts = { alice: [newDevice("alice-new"), alice], bob: [bob] };
  const reader = client("bob", bob, accounts);
  assert.deepEqual(await reader.open({ from: "alice", to: "bob", ciphertext: PY.ciphertext, nonce: PY.nonce }), { text: PY.text });
  assert.deepEqual(await reader.open({ from: "alice", to: "bob", ciphertext: PY.combined }), { text: PY.text });
  const stranger = client("bob", newDevice("bob-other"), accounts);
  assert.deepEqual(await stranger.open({ from: "alice", to: "bob", ciphertext: PY.ciphertext, nonce: PY.nonce }), { error: OTHER_KEY });
});

test("my own old-form message reads back with the peer's key (the box is symmetric)", async () => {
  const alice = deviceFrom(PY.aSecret, "alice-browser");
  const bob = deviceFrom(PY.bSecret, "default");
  const reader = client("alice", alice, { alice: [alice], bob: [bob] });
  assert.deepEqual(await reader.open({ from: "alice", to: "bob", ciphertext: PY.ciphertext, nonce: PY.nonce }), { text: PY.text });
});

test("a server without per-device keys gets the old form, readable by the terminal client", async () => {
  const alice = deviceFrom(PY.aSecret, "alice-browser");
  const bob = deviceFrom(PY.bSecret, "default");
  const sender = client("alice", alice, { alice: [], bob: [bob] }, { perDevice: false });
  const args = await sender.sealDm("bob", "old server");
  assert.deepEqual(Object.keys(args).sort(), ["ciphertext", "nonce", "to"]);
  const opened = nacl.box.open(fromBase64(args.ciphertext), fromBase64(args.nonce), fromBase64(PY.aPublic), bob.secretKey);
  assert.equal(new TextDecoder().decode(opened), "old server");
});

test("a recipient whose only key is the legacy default gets the old form, as the terminal client sends it", async () => {
  // A server with per-device keys lists a client from before device ids as
  // device "default" (docs/e2e.md); that client cannot read envelopes.
  const alice = deviceFrom(PY.aSecret, "alice-browser");
  const bob = deviceFrom(PY.bSecret, "default");
  const sender = client("alice", alice, { alice: [alice, newDevice("alice-tty")], bob: [bob] });
  const args = await sender.sealDm("bob", "to an old client");
  assert.deepEqual(Object.keys(args).sort(), ["ciphertext", "nonce", "to"]);
  const opened = nacl.box.open(fromBase64(args.ciphertext), fromBase64(args.nonce), fromBase64(PY.aPublic), bob.secretKey);
  assert.equal(new TextDecoder().decode(opened), "to an old client");
  // Once bob has a device key besides, envelopes again.
  const upgraded = client("alice", alice, { alice: [alice], bob: [bob, newDevice("bob-new")] });
  assert.ok(Array.isArray((await upgraded.sealDm("bob", "hi")).envelopes));
});

test("no key, no sealing: the caller sends plain text", async () => {
  const a1 = newDevice("alice-phone");
  assert.equal(await client("alice", a1, { alice: [a1], ircuser: [] }).sealDm("ircuser", "hi"), null);
});

test("a new key of the sender is fetched again when the cached one does not fit", async () => {
  const a1 = newDevice("alice-phone");
  const b1 = newDevice("bob-browser");
  const accounts = { alice: [], bob: [b1] };
  const server = keyServer(accounts);
  const reader = new E2E({ nacl, me: "bob", device: b1, keys: new KeyCache(server.fetchKeys) });
  await reader.keys.get("alice"); // cached: no devices yet
  accounts.alice.push(a1);
  const args = await client("alice", a1, accounts).sealDm("bob", "fresh");
  assert.deepEqual(await reader.open({ from: "alice", device: "alice-phone", envelopes: args.envelopes }), { text: "fresh" });
  assert.deepEqual(server.calls, ["alice", "alice"]);
});

test("a message from a device revoked since opens with the key remembered for it (trust on first use)", async () => {
  // docs/e2e.md: "If S is not listed any more (revoked since), use the key
  // remembered for (A, S) by trust on first use" — for the old form too.
  const a1 = deviceFrom(PY.bSecret, "alice-browser");
  const b1 = newDevice("bob-laptop");
  const bobLegacy = deviceFrom(PY.aSecret, "default");
  const accounts = { alice: [a1], bob: [bobLegacy, b1] };
  const sealed = await client("bob", b1, accounts).sealDm("alice", "before the revoke");
  const trust = new Trust(memoryKv(), subtle, "alice");
  const keys = new KeyCache(keyServer(accounts).fetchKeys);
  keys.onFetched = (info) => trust.observe(info);
  const reader = new E2E({ nacl, me: "alice", device: a1, keys, remembered: (user) => trust.remembered(user) });
  const m = { from: "bob", to: "alice", device: "bob-laptop", envelopes: sealed.envelopes };
  const old = { from: "bob", to: "alice", ciphertext: PY.ciphertext, nonce: PY.nonce };
  assert.deepEqual(await reader.open(m), { text: "before the revoke" });
  assert.deepEqual(await reader.open(old), { text: PY.text });

  accounts.bob = []; // bob revokes both: the history stays readable here
  keys.clear();
  assert.deepEqual(await reader.open(m), { text: "before the revoke" });
  assert.deepEqual(await reader.open(old), { text: PY.text });
  // Without a remembered key it still cannot be opened.
  const stranger = new E2E({ nacl, me: "alice", device: a1, keys: new KeyCache(keyServer(accounts).fetchKeys) });
  assert.deepEqual(await stranger.open(m), { error: TAMPERED });
});

test("the device key is made once and kept", async () => {
  const kv = memoryKv();
  const first = await loadOrCreateDevice(kv, nacl, "Alice", "Chromium on Linux");
  assert.ok(first.created);
  assert.match(first.id, /^[A-Za-z0-9_-]{22}$/);
  const again = await loadOrCreateDevice(kv, nacl, "alice", "ignored");
  assert.ok(!again.created);
  assert.equal(again.id, first.id);
  assert.equal(again.label, "Chromium on Linux");
  assert.deepEqual([...again.publicKey], [...first.publicKey]);
  const other = await loadOrCreateDevice(kv, nacl, "bob", "x");
  assert.notEqual(other.id, first.id);
});

test("trust on first use: the first keys, a new device, a changed key until acknowledged", async () => {
  const kv = memoryKv();
  const trust = new Trust(kv, subtle, "alice");
  const k1 = toBase64(newDevice("x").publicKey);
  const k2 = toBase64(newDevice("x").publicKey);
  const k3 = toBase64(newDevice("x").publicKey);
  const info = (devices) => ({ user: "bob", devices: devices.map(([device, publicKey, label]) => ({ device, publicKey, label })) });

  let news = await trust.observe(info([["laptop", k1, "terminal on laptop"]]));
  assert.deepEqual(news.map((n) => n.kind), ["first"]);
  assert.equal(news[0].fingerprint, await fingerprint(subtle, k1));
  assert.deepEqual(await trust.observe(info([["laptop", k1, "terminal on laptop"]])), []);

  news = await trust.observe(info([["laptop", k1], ["browser", k2, "Firefox on Linux"]]));
  assert.deepEqual(news.map((n) => [n.kind, n.device, n.label]), [["new-device", "browser", "Firefox on Linux"]]);

  news = await trust.observe(info([["laptop", k3, "terminal on laptop"], ["browser", k2]]));
  assert.deepEqual(news.map((n) => n.kind), ["changed"]);
  assert.equal(news[0].previous, await fingerprint(subtle, k1));
  assert.equal(news[0].fingerprint, await fingerprint(subtle, k3));

  // Shown again (a fresh Trust, as after a reload) until acknowledged.
  const later = new Trust(kv, subtle, "ALICE");
  assert.deepEqual((await later.warnings("Bob")).map((w) => w.device), ["laptop"]);
  await later.acknowledge("bob", "laptop");
  assert.deepEqual(await later.warnings("bob"), []);
  assert.deepEqual(await later.observe(info([["laptop", k3], ["browser", k2]])), []);
});

test("a device added after a first look at a key-less account is a new device", async () => {
  const trust = new Trust(memoryKv(), subtle, "alice");
  assert.deepEqual(await trust.observe({ user: "alice", devices: [] }), []);
  const k = toBase64(newDevice("x").publicKey);
  const news = await trust.observe({ user: "alice", devices: [{ device: "phone", publicKey: k, label: "Firefox on Android" }] });
  assert.deepEqual(news.map((n) => n.kind), ["new-device"]);
});

test("what one account trusts is apart from another account's on the same browser", async () => {
  const kv = memoryKv();
  const k1 = toBase64(newDevice("x").publicKey);
  const info = { user: "bob", devices: [{ device: "d1", publicKey: k1 }] };
  await new Trust(kv, subtle, "alice").observe(info);
  assert.deepEqual((await new Trust(kv, subtle, "carol").observe(info)).map((n) => n.kind), ["first"]);
});

test("base64 is the standard padded alphabet, strict on input", () => {
  const bytes = new Uint8Array([0, 255, 62, 63, 1]);
  assert.equal(toBase64(bytes), "AP8+PwE=");
  assert.deepEqual([...fromBase64("AP8+PwE=")], [...bytes]);
  assert.throws(() => fromBase64("AP8-PwE="));
  assert.throws(() => fromBase64("abc"));
});
