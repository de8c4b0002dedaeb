// Test doubles for the web client's modules, run under node (no browser).

import { createRequire } from "node:module";
import { webcrypto } from "node:crypto";

const require = createRequire(import.meta.url);
const STATIC = new URL("../../pingchat/web/static/", import.meta.url);

export const js = (path) => new URL("js/" + path, STATIC).href;

/** The vendored tweetnacl, as the page loads it. */
export function loadNacl() {
  return require(new URL("vendor/nacl-fast.min.js", STATIC).pathname);
}

export function loadQrcode() {
  return require(new URL("vendor/qrcode.js", STATIC).pathname);
}

export const subtle = webcrypto.subtle;

/** Timers that run only when the test says so. */
export class FakeTimers {
  constructor() {
    this.now = 0;
    this.seq = 0;
    this.tasks = new Map();
  }

  setTimeout(fn, ms = 0) {
    this.seq += 1;
    this.tasks.set(this.seq, { at: this.now + ms, fn });
    return this.seq;
  }

  clearTimeout(id) {
    this.tasks.delete(id);
  }

  /** Advance the clock by *ms*, running what falls due, in order. */
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let next = null;
      for (const [id, t] of this.tasks) {
        if (t.at <= end && (!next || t.at < next[1].at)) next = [id, t];
      }
      if (!next) break;
      this.tasks.delete(next[0]);
      this.now = next[1].at;
      next[1].fn();
    }
    this.now = end;
  }

  pendingDelays() {
    return [...this.tasks.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }
}

/** A WebSocket the test drives: `sockets` lists every one made. */
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closed = false;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error("not open");
      this.sent.push(JSON.parse(data));
    }

    close() {
      this.closed = true;
      this.readyState = 3;
    }

    // -- the test's side
    open(hello = { event: "hello", server: "test", version: "0", protocol: 1 }) {
      this.readyState = 1;
      this.receive(hello);
    }

    receive(obj) {
      this.onmessage && this.onmessage({ data: JSON.stringify(obj) });
    }

    drop(code = 1006) {
      this.readyState = 3;
      this.onclose && this.onclose({ code, reason: "" });
    }

    last() {
      return this.sent[this.sent.length - 1];
    }
  }
  return { FakeWebSocket, sockets };
}

/** localStorage/sessionStorage over a Map. */
export function memoryStorage() {
  const map = new Map();
  return {
    map,
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => map.set(k, String(v)),
    removeItem: (k) => map.delete(k),
  };
}

/** Let pending promise callbacks run. */
export async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Wait (real time, at most *ms*) until *cond()* holds; some work (WebCrypto's
 * digest) finishes on node's thread pool, not in a fixed number of ticks. */
export async function until(cond, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting for " + cond);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}
