// Modal dialogs on the native <dialog> element: the browser keeps focus inside
// and closes it with Escape; focus goes back where it was when it closes.

import { h, icon, uid } from "./dom.js";

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
