// This browser's end-to-end encryption, wired to the connection and the
// conversations: the device key, publishing it, sealing and opening DMs,
// telling the user about new and changed keys of the people they write to.

import { E2E, KeyCache, Trust, fingerprint, forgetAccount, forgetDevice, loadOrCreateDevice, toBase64 } from "./e2e.js";
import { fold } from "./format.js";

export class Secure {
  /**
   * @param {object} o
   * @param {object} o.conn    the Connection
   * @param {object} o.store   the Store
   * @param {object|null} o.kv     IndexedDB key-value store (null: none)
   * @param {object|null} o.nacl   tweetnacl (null: not loaded)
   * @param {object|null} o.subtle WebCrypto's SubtleCrypto (null: not a secure context)
   * @param {string} o.label   this device's label
   */
  constructor({ conn, store, kv, nacl, subtle, label, persist = null }) {
    this.conn = conn;
    this.store = store;
    this.kv = kv;
    this.nacl = nacl;
    this.subtle = subtle;
    this.label = label;
    this.persist = persist; // asks the browser not to evict the site's storage
    this.e2e = null;
    this.trust = null;
    this.keys = new KeyCache((user) => this.conn.request("key.get", { user }));
    this.keys.onFetched = (info) => this._observe(info);
    this.me = null;
    this.reason = null; // why encryption is off, when it is
    this.fingerprint = null;
    this.perDevice = null; // whether the server keeps a key per device
    this.onNews = () => {}; // (conv, text, level, extra)
    this.onChange = () => {};
    this._pending();
  }

  /** Until the first setup after a login is done, reading and sealing wait:
   * an encrypted DM may come in before the login's reply has been handled. */
  _pending() {
    this.ready = new Promise((resolve) => {
      this._readyNow = resolve;
    });
  }

  get available() {
    return this.e2e !== null;
  }

  get deviceId() {
    return this.e2e ? this.e2e.device.id : null;
  }

  /** After each login: load or make this device's key and publish it.
   * Messages that arrive meanwhile (offline DMs come right after the login)
   * wait for it in `read`. */
  setup(me) {
    const done = this._setup(me).catch((e) => {
      const why = e && e.message ? e.message : String(e);
      if (this.e2e) {
        // The key is here; only publishing it failed (the next login retries).
        this.onNews(this.store.open("server", ""), `This browser's encryption key could not be published: ${why}`, "warning");
      } else {
        this.reason = `the key could not be set up: ${why}`;
      }
      this.onChange();
    });
    done.then(this._readyNow);
    return done;
  }

  async _setup(me) {
    if (this.me && fold(this.me) === fold(me) && this.e2e) {
      await this.publish();
      return;
    }
    this.me = me;
    this.e2e = null;
    this.keys.clear();
    if (!this.nacl) {
      this.reason = "the encryption library did not load";
    } else if (!this.subtle) {
      this.reason = "this page is not a secure context (use https:// or http://localhost)";
    } else if (!this.kv) {
      this.reason = "this browser gives the page no IndexedDB storage (a private window?)";
    } else {
      this.reason = null;
    }
    if (this.reason) {
      this.onChange();
      return;
    }
    let device;
    try {
      device = await loadOrCreateDevice(this.kv, this.nacl, me, this.label);
    } catch (e) {
      this.reason = `the key could not be stored: ${e && e.message ? e.message : e}`;
      this.onChange();
      return;
    }
    this.trust = new Trust(this.kv, this.subtle, me);
    const trust = this.trust;
    this.e2e = new E2E({ nacl: this.nacl, me, device, keys: this.keys, remembered: (user) => trust.remembered(user) });
    this.fingerprint = await fingerprint(this.subtle, toBase64(device.publicKey));
    this.created = device.created;
    if (device.created && this.persist) {
      try {
        await this.persist();
      } catch {
        // not offered: the key is kept as long as the browser keeps the site's data
      }
    }
    await this.publish();
    this.onChange();
  }

  /** Publish this device's key unless the server has it already. */
  async publish() {
    if (!this.e2e) return;
    const mine = await this.keys.get(this.me, true);
    this.perDevice = mine.perDevice;
    const publicKey = this.e2e.publicKey;
    const device = this.e2e.device;
    if (!mine.perDevice) {
      // A server without per-device keys has one key per account: publishing
      // would take it from the device that has it.
      if (mine.devices.length && mine.devices[0].publicKey !== publicKey) {
        this.reason = "the server keeps one key per account and another device has it;"
          + " this browser can send encrypted messages but not read replies";
        this.onChange();
        return;
      }
      if (!mine.devices.length) await this.conn.request("key.publish", { public_key: publicKey });
    } else {
      const here = mine.devices.find((d) => d.device === device.id);
      if (here && here.publicKey === publicKey) return;
      await this.conn.request("key.publish", { public_key: publicKey, device: device.id, label: device.label });
    }
    this.keys.forget(this.me);
    this.onNews(this.store.open("server", ""), `Published this browser's encryption key (device "${device.label}"), fingerprint ${this.fingerprint}.`, "info");
  }

