// End-to-end encrypted direct messages, per device (docs/web-client.md).
//
// This browser is one *device* of the account: a random device id and an
// X25519 key pair kept in IndexedDB (the private key never leaves it). A DM
// is sealed with NaCl's box (X25519 + XSalsa20-Poly1305, tweetnacl) once for
// every device of the recipient and once for every other device of the
// sender: `dm {to, device, envelopes: [{user, device, ciphertext, nonce}]}`.
// The old single-key form (`ciphertext` + `nonce`, from terminal clients of
// before per-device keys) stays readable. Every (user, device) key seen is
// remembered: a new device is announced, a changed key is a loud warning
// until the user acknowledges it (trust on first use).
//
// Everything outside is injected: `nacl` (tweetnacl), `subtle` (WebCrypto,
// for the SHA-256 of fingerprints), a key-value `storage` (IndexedDB in the
// page, a Map in tests) and `fetchKeys(user)` (the `key.get` request).

import { fold } from "./format.js";

export const NOT_FOR_THIS_DEVICE =
  "encrypted for other devices of yours; this device cannot read it";
export const OTHER_KEY = "sealed for another key; this device cannot read it";
export const TAMPERED =
  "an encrypted message that could not be opened: it was changed on the way, or its sender's key is unknown";

const DEVICE_RE = /^[A-Za-z0-9_-]{8,64}$/;
// The one key an account published before device ids existed.
export const LEGACY_DEVICE = "default";

// -- base64 (standard alphabet, padded), as the server and PyNaCl use -----------

export function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

