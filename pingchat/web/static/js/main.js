// Boot: wire the connection, the state, encryption and the views together.

import { Client } from "./client.js";
import { Connection, webSocketUrl } from "./connection.js";
import { deviceLabel } from "./format.js";
import { Notifier } from "./notify.js";
import { Secure } from "./secure.js";
import { SessionStore, openKv } from "./storage.js";
import { Store } from "./store.js";
import { AuthView } from "./ui/auth.js";
import { h } from "./ui/dom.js";
import { Shell } from "./ui/shell.js";

function storageOrNull(name) {
  try {
    const s = globalThis[name];
    s.getItem("pingchat.probe");
    return s;
  } catch {
    return null;
  }
}

function toasts() {
  const area = document.getElementById("toasts");
  return (text, level = "info", extra = {}) => {
    const close = () => item.remove();
    const item = h("div", { class: ["toast", "level-" + level], dataset: { tag: extra.tag || "" } }, h("span", {}, text),
      extra.join ? h("button", { type: "button", class: "link-button", on: { click: () => { close(); client.join(extra.join).catch((e) => toast(e.message, "error")); } } }, `Join ${extra.join}`) : null,
      h("button", { type: "button", class: "icon-button small", "aria-label": "Dismiss", on: { click: close } }, "×"));
    area.append(item);
    while (area.childElementCount > 4) area.firstElementChild.remove();
    setTimeout(close, level === "error" || level === "warning" ? 12000 : 6000);
  };
}

const local = storageOrNull("localStorage");
const tab = storageOrNull("sessionStorage");
const kv = await openKv(globalThis.indexedDB).catch(() => null);
const conn = new Connection({ url: webSocketUrl(location), WebSocket: globalThis.WebSocket });
const store = new Store();
const secure = new Secure({
  conn,
  store,
  kv,
  nacl: globalThis.nacl || null,
  subtle: globalThis.isSecureContext && globalThis.crypto ? globalThis.crypto.subtle : null,
  label: deviceLabel(navigator.userAgent),
  persist: () => (navigator.storage && navigator.storage.persist ? navigator.storage.persist() : false),
});
const notifier = new Notifier({ Notification: globalThis.Notification, storage: local || tab, document });
const client = new Client({ conn, store, sessions: new SessionStore({ local, session: tab }), secure, notifier, tabStorage: tab });
const root = document.getElementById("app");
const toast = toasts();
const auth = new AuthView(client, root);
let shell = null;

client.on("toast", toast);
client.on("error", (e) => {
  console.error(e);
  toast(`Something went wrong: ${e && e.message ? e.message : e}`, "error");
});
client.on("need-login", ({ message }) => {
  if (shell) shell.destroy();
  shell = null;
  auth.show(message);
  auth.setStatus(conn.state === "open" ? "" : "Connecting to the server…");
});
function showShell() {
  if (!shell) {
    shell = new Shell(client, root);
    shell.mount();
  }
  return shell;
}
client.on("session", () => showShell());
client.on("logged-in", ({ again }) => {
  for (const t of document.querySelectorAll('.toast[data-tag="connection"]')) t.remove();
  const s = showShell();
  s.meName.textContent = client.user;
  if (!again) {
    const saved = client.savedActive();
    const conv = (saved && store.conversations.get(saved)) || store.rooms()[0] || store.dms()[0] || null;
    client.select(conv);
  }
  s.renderConnection();
});
client.on("connection", (state, detail) => {
  if (shell) shell.renderConnection();
  else if (state === "open") auth.setStatus("");
  else if (state === "waiting") auth.setStatus(`Cannot reach the server (${detail.reason || "closed"}); trying again in ${Math.round(detail.delay / 1000)} s…`, "bad");
  else if (state === "connecting") auth.setStatus("Connecting to the server…");
});
client.on("outbox", () => shell && shell.schedule("messages"));
client.on("keys", () => shell && shell.schedule("banners"));
client.on("incoming", (conv, item) => shell && shell.incoming(conv, item));
client.on("synced", () => {
  if (!shell) return;
  for (const part of ["list", "header", "members", "banners"]) shell.schedule(part);
});

store.subscribe((what, conv) => {
  if (!shell) return;
  if (what === "list" || what === "contacts" || what === "presence") shell.schedule("list");
  if (what === "presence") {
    shell.schedule("members");
    shell.schedule("header");
  }
  if (what === "active") shell.schedule("all");
  if (what === "messages" && conv && conv.key === store.active) shell.schedule("messages");
  if (what === "members" && conv && conv.key === store.active) shell.schedule("members");
  if (what === "header") shell.schedule("header");
  if (what === "read") client.saveRead();
});

document.addEventListener("visibilitychange", () => {
  store.visible = !document.hidden;
  if (!document.hidden && shell) {
    const conv = store.activeConversation();
    if (conv && shell.messages.atBottom()) {
      store.markRead(conv);
      client.saveRead();
    }
  }
});
addEventListener("online", () => conn.reconnectNow());

document.getElementById("boot")?.remove();
client.start();
