// The conversation on screen: its messages (paging back when scrolled to the
// top), what is still on its way, and the composer.

import { clock, dayKey, dayLabel, fold, segments } from "../format.js";
import { h, icon } from "./dom.js";
import { deletedText, messageActions } from "./message-actions.js";

const GROUP_MS = 5 * 60 * 1000;
const NEAR_TOP = 300;

/** One of eight colours per name, the same in every conversation. */
export function hue(name) {
  let n = 0;
  for (const ch of fold(name)) n = (n * 31 + ch.codePointAt(0)) >>> 0;
  return "c" + (n % 8);
}

function textNodes(text, me) {
  return segments(text, me).map((s) => {
    if (s.type === "link") return h("a", { href: s.href, target: "_blank", rel: "noopener noreferrer" }, s.value);
    if (s.type === "mention") return h("mark", { class: "mention-name" }, s.value);
    return document.createTextNode(s.value);
  });
}

function timeNode(ts) {
  if (!ts) return null;
  return h("time", { datetime: ts, title: new Date(ts).toLocaleString() }, clock(ts));
}

function messageNode(item, me, continued, actions = null) {
  const lock = item.encrypted && !item.error
    ? h("span", { class: "lock", title: "End-to-end encrypted" }, icon("lock"), h("span", { class: "sr-only" }, "(end-to-end encrypted)"))
    : null;
  const from = h("span", { class: ["from", hue(item.from)] }, item.from);
  const classes = ["msg", item.mine && "mine", item.mention && "mention", item.notice && "notice",
    item.action && "action", item.error && "undecryptable", item.deleted && "deleted",
    continued && "continued"];
  let body;
  if (item.deleted) {
    body = h("div", { class: "msg-text" }, h("em", {}, deletedText(item)));
  } else if (item.error) {
    body = h("div", { class: "msg-text" }, h("em", {}, item.error));
  } else if (item.action) {
    body = h("div", { class: "msg-text" }, "* ", h("span", { class: hue(item.from) }, item.from), " ", textNodes(item.text, me));
  } else {
    body = h("div", { class: "msg-text" }, textNodes(item.text, me));
  }
  const head = h("div", { class: ["msg-head", continued && "sr-only"] },
    from, item.notice ? h("span", { class: "tag" }, "notice") : null, timeNode(item.ts), lock);
  const side = continued
    ? h("span", { class: "side-time", "aria-hidden": "true" }, item.ts ? clock(item.ts) : "")
    : h("span", { class: ["avatar", hue(item.from)], "aria-hidden": "true" }, [...item.from][0].toUpperCase());
  return h("li", { class: classes, dataset: { id: item.id } }, side, head, body, actions);
}

function systemNode(item, onAction) {
  const extra = item.join
    ? h("button", { type: "button", class: "link-button", on: { click: () => onAction("join", item.join) } }, `Join ${item.join}`)
    : null;
  return h("li", { class: ["sys", "level-" + item.level] }, h("span", {}, item.text), " ", extra);
}

const STATE_TEXT = {
  queued: "waiting for the connection",
  sending: "sending…",
  unsure: "the connection dropped: checking whether it arrived",
  failed: "not sent",
};

function pendingNode(entry, me, onRetry, onDiscard) {
  const failed = entry.state === "failed";
  const action = entry.text.startsWith("\x01ACTION ");
  const text = action ? entry.text.slice(8).replace(/\x01$/, "") : entry.text;
  return h("li", { class: ["msg", "mine", "pending", "state-" + entry.state] },
    h("div", { class: "msg-head" }, h("span", { class: ["from", hue(me)] }, me),
      h("span", { class: "pending-state" }, STATE_TEXT[entry.state] || entry.state)),
    h("div", { class: "msg-text" }, action ? `* ${me} ${text}` : text),
    failed ? h("div", { class: "pending-error", role: "alert" },
      h("span", {}, `Not sent: ${entry.error}`), " ",
      h("button", { type: "button", class: "link-button", on: { click: () => onRetry(entry) } }, "Retry"), " ",
      h("button", { type: "button", class: "link-button", on: { click: () => onDiscard(entry) } }, "Discard")) : null);
}

export class MessageList {
  constructor(client, { onAction }) {
    this.client = client;
    this.onAction = onAction;
    this.conv = null;
    this.cache = new Map();
    this.nodes = [];
    this.list = h("ol", { class: "message-list" });
    this.top = h("div", { class: "history-top" });
    this.jump = h("button", {
      type: "button", class: "jump", hidden: true,
      on: { click: () => { this.scrollToBottom(); this.el.focus(); } },
    }, "New messages ", icon("down"));
    this.el = h("section", { class: "messages", tabindex: "0", "aria-label": "Messages" }, this.top, this.list);
    this.wrap = h("div", { class: "messages-wrap" }, this.el, this.jump);
    this.el.addEventListener("scroll", () => this._scrolled(), { passive: true });
    // Following the end: kept while the reader is at the bottom, so that a
    // banner or a keyboard that makes the list shorter does not lose the end.
    this.stuck = true;
    if (typeof ResizeObserver === "function") {
      new ResizeObserver(() => {
        if (this.stuck) this.el.scrollTop = this.el.scrollHeight;
      }).observe(this.el);
    }
  }