export function fromBase64(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) {
    throw new Error("not base64");
  }
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function base64url(bytes) {
  return toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The first 32 hex digits of the key's SHA-256, in groups of 4: the same
 * fingerprint the server and the terminal client show. */
export async function fingerprint(subtle, publicKeyB64) {
  const digest = new Uint8Array(await subtle.digest("SHA-256", fromBase64(publicKeyB64)));
  const hex = [...digest.slice(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return hex.match(/.{4}/g).join(" ");
}

// -- this device -------------------------------------------------------------------

/** This browser's device for *user*: loaded from *storage*, or made (and
 * stored) the first time. */
export async function loadOrCreateDevice(storage, nacl, user, label) {
  const key = "device:" + fold(user);
  const saved = await storage.get(key);
  if (saved && DEVICE_RE.test(saved.id) && saved.secretKey && saved.secretKey.length === 32) {
    const secretKey = Uint8Array.from(saved.secretKey);
    const pair = nacl.box.keyPair.fromSecretKey(secretKey);
    return { id: saved.id, label: saved.label || label, secretKey, publicKey: pair.publicKey, created: false };
  }
  const pair = nacl.box.keyPair();
  const id = base64url(nacl.randomBytes(16));
  await storage.set(key, { id, label, secretKey: pair.secretKey, createdAt: new Date().toISOString() });
  return { id, label, secretKey: pair.secretKey, publicKey: pair.publicKey, created: true };
}

export async function forgetDevice(storage, user) {
  await storage.delete("device:" + fold(user));
}

/** Everything this browser keeps for the account *user* (deleted on the
 * server): its device key, and the keys it saw of others (`Trust`). */
export async function forgetAccount(storage, user) {
  await forgetDevice(storage, user);
  await storage.deletePrefix(trustPrefix(user));
}

// -- the published keys of accounts --------------------------------------------------

/** `key.get`'s reply as a list of devices. A server without per-device keys
 * answers only `public_key`: that is the account's one legacy key. */
export function devicesOf(reply) {
  if (Array.isArray(reply.devices)) {
    return {
      user: String(reply.user),
      perDevice: true,
      devices: reply.devices
        .filter((d) => d && typeof d.public_key === "string" && typeof d.device === "string")
        .map((d) => ({
          device: d.device,
          publicKey: d.public_key,
          label: typeof d.label === "string" ? d.label : null,
          publishedAt: d.published_at || null,
        })),
    };
  }
  const devices = typeof reply.public_key === "string"
    ? [{ device: LEGACY_DEVICE, publicKey: reply.public_key, label: null, publishedAt: null }]
    : [];
  return { user: String(reply.user), perDevice: false, devices };
}

/** A cache of `key.get` answers; a `key` event or a failed open refreshes it. */
export class KeyCache {
  constructor(fetchKeys) {
    this.fetchKeys = fetchKeys;
    this.cache = new Map();
    this.onFetched = () => {};
  }

  async get(user, fresh = false) {
    const key = fold(user);
    if (!fresh && this.cache.has(key)) return this.cache.get(key);
    const promise = this.fetchKeys(user).then(async (reply) => {
      const info = devicesOf(reply);
      await this.onFetched(info);
      return info;
    });
    this.cache.set(key, promise);
    try {
      return await promise;
    } catch (e) {
      if (this.cache.get(key) === promise) this.cache.delete(key);
      throw e;
    }
  }

  forget(user) {
    this.cache.delete(fold(user));
  }

  clear() {
    this.cache.clear();
  }
}

// -- trust on first use ----------------------------------------------------------------

function trustPrefix(me) {
  return `trust:${fold(me)}:`;
}

/**
 * What this browser has seen of other accounts' device keys, per (user,
 * device). `observe` says what is new: `first` (the first keys seen for that
 * user), `new-device`, `changed` (a device's key is not the one seen before:
 * stays in `warnings` until `acknowledge`).
 */
export class Trust {
  constructor(storage, subtle, me) {
    this.storage = storage;
    this.subtle = subtle;
    this.me = fold(me);
  }

  _key(user) {
    return trustPrefix(this.me) + fold(user);
  }

  async known(user) {
    return (await this.storage.get(this._key(user))) || { seen: false, devices: {}, warnings: [] };
  }

  async observe(info, { skipDevice = null } = {}) {
    const record = await this.known(info.user);
    // The first look at a user (even one with no key yet): what is there now
    // is "first"; a device added later is "new-device".
    const first = !record.seen && Object.keys(record.devices).length === 0;
    const news = [];
    let dirty = !record.seen;
    record.seen = true;
    for (const d of info.devices) {
      if (d.device === skipDevice) continue;
      const seen = record.devices[d.device];
      const fp = await fingerprint(this.subtle, d.publicKey);
      if (!seen) {
        record.devices[d.device] = { key: d.publicKey, label: d.label, since: new Date().toISOString() };
        news.push({ kind: first ? "first" : "new-device", user: info.user, device: d.device, label: d.label, fingerprint: fp });
        dirty = true;
      } else if (seen.key !== d.publicKey) {
        const previous = await fingerprint(this.subtle, seen.key);
        const warning = { user: info.user, device: d.device, label: d.label, previous, fingerprint: fp, at: new Date().toISOString() };
        record.devices[d.device] = { key: d.publicKey, label: d.label, since: warning.at };
        record.warnings = (record.warnings || []).filter((w) => w.device !== d.device).concat([warning]);
        news.push({ kind: "changed", ...warning });
        dirty = true;
      } else if (d.label && seen.label !== d.label) {
        seen.label = d.label;
        dirty = true;
      }
    }
    if (dirty) await this.storage.set(this._key(info.user), record);
    return news;
  }

  /** The key last seen for each device of *user* ({device: public key}),
   * kept after a device is revoked. */
  async remembered(user) {
    const out = {};
    for (const [device, seen] of Object.entries((await this.known(user)).devices)) {
      if (seen && typeof seen.key === "string") out[device] = seen.key;
    }
    return out;
  }

  /** Changed keys not yet acknowledged by the user. */
  async warnings(user) {
    return (await this.known(user)).warnings || [];
  }

  async acknowledge(user, device) {
    const record = await this.known(user);
    record.warnings = (record.warnings || []).filter((w) => w.device !== device);
    await this.storage.set(this._key(user), record);
  }
}

// -- sealing and opening ------------------------------------------------------------------

function utf8(text) {
  return new TextEncoder().encode(text);
}

function fromUtf8(bytes) {
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

export class E2E {
  /**
   * @param {object} options
   * @param {object} options.nacl     tweetnacl
   * @param {string} options.me       this account
   * @param {object} options.device   from loadOrCreateDevice
   * @param {KeyCache} options.keys
   * @param {function} [options.remembered]  user -> {device: public key}
   *   seen before (trust on first use), for devices revoked since
   */
  constructor({ nacl, me, device, keys, remembered = async () => ({}) }) {
    this.nacl = nacl;
    this.me = me;
    this.device = device;
    this.keys = keys;
    this.remembered = remembered;
  }

  get publicKey() {
    return toBase64(this.device.publicKey);
  }

  _box(text, publicKeyB64) {
    const nonce = this.nacl.randomBytes(this.nacl.box.nonceLength);
    const sealed = this.nacl.box(utf8(text), nonce, fromBase64(publicKeyB64), this.device.secretKey);
    return { ciphertext: toBase64(sealed), nonce: toBase64(nonce) };
  }

  _open(ciphertextB64, nonceB64, publicKeyB64) {
    let data;
    let nonce;
    let key;
    try {
      data = fromBase64(ciphertextB64);
      key = fromBase64(publicKeyB64);
      if (nonceB64 === undefined || nonceB64 === null) {
        // NaCl's combined form: the nonce, then the box.
        nonce = data.subarray(0, this.nacl.box.nonceLength);
        data = data.subarray(this.nacl.box.nonceLength);
      } else {
        nonce = fromBase64(nonceB64);
      }
    } catch {
      return null;
    }
    if (key.length !== 32 || nonce.length !== this.nacl.box.nonceLength) return null;
    const plain = this.nacl.box.open(data, nonce, key, this.device.secretKey);
    if (!plain) return null;
    try {
      return fromUtf8(plain);
    } catch {
      return null;
    }
  }

  /**
   * The `dm` request's arguments for *text* to *to*: envelopes for every
   * device of both accounts (but this one); the legacy single-key form for a
   * server without per-device keys, or for a recipient whose only key is the
   * legacy `default` (a client from before device ids cannot read
   * envelopes; docs/e2e.md); or `null` when *to* has no key at all (the
   * message can only go unencrypted).
   */
  async sealDm(to, text) {
    const them = await this.keys.get(to);
    if (!them.devices.length) return null;
    const onlyLegacy = them.devices.length === 1 && them.devices[0].device === LEGACY_DEVICE;
    if (!them.perDevice || onlyLegacy) {
      return { to: them.user, ...this._box(text, them.devices[them.devices.length - 1].publicKey) };
    }
    const mine = await this.keys.get(this.me);
    const envelopes = [];
    for (const d of them.devices) {
      envelopes.push({ user: them.user, device: d.device, ...this._box(text, d.publicKey) });
    }
    if (fold(them.user) !== fold(this.me)) {
      for (const d of mine.devices) {
        if (d.device === this.device.id) continue;
        envelopes.push({ user: mine.user, device: d.device, ...this._box(text, d.publicKey) });
      }
    }
    return { to: them.user, device: this.device.id, envelopes };
  }

  /** Open an envelope sealed by (or for) *user*'s *device*: with its
   * published key (cached, then fetched again), else with the key
   * remembered for it (a device revoked since; docs/e2e.md). */
  async _openWith(user, device, env) {
    const tried = new Set();
    const attempt = (key) => {
      if (!key || tried.has(key)) return null;
      tried.add(key);
      return this._open(env.ciphertext, env.nonce, key);
    };
    for (const fresh of [false, true]) {
      const info = await this.keys.get(user, fresh);
      const found = info.devices.find((d) => d.device === device);
      const text = found ? attempt(found.publicKey) : null;
      if (text !== null) return text;
    }
    return attempt((await this.remembered(user))[device]);
  }

  /**
   * Read an encrypted DM (a `message` event or a history entry). Resolves with
   * `{text}` or `{error}` (a sentence to show in place of the text); never throws
   * for a message it cannot read.
   */
  async open(m) {
    try {
      if (Array.isArray(m.envelopes)) return await this._openEnvelopes(m);
      if (typeof m.ciphertext === "string") return await this._openLegacy(m);
    } catch {
      return { error: TAMPERED };
    }
    return { error: TAMPERED };
  }

  async _openEnvelopes(m) {
    const mine = fold(m.from) === fold(this.me) && m.device === this.device.id;
    if (mine) {
      // Our own message read back: no envelope is addressed to this device,
      // but the box is symmetric, so any envelope opens with its recipient's key.
      for (const env of m.envelopes) {
        const text = env ? await this._openWith(env.user, env.device, env) : null;
        if (text !== null) return { text };
      }
      return { error: TAMPERED };
    }
    const env = m.envelopes.find((e) => e && fold(e.user || "") === fold(this.me) && e.device === this.device.id);
    if (!env) return { error: NOT_FOR_THIS_DEVICE };
    const text = await this._openWith(m.from, m.device, env);
    return text === null ? { error: TAMPERED } : { text };
  }

  async _openLegacy(m) {
    // Every key the other party has or had: published ones, then remembered ones.
    const peer = fold(m.from) === fold(this.me) ? m.to : m.from;
    const tried = new Set();
    const attempt = (key) => {
      if (tried.has(key)) return null;
      tried.add(key);
      return this._open(m.ciphertext, m.nonce, key);
    };
    for (const fresh of [false, true]) {
      const info = await this.keys.get(peer, fresh);
      for (const d of info.devices) {
        const text = attempt(d.publicKey);
        if (text !== null) return { text };
      }
    }
    for (const key of Object.values(await this.remembered(peer))) {
      const text = attempt(key);
      if (text !== null) return { text };
    }
    return { error: OTHER_KEY };
  }
}
