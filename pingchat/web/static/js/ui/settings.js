// The account's settings: password, two-factor authentication (with a QR
// code), recovery codes, who may send DMs, notifications, theme, this
// browser's encryption key and the account's other devices, logging out,
// and deleting the account.

import { loadQrLibrary, qrMatrix, qrPath } from "../qr.js";
import { showRecoveryCodes } from "./codes.js";
import { openDeleteAccount } from "./delete-account.js";
import { confirmDialog, openDialog } from "./dialog.js";
import { checkbox, errorBox, field, h, showError, svg, uid } from "./dom.js";
import { deviceTable } from "./people.js";
import { savedTheme, setTheme } from "./theme.js";

function section(title, ...content) {
  return h("section", { class: "settings-section" }, h("h3", {}, title), ...content);
}

function password(attrs = {}) {
  return h("input", { type: "password", required: true, ...attrs });
}

function form(children, onSubmit) {
  const el = h("form", { class: "form", novalidate: true }, children);
  el.addEventListener("submit", (ev) => {
    ev.preventDefault();
    onSubmit(el);
  });
  return el;
}

function passwordSection(client) {
  const old = password({ autocomplete: "current-password" });
  const next = password({ autocomplete: "new-password", minlength: 8 });
  const again = password({ autocomplete: "new-password" });
  const error = errorBox();
  const done = h("p", { class: "hint", role: "status" });
  return section("Password", form([
    field("Current password", old), field("New password", next, "At least 8 characters."), field("New password again", again), error, done,
    h("div", { class: "actions left" }, h("button", { type: "submit", class: "button" }, "Change the password")),
  ], async () => {
    done.textContent = "";
    if (next.value.length < 8) return showError(error, "The new password needs at least 8 characters.");
    if (next.value !== again.value) return showError(error, "The two new passwords differ.");
    showError(error, null);
    try {
      await client.request("passwd", { old: old.value, new: next.value });
      old.value = next.value = again.value = "";
      done.textContent = "Password changed; your other sessions were logged out.";
    } catch (e) {
      showError(error, e.message);
    }
    return undefined;
  }));
}

function qrSvg(matrix) {
  const size = matrix.length + 8;
  return svg("svg", { class: "qr", viewBox: `0 0 ${size} ${size}`, role: "img", "aria-label": "QR code for your authenticator app", "shape-rendering": "crispEdges" },
    svg("rect", { width: size, height: size, fill: "#fff" }),
    svg("path", { d: qrPath(matrix), fill: "#000" }));
}

