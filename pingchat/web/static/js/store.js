// The client's state: conversations (rooms, direct messages, the server's
// notices), their messages in server order, members and presence, contacts,
// unread counts. Pure: no DOM, no network; views subscribe to changes.

import { fold, mentions, messageBody } from "./format.js";

export const MAX_MESSAGES = 3000;

export function convKey(kind, name) {
  if (kind === "server") return "server";
  return (kind === "room" ? "" : "@") + fold(name);
}

/** Unread messages and mentions of *me* after *lastRead* (a msg_id). */
export function countUnread(items, lastRead, me) {
  let unread = 0;
  let mentioned = 0;
  for (const m of items) {
    if (m.type !== "message" || m.mine || m.deleted || !(m.msgId > lastRead)) continue;
    unread += 1;
    if (m.mention) mentioned += 1;
  }
  return { unread, mentions: mentioned };
}

/** Binary search: where an item with *sort* goes in *items* (sorted). */
function insertAt(items, sort) {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (items[mid].sort <= sort) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Conversation {
  constructor(kind, name) {
    this.kind = kind; // room, dm, server
    this.name = name;
    this.key = convKey(kind, name);
    this.items = [];
    this.ids = new Set();
    this.seq = 0;
    this.lastRead = null; // null: not known yet (set when history first arrives)
    this.unread = 0;
    this.mentions = 0;
    this.topic = "";
    this.members = new Map();
    this.joined = false; // rooms: set when the server says we are in it
    this.oldestId = null;
    this.newestId = 0;
    this.complete = false; // the whole history is loaded
    this.historyLoaded = false;
    this.encrypted = null; // DMs: whether the last message went end-to-end encrypted
    this.warnedPlain = false;
  }

  get title() {
    return this.kind === "server" ? "Server" : this.name;
  }
}

export class Store {
  constructor() {
    this.me = null;
    this.conversations = new Map();
    this.active = null;
    this.presence = new Map(); // folded user -> {user, presence, away}
    this.contacts = { contacts: [], incoming: [], outgoing: [] };
    this.dmPolicy = null;
    this.listeners = new Set();
    this.visible = true;
    this.readMarkers = {}; // conversation key -> last read msg_id, saved between visits
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(what, conv = null) {
    for (const fn of this.listeners) fn(what, conv);
  }

  reset(me) {
    this.me = me;
    this.conversations.clear();
    this.active = null;
    this.presence.clear();
    this.contacts = { contacts: [], incoming: [], outgoing: [] };
    this.emit("list");
  }

  find(kind, name) {
    return this.conversations.get(convKey(kind, name)) || null;
  }

  open(kind, name) {
    const key = convKey(kind, name);
    let conv = this.conversations.get(key);
    if (!conv) {
      conv = new Conversation(kind, name);
      const saved = this.readMarkers[key];
      if (Number.isInteger(saved)) conv.lastRead = saved;
      this.conversations.set(key, conv);
      this.emit("list");
    }
    return conv;
  }

  remove(conv) {
    this.conversations.delete(conv.key);
    if (this.active === conv.key) this.active = null;
    this.emit("list");
  }

  activeConversation() {
    return this.active ? this.conversations.get(this.active) || null : null;
  }

  setActive(conv) {
    this.active = conv ? conv.key : null;
    if (conv) this.markRead(conv);
    this.emit("active", conv);
    this.emit("list");
  }

  rooms() {
    return [...this.conversations.values()]
      .filter((c) => c.kind === "room")
      .sort((a, b) => fold(a.name).localeCompare(fold(b.name)));
  }

  dms() {
    return [...this.conversations.values()]
      .filter((c) => c.kind === "dm")
      .sort((a, b) => (b.newestId - a.newestId) || fold(a.name).localeCompare(fold(b.name)));
  }

  /** Which conversation a message event belongs to. */
  conversationOf(m) {
    if (m.room) return this.open("room", m.room);
    const mine = this.me && fold(m.from || "") === fold(this.me);
    return this.open("dm", String(mine ? m.to : m.from));
  }

  /**
   * Add a message (shaped like the protocol's `message` event, with `text`
   * already decrypted, or `error` when it could not be). Returns the item, or
   * null when it was there already.
   */
  addMessage(conv, m, { live = false } = {}) {
    const msgId = Number(m.msg_id);
    if (Number.isInteger(msgId) && conv.ids.has(msgId)) {
      // A tombstone in history for a message shown before: it was deleted meanwhile.
      if (m.deleted) this.deleteMessage(conv, msgId);
      return null;
    }
    const mine = !!this.me && fold(m.from || "") === fold(this.me);
    const body = messageBody(m.text ?? "");
    const item = {
      type: "message",
      id: Number.isInteger(msgId) ? "m" + msgId : "l" + ++conv.seq,
      msgId: Number.isInteger(msgId) ? msgId : null,
      sort: Number.isInteger(msgId) ? msgId : conv.newestId + ++conv.seq / 1e6,
      from: String(m.from || "?"),
      text: body.text,
      action: body.action,
      notice: m.kind === "notice",
      ts: m.ts || null,
      mine,
      encrypted: !!m.encrypted,
      error: m.error || null,
      offline: !!m.offline,
      mention: !mine && !m.error && conv.kind !== "server" && mentions(m.text ?? "", this.me),
      deleted: !!m.deleted,
    };
    if (item.msgId !== null) {
      conv.ids.add(item.msgId);
      conv.newestId = Math.max(conv.newestId, item.msgId);
      if (conv.oldestId === null || item.msgId < conv.oldestId) conv.oldestId = item.msgId;
    }
    conv.items.splice(insertAt(conv.items, item.sort), 0, item);
    this._trim(conv);
    if (live && this.active === conv.key && this.visible && conv.lastRead !== null) {
      // Seen as it arrives.
      if (item.msgId !== null) conv.lastRead = Math.max(conv.lastRead, item.msgId);
    }
    if (mine && item.msgId !== null && conv.lastRead !== null) {
      conv.lastRead = Math.max(conv.lastRead, item.msgId);
    }
    this._recount(conv);
    this.emit("messages", conv);
    return item;
  }

  /** Add history (oldest first): the first time, everything in it counts as read
   * unless a read marker was saved. */
  addHistory(conv, messages) {
    const added = [];
    for (const m of messages) {
      const item = this.addMessage(conv, m);
      if (item) added.push(item);
    }
    if (!conv.historyLoaded) {
      conv.historyLoaded = true;
      if (conv.lastRead === null) {
        const ids = messages.map((m) => Number(m.msg_id)).filter(Number.isInteger);
        conv.lastRead = ids.length ? Math.max(...ids) : 0;
      }
      this._recount(conv);
      this.emit("list");
    }
    return added;
  }

  /** A line of the client's own (joins, warnings, answers), placed after the
   * newest message. */
  addSystem(conv, text, level = "event", extra = {}) {
    const item = {
      type: "system",
      id: "s" + ++conv.seq,
      sort: conv.newestId + conv.seq / 1e6,
      text: String(text),
      level,
      ts: new Date().toISOString(),
      ...extra,
    };
    conv.items.splice(insertAt(conv.items, item.sort), 0, item);
    this._trim(conv);
    this.emit("messages", conv);
    return item;
  }

  /** A message was deleted (a `deleted` event): its text goes and it shows as
   * "message deleted" (who deleted it, and why, kept for a tooltip). Returns
   * the item, or null when it is not in this conversation's view. */
  deleteMessage(conv, msgId, { by = null, reason = null } = {}) {
    const id = Number(msgId);
    const item = conv.items.find((i) => i.type === "message" && i.msgId === id);
    if (!item) return null;
    Object.assign(item, {
      deleted: true, text: "", action: false, error: null, mention: false,
      deletedBy: by === null ? item.deletedBy ?? null : String(by),
      deletedReason: reason === null ? item.deletedReason ?? null : String(reason),
    });
    this._recount(conv);
    this.emit("messages", conv);
    return item;
  }

  removeItem(conv, id) {
    const before = conv.items.length;
    conv.items = conv.items.filter((i) => i.id !== id);
    if (conv.items.length !== before) this.emit("messages", conv);
  }

  _trim(conv) {
    if (conv.items.length > MAX_MESSAGES) {
      // Drop the oldest; paging back can bring them again.
      const dropped = conv.items.splice(0, conv.items.length - MAX_MESSAGES);
      for (const i of dropped) if (i.msgId !== null) conv.ids.delete(i.msgId);
      const first = conv.items.find((i) => i.msgId !== null);
      conv.oldestId = first ? first.msgId : null;
      conv.complete = false;
    }
  }

  _recount(conv) {
    const before = conv.unread + "/" + conv.mentions;
    const counts = countUnread(conv.items, conv.lastRead ?? 0, this.me);
    conv.unread = counts.unread;
    conv.mentions = counts.mentions;
    if (before !== conv.unread + "/" + conv.mentions) this.emit("list");
  }

  markRead(conv) {
    if (conv.newestId && (conv.lastRead ?? 0) < conv.newestId) {
      conv.lastRead = conv.newestId;
      this._recount(conv);
      this.emit("read", conv);
    } else if (conv.lastRead === null) {
      conv.lastRead = conv.newestId;
    }
  }

  totalUnread() {
    let total = 0;
    for (const c of this.conversations.values()) {
      if (c.kind === "dm") total += c.unread;
      else total += c.mentions;
    }
    return total;
  }

  // -- members and presence ---------------------------------------------------------

  setMembers(conv, members) {
    conv.members = new Map();
    for (const m of members) {
      conv.members.set(fold(m.user), { user: m.user, op: !!m.op, voice: !!m.voice });
      if (m.presence) this.notePresence(m.user, m.presence, undefined);
    }
    this.emit("members", conv);
  }

  addMember(conv, user) {
    if (!conv.members.has(fold(user))) {
      conv.members.set(fold(user), { user, op: false, voice: false });
      this.notePresence(user, "online", undefined);
      this.emit("members", conv);
    }
  }

  removeMember(conv, user) {
    if (conv.members.delete(fold(user))) this.emit("members", conv);
  }

  /** Remember a presence without telling the views (many at once; emit after). */
  notePresence(user, presence, away) {
    const prev = this.presence.get(fold(user)) || {};
    this.presence.set(fold(user), {
      user,
      presence,
      away: away === undefined ? prev.away || null : away,
    });
  }

  setPresence(user, presence, away) {
    this.notePresence(user, presence, away ?? null);
    this.emit("presence", user);
  }

  presenceOf(user) {
    return (this.presence.get(fold(user)) || {}).presence || "offline";
  }

  setContacts(contacts) {
    this.contacts = {
      contacts: [...(contacts.contacts || [])].map(String),
      incoming: [...(contacts.incoming || [])].map(String),
      outgoing: [...(contacts.outgoing || [])].map(String),
    };
    for (const name of this.contacts.contacts) this.open("dm", name);
    this.emit("contacts");
    this.emit("list");
  }

  isContact(user) {
    return this.contacts.contacts.some((c) => fold(c) === fold(user));
  }
}
