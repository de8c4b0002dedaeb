// The ten recovery codes, shown once: copy, download, and an "I saved them"
// confirmation before going on (as the terminal client asks for "stored").

import { checkbox, h } from "./dom.js";
import { openDialog } from "./dialog.js";

export function codesText(user, server, codes) {
  return [
    `pingchat recovery codes for ${user}${server ? " on " + server : ""}`,
    `made ${new Date().toISOString().slice(0, 10)}`,
    "",
    "Each code resets your password once if you forget it.",
    "",
    ...codes,
    "",
  ].join("\n");
}

/** Show *codes*; resolves once the user confirmed they saved them. */
export function showRecoveryCodes({ user, server, codes, heading }) {
  return new Promise((resolve) => {
    const text = codesText(user, server, codes);
    const status = h("p", { class: "hint", role: "status" });
    const copy = h("button", {
      type: "button", class: "button",
      on: {
        click: async () => {
          try {
            await navigator.clipboard.writeText(text);
            status.textContent = "Copied to the clipboard.";
          } catch {
            const range = document.createRange();
            range.selectNodeContents(list);
            const sel = getSelection();
            sel.removeAllRanges();
            sel.addRange(range);
            status.textContent = "The browser did not allow copying: the codes are selected, press Ctrl+C (⌘C).";
          }
        },
      },
    }, "Copy");
    const download = h("button", {
      type: "button", class: "button",
      on: {
        click: () => {
          const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
          const a = h("a", { href: url, download: `pingchat-recovery-codes-${user}.txt` });
          document.body.append(a);
          a.click();
          a.remove();
          setTimeout(() => URL.revokeObjectURL(url), 1000);
          status.textContent = "Downloaded as a text file.";
        },
      },
    }, "Download");
    const list = h("ol", { class: "codes", "aria-label": "Recovery codes" }, codes.map((c) => h("li", {}, h("code", {}, c))));
    const saved = checkbox("I have saved these codes somewhere safe");
    const go = h("button", { type: "button", class: "button primary", disabled: true, on: { click: () => d.close() } }, "Continue");
    saved.input.addEventListener("change", () => {
      go.disabled = !saved.input.checked;
    });
    const d = openDialog({
      title: heading || "Your recovery codes",
      dismissable: false,
      content: [
        h("p", { class: "warning-text" },
          "Each code resets your password once if you forget it. They are shown only now: store them in your password manager or on paper, away from this computer."),
        list,
        h("div", { class: "actions left" }, copy, download),
        status,
        saved.el,
        h("div", { class: "actions" }, go),
      ],
      onClose: () => {
        list.replaceChildren(); // gone from the page
        resolve();
      },
    });
    copy.focus();
  });
}
