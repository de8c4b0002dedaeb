// Modal dialogs on the native <dialog> element: the browser makes the rest of
// the page inert and closes it with Escape; Tab and Shift+Tab go round the
// dialog's controls (the browser would let them leave it for its own UI);
// focus goes back where it was when it closes.

import { h, icon, uid } from "./dom.js";

const FOCUSABLE = "a[href], button, input, select, textarea, [tabindex]";

/** The controls of *root* that Tab stops at, in order. */
function tabStops(root) {
  return [...root.querySelectorAll(FOCUSABLE)].filter((el) => !el.disabled
    && el.tabIndex >= 0
    && el.getClientRects().length > 0 // not hidden
    && !(el.type === "radio" && !el.checked && root.querySelector(`input[type=radio][name="${el.name}"]:checked`)));
}

/** Keep Tab inside *dialog*: from its last control to its first, and back. */
function trapFocus(dialog) {
  dialog.addEventListener("keydown", (ev) => {
    if (ev.key !== "Tab" || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const stops = tabStops(dialog);
    if (!stops.length) return;
    const first = stops[0];
    const last = stops[stops.length - 1];
    const here = document.activeElement;
    if (ev.shiftKey && (here === first || !dialog.contains(here))) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && (here === last || !dialog.contains(here))) {
      ev.preventDefault();
      first.focus();
    }
  });
}

/**
 * Open a modal dialog. `content` is a node (or a list of them); returns
 * `{dialog, close}`. *onClose* runs once, however the dialog closes.
 */
export function openDialog({ title, content, onClose, wide = false, dismissable = true, className }) {
  const opener = document.activeElement;
  const titleId = uid("dlg");
  const closeButton = dismissable
    ? h("button", { type: "button", class: "icon-button dialog-close", "aria-label": "Close", title: "Close (Escape)", on: { click: () => close() } }, icon("close"))
    : null;
  const dialog = h("dialog", { class: ["dialog", wide && "wide", className], "aria-labelledby": titleId },
    h("div", { class: "dialog-head" }, h("h2", { id: titleId }, title), closeButton),
    h("div", { class: "dialog-body" }, content));
  let closed = false;
  function close(result) {
    if (closed) return;
    closed = true;
    if (dialog.open) dialog.close();
    dialog.remove();
    if (onClose) onClose(result);
    if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
  }
  dialog.addEventListener("cancel", (ev) => {
    ev.preventDefault();
    if (dismissable) close();
  });
  dialog.addEventListener("close", () => close());
  trapFocus(dialog);
  document.body.append(dialog);
  dialog.showModal();
  const first = dialog.querySelector("[autofocus], input, textarea, select, .dialog-body button");
  if (first) first.focus();
  return { dialog, close };
}

/** A yes/no question; resolves true when confirmed. */
export function confirmDialog(title, text, { confirm = "OK", danger = false } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h("button", { type: "button", class: ["button", danger ? "danger" : "primary"], on: { click: () => { answer = true; d.close(); } } }, confirm);
    const no = h("button", { type: "button", class: "button", on: { click: () => d.close() } }, "Cancel");
    const d = openDialog({
      title,
      content: [h("p", {}, text), h("div", { class: "actions" }, no, yes)],
      onClose: () => resolve(answer),
    });
    no.focus();
  });
}