  show(conv) {
    this.conv = conv;
    this.cache.clear();
    this.nodes = [];
    this.list.replaceChildren();
    this.el.setAttribute("aria-label", conv ? `Messages in ${conv.title}` : "Messages");
    this.render({ toBottom: true });
  }

  atBottom() {
    return this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < 48;
  }

  scrollToBottom() {
    this.el.scrollTop = this.el.scrollHeight;
    this.stuck = true;
    this.jump.hidden = true;
    this._read();
  }

  _scrolled() {
    this.stuck = this.atBottom();
    if (this.stuck) {
      this.jump.hidden = true;
      this._read();
    }
    if (this.el.scrollTop < NEAR_TOP) this._older();
  }

  _read() {
    if (!this.conv || document.hidden) return;
    const before = this.conv.lastRead;
    this.client.store.markRead(this.conv);
    if (before !== this.conv.lastRead) this.client.saveRead();
  }

  async _older() {
    const conv = this.conv;
    if (!conv || conv.complete || conv.kind === "server" || this.client.loading.has(conv.key)) return;
    try {
      await this.client.loadOlder(conv);
    } catch (e) {
      this.client.emit("toast", `Could not load older messages: ${e.message}`, "error");
    }
  }

  _topNode() {
    const conv = this.conv;
    if (!conv) return this.welcome ? [this.welcome()] : [];
    if (conv.kind === "server") return [];
    if (conv.complete) {
      return [h("p", { class: "history-start" }, conv.kind === "room"
        ? `This is the beginning of ${conv.name}.` : `This is the beginning of your conversation with ${conv.name}.`)];
    }
    if (this.client.loading.has(conv.key)) return [h("p", { class: "history-start" }, "Loading older messages…")];
    return [h("button", { type: "button", class: "link-button load-older", on: { click: () => this._older() } }, "Load earlier messages")];
  }

  /** Draw what changed, keeping the reader's place (or following the end
   * when they were at it). */
  render({ toBottom = false } = {}) {
    const conv = this.conv;
    const stick = toBottom || this.stuck;
    const anchor = stick ? null : this._anchor();
    this.top.replaceChildren(...this._topNode());
    const me = this.client.user || "";
    const wanted = [];
    let prev = null;
    let day = null;
    for (const item of conv ? conv.items : []) {
      if (item.ts) {
        const d = dayKey(item.ts);
        if (d !== day) {
          day = d;
          wanted.push(this._node(`day:${d}`, () => h("li", { class: "day" }, h("span", {}, dayLabel(item.ts)))));
          prev = null;
        }
      }
      if (item.type === "message") {
        const continued = !!(prev && prev.type === "message" && !item.action && !prev.action && !item.notice
          && fold(prev.from) === fold(item.from) && item.ts && prev.ts
          && new Date(item.ts) - new Date(prev.ts) < GROUP_MS);
        const deletable = this.client.canDelete(conv, item);
        const state = `${continued}:${item.deleted ? "deleted" : ""}:${deletable ? "deletable" : ""}`;
        wanted.push(this._node(`${item.id}:${state}`, () => messageNode(item, me, continued,
          deletable ? messageActions(this.client, conv, item) : null)));
      } else {
        wanted.push(this._node(item.id, () => systemNode(item, this.onAction)));
      }
      prev = item;
    }
    if (conv && this.client.outbox && conv.kind !== "server") {
      for (const entry of this.client.outbox.of(conv.name)) {
        wanted.push(this._node(`p:${entry.id}:${entry.state}`, () => pendingNode(entry, me,
          (e) => this.client.outbox.retry(e.id), (e) => this.client.outbox.discard(e.id))));
      }
    }
    const old = this.nodes;
    let appended = false;
    if (old.length <= wanted.length && old.every((n, i) => n === wanted[i])) {
      this.list.append(...wanted.slice(old.length));
      appended = wanted.length > old.length;
    } else if (old.length <= wanted.length && old.every((n, i) => n === wanted[wanted.length - old.length + i])) {
      this.list.prepend(...wanted.slice(0, wanted.length - old.length));
    } else {
      this.list.replaceChildren(...wanted);
    }
    this.nodes = wanted;
    const keep = new Set(wanted);
    for (const [key, node] of this.cache) if (!keep.has(node)) this.cache.delete(key);
    if (stick) {
      this.scrollToBottom();
    } else {
      if (anchor && anchor.node.isConnected) this.el.scrollTop = anchor.node.offsetTop - anchor.offset;
      if (appended) this.jump.hidden = false;
    }
    if (conv && !conv.complete && conv.historyLoaded && this.el.scrollHeight <= this.el.clientHeight + NEAR_TOP) {
      this._older();
    }
  }

  /** The first message at least partly in view, and where it is: what stays
   * in place while older messages come in above it. */
  _anchor() {
    const top = this.el.scrollTop;
    for (const node of this.nodes) {
      if (node.offsetTop + node.offsetHeight > top) return { node, offset: node.offsetTop - top };
    }
    return null;
  }

  _node(key, make) {
    let node = this.cache.get(key);
    if (!node) {
      node = make();
      this.cache.set(key, node);
    }
    return node;
  }
}