  async _observe(info) {
    if (!this.trust) return;
    const own = fold(info.user) === fold(this.me);
    const news = await this.trust.observe(info, { skipDevice: own ? this.deviceId : null });
    for (const n of news) {
      const label = n.label ? `"${n.label}"` : `"${n.device}"`;
      if (own) {
        if (n.kind === "first") continue;
        const conv = this.store.open("server", "");
        if (n.kind === "changed") {
          this.onNews(conv, `WARNING: the key of your device ${label} has CHANGED (was ${n.previous}, now ${n.fingerprint}). If you did not reinstall that device, someone may have your password: change it, and revoke that device in Settings.`, "warning");
        } else {
          this.onNews(conv, `Your account has a new device: ${label}, fingerprint ${n.fingerprint}. Your direct messages are now sealed for it too. If it is not yours, change your password and revoke it in Settings.`, "warning");
        }
        continue;
      }
      const conv = this.store.open("dm", info.user);
      if (n.kind === "first") {
        this.onNews(conv, `${info.user}'s device ${label} has the encryption key fingerprint ${n.fingerprint}; to be sure it is really theirs, compare it with what ${info.user}'s device shows.`, "info");
      } else if (n.kind === "new-device") {
        this.onNews(conv, `${info.user} has a new device: ${n.label || n.device}, fingerprint ${n.fingerprint}.`, "info");
      } else if (n.kind === "changed") {
        this.onNews(conv, changedWarning(n), "warning");
        this.onChange(info.user);
      }
    }
  }

  /** Fill in `text` (or `error`) of an encrypted DM; plain messages pass. */
  async read(m) {
    if (!Array.isArray(m.envelopes) && typeof m.ciphertext !== "string") return m;
    await this.ready;
    if (!this.e2e) {
      return { ...m, encrypted: true, error: `an encrypted message; this browser cannot read it: ${this.reason}` };
    }
    const opened = await this.e2e.open(m);
    return opened.error ? { ...m, encrypted: true, error: opened.error } : { ...m, encrypted: true, text: opened.text };
  }

  /** The `dm` arguments for *text*: sealed when *to* has a key, else plain
   * (`encrypted: false`). */
  async seal(to, text) {
    await this.ready;
    if (this.e2e) {
      const sealed = await this.e2e.sealDm(to, text);
      if (sealed) return { args: sealed, encrypted: true };
    }
    return { args: { to, text }, encrypted: false };
  }

  /** A `key` event: someone published or revoked a device key. */
  async keyEvent(ev) {
    if (typeof ev.user !== "string") return;
    this.keys.forget(ev.user);
    const conv = this.store.find("dm", ev.user);
    const own = fold(ev.user) === fold(this.me);
    if (ev.action === "revoked") {
      if (own && ev.device === this.deviceId) {
        this.onNews(this.store.open("server", ""), "This browser's encryption key was revoked from another session. It is published again at the next login.", "warning");
      } else if (conv) {
        this.onNews(conv, `${ev.user} removed a device (${ev.device}).`, "event");
      }
      this.onChange(ev.user);
      return;
    }
    if (own || conv) {
      try {
        await this.keys.get(ev.user, true); // observes, and so tells what changed
      } catch {
        // offline: the next use fetches again
      }
    }
    this.onChange(ev.user);
  }

  /** Every device of *user* with its fingerprint, for the contact's page. */
  async devices(user) {
    if (!this.subtle) return { user, devices: [], warnings: [], perDevice: null };
    const info = await this.keys.get(user, true);
    const list = info.devices;
    const out = [];
    for (const d of list) {
      out.push({ ...d, fingerprint: await fingerprint(this.subtle, d.publicKey), thisDevice: fold(user) === fold(this.me || "") && d.device === this.deviceId });
    }
    const warnings = this.trust && fold(user) !== fold(this.me) ? await this.trust.warnings(user) : [];
    return { user: info.user, devices: out, warnings, perDevice: info.perDevice };
  }

  async acknowledge(user, device) {
    if (this.trust) await this.trust.acknowledge(user, device);
    this.onChange(user);
  }

  async warnings(user) {
    return this.trust ? this.trust.warnings(user) : [];
  }

  async revoke(device) {
    await this.conn.request("key.revoke", { device });
    this.keys.forget(this.me);
  }

  /** Forget this browser's key for the account (the user asked to). */
  async destroy() {
    if (this.kv && this.me) await forgetDevice(this.kv, this.me);
    this.e2e = null;
    this.reason = "the key was deleted; log in again to make a new one";
    this.onChange();
  }

  /** The account *user* was deleted: forget this browser's key for it, and
   * the keys of others it remembered. */
  async forgetAccount(user) {
    if (this.kv) await forgetAccount(this.kv, user);
    this.reset();
  }

  reset() {
    this._pending();
    this.e2e = null;
    this.keys.clear();
    this.trust = null;
    this.me = null;
    this.fingerprint = null;
  }
}

export function changedWarning(n) {
  const label = n.label || n.device;
  return `WARNING: ${n.user}'s encryption key for the device "${label}" has CHANGED (was ${n.previous}, now ${n.fingerprint}). This happens when ${n.user} reinstalls or uses another device, or when someone is pretending to be ${n.user}. Compare fingerprints with ${n.user} before sharing secrets.`;
}
