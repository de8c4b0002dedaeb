// Deleting one's own account (`account.delete`), from Settings: what goes and
// what stays, said before anything happens; the account's name typed back
// and the password (and the authenticator's code, when the server asks for
// it) to confirm; the server's refusals said plainly. The page itself then
// forgets the account (client.deleteAccount) and shows the login page.

import { fold } from "../format.js";
import { explain } from "./auth.js";
import { openDialog } from "./dialog.js";
import { errorBox, field, h, showError, uid } from "./dom.js";

/** What the dialog says before anything is deleted: `{deleted, stays}`, in
 * the words of docs/admin.md "Deleting an account". */
export function deletionWarning(user) {
  return {
    deleted: [
      `the account ${user}: its password, two-factor authentication, recovery codes, contacts and the encryption keys of all its devices; every session is logged out, here and everywhere`,
      "every direct message you sent or received, for both people in the conversation",
      "your messages in rooms: deleted too, or kept without your name under a placeholder (deleted-…), as this server's administrators chose",
      "in this browser: the saved session, messages not sent yet, and this browser's encryption key for the account",
    ],
    stays: [
      "what other people wrote, even where it quotes or names you",
      "the server's security log, under the placeholder instead of your name",
      `the name ${user}: nobody, you included, can register it for 30 days`,
    ],
  };
}

/** Why the form cannot be sent yet (`{message, focus}`), or null. */
export function checkDeletion({ user, typed, password, otpShown, otp }) {
  if (fold(String(typed).trim()) !== fold(user)) {
    return { message: `To confirm, type the name of the account, ${user}.`, focus: "name" };
  }
  if (!password) return { message: "Type your password.", focus: "password" };
  if (otpShown && !/^\d{6}$/.test(String(otp).replace(/\s/g, ""))) {
    return { message: "Type the 6-digit code your authenticator app shows now.", focus: "otp" };
  }
  return null;
}

/** A refusal of `account.delete` as the form shows it: `{message, otp,
 * focus}` (*otp*: ask for the code from now on). */
export function deletionRefusal(e) {
  const code = e && e.code;
  if (code === "otp_required") {
    return { message: "This account has two-factor authentication: type the code from your authenticator app too.", otp: true, focus: "otp" };
  }
  if (code === "auth_failed") {
    return { message: "Wrong password or code: the account was not deleted.", otp: false, focus: "password" };
  }
  if (code === "connection_lost") {
    return { message: "The connection dropped before the server answered, so the account may or may not be deleted: if this page asks you to log in again, it was.", otp: false, focus: null };
  }
  if (code === "not_connected") {
    return { message: "Not connected to the server: nothing was deleted. Try again once the connection is back.", otp: false, focus: null };
  }
  return { message: `${explain(e)}. The account was not deleted.`, otp: false, focus: null };
}

/** Open the dialog; *onDeleted* runs once the account is gone. */
export function openDeleteAccount(client, { onDeleted = () => {} } = {}) {
  const user = client.user;
  const warning = deletionWarning(user);
  const warningId = uid("warn");
  const name = h("input", { name: "confirm-name", autocomplete: "off", autocapitalize: "none", spellcheck: "false", maxlength: 32, required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  const otp = h("input", { name: "otp", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9 ]{6,7}", maxlength: 7 });
  const otpField = field("Code from your authenticator app", otp);
  otpField.hidden = true;
  const error = errorBox();
  const cancel = h("button", { type: "button", class: "button", on: { click: () => d.close() } }, "Cancel");
  const submit = h("button", { type: "submit", class: "button danger" }, "Delete my account");
  const fields = { name, password, otp };
  const form = h("form", { class: "form", novalidate: true },
    field(`Type the account's name, ${user}, to confirm`, name),
    field("Your password", password),
    otpField, error,
    h("div", { class: "actions" }, cancel, submit));
  let busy = false;

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (busy) return;
    const problem = checkDeletion({ user, typed: name.value, password: password.value, otpShown: !otpField.hidden, otp: otp.value });
    if (problem) {
      showError(error, problem.message);
      fields[problem.focus].focus();
      return;
    }
    showError(error, null);
    busy = true;
    form.setAttribute("aria-busy", "true");
    submit.disabled = true;
    try {
      await client.deleteAccount({ password: password.value, otp: otpField.hidden ? null : otp.value.replace(/\s/g, "") });
    } catch (e) {
      const refusal = deletionRefusal(e);
      if (refusal.otp) otpField.hidden = false;
      showError(error, refusal.message);
      const target = refusal.focus && fields[refusal.focus];
      if (target) {
        target.focus();
        target.select();
      }
      return;
    } finally {
      busy = false;
      form.setAttribute("aria-busy", "false");
      submit.disabled = false;
    }
    password.value = "";
    d.close(true);
    onDeleted();
  });

  const d = openDialog({
    title: "Delete your account",
    className: "delete-account",
    content: [
      h("div", { id: warningId },
        h("p", { class: "warning-text" }, h("strong", {}, "This cannot be undone."), ` It deletes your account ${user} on this server for good.`),
        h("p", {}, "Deleted:"),
        h("ul", {}, warning.deleted.map((text) => h("li", {}, text))),
        h("p", {}, "Stays:"),
        h("ul", {}, warning.stays.map((text) => h("li", {}, text)))),
      form,
    ],
  });
  d.dialog.setAttribute("aria-describedby", warningId);
  name.focus();
  return d;
}
