// What the user typed and the server has not acknowledged yet.
//
// A message is `queued` until the session is up, then `sending`. The server's
// reply removes it (the message is then in the conversation, with its id).
// When the connection drops while a message is `sending`, nobody knows
// whether the server stored it: it becomes `unsure`. After the next login
// the application fetches what the conversation got meanwhile
// (`reconcile`): an `unsure` message found there was sent; one not found is
// queued again. A message the server refuses (not in the room, DM policy,
// too long) is `failed`, shown with the server's reason, a retry and a
// discard. The list lives in sessionStorage, so a reload does not lose it.

import { ConnectionLost, NotConnected } from "./connection.js";
import { fold } from "./format.js";

export class Outbox {
  /**
   * @param {object} options
   * @param {(entry) => Promise<object>} options.send  sends one entry, resolves with the reply
   * @param {Storage|null} [options.storage]  where the list survives a reload
   * @param {string} [options.key]
   * @param {object} [options.timers]
   */
  constructor({ send, storage = null, key = "pingchat.outbox", timers = globalThis }) {
    this.send = send;
    this.storage = storage;
    this.key = key;
    this.timers = timers;
    this.entries = [];
    this.online = false;
    this.busy = false;
    this.seq = 0;
    this.onChange = () => {};
    this.onSent = () => {};
    this._load();
  }

  _load() {
    if (!this.storage) return;
    let saved = [];
    try {
      saved = JSON.parse(this.storage.getItem(this.key) || "[]");
    } catch {
      saved = [];
    }
    if (!Array.isArray(saved)) return;
    for (const e of saved) {
      if (!e || typeof e.text !== "string" || typeof e.target !== "string") continue;
      const state = e.state === "sending" ? "unsure" : e.state;
      this.entries.push({ ...e, state: ["queued", "unsure", "failed"].includes(state) ? state : "unsure" });
      this.seq = Math.max(this.seq, Number(String(e.id).slice(1)) || 0);
    }
  }

  _save() {
    if (!this.storage) return;
    try {
      if (this.entries.length) {
        this.storage.setItem(this.key, JSON.stringify(this.entries));
      } else {
        this.storage.removeItem(this.key);
      }
    } catch {
      // storage full or disabled: the list still lives in memory
    }
  }

  _changed(entry) {
    this._save();
    this.onChange(entry);
  }

  /** Entries for one conversation (a room name or a user name), oldest first. */
  of(target) {
    const key = fold(target);
    return this.entries.filter((e) => fold(e.target) === key);
  }

  add(target, text) {
    this.seq += 1;
    const entry = { id: "o" + this.seq, target, text, state: "queued", error: null, at: Date.now() };
    this.entries.push(entry);
    this._changed(entry);
    this.flush();
    return entry;
  }

  retry(id) {
    const entry = this.entries.find((e) => e.id === id);
    if (!entry || entry.state !== "failed") return;
    entry.state = "queued";
    entry.error = null;
    this._changed(entry);
    this.flush();
  }

  discard(id) {
    const entry = this.entries.find((e) => e.id === id);
    if (!entry || entry.state === "sending") return;
    this.entries = this.entries.filter((e) => e !== entry);
    entry.state = "discarded";
    this._changed(entry);
  }

  /** Forget everything (the user logged out). */
  clear() {
    this.online = false;
    this.entries = [];
    this._save();
  }

  /** The connection dropped: what was on its way is now `unsure`. */
  offline() {
    this.online = false;
    for (const e of this.entries) {
      if (e.state === "sending") {
        e.state = "unsure";
        this._changed(e);
      }
    }
  }

  /**
   * Logged in (again). `fetchSince(target)` returns what the conversation got
   * while the connection was down (`[{from, text}]`); every `unsure` entry is
   * looked up there first, and then the queue is sent.
   */
  async resume(me, fetchSince) {
    const targets = [...new Set(this.entries.filter((e) => e.state === "unsure").map((e) => fold(e.target)))];
    for (const target of targets) {
      let messages;
      try {
        messages = await fetchSince(this.entries.find((e) => fold(e.target) === target).target);
      } catch {
        return; // offline again: stay unsure until the next login
      }
      this.reconcile(target, messages, me);
    }
    for (const e of this.entries) {
      if (e.state === "unsure") {
        e.state = "queued";
        this._changed(e);
      }
    }
    this.online = true;
    await this.flush();
  }

  /** Drop the `unsure` entries of *target* that *messages* show as stored. */
  reconcile(target, messages, me) {
    const claimed = new Set();
    for (const e of this.of(target)) {
      if (e.state !== "unsure") continue;
      const index = messages.findIndex(
        (m, i) => !claimed.has(i) && fold(m.from || "") === fold(me) && m.text === e.text,
      );
      if (index >= 0) {
        claimed.add(index);
        this.entries = this.entries.filter((x) => x !== e);
        e.state = "sent";
        this._changed(e);
      }
    }
  }

  /** Send the queue, in order, one at a time. */
  async flush() {
    if (!this.online || this.busy) return;
    this.busy = true;
    try {
      for (;;) {
        const entry = this.entries.find((e) => e.state === "queued");
        if (!entry || !this.online) break;
        entry.state = "sending";
        this._changed(entry);
        let reply;
        try {
          reply = await this.send(entry);
        } catch (e) {
          if (e instanceof NotConnected) {
            entry.state = "queued";
            this._changed(entry);
            this.online = false;
            break;
          }
          if (e instanceof ConnectionLost) {
            entry.state = "unsure";
            this._changed(entry);
            this.online = false;
            break;
          }
          if (e && e.code === "rate_limited") {
            entry.state = "queued";
            this._changed(entry);
            await new Promise((resolve) => this.timers.setTimeout(resolve, Math.max(1, e.retryAfter) * 1000));
            continue;
          }
          entry.state = "failed";
          entry.error = (e && e.message) || String(e);
          this._changed(entry);
          continue;
        }
        this.entries = this.entries.filter((x) => x !== entry);
        entry.state = "sent";
        this._changed(entry);
        this.onSent(entry, reply);
      }
    } finally {
      this.busy = false;
    }
  }
}