function otpSection(client) {
  const box = h("div", {});
  const error = errorBox();
  const status = h("p", { class: "hint", role: "status" });
  const start = h("button", { type: "button", class: "button", on: { click: () => enable() } }, "Turn on two-factor authentication");
  const stop = h("button", { type: "button", class: "button", on: { click: () => disable() } }, "Turn it off");
  box.append(h("p", { class: "hint" }, "With two-factor authentication, logging in with your password also asks for a code from an authenticator app (FreeOTP, Aegis, Google Authenticator, 1Password…)."),
    h("div", { class: "actions left" }, start, stop), error, status);

  async function enable() {
    showError(error, null);
    let setup;
    let qrcode;
    try {
      [setup, qrcode] = await Promise.all([client.request("otp.setup"), loadQrLibrary()]);
    } catch (e) {
      showError(error, e.message);
      return;
    }
    const code = h("input", { inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6}", maxlength: 8, required: true });
    const codeError = errorBox();
    const uri = String(setup.uri);
    box.replaceChildren(
      h("p", {}, "Scan this QR code with your authenticator app:"),
      qrSvg(qrMatrix(qrcode, uri)),
      h("p", {}, "Or add it by hand: secret ", h("code", { class: "mono" }, String(setup.secret))),
      form([field("The 6-digit code the app shows, to confirm", code), codeError,
        h("div", { class: "actions left" },
          h("button", { type: "button", class: "button", on: { click: () => reset("Two-factor authentication stays off.") } }, "Cancel"),
          h("button", { type: "submit", class: "button primary" }, "Turn on"))], async () => {
        try {
          await client.request("otp.enable", { code: code.value.replace(/\s/g, "") });
          reset("Two-factor authentication is on: logging in with a password now also asks for a code.");
        } catch (e) {
          showError(codeError, `${e.message}; check the phone's clock, and try the next code.`);
          code.select();
        }
      }));
    code.focus();
  }

  function disable() {
    showError(error, null);
    const pw = password({ autocomplete: "current-password" });
    const code = h("input", { inputmode: "numeric", autocomplete: "one-time-code", maxlength: 8, required: true });
    const formError = errorBox();
    box.replaceChildren(form([field("Your password", pw), field("A current code from your authenticator app", code), formError,
      h("div", { class: "actions left" },
        h("button", { type: "button", class: "button", on: { click: () => reset("") } }, "Cancel"),
        h("button", { type: "submit", class: "button danger" }, "Turn off"))], async () => {
      try {
        await client.request("otp.disable", { password: pw.value, code: code.value.replace(/\s/g, "") });
        reset("Two-factor authentication is off.");
      } catch (e) {
        showError(formError, e.message);
      }
    }));
    pw.focus();
  }

  function reset(message) {
    box.replaceChildren(h("p", { class: "hint" }, "With two-factor authentication, logging in with your password also asks for a code from an authenticator app."),
      h("div", { class: "actions left" }, start, stop), error, status);
    status.textContent = message;
    start.focus();
  }

  return section("Two-factor authentication", box);
}

function recoverySection(client) {
  const pw = password({ autocomplete: "current-password" });
  const error = errorBox();
  return section("Recovery codes", form([
    h("p", { class: "hint" }, "Lost your recovery codes, or used some? New ones replace them all."),
    field("Your password", pw), error,
    h("div", { class: "actions left" }, h("button", { type: "submit", class: "button" }, "Make new recovery codes")),
  ], async () => {
    try {
      const reply = await client.request("recovery.regenerate", { password: pw.value });
      pw.value = "";
      showError(error, null);
      await showRecoveryCodes({ user: client.user, server: client.server, codes: reply.recovery_codes || [], heading: "New recovery codes (the old ones no longer work)" });
    } catch (e) {
      showError(error, e.message);
    }
  }));
}

function preferencesSection(client) {
  const anyone = h("input", { type: "radio", name: "dm-policy", value: "anyone", checked: client.store.dmPolicy !== "contacts" });
  const contacts = h("input", { type: "radio", name: "dm-policy", value: "contacts", checked: client.store.dmPolicy === "contacts" });
  const status = h("p", { class: "hint", role: "status" });
  const change = async (ev) => {
    try {
      const reply = await client.setDmPolicy(ev.target.value);
      status.textContent = reply.dm_policy === "contacts" ? "Only your contacts can send you direct messages now." : "Anyone can send you direct messages now.";
    } catch (e) {
      status.textContent = e.message;
    }
  };
  anyone.addEventListener("change", change);
  contacts.addEventListener("change", change);

  const notify = checkbox("Notify me of mentions and direct messages while this tab is hidden", { checked: client.notifier.enabled, disabled: !client.notifier.supported });
  const notifyStatus = h("p", { class: "hint", role: "status" }, client.notifier.supported ? "" : "This browser has no notifications.");
  notify.input.addEventListener("change", async () => {
    if (notify.input.checked) {
      const ok = await client.notifier.enable();
      notify.input.checked = ok;
      notifyStatus.textContent = ok ? "Notifications are on." : "The browser did not allow notifications (check the site's permissions).";
    } else {
      client.notifier.disable();
      notifyStatus.textContent = "Notifications are off.";
    }
  });

  const theme = h("select", { on: { change: (ev) => setTheme(ev.target.value) } },
    [["system", "Like the system"], ["light", "Light"], ["dark", "Dark"]].map(([v, l]) => h("option", { value: v, selected: savedTheme() === v }, l)));

  return section("Preferences",
    h("fieldset", { class: "radio-group" }, h("legend", {}, "Who may send you direct messages"),
      h("label", { class: "check" }, anyone, " Anyone"), h("label", { class: "check" }, contacts, " Only my contacts")),
    status, notify.el, notifyStatus, field("Theme", theme));
}

function encryptionSection(client) {
  const box = h("div", {}, h("p", { class: "hint" }, "Loading…"));
  const render = async () => {
    const s = client.secure;
    const parts = [];
    if (s.available) {
      parts.push(h("p", {}, "This browser is a device of your account with its own encryption key: ",
        h("strong", {}, s.e2e.device.label), ", fingerprint ", h("code", { class: "mono fingerprint" }, s.fingerprint), "."));
    } else {
      parts.push(h("p", { class: "warning-text" }, `End-to-end encryption is off in this browser: ${s.reason || "not set up yet"}.`));
    }
    if (s.available && s.reason) parts.push(h("p", { class: "warning-text" }, s.reason));
    parts.push(h("p", { class: "hint" },
      "The private key never leaves this browser: it is kept in this site's storage (IndexedDB). If you clear the site's data, use a private window, or lose this device, the key is gone for good: the direct messages sealed for it cannot be read again, here or anywhere (your other devices still read their own copies). The next login makes a new key, and the people you write to see a new device."));
    try {
      const mine = await s.devices(client.user);
      if (mine.devices.length) {
        parts.push(h("h4", {}, "Your account's devices"));
        parts.push(deviceTable(mine.devices, {
          onRevoke: async (dev) => {
            if (!(await confirmDialog("Revoke a device", `Stop sealing your direct messages for "${dev.label || dev.device}"? It can no longer read new ones (it publishes a new key when it next logs in).`, { confirm: "Revoke", danger: true }))) return;
            try {
              await s.revoke(dev.device);
            } catch (e) {
              client.emit("toast", e.message, "error");
            }
            render();
          },
        }));
      }
    } catch (e) {
      parts.push(h("p", { class: "form-error" }, e.message));
    }
    if (s.available) {
      parts.push(h("div", { class: "actions left" }, h("button", {
        type: "button", class: "button danger",
        on: {
          click: async () => {
            if (!(await confirmDialog("Delete this browser's key", "Delete the private key from this browser? Direct messages sealed for it can never be read again. Do this on a shared computer before you leave it.", { confirm: "Delete the key", danger: true }))) return;
            const id = s.deviceId;
            try {
              await s.revoke(id);
            } catch {
              // offline: the key is still removed here
            }
            await s.destroy();
            render();
          },
        },
      }, "Delete this browser's key")));
    }
    box.replaceChildren(...parts);
  };
  render();
  return section("End-to-end encryption", box);
}

function deleteSection(client, closeSettings) {
  const open = h("button", {
    type: "button", class: "button danger",
    on: { click: () => openDeleteAccount(client, { onDeleted: closeSettings }) },
  }, "Delete account…");
  const heading = uid("h");
  return h("section", { class: "settings-section danger-zone", "aria-labelledby": heading },
    h("h3", { id: heading }, "Delete account"),
    h("p", { class: "hint" }, "Deletes your account on this server for good, with your direct messages; your room messages are deleted or kept under a placeholder name, as the server is set up. Your name stays reserved for 30 days. It asks for your password first."),
    h("div", { class: "actions left" }, open));
}

export function openSettings(client) {
  const logout = h("button", {
    type: "button", class: "button danger",
    on: {
      click: async () => {
        const waiting = client.outbox ? client.outbox.entries.length : 0;
        if (waiting && !(await confirmDialog("Log out", `${waiting} message${waiting === 1 ? " is" : "s are"} not sent yet and will be discarded. Log out anyway?`, { confirm: "Log out", danger: true }))) return;
        d.close();
        try {
          await client.logout();
        } catch (e) {
          client.emit("toast", `Logged out here; the server did not answer (${e.message}).`, "warning");
        }
      },
    },
  }, "Log out");
  const d = openDialog({
    title: `Settings — ${client.user}`,
    wide: true,
    content: [
      preferencesSection(client),
      encryptionSection(client),
      passwordSection(client),
      otpSection(client),
      recoverySection(client),
      section("Session", h("p", { class: "hint" }, client.remember ? "This browser remembers your session until you log out." : "Your session ends when this tab closes."), h("div", { class: "actions left" }, logout)),
      deleteSection(client, () => d.close()),
    ],
  });
}
