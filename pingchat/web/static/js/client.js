// The client: the account (log in, resume, register, recover, log out), the
// sync after each login, sending through the outbox, paging history back.
// Server events are handled in events.js; views only call these methods and
// listen to the store and to `on(...)`.

import { ConnectionLost, NotConnected, RequestError } from "./connection.js";
import { handleEvent } from "./events.js";
import { fold, isAccountName, roomName } from "./format.js";
import { Outbox } from "./outbox.js";

export const PAGE = 50;
const CATCH_UP = 200;
const MAX_FRAME = 16384;

const SESSION_ENDED = new Set(["auth_failed", "account_disabled", "bad_request"]);

export class Client {
  constructor({ conn, store, sessions, secure, notifier, tabStorage }) {
    this.conn = conn;
    this.store = store;
    this.sessions = sessions;
    this.secure = secure;
    this.notifier = notifier;
    this.tabStorage = tabStorage; // sessionStorage: the outbox of this tab
    this.user = null;
    this.operator = false; // a server operator (an administrator's account)
    this.token = null;
    this.remember = false;
    this.server = null;
    this.loggedIn = false;
    this.hadSession = false; // logged in at least once on this page
    this.connState = "idle";
    this.connDetail = {};
    this.outbox = null;
    this.listeners = new Map();
    this.loading = new Set();
    conn.onReady = (hello) => this._ready(hello);
    conn.onEvent = (ev) => handleEvent(this, ev).catch((e) => this.emit("error", e));
    conn.onState = (state, detail) => this._connState(state, detail);
    secure.onNews = (conv, text, level) => this.store.addSystem(conv, text, level);
    secure.onChange = (user) => this.emit("keys", user);
  }

  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
  }

  emit(name, ...args) {
    for (const fn of this.listeners.get(name) || []) fn(...args);
  }

  start() {
    const saved = this.sessions.load();
    if (saved) {
      this.remember = saved.remember;
      this._prepare(saved.user);
      this.emit("session", { user: saved.user, resuming: true });
    } else {
      this.emit("need-login", {});
    }
    this.conn.start();
  }

  // -- connection --------------------------------------------------------------

  _connState(state, detail) {
    this.connState = state;
    this.connDetail = detail;
    if (state !== "open" && this.loggedIn) {
      this.loggedIn = false;
      if (this.outbox) this.outbox.offline();
    }
    this.emit("connection", state, detail);
  }

  async _ready(hello) {
    this.server = String(hello.server || "");
    this.emit("hello", hello);
    const saved = this.sessions.load();
    if (!saved) {
      if (this.user) this._ended("Your session ended; please log in again.");
      return;
    }
    try {
      const reply = await this.conn.request("resume", { token: saved.token });
      await this._loggedIn(reply, saved.remember);
    } catch (e) {
      if (e instanceof RequestError && SESSION_ENDED.has(e.code)) {
        this.sessions.forget();
        this._ended(`Your saved session ended (${e.message}); please log in again.`);
      } else if (e instanceof RequestError && e.code === "rate_limited") {
        this.emit("toast", `The server asks to wait ${Math.ceil(e.retryAfter)} s before resuming.`, "warning");
        globalThis.setTimeout(() => this.conn.state === "open" && !this.loggedIn && this._ready(hello), Math.max(1, e.retryAfter) * 1000);
      } else if (!(e instanceof RequestError)) {
        this.emit("error", e);
      }
      // otherwise a dropped connection: the next one resumes
    }
  }

  _ended(message) {
    this.user = null;
    this.outbox = null;
    this.loggedIn = false;
    this.hadSession = false;
    this.secure.reset();
    this.emit("need-login", { message });
  }

  // -- the account ----------------------------------------------------------------

  async login({ user, password, otp, remember }) {
    const args = { user, password };
    if (otp) args.otp = otp;
    const reply = await this.conn.request("login", args);
    await this._loggedIn(reply, remember);
    return reply;
  }

  /** Creates the account; does not log in (the codes are shown first). */
  async register({ user, password }) {
    return this.conn.request("register", { user, password });
  }

  async recover({ user, code, newPassword }) {
    return this.conn.request("recover", { user, code, new_password: newPassword });
  }

  async logout() {
    try {
      await this.conn.request("logout");
    } finally {
      const user = this.user;
      this._forgetSession();
      this.emit("need-login", { message: `Logged out${user ? " " + user : ""}.` });
    }
  }

  /**
   * Delete this account for good (`account.delete`): the password again, and
   * the current code when the account has two-factor authentication. On
   * success, everything this browser kept for the account goes too: the
   * session token, its lists, the outbox, the device key and the keys seen
   * of others; then the login page. A refusal (`otp_required`,
   * `auth_failed`, `rate_limited`...) rejects with the RequestError and
   * changes nothing.
   */
  async deleteAccount({ password, otp }) {
    const args = { password };
    if (otp) args.otp = otp;
    const reply = await this.conn.request("account.delete", args);
    const user = this.user;
    // The server ends this connection after the reply: a new one, at once,
    // for the login page (and its goodbye is no "reconnecting" news).
    this.conn.restart();
    this._forgetSession();
    try {
      if (user) await this.secure.forgetAccount(user);
    } catch (e) {
      this.emit("toast", `This browser's encryption key could not be deleted: ${e && e.message ? e.message : e}. Clear the site's data to remove it.`, "warning");
    }
    this.emit("need-login", { message: accountDeletedText(reply, user) });
    return reply;
  }

  /** Logged out or deleted: forget the session here (token, the account's
   * lists, what was not sent) and the state of the page. */
  _forgetSession() {
    const user = this.user;
    this.sessions.forget();
    if (user) this.sessions.removeAll(fold(user));
    if (this.outbox) this.outbox.clear(); // logging out gives up what was not sent
    this.outbox = null;
    this.user = null;
    this.token = null;
    this.operator = false;
    this.loggedIn = false;
    this.hadSession = false;
    this.secure.reset();
    this.store.reset(null);
  }

  _storage() {
    return this.sessions.storageFor(this.remember);
  }

  _prepare(user) {
    this.user = user;
    const key = fold(user);
    this.store.reset(user);
    this.store.readMarkers = this.sessions.getJson(this._storage(), `pingchat.read.${key}`, {}) || {};
    for (const name of this.sessions.getJson(this._storage(), `pingchat.dms.${key}`, []) || []) {
      if (isAccountName(name)) this.store.open("dm", name);
    }
    this.outbox = new Outbox({
      send: (entry) => this._send(entry),
      storage: this.tabStorage,
      key: `pingchat.outbox.${key}`,
    });
    this.outbox.onChange = (entry) => this.emit("outbox", entry);
    this.outbox.onSent = (entry, result) => this._sent(entry, result);
  }

  async _loggedIn(reply, remember) {
    const user = String(reply.user);
    // The same account as before a drop (or as the saved session this page
    // started with): keep its conversations and outbox.
    const same = this.user !== null && fold(this.user) === fold(user) && this.outbox !== null;
    const again = same && this.hadSession;
    this.hadSession = true;
    this.remember = !!remember;
    if (!same) this._prepare(user);
    this.user = user;
    this.operator = reply.operator === true; // an administrator: may delete any message
    this.token = String(reply.token);
    this.sessions.save(user, this.token, this.remember);
    this.conn.authenticated();
    this.loggedIn = true;
    const rooms = (reply.rooms || []).map(String);
    const inRoom = new Set(rooms.map(fold));
    for (const conv of this.store.rooms()) {
      if (!inRoom.has(fold(conv.name)) && conv.joined) {
        conv.joined = false;
        this.store.addSystem(conv, `You are no longer in ${conv.name}.`, "warning");
      }
    }
    for (const name of rooms) this.store.open("room", name).joined = true;
    this.emit("logged-in", { user, again });
    // The device key first: offline DMs arrive right after this reply.
    const setup = this.secure.setup(user);
    try {
      await this._sync(again, setup);
    } catch (e) {
      if (!(e instanceof ConnectionLost || e instanceof NotConnected)) this.emit("error", e);
    }
  }

  async _sync(again, setup) {
    const caughtUp = new Map();
    const active = this.store.activeConversation();
    // The room on screen first, so that it is ready soonest.
    const rooms = this.store.rooms().filter((c) => c.joined);
    const order = rooms.filter((c) => c === active).concat(rooms.filter((c) => c !== active));
    for (const conv of order) {
      const members = await this.conn.request("members", { room: conv.name });
      this.store.setMembers(conv, members.members || []);
      caughtUp.set(conv.key, await this._catchUp(conv));
    }
    for (const conv of this.store.dms()) {
      if (conv.historyLoaded) caughtUp.set(conv.key, await this._catchUp(conv));
    }
    if (this.outbox) {
      await this.outbox.resume(this.user, async (target) => {
        const conv = target.startsWith("#") ? this.store.open("room", target) : this.store.open("dm", target);
        return caughtUp.get(conv.key) || this._catchUp(conv);
      });
    }
    const [list, contacts, settings, who] = await Promise.all([
      this.conn.request("rooms"),
      this.conn.request("contacts"),
      this.conn.request("settings"),
      this.conn.request("who"),
    ]);
    for (const r of list.rooms || []) {
      const conv = this.store.find("room", r.name);
      if (conv) conv.topic = r.topic || "";
    }
    this.store.dmPolicy = settings.dm_policy || null;
    for (const u of who.users || []) this.store.notePresence(u.user, u.presence, u.away ?? null);
    this.store.setContacts(contacts);
    this.store.emit("presence");
    this.saveDms();
    await setup;
    this.emit("synced", { again });
  }

  /** The messages of *conv* since the newest one shown (the newest page the
   * first time). Returns what came, decrypted. */
  async _catchUp(conv) {
    if (!conv.historyLoaded || !conv.newestId) return this.loadInitial(conv);
    const got = [];
    for (;;) {
      const reply = await this.conn.request("history", { ...this._target(conv), after: conv.newestId, limit: CATCH_UP });
      const messages = await this._readAll(reply.messages || []);
      this.store.addHistory(conv, messages);
      got.push(...messages);
      if (messages.length < CATCH_UP) break;
    }
    return got;
  }

  async loadInitial(conv) {
    const reply = await this.conn.request("history", { ...this._target(conv), limit: PAGE });
    const messages = await this._readAll(reply.messages || []);
    conv.complete = messages.length < PAGE;
    this.store.addHistory(conv, messages);
    return messages;
  }

  /** One more page of older messages. */
  async loadOlder(conv) {
    if (conv.complete || this.loading.has(conv.key) || !this.loggedIn) return 0;
    this.loading.add(conv.key);
    try {
      if (!conv.historyLoaded) return (await this.loadInitial(conv)).length;
      const args = { ...this._target(conv), limit: PAGE };
      if (conv.oldestId) args.before = conv.oldestId;
      const reply = await this.conn.request("history", args);
      const messages = await this._readAll(reply.messages || []);
      if (messages.length < PAGE) conv.complete = true;
      this.store.addHistory(conv, messages);
      return messages.length;
    } finally {
      this.loading.delete(conv.key);
      this.store.emit("messages", conv);
    }
  }

  _target(conv) {
    return conv.kind === "room" ? { room: conv.name } : { with: conv.name };
  }

  async _readAll(messages) {
    const out = [];
    for (const m of messages) out.push(await this.secure.read(m));
    return out;
  }

  // -- conversations ------------------------------------------------------------------

  async select(conv) {
    this.store.setActive(conv);
    this.sessions.setJson(this._storage(), `pingchat.active.${fold(this.user || "")}`, conv ? conv.key : null);
    if (conv && conv.kind !== "server" && !conv.historyLoaded && this.loggedIn) {
      try {
        await this.loadOlder(conv);
        this.store.markRead(conv);
      } catch (e) {
        this.emit("toast", e.message, "error");
      }
    }
    if (conv && conv.kind === "dm" && this.loggedIn) {
      this.conn.request("whois", { user: conv.name }).then(
        (info) => this.store.setPresence(info.user, info.presence, info.away),
        () => {},
      );
    }
  }

  savedActive() {
    return this.sessions.getJson(this._storage(), `pingchat.active.${fold(this.user || "")}`, null);
  }

  openDm(name) {
    const conv = this.store.open("dm", name);
    this.saveDms();
    return conv;
  }

  closeDm(conv) {
    this.store.remove(conv);
    this.saveDms();
  }

  saveDms() {
    if (!this.user) return;
    const names = this.store.dms().map((c) => c.name);
    this.sessions.setJson(this._storage(), `pingchat.dms.${fold(this.user)}`, names);
  }

  saveRead() {
    if (!this.user) return;
    const markers = {};
    for (const c of this.store.conversations.values()) {
      if (c.lastRead !== null && c.kind !== "server") markers[c.key] = c.lastRead;
    }
    this.store.readMarkers = markers;
    this.sessions.setJson(this._storage(), `pingchat.read.${fold(this.user)}`, markers);
  }

  async join(name, key) {
    const args = { room: roomName(name) };
    if (key) args.key = key;
    const reply = await this.conn.request("join", args);
    const conv = this.store.open("room", reply.room);
    conv.joined = true;
    conv.topic = reply.topic || "";
    this.store.setMembers(conv, reply.members || []);
    await this.select(conv);
    this.store.addSystem(conv, `You joined ${reply.room}.`);
    return conv;
  }

  async part(conv) {
    await this.conn.request("part", { room: conv.name });
    conv.joined = false;
    this.store.remove(conv);
  }

  async setTopic(conv, topic) {
    await this.conn.request("topic", { room: conv.name, topic });
  }

  // -- sending ----------------------------------------------------------------------------

  /** Queue *text* for *conv*; it goes as soon as the session is up. */
  post(conv, text) {
    if (!this.outbox) return null;
    if (conv.kind === "dm") this.saveDms();
    return this.outbox.add(conv.name, text);
  }

  async _send(entry) {
    if (entry.target.startsWith("#")) {
      const reply = await this.conn.request("say", { room: entry.target, text: entry.text });
      return { reply, encrypted: false };
    }
    const sealed = await this.secure.seal(entry.target, entry.text);
    const size = new TextEncoder().encode(JSON.stringify({ id: 0, op: "dm", ...sealed.args })).length;
    if (size > MAX_FRAME - 64) {
      const n = sealed.args.envelopes ? sealed.args.envelopes.length : 1;
      throw new RequestError("too_long", `too long to encrypt for ${n} device${n === 1 ? "" : "s"}; send it in shorter parts`);
    }
    const reply = await this.conn.request("dm", sealed.args);
    return { reply, encrypted: sealed.encrypted, to: sealed.args.to };
  }

  _sent(entry, { reply, encrypted, to }) {
    const room = entry.target.startsWith("#");
    const conv = room ? this.store.open("room", entry.target) : this.store.open("dm", to || entry.target);
    const m = { from: this.user, text: entry.text, msg_id: reply.msg_id, ts: reply.ts, encrypted };
    if (room) m.room = conv.name;
    else m.to = conv.name;
    this.store.addMessage(conv, m, { live: true });
    if (!room) {
      if (!encrypted && !conv.warnedPlain) {
        conv.warnedPlain = true;
        const why = this.secure.available
          ? `${conv.name} has not published an encryption key (they may use IRC or another client)`
          : `this browser cannot encrypt (${this.secure.reason})`;
        this.store.addSystem(conv, `${why}, so this conversation is NOT end-to-end encrypted: the server can read it.`, "warning");
      }
      if (conv.encrypted !== encrypted) {
        conv.encrypted = encrypted;
        this.store.emit("header", conv);
      }
      if (reply.delivered === false && !conv.waiting) {
        conv.waiting = true;
        this.store.addSystem(conv, `${conv.name} is offline: the message waits on the server until they connect.`, "info");
      } else if (reply.delivered) {
        conv.waiting = false;
      }
    }
  }

  // -- deleting messages ----------------------------------------------------------------------

  /** Whether to offer deleting *item*: one's own messages, any message of a
   * room one operates, any message for a server operator. The server decides. */
  canDelete(conv, item) {
    if (!item || item.type !== "message" || item.msgId === null || item.deleted) return false;
    if (conv.kind === "server") return false;
    if (item.mine || this.operator) return true;
    const me = conv.kind === "room" && this.user ? conv.members.get(fold(this.user)) : null;
    return !!(me && me.op);
  }

  /** Delete *item* for everyone (`message.delete`); the view shows it as deleted. */
  async deleteMessage(conv, item, reason = "") {
    const args = { msg_id: item.msgId };
    if (reason) args.reason = reason;
    await this.conn.request("message.delete", args);
    this.store.deleteMessage(conv, item.msgId, { by: this.user, reason: reason || null });
  }

  // -- contacts and settings ----------------------------------------------------------------

  async refreshContacts() {
    this.store.setContacts(await this.conn.request("contacts"));
    this.saveDms();
  }

  async addContact(user) {
    const reply = await this.conn.request("contact.add", { user });
    await this.refreshContacts();
    return reply;
  }

  async removeContact(user) {
    const reply = await this.conn.request("contact.remove", { user });
    await this.refreshContacts();
    return reply;
  }

  async setDmPolicy(policy) {
    const reply = await this.conn.request("settings", { dm_policy: policy });
    this.store.dmPolicy = reply.dm_policy;
    return reply;
  }

  request(op, args) {
    return this.conn.request(op, args);
  }
}

function plural(n, one, many = one + "s") {
  return `${n} ${n === 1 ? one : many}`;
}

/** What the login page says after `account.delete` answered *reply*. */
export function accountDeletedText(reply, user) {
  const name = String(reply.user || user || "");
  const removed = Number(reply.removed) || 0;
  const kept = Number(reply.anonymised) || 0;
  const were = (n) => (n === 1 ? "was" : "were");
  const what = !removed && !kept ? "It had no messages" : reply.messages === "anonymise"
    ? `${plural(removed, "direct message")} (sent and received) ${were(removed)} deleted with it; ${plural(kept, "room message")} you wrote ${kept === 1 ? "stays" : "stay"}, under a placeholder name`
    : `${plural(removed, "message")} ${were(removed)} deleted with it: what you wrote, and the direct messages you received`;
  return `Your account was deleted. ${what}. The name ${name} cannot be registered again for 30 days.`;
}
