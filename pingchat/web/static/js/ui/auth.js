// The screens before a session: log in (with a TOTP code when the account
// has two factors), create an account, reset a forgotten password.

import { isAccountName } from "../format.js";
import { showRecoveryCodes } from "./codes.js";
import { checkbox, errorBox, field, h, showError } from "./dom.js";
import { themeButton } from "./theme.js";

const MIN_PASSWORD = 8;

function input(attrs) {
  return h("input", { required: true, ...attrs });
}

function nameError(name) {
  return isAccountName(name) ? null
    : "A user name is 1–32 characters: a letter or _ first, then letters, digits or any of _-[]\\^{}|`";
}

function busy(form, on) {
  for (const el of form.elements) el.disabled = on;
  form.setAttribute("aria-busy", on ? "true" : "false");
}

function explain(e) {
  if (!e) return "Something went wrong.";
  if (e.code === "not_connected" || e.code === "connection_lost") {
    return "Not connected to the server; it is retried by itself. Try again in a moment.";
  }
  if (e.code === "rate_limited") return `${e.message} (wait ${Math.ceil(e.retryAfter || 1)} s)`;
  return e.message || String(e);
}

export class AuthView {
  constructor(client, root) {
    this.client = client;
    this.root = root;
    this.status = h("p", { class: "auth-status", role: "status" });
    this.message = h("p", { class: "auth-message", role: "alert", hidden: true });
    this.tab = "login";
  }

  show(message) {
    this.message.textContent = message || "";
    this.message.hidden = !message;
    this.render();
  }

  setStatus(text, level) {
    this.status.textContent = text;
    this.status.dataset.level = level || "";
  }

  /** Draw the screen; *focusField* puts the cursor in the form's first field
   * (not when the user moves between tabs with the arrow keys). */
  render(focusField = true) {
    this.focusField = focusField;
    const tabs = [["login", "Log in"], ["register", "Create account"], ["recover", "Forgot password"]];
    const nav = h("div", { class: "tabs", role: "tablist", "aria-label": "Account" },
      tabs.map(([id, label]) => h("button", {
        type: "button", role: "tab", id: `tab-${id}`, "aria-selected": id === this.tab ? "true" : "false",
        "aria-controls": "auth-panel", tabindex: id === this.tab ? "0" : "-1",
        on: {
          click: () => { this.tab = id; this.render(); document.getElementById(`tab-${id}`).focus(); },
          keydown: (ev) => this._tabKeys(ev, tabs),
        },
      }, label)));
    const panel = h("div", { id: "auth-panel", role: "tabpanel", "aria-labelledby": `tab-${this.tab}` },
      this.tab === "login" ? this.loginForm() : this.tab === "register" ? this.registerForm() : this.recoverForm());
    this.root.replaceChildren(h("main", { class: "auth" },
      h("div", { class: "auth-card" },
        h("div", { class: "auth-top" }, h("h1", { class: "brand" }, "pingchat"), themeButton()),
        this.status, this.message, nav, panel)));
  }

  _tabKeys(ev, tabs) {
    const i = tabs.findIndex(([id]) => id === this.tab);
    let next = null;
    if (ev.key === "ArrowRight") next = tabs[(i + 1) % tabs.length][0];
    if (ev.key === "ArrowLeft") next = tabs[(i + tabs.length - 1) % tabs.length][0];
    if (ev.key === "Home") next = tabs[0][0];
    if (ev.key === "End") next = tabs[tabs.length - 1][0];
    if (!next) return;
    ev.preventDefault();
    this.tab = next;
    this.render(false);
    document.getElementById(`tab-${next}`).focus();
  }

