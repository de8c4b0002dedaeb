// The chat screen: the conversation list (a drawer on a phone), the header of
// the conversation on screen, its messages, the composer, the members.

import { fold } from "../format.js";
import { changedWarning } from "../secure.js";
import { announce, h, icon, iconButton } from "./dom.js";
import { Composer } from "./composer.js";
import { MessageList, hue } from "./messages.js";
import { contactPage, joinDialog, newDmDialog, topicDialog } from "./people.js";
import { openSettings } from "./settings.js";
import { themeButton } from "./theme.js";

const CONN_TEXT = {
  connecting: "Connecting…",
  open: "Connected",
  waiting: "Offline",
  stopped: "Stopped",
  idle: "Starting…",
};

function presenceDot(presence) {
  const p = presence || "offline";
  return h("span", { class: ["dot", p], title: p }, h("span", { class: "sr-only" }, `(${p})`));
}

export class Shell {
  constructor(client, root) {
    this.client = client;
    this.store = client.store;
    this.root = root;
    this.messages = new MessageList(client, { onAction: (what, arg) => this._action(what, arg) });
    this.messages.welcome = () => h("div", { class: "welcome" },
      h("h2", {}, `Welcome${client.user ? ", " + client.user : ""}!`),
      h("p", {}, "Talk in a room with everyone in it, or directly with one person."),
      h("div", { class: "actions left" },
        h("button", { type: "button", class: "button primary", on: { click: () => joinDialog(client) } }, "Join or create a room"),
        h("button", { type: "button", class: "button", on: { click: () => newDmDialog(client) } }, "Message someone")),
      h("p", { class: "hint" }, "Keyboard: Alt+↑/↓ switches conversations, Alt+Shift+↑/↓ goes to the next unread one, Enter sends, Shift+Enter starts a new line, Escape closes dialogs and panels."));
    this.pending = new Set();
    this.frame = null;
    this.warningsFor = null;
    this._build();
  }

  _build() {
    const c = this.client;
    this.connState = h("p", { class: "conn", role: "status" });
    this.meName = h("span", { class: "me-name" });
    this.roomsList = h("ul", { class: "conv-list", "aria-label": "Rooms" });
    this.dmList = h("ul", { class: "conv-list", "aria-label": "Direct messages" });
    this.requests = h("section", { class: "requests", hidden: true });
    this.serverEntry = h("ul", { class: "conv-list", "aria-label": "Server" });
    this.sidebar = h("nav", { class: "sidebar", id: "sidebar", "aria-label": "Conversations" },
      h("div", { class: "me" }, h("span", { class: "brand small" }, "pingchat"), this.meName,
        themeButton(), iconButton("settings", "Settings", () => openSettings(c)),
        iconButton("close", "Close the conversation list", () => { this.closeDrawers(); this.menuButton.focus(); }, { class: "drawer-close" })),
      this.connState,
      this.serverEntry,
      h("div", { class: "list-head" }, h("h2", {}, "Rooms"),
        iconButton("plus", "Join or create a room", () => joinDialog(c))),
      this.roomsList,
      h("div", { class: "list-head" }, h("h2", {}, "Direct messages"),
        iconButton("plus", "New direct message or contact", () => newDmDialog(c))),
      this.dmList,
      this.requests);
    this.scrim = h("button", { type: "button", class: "scrim", tabindex: "-1", "aria-hidden": "true", on: { click: () => this.closeDrawers() } });

    this.menuButton = iconButton("menu", "Conversations", () => this.toggleDrawer(), { class: "menu-button", "aria-controls": "sidebar", "aria-expanded": "false" });
    this.menuBadge = h("span", { class: "menu-badge", "aria-hidden": "true", hidden: true });
    this.menuButton.append(this.menuBadge);
    this.title = h("h1", { class: "conv-title" });
    this.topic = h("p", { class: "conv-topic" });
    this.lockState = h("span", { class: "lock-state" });
    this.headActions = h("div", { class: "head-actions" });
    this.membersButton = iconButton("people", "Members", () => this.toggleMembers(), { "aria-controls": "members", "aria-expanded": "false" });
    this.header = h("header", { class: "conv-header" }, this.menuButton,
      h("div", { class: "conv-heading" }, h("div", { class: "title-row" }, this.title, this.lockState), this.topic),
      this.headActions);
    this.banners = h("div", { class: "banners" });
    this.composer = new Composer(this.client, {
      open: (conv) => this.open(conv),
      scroll: (pages) => this.messages.el.scrollBy(0, pages * this.messages.el.clientHeight * 0.9),
    });
    this.composerInput = this.composer.input;
    this.main = h("main", { class: "main" }, this.header, this.banners, this.messages.wrap, this.composer.error, this.composer.form);
    this.membersPanel = h("aside", { class: "members", id: "members", "aria-label": "Members" });
    this.el = h("div", { class: "shell" }, this.sidebar, this.main, this.membersPanel, this.scrim);

    this._keys = (ev) => this._globalKeys(ev);
    document.addEventListener("keydown", this._keys);
  }

