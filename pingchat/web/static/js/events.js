// What the client does with each server event (docs/protocol.md, "Events").

import { fold } from "./format.js";

function isMe(client, user) {
  return !!client.user && fold(String(user || "")) === fold(client.user);
}

const handlers = {
  async message(client, ev) {
    const { store } = client;
    const m = await client.secure.read(ev);
    const conv = store.conversationOf(m);
    const isNewDm = conv.kind === "dm" && !conv.historyLoaded && conv.items.length === 0;
    const item = store.addMessage(conv, m, { live: !ev.offline });
    if (!item) return;
    if (conv.kind === "dm") {
      if (isNewDm) client.saveDms();
      if (m.encrypted && !m.error && conv.encrypted !== true) {
        conv.encrypted = true;
        store.emit("header", conv);
      }
    }
    if (!item.mine) client.emit("incoming", conv, item);
  },

  deleted(client, ev) {
    // Where its `message` event went: the room, or the DM with the other party.
    const { store } = client;
    const conv = ev.room
      ? store.find("room", ev.room)
      : store.find("dm", String(isMe(client, ev.from) ? ev.to : ev.from));
    if (conv) store.deleteMessage(conv, ev.msg_id, { by: ev.by ?? null, reason: ev.reason ?? null });
  },

  joined(client, ev) {
    const conv = client.store.find("room", ev.room);
    if (isMe(client, ev.user)) {
      // Joined from another session of this account: the room appears here too.
      const room = client.store.open("room", ev.room);
      if (!room.joined) {
        room.joined = true;
        client.conn.request("members", { room: room.name })
          .then((r) => client.store.setMembers(room, r.members || []))
          .catch(() => {});
      }
      return;
    }
    if (!conv) return;
    client.store.addMember(conv, ev.user);
    client.store.addSystem(conv, `${ev.user} joined ${conv.name}`);
  },

  parted(client, ev) {
    const conv = client.store.find("room", ev.room);
    if (!conv) return;
    const reason = ev.reason ? ` (${ev.reason})` : "";
    if (isMe(client, ev.user)) {
      conv.joined = false;
      client.store.addSystem(conv, `You left ${conv.name}${reason}.`);
      client.store.emit("list");
      return;
    }
    client.store.removeMember(conv, ev.user);
    client.store.addSystem(conv, `${ev.user} left ${conv.name}${reason}`);
  },

  kicked(client, ev) {
    const conv = client.store.find("room", ev.room);
    const reason = ev.reason ? ` (${ev.reason})` : "";
    const me = isMe(client, ev.user);
    if (conv) {
      client.store.removeMember(conv, ev.user);
      if (me) {
        conv.joined = false;
        client.store.emit("list");
      }
      client.store.addSystem(conv, `${me ? "You were" : ev.user + " was"} removed from ${conv.name} by ${ev.by}${reason}`, me ? "warning" : "event");
    }
    if (me) client.emit("toast", `${ev.by} removed you from ${ev.room}${reason}`, "warning");
  },

  topic(client, ev) {
    const conv = client.store.find("room", ev.room);
    if (!conv) return;
    conv.topic = ev.topic || "";
    client.store.addSystem(conv, ev.topic ? `${ev.by} set the topic: ${ev.topic}` : `${ev.by} cleared the topic`);
    client.store.emit("header", conv);
  },

  presence(client, ev) {
    client.store.setPresence(ev.user, ev.presence, ev.away);
  },

  mode(client, ev) {
    const conv = client.store.find("room", ev.room);
    if (!conv) return;
    const changes = (ev.changes || []).map(([c, a]) => (a ? `${c} ${a}` : c)).join(" ");
    client.store.addSystem(conv, `${ev.by} set mode ${changes}`);
    for (const [change, arg] of ev.changes || []) {
      const member = arg && conv.members.get(fold(arg));
      if (!member) continue;
      if (change === "+o" || change === "-o") member.op = change === "+o";
      if (change === "+v" || change === "-v") member.voice = change === "+v";
    }
    client.store.emit("members", conv);
  },

  invited(client, ev) {
    const server = client.store.open("server", "");
    client.store.addSystem(server, `${ev.by} invites you to ${ev.room}.`, "info", { join: ev.room });
    client.emit("toast", `${ev.by} invites you to ${ev.room}`, "info", { join: ev.room });
  },

  async contact(client, ev) {
    const texts = {
      request: `${ev.user} asks to be your contact.`,
      accepted: `${ev.user} and you are contacts now.`,
      removed: `${ev.user} is no longer your contact.`,
    };
    const text = texts[ev.status] || `${ev.user}: contact ${ev.status}`;
    client.store.addSystem(client.store.open("server", ""), text, ev.status === "request" ? "warning" : "info");
    client.emit("toast", text, ev.status === "request" ? "warning" : "info");
    if (ev.status === "request") client.emit("request", ev.user);
    try {
      await client.refreshContacts();
    } catch {
      // offline: the next login fetches them
    }
  },

  notice(client, ev) {
    const server = client.store.open("server", "");
    client.store.addMessage(server, { from: ev.from || "server", text: ev.text || "", kind: "notice", ts: new Date().toISOString() }, { live: true });
    client.emit("toast", `${ev.from || "server"}: ${ev.text || ""}`, "info");
  },

  disconnect(client, ev) {
    client.emit("toast", `The server ended this connection: ${ev.reason || "no reason given"}. Reconnecting…`, "warning", { tag: "connection" });
  },

  error(client, ev) {
    const error = ev.error || {};
    client.emit("toast", `Server: ${error.message || error.code || "error"}`, "error");
  },

  async key(client, ev) {
    await client.secure.keyEvent(ev);
  },
};

export async function handleEvent(client, ev) {
  const handler = Object.prototype.hasOwnProperty.call(handlers, ev.event) ? handlers[ev.event] : null;
  if (handler) await handler(client, ev);
}