  loginForm() {
    const user = input({ name: "username", autocomplete: "username", autocapitalize: "none", spellcheck: "false", maxlength: 32 });
    const password = input({ type: "password", name: "password", autocomplete: "current-password" });
    const otp = h("input", { name: "otp", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9 ]{6,8}", maxlength: 8 });
    const otpField = field("Code from your authenticator app", otp, "This account has two-factor authentication: type the 6-digit code your app shows now.");
    otpField.hidden = true;
    const remember = checkbox("Remember this browser (stay logged in after closing it)");
    const error = errorBox();
    const form = h("form", { class: "form", novalidate: true },
      field("User name", user), field("Password", password), otpField, remember.el, error,
      h("button", { type: "submit", class: "button primary wide" }, "Log in"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = user.value.trim();
      showError(error, nameError(name) || (!password.value ? "Type your password." : null));
      if (!error.hidden) return;
      const code = otp.value.replace(/\s/g, "");
      if (!otpField.hidden && !/^\d{6,8}$/.test(code)) {
        showError(error, "Type the 6-digit code from your authenticator app.");
        otp.focus();
        return;
      }
      busy(form, true);
      try {
        await this.client.login({ user: name, password: password.value, otp: otpField.hidden ? null : code, remember: remember.input.checked });
        return; // the chat replaces this screen
      } catch (e) {
        if (e.code === "otp_required") {
          busy(form, false);
          otpField.hidden = false;
          showError(error, null);
          otp.focus();
          return;
        }
        busy(form, false);
        showError(error, explain(e));
        (otpField.hidden ? password : otp).select();
      }
    });
    if (this.focusField) setTimeout(() => user.focus());
    return form;
  }

  registerForm() {
    const user = input({ name: "username", autocomplete: "username", autocapitalize: "none", spellcheck: "false", maxlength: 32 });
    const password = input({ type: "password", name: "new-password", autocomplete: "new-password", minlength: MIN_PASSWORD });
    const again = input({ type: "password", name: "new-password-again", autocomplete: "new-password" });
    const remember = checkbox("Remember this browser (stay logged in after closing it)");
    const error = errorBox();
    const form = h("form", { class: "form", novalidate: true },
      field("User name", user, "Letters, digits and _-[]\\^{}|`; it is also your nick on IRC."),
      field("Password", password, `At least ${MIN_PASSWORD} characters.`),
      field("Password again", again), remember.el, error,
      h("button", { type: "submit", class: "button primary wide" }, "Create account"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = user.value.trim();
      showError(error, nameError(name)
        || (password.value.length < MIN_PASSWORD ? `The password needs at least ${MIN_PASSWORD} characters.` : null)
        || (password.value !== again.value ? "The two passwords differ." : null));
      if (!error.hidden) return;
      busy(form, true);
      let reply;
      try {
        reply = await this.client.register({ user: name, password: password.value });
      } catch (e) {
        busy(form, false);
        showError(error, explain(e));
        return;
      }
      await showRecoveryCodes({
        user: reply.user, server: this.client.server, codes: reply.recovery_codes || [],
        heading: `Account ${reply.user} created: your recovery codes`,
      });
      try {
        await this.client.login({ user: reply.user, password: password.value, remember: remember.input.checked });
      } catch (e) {
        busy(form, false);
        this.tab = "login";
        this.show(`Account ${reply.user} created; log in: ${explain(e)}`);
      }
    });
    if (this.focusField) setTimeout(() => user.focus());
    return form;
  }

  recoverForm() {
    const user = input({ name: "username", autocomplete: "username", autocapitalize: "none", spellcheck: "false", maxlength: 32 });
    const code = input({ name: "recovery-code", autocomplete: "off", autocapitalize: "none", spellcheck: "false" });
    const password = input({ type: "password", autocomplete: "new-password", minlength: MIN_PASSWORD });
    const again = input({ type: "password", autocomplete: "new-password" });
    const remember = checkbox("Remember this browser (stay logged in after closing it)");
    const error = errorBox();
    const form = h("form", { class: "form", novalidate: true },
      h("p", { class: "hint" }, "One of the recovery codes you saved when you created the account sets a new password. Every session of the account is logged out."),
      field("User name", user), field("Recovery code", code, "Like abcd-efgh-ijkl-mnop; each code works once."),
      field("New password", password, `At least ${MIN_PASSWORD} characters.`), field("New password again", again),
      remember.el, error,
      h("button", { type: "submit", class: "button primary wide" }, "Set the new password"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = user.value.trim();
      showError(error, nameError(name)
        || (!code.value.trim() ? "Type one of your recovery codes." : null)
        || (password.value.length < MIN_PASSWORD ? `The password needs at least ${MIN_PASSWORD} characters.` : null)
        || (password.value !== again.value ? "The two passwords differ." : null));
      if (!error.hidden) return;
      busy(form, true);
      let reply;
      try {
        reply = await this.client.recover({ user: name, code: code.value.trim(), newPassword: password.value });
      } catch (e) {
        busy(form, false);
        showError(error, explain(e));
        return;
      }
      this.client.emit("toast", `The password of ${reply.user} is reset; every old session was logged out. Recovery codes left: ${reply.recovery_codes_left}.`, "info");
      try {
        await this.client.login({ user: reply.user, password: password.value, remember: remember.input.checked });
      } catch (e) {
        busy(form, false);
        this.tab = "login";
        this.show(`Password reset. Log in: ${explain(e)}`);
      }
    });
    if (this.focusField) setTimeout(() => user.focus());
    return form;
  }
}

export { explain };