  /** The session ended: stop listening to the page's keys. */
  destroy() {
    document.removeEventListener("keydown", this._keys);
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  mount() {
    this.root.replaceChildren(this.el);
    this.meName.textContent = this.client.user || "";
    this.renderAll();
  }

  // -- rendering, batched per frame --------------------------------------------

  schedule(what) {
    this.pending.add(what);
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      const parts = this.pending;
      this.pending = new Set();
      if (parts.has("all")) return this.renderAll();
      if (parts.has("list")) this.renderList();
      if (parts.has("header")) this.renderHeader();
      if (parts.has("messages")) this.messages.render();
      if (parts.has("members")) this.renderMembers();
      if (parts.has("banners")) this.renderBanners();
      return undefined;
    });
  }

  renderAll() {
    this.renderList();
    this.renderHeader();
    this.messages.show(this.store.activeConversation());
    this.renderMembers();
    this.renderBanners();
    this.renderConnection();
  }

  renderConnection() {
    const { connState, connDetail } = this.client;
    let text = CONN_TEXT[connState] || connState;
    if (connState === "open" && !this.client.loggedIn) text = "Logging in…";
    if (connState === "waiting") {
      const secs = Math.max(1, Math.round((connDetail.delay || 0) / 1000));
      text = `Offline: reconnecting in ${secs} s`;
    }
    const ok = connState === "open" && this.client.loggedIn;
    this.connState.replaceChildren(h("span", { class: ["conn-dot", ok ? "ok" : connState === "waiting" ? "bad" : "wait"] }), " ", text);
    if (connState === "waiting") {
      this.connState.append(" ", h("button", { type: "button", class: "link-button", on: { click: () => this.client.conn.reconnectNow() } }, "Retry now"));
    }
    this.menuButton.classList.toggle("offline", !ok);
    this.renderBanners();
  }

  _convButton(conv, label, extra) {
    const active = this.store.active === conv.key;
    const badge = conv.unread
      ? h("span", { class: ["badge", (conv.mentions || conv.kind === "dm") && "strong"] },
        String(conv.unread), h("span", { class: "sr-only" }, conv.mentions ? ` unread, ${conv.mentions} mentioning you` : " unread"))
      : null;
    return h("li", {}, h("button", {
      type: "button", class: ["conv", active && "active", conv.unread && "unread", conv.kind === "room" && !conv.joined && "left"],
      "aria-current": active ? "page" : false,
      on: { click: () => this.open(conv) },
    }, extra, h("span", { class: "conv-name" }, label), badge));
  }

  renderList() {
    const server = this.store.find("server", "");
    this.serverEntry.replaceChildren(...(server && server.items.length ? [this._convButton(server, "Server notices")] : []));
    const rooms = this.store.rooms();
    this.roomsList.replaceChildren(...(rooms.length ? rooms.map((c) => this._convButton(c, c.name))
      : [h("li", { class: "empty" }, "No rooms yet: press + to join or create one.")]));
    const dms = this.store.dms();
    this.dmList.replaceChildren(...(dms.length ? dms.map((c) => this._convButton(c, c.name, presenceDot(this.store.presenceOf(c.name))))
      : [h("li", { class: "empty" }, "No direct messages yet.")]));
    const incoming = this.store.contacts.incoming;
    this.requests.hidden = !incoming.length;
    this.requests.replaceChildren(h("h2", {}, "Contact requests"),
      h("ul", { class: "request-list" }, incoming.map((user) => h("li", {},
        h("span", { class: "conv-name" }, user),
        h("button", { type: "button", class: "button small primary", on: { click: () => this._contact(user, true) } }, "Accept"),
        h("button", { type: "button", class: "button small", on: { click: () => this._contact(user, false) } }, "Decline")))));
    const total = this.store.totalUnread();
    document.title = total ? `(${total}) pingchat` : "pingchat";
    this.menuBadge.textContent = total ? String(total) : "";
    this.menuBadge.hidden = !total;
    this.menuButton.setAttribute("aria-label", total ? `Conversations (${total} unread)` : "Conversations");
  }

  async _contact(user, accept) {
    try {
      if (accept) {
        await this.client.addContact(user);
        this.client.emit("toast", `${user} and you are contacts now.`, "info");
      } else {
        await this.client.removeContact(user);
      }
    } catch (e) {
      this.client.emit("toast", e.message, "error");
    }
  }

  renderHeader() {
    const conv = this.store.activeConversation();
    const c = this.client;
    this.title.textContent = conv ? conv.title : "pingchat";
    this.topic.textContent = conv ? (conv.kind === "room" ? conv.topic || "" : conv.kind === "dm" ? this._dmStatus(conv) : "Notices from the server and its administrators") : "Pick a conversation, or press + to join a room.";
    this.lockState.replaceChildren();
    if (conv && conv.kind === "dm") {
      const sealed = conv.encrypted === true;
      const plain = conv.encrypted === false;
      if (sealed || plain) {
        this.lockState.replaceChildren(h("span", { class: ["e2e", sealed ? "on" : "off"], title: sealed ? "End-to-end encrypted" : "Not end-to-end encrypted: the server can read it" },
          icon(sealed ? "lock" : "unlock"), sealed ? "encrypted" : "not encrypted"));
      }
    }
    const actions = [];
    if (conv && conv.kind === "room") {
      actions.push(h("button", { type: "button", class: "button small", on: { click: () => topicDialog(c, conv) } }, "Topic"));
      if (conv.joined) {
        actions.push(h("button", { type: "button", class: "button small", on: { click: () => this._part(conv) } }, "Leave"));
      } else {
        actions.push(h("button", { type: "button", class: "button small primary", on: { click: () => c.join(conv.name).catch((e) => c.emit("toast", e.message, "error")) } }, "Rejoin"));
      }
      actions.push(this.membersButton);
    } else if (conv && conv.kind === "dm") {
      actions.push(h("button", { type: "button", class: "button small", on: { click: () => contactPage(c, conv.name) } }, "Keys & contact"));
    }
    this.headActions.replaceChildren(...actions);
    this.composer.target(conv);
  }

  _dmStatus(conv) {
    const p = this.store.presence.get(fold(conv.name));
    const presence = this.store.presenceOf(conv.name);
    const away = presence === "away" && p && p.away ? `: ${p.away}` : "";
    const contact = this.store.isContact(conv.name) ? "contact · " : "";
    return `${contact}${presence}${away}`;
  }

  async _part(conv) {
    try {
      await this.client.part(conv);
      const next = this.store.rooms()[0] || this.store.dms()[0] || null;
      await this.client.select(next);
    } catch (e) {
      this.client.emit("toast", e.message, "error");
    }
  }

  renderMembers() {
    const conv = this.store.activeConversation();
    const show = !!conv && conv.kind === "room";
    this.el.classList.toggle("has-members", show);
    if (!show) {
      this.membersPanel.replaceChildren();
      return;
    }
    const rank = { online: 0, away: 1, offline: 2 };
    const members = [...conv.members.values()].sort((a, b) =>
      (rank[this.store.presenceOf(a.user)] - rank[this.store.presenceOf(b.user)])
      || (Number(b.op) - Number(a.op)) || a.user.localeCompare(b.user));
    this.membersPanel.replaceChildren(
      h("div", { class: "list-head" }, h("h2", {}, `Members (${members.length})`),
        iconButton("close", "Close the members list", () => this.toggleMembers(false), { class: "members-close" })),
      h("ul", { class: "member-list" }, members.map((m) => {
        const presence = this.store.presenceOf(m.user);
        const mine = this.client.user && m.user.toLowerCase() === this.client.user.toLowerCase();
        return h("li", { class: ["member", presence] },
          presenceDot(presence),
          h("span", { class: ["member-name", hue(m.user)] }, (m.op ? "@" : m.voice ? "+" : "") + m.user),
          m.op ? h("span", { class: "sr-only" }, " (operator)") : null,
          mine ? null : h("button", { type: "button", class: "link-button small", "aria-label": `Message ${m.user}`, on: { click: () => this.open(this.client.openDm(m.user)) } }, "Message"));
      })));
  }

  async renderBanners() {
    const items = [];
    const c = this.client;
    if (c.connState === "waiting" && this.client.user) {
      items.push(h("div", { class: "banner offline", role: "status" },
        "You are offline. What you type is kept and sent when the connection is back."));
    }
    const conv = this.store.activeConversation();
    if (conv && conv.kind === "dm") {
      const warnings = await c.secure.warnings(conv.name);
      if (this.store.activeConversation() !== conv) return;
      for (const w of warnings) {
        items.push(h("div", { class: "banner danger", role: "alert" },
          h("p", {}, changedWarning(w)),
          h("div", { class: "actions left" },
            h("button", { type: "button", class: "button small", on: { click: () => contactPage(c, conv.name) } }, "Compare fingerprints"),
            h("button", { type: "button", class: "button small", on: { click: async () => { await c.secure.acknowledge(conv.name, w.device); this.renderBanners(); } } }, "I have checked: dismiss"))));
      }
    }
    this.banners.replaceChildren(...items);
  }

  // -- actions ---------------------------------------------------------------------------

  async open(conv) {
    this.closeDrawers();
    await this.client.select(conv);
    this.composerInput.focus();
  }

  _action(what, arg) {
    if (what === "join") this.client.join(arg).catch((e) => this.client.emit("toast", e.message, "error"));
  }

  /** While a drawer covers the page (narrow screens), the rest is inert:
   * Tab stays in the drawer. */
  _inert() {
    const narrow = matchMedia("(max-width: 759px)").matches;
    const drawer = this.el.classList.contains("drawer-open") && narrow;
    const members = this.el.classList.contains("members-open") && matchMedia("(max-width: 1099px)").matches;
    this.main.inert = drawer || members;
    this.sidebar.inert = members && !drawer;
  }

  toggleDrawer(force) {
    const open = force ?? !this.el.classList.contains("drawer-open");
    this.el.classList.toggle("drawer-open", open);
    this.menuButton.setAttribute("aria-expanded", String(open));
    this._inert();
    if (open) {
      const current = this.sidebar.querySelector(".conv.active") || this.sidebar.querySelector("button");
      if (current) current.focus();
    }
  }

  toggleMembers(force) {
    const open = force ?? !this.el.classList.contains("members-open");
    this.el.classList.toggle("members-open", open);
    this.el.classList.toggle("members-hidden", !open);
    this.membersButton.setAttribute("aria-expanded", String(open));
    this._inert();
    if (open) {
      const first = this.membersPanel.querySelector("button");
      if (first) first.focus();
    }
  }

  closeDrawers() {
    const wasOpen = this.el.classList.contains("drawer-open") || this.el.classList.contains("members-open");
    this.el.classList.remove("drawer-open", "members-open");
    this.menuButton.setAttribute("aria-expanded", "false");
    this.membersButton.setAttribute("aria-expanded", "false");
    this._inert();
    return wasOpen;
  }

  _globalKeys(ev) {
    if (document.querySelector("dialog[open]")) return;
    if (ev.key === "Escape") {
      if (this.closeDrawers()) {
        ev.preventDefault();
        this.composerInput.focus();
      }
      return;
    }
    if (ev.altKey && (ev.key === "ArrowUp" || ev.key === "ArrowDown")) {
      ev.preventDefault();
      const all = [this.store.find("server", ""), ...this.store.rooms(), ...this.store.dms()].filter((c) => c && (c.kind !== "server" || c.items.length));
      if (!all.length) return;
      const i = all.findIndex((c) => c.key === this.store.active);
      let next;
      if (ev.shiftKey) {
        // Alt+Shift+arrow: the next conversation with unread messages.
        const step = ev.key === "ArrowUp" ? -1 : 1;
        for (let k = 1; k <= all.length; k++) {
          const cand = all[(i + step * k + all.length * 2) % all.length];
          if (cand.unread) { next = cand; break; }
        }
        if (!next) return;
      } else {
        next = all[(i + (ev.key === "ArrowUp" ? -1 : 1) + all.length) % all.length];
      }
      this.open(next);
    }
  }

  /** A message came in: tell the screen reader, maybe notify. */
  incoming(conv, item) {
    const active = this.store.active === conv.key;
    const who = item.from;
    if (active && !document.hidden) {
      announce(item.error ? `${who}: ${item.error}` : item.action ? `${who} ${item.text}` : `${who}: ${item.text}`);
    } else if (conv.kind === "dm") {
      announce(`New direct message from ${who}`);
    } else if (item.mention) {
      announce(`${who} mentioned you in ${conv.name}`);
    }
    this.client.notifier.maybe(conv, item, () => {
      window.focus();
      this.open(conv);
    });
  }
}
