// The composer: what the user types, sent through the outbox, or a command.

import { HELP, parseInput } from "../commands.js";
import { h, icon } from "./dom.js";

export class Composer {
  /** *actions*: `open(conv)` shows a conversation, `scroll(pages)` scrolls the messages. */
  constructor(client, actions) {
    this.client = client;
    this.actions = actions;
    this.input = h("textarea", { id: "composer", rows: 1, autocomplete: "off", spellcheck: "true", "aria-describedby": "composer-hint", enterkeyhint: "send" });
    this.label = h("label", { for: "composer", class: "sr-only" }, "Message");
    this.error = h("p", { class: "composer-error", role: "alert", hidden: true });
    this.form = h("form", { class: "composer", novalidate: true },
      this.label, this.input,
      h("button", { type: "submit", class: "send", "aria-label": "Send", title: "Send (Enter)" }, icon("send")),
      h("p", { id: "composer-hint", class: "sr-only" }, "Enter sends, Shift+Enter starts a new line, /help lists commands."));
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (ev) => this._keys(ev));
    this.input.addEventListener("input", () => this.grow());
  }

  /** Say where the text goes. */
  target(conv) {
    this.label.textContent = conv ? `Message ${conv.title}` : "Message";
    this.input.placeholder = conv && conv.kind !== "server" ? `Message ${conv.title}` : "/join #room or /msg user text";
  }

  grow() {
    const ta = this.input;
    ta.style.height = "auto";
    ta.style.height = Math.min(ta.scrollHeight, 200) + "px";
  }

  _keys(ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      this.submit();
    } else if (ev.key === "PageUp" || ev.key === "PageDown") {
      ev.preventDefault();
      this.actions.scroll(ev.key === "PageUp" ? -1 : 1);
    }
  }

  showError(message) {
    this.error.textContent = message || "";
    this.error.hidden = !message;
  }

  async submit() {
    const conv = this.client.store.activeConversation();
    const line = this.input.value;
    const cmd = parseInput(line);
    const c = this.client;
    if (cmd.kind === "empty") return;
    this.showError(null);
    if (cmd.kind === "error") {
      this.showError(cmd.message);
      return;
    }
    const done = () => {
      this.input.value = "";
      this.grow();
    };
    try {
      switch (cmd.kind) {
        case "say":
          if (!conv || conv.kind === "server") return this.showError("Pick a room or a person first.");
          c.post(conv, cmd.text);
          done();
          return undefined;
        case "msg": {
          const dm = c.openDm(cmd.to);
          c.post(dm, cmd.text);
          done();
          await this.actions.open(dm);
          return undefined;
        }
        case "open":
          done();
          await this.actions.open(c.openDm(cmd.to));
          return undefined;
        case "help":
          done();
          for (const [usage, what] of HELP) c.store.addSystem(conv || c.store.open("server", ""), `${usage} — ${what}`, "info");
          return undefined;
        default:
          break;
      }
      if (!c.loggedIn) return this.showError("Not connected: commands need the connection (messages are kept and sent later).");
      if (cmd.kind === "join") {
        await c.join(cmd.room, cmd.key);
      } else if (cmd.kind === "part") {
        if (!conv || conv.kind !== "room") return this.showError("/part works in a room.");
        await c.request("part", cmd.reason ? { room: conv.name, reason: cmd.reason } : { room: conv.name });
        c.store.remove(conv);
      } else if (cmd.kind === "topic") {
        if (!conv || conv.kind !== "room") return this.showError("/topic works in a room.");
        await c.setTopic(conv, cmd.topic);
      } else if (cmd.kind === "away") {
        await c.request("away", cmd.text ? { text: cmd.text } : {});
        c.emit("toast", cmd.text ? `You are away: ${cmd.text}` : "You are back.", "info");
      }
      done();
    } catch (e) {
      this.showError(e.message || String(e));
    }
    return undefined;
  }
}
