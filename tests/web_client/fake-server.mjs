// The client against a scripted server, shared by client and event tests.

import { FakeTimers, fakeWebSocketClass, js, loadNacl, memoryStorage, subtle } from "./helpers.mjs";

const { Client } = await import(js("client.js"));
const { Connection } = await import(js("connection.js"));
const { Secure } = await import(js("secure.js"));
const { SessionStore, memoryKv } = await import(js("storage.js"));
const { Store } = await import(js("store.js"));

/** Answers the ops the client sends; `history` and the rest from its fields. */
export class FakeServer {
  constructor() {
    this.ops = [];
    this.messages = []; // stored, as history returns them
    this.nextId = 100;
    this.rooms = ["#lobby"];
    this.devices = {};
    this.offline = []; // DMs waiting for the next login
    this.hold = null; // an op whose reply is held back
    this.held = [];
    // account.delete: the password, the TOTP code if any, and the server's --deleted-messages
    this.account = { password: "the password", otp: null, messages: "remove" };
  }

  attach(ws) {
    ws.open({ event: "hello", server: "testserver", version: "0", protocol: 1 });
    const send = ws.send.bind(ws);
    ws.send = (data) => {
      send(data);
      const req = JSON.parse(data);
      this.ops.push(req.op);
      if (req.op === this.hold) {
        this.held.push({ ws, req });
        return;
      }
      queueMicrotask(() => this.answer(ws, req));
    };
  }

  answer(ws, req) {
    if (ws.readyState !== 1) return;
    const reply = (extra) => ws.receive({ id: req.id, ok: true, ...extra });
    const fail = (code, message) => ws.receive({ id: req.id, ok: false, error: { code, message } });
    switch (req.op) {
      case "resume":
        if (req.token !== "good-token") return fail("auth_failed", "the session expired");
        reply({ user: "alice", token: "good-token", expires_at: "x", rooms: this.rooms });
        // As the server does: the DMs queued while offline, right after the reply.
        for (const m of this.offline.splice(0)) ws.receive({ event: "message", ...m, offline: true });
        return undefined;
      case "login":
        return reply({ user: "alice", token: "good-token", expires_at: "x", rooms: this.rooms });
      case "members":
        return reply({ room: req.room, members: [{ user: "alice", op: true, presence: "online" }, { user: "bob", presence: "away" }] });
      case "history": {
        let ms = this.messages.filter((m) => (req.room ? m.room === req.room : !m.room && [m.from, m.to].includes(req.with)));
        if (req.after) ms = ms.filter((m) => m.msg_id > req.after);
        if (req.before) ms = ms.filter((m) => m.msg_id < req.before);
        return reply({ messages: ms.slice(-req.limit) });
      }
      case "say": {
        const m = { room: req.room, from: "alice", text: req.text, msg_id: this.nextId++, ts: "2026-11-21T10:00:00.000Z" };
        this.messages.push(m);
        return reply({ msg_id: m.msg_id, ts: m.ts });
      }
      case "dm": {
        const m = { to: req.to, from: "alice", msg_id: this.nextId++, ts: "2026-11-21T10:00:00.000Z" };
        for (const k of ["text", "ciphertext", "nonce", "device", "envelopes"]) if (req[k] !== undefined) m[k] = req[k];
        this.messages.push(m);
        return reply({ msg_id: m.msg_id, ts: m.ts, delivered: false });
      }
      case "key.get":
        return reply({ user: req.user, devices: this.devices[req.user] || [], public_key: null, fingerprint: null });
      case "key.publish":
        (this.devices.alice ||= []).push({ device: req.device, public_key: req.public_key, label: req.label });
        return reply({ device: req.device, fingerprint: "x" });
      case "rooms":
        return reply({ rooms: this.rooms.map((name) => ({ name, topic: "the topic", members: 2 })) });
      case "contacts":
        return reply({ contacts: ["carol"], incoming: ["dave"], outgoing: [] });
      case "settings":
        return reply({ dm_policy: "anyone" });
      case "who":
        return reply({ users: [{ user: "carol", presence: "online" }] });
      case "ping":
        return reply({ pong: true });
      case "account.delete": {
        const a = this.account;
        if (req.password !== a.password) return fail("auth_failed", "wrong password");
        if (a.otp && !req.otp) return fail("otp_required", "this account has a second factor: repeat with otp");
        if (a.otp && req.otp !== a.otp) return fail("auth_failed", "wrong code");
        const anonymise = a.messages === "anonymise";
        reply({ user: "alice", messages: a.messages, removed: anonymise ? 2 : 7, anonymised: anonymise ? 5 : 0 });
        // As the server does: its goodbye in a frame of its own, then it closes.
        setImmediate(() => {
          ws.receive({ event: "disconnect", reason: "your account has been deleted" });
          ws.drop(1000);
        });
        return undefined;
      }
      default:
        return reply({});
    }
  }
}

export function synced(t) {
  return t.seen.filter((s) => s[0] === "synced").length;
}

export function setup({ token = "good-token", kv = memoryKv() } = {}) {
  const timers = new FakeTimers();
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const server = new FakeServer();
  const conn = new Connection({ url: "ws://x/ws", WebSocket: FakeWebSocket, timers, random: () => 0.5 });
  const store = new Store();
  const local = memoryStorage();
  const session = memoryStorage();
  const tab = memoryStorage();
  const sessions = new SessionStore({ local, session });
  if (token) sessions.save("alice", token, false);
  const persisted = [];
  const secure = new Secure({ conn, store, kv, nacl: loadNacl(), subtle, label: "test browser", persist: async () => persisted.push(true) });
  const notifier = { maybe() {} };
  const client = new Client({ conn, store, sessions, secure, notifier, tabStorage: tab });
  const seen = [];
  for (const name of ["need-login", "logged-in", "synced", "error"]) client.on(name, (x) => seen.push([name, x]));
  client.start();
  return { client, conn, server, sockets, store, timers, sessions, tab, seen, secure, persisted };
}

