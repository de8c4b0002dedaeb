// Dialogs about rooms and people: join a room, start a DM or ask someone to
// be a contact, set a topic, and a contact's page with every device's key.

import { clock, isAccountName, isRoomName, roomName } from "../format.js";
import { confirmDialog, openDialog } from "./dialog.js";
import { errorBox, field, h, showError } from "./dom.js";

export function joinDialog(client) {
  const name = h("input", { autocomplete: "off", autocapitalize: "none", spellcheck: "false", placeholder: "#room", required: true });
  const key = h("input", { autocomplete: "off", autocapitalize: "none" });
  const error = errorBox();
  const list = h("ul", { class: "room-list" }, h("li", { class: "hint" }, "Loading the rooms…"));
  const form = h("form", { class: "form", novalidate: true },
    field("Room", name, "A new name creates the room; you become its operator."),
    field("Key (only for rooms that have one)", key), error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button primary" }, "Join")));
  const join = async (room, roomKey) => {
    try {
      await client.join(room, roomKey || null);
      d.close();
      document.getElementById("composer")?.focus();
    } catch (e) {
      showError(error, e.message);
    }
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const room = roomName(name.value);
    if (!isRoomName(room)) {
      showError(error, "A room name is # and 1–49 characters, without spaces, commas or colons.");
      name.focus();
      return;
    }
    join(room, key.value.trim());
  });
  const d = openDialog({ title: "Join or create a room", content: [form, h("h3", {}, "Rooms on this server"), list] });
  client.request("rooms").then((reply) => {
    const rooms = (reply.rooms || []).sort((a, b) => (b.members || 0) - (a.members || 0));
    list.replaceChildren(...(rooms.length ? rooms.map((r) => h("li", {},
      h("button", { type: "button", class: "room-pick", on: { click: () => join(r.name) } },
        h("span", { class: "conv-name" }, r.name), h("span", { class: "hint" }, ` ${r.members} ${r.members === 1 ? "person" : "people"}`),
        r.topic ? h("span", { class: "room-topic" }, r.topic) : null)))
      : [h("li", { class: "hint" }, "No rooms yet: the first one is yours to name.")]));
  }, (e) => list.replaceChildren(h("li", { class: "hint" }, `Could not list the rooms: ${e.message}`)));
}

export function newDmDialog(client) {
  const name = h("input", { autocomplete: "off", autocapitalize: "none", spellcheck: "false", required: true, maxlength: 32 });
  const error = errorBox();
  const status = h("p", { class: "hint", role: "status" });
  const check = () => {
    const user = name.value.trim();
    if (!isAccountName(user)) {
      showError(error, "Type a user name (letters, digits and _-[]\\^{}|`).");
      name.focus();
      return null;
    }
    showError(error, null);
    return user;
  };
  const form = h("form", { class: "form", novalidate: true }, field("User name", name), error, status,
    h("div", { class: "actions" },
      h("button", {
        type: "button", class: "button",
        on: {
          click: async () => {
            const user = check();
            if (!user) return;
            try {
              const reply = await client.addContact(user);
              status.textContent = reply.status === "contact" ? `${reply.user} and you are contacts now.` : `Asked ${reply.user}; they will see your request.`;
            } catch (e) {
              showError(error, e.message);
            }
          },
        },
      }, "Ask to be contacts"),
      h("button", { type: "submit", class: "button primary" }, "Message")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const user = check();
    if (!user) return;
    try {
      const info = await client.request("whois", { user });
      d.close();
      const conv = client.openDm(String(info.user || user));
      client.store.setPresence(info.user, info.presence, info.away);
      await client.select(conv);
      document.getElementById("composer")?.focus();
    } catch (e) {
      showError(error, e.code === "no_such_user" ? `There is no user ${user} on this server.` : e.message);
    }
  });
  const policy = client.store.dmPolicy === "contacts"
    ? "You accept direct messages from your contacts only (Settings changes that)."
    : "Anyone can send you direct messages (Settings can limit them to contacts).";
  const d = openDialog({ title: "Direct message or contact", content: [form, h("p", { class: "hint" }, policy)] });
}

export function topicDialog(client, conv) {
  const topic = h("input", { value: conv.topic || "", maxlength: 390 });
  const error = errorBox();
  const form = h("form", { class: "form", novalidate: true }, field(`Topic of ${conv.name}`, topic), error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "button primary" }, "Set the topic")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await client.setTopic(conv, topic.value.trim());
      d.close();
    } catch (e) {
      showError(error, e.message);
    }
  });
  const d = openDialog({ title: "Topic", content: form });
}

/** A person's page: presence, contact status, every device's fingerprint. */
export function contactPage(client, user) {
  const body = h("div", { class: "contact-page" }, h("p", { class: "hint" }, "Loading…"));
  const d = openDialog({ title: user, content: body, wide: true });
  render();

  async function render() {
    let info;
    let keys;
    try {
      [info, keys] = await Promise.all([client.request("whois", { user }), client.secure.devices(user)]);
    } catch (e) {
      body.replaceChildren(h("p", { class: "form-error" }, e.message));
      return;
    }
    const name = String(info.user || user);
    const contact = client.store.isContact(name);
    const asked = client.store.contacts.outgoing.some((u) => u.toLowerCase() === name.toLowerCase());
    const presence = info.presence === "away" && info.away ? `away: ${info.away}` : info.presence;
    const rows = [
      h("p", {}, h("strong", {}, name), ` is ${presence}`, info.last_seen && info.presence === "offline" ? `, last seen ${clock(info.last_seen, { full: true })}` : "", "."),
      h("p", {}, contact ? "A contact of yours." : asked ? "You asked to be contacts; waiting for their answer." : "Not a contact."),
    ];
    const actions = h("div", { class: "actions left" });
    if (contact || asked) {
      actions.append(h("button", {
        type: "button", class: "button",
        on: {
          click: async () => {
            if (await confirmDialog("Remove contact", `Stop being contacts with ${name}?`, { confirm: "Remove", danger: true })) {
              await client.removeContact(name).catch((e) => client.emit("toast", e.message, "error"));
              render();
            }
          },
        },
      }, contact ? "Remove contact" : "Withdraw the request"));
    } else {
      actions.append(h("button", { type: "button", class: "button", on: { click: async () => { await client.addContact(name).catch((e) => client.emit("toast", e.message, "error")); render(); } } }, "Ask to be contacts"));
    }
    rows.push(actions);
    rows.push(h("h3", {}, "Encryption keys"));
    if (!keys.devices.length) {
      rows.push(h("p", {}, `${name} has not published an encryption key (they may use IRC or another client): direct messages to them are NOT end-to-end encrypted.`));
    } else {
      rows.push(h("p", { class: "hint" }, `Direct messages are sealed for each of these devices. Compare each fingerprint with what ${name}'s device shows (in person or on a call): if they match, nobody can read your messages on the way.`));
      for (const w of keys.warnings) {
        rows.push(h("p", { class: "banner danger" }, `The key of the device "${w.label || w.device}" CHANGED (was ${w.previous}, now ${w.fingerprint}).`,
          " ", h("button", { type: "button", class: "button small", on: { click: async () => { await client.secure.acknowledge(name, w.device); render(); } } }, "I have checked it")));
      }
      rows.push(deviceTable(keys.devices));
    }
    body.replaceChildren(...rows);
  }
  return d;
}

export function deviceTable(devices, { onRevoke } = {}) {
  return h("table", { class: "devices" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Device"), h("th", { scope: "col" }, "Fingerprint"), h("th", { scope: "col" }, "Published"), onRevoke ? h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")) : null)),
    h("tbody", {}, devices.map((dev) => h("tr", {},
      h("td", {}, dev.label || (dev.device === "default" ? "(one key for the account)" : dev.device), dev.thisDevice ? h("strong", {}, " — this browser") : null,
        h("div", { class: "hint mono" }, dev.device)),
      h("td", { class: "mono fingerprint" }, dev.fingerprint),
      h("td", {}, dev.publishedAt ? clock(dev.publishedAt, { full: true }) : "—"),
      onRevoke ? h("td", {}, dev.thisDevice ? null : h("button", { type: "button", class: "button small danger", on: { click: () => onRevoke(dev) } }, "Revoke")) : null))));
}
