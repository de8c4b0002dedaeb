// Light and dark themes: the system's by default (prefers-color-scheme), or
// the one the user picked, kept in localStorage.

import { h, icon } from "./dom.js";

const KEY = "pingchat.theme";

export function currentTheme() {
  const set = document.documentElement.dataset.theme;
  if (set === "light" || set === "dark") return set;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function setTheme(theme) {
  if (theme === "light" || theme === "dark") {
    document.documentElement.dataset.theme = theme;
  } else {
    delete document.documentElement.dataset.theme;
  }
  try {
    if (theme === "light" || theme === "dark") localStorage.setItem(KEY, theme);
    else localStorage.removeItem(KEY);
  } catch {
    // not kept: this page only
  }
  for (const b of document.querySelectorAll(".theme-button")) label(b);
}

export function savedTheme() {
  try {
    return localStorage.getItem(KEY) || "system";
  } catch {
    return "system";
  }
}

function label(button) {
  const dark = currentTheme() === "dark";
  const text = dark ? "Switch to the light theme" : "Switch to the dark theme";
  button.setAttribute("aria-label", text);
  button.title = text;
  button.replaceChildren(icon(dark ? "sun" : "moon"));
}

let following = false;

/** The system's theme can change while the page is open (a dark mode at
 * sunset): the page follows it through CSS, and the buttons must too. */
function followSystem() {
  if (following || typeof matchMedia !== "function") return;
  following = true;
  const media = matchMedia("(prefers-color-scheme: dark)");
  if (typeof media.addEventListener !== "function") return;
  media.addEventListener("change", () => {
    for (const b of document.querySelectorAll(".theme-button")) label(b);
  });
}

/** A button that flips between light and dark. */
export function themeButton() {
  followSystem();
  const button = h("button", {
    type: "button", class: "icon-button theme-button",
    on: { click: () => setTheme(currentTheme() === "dark" ? "light" : "dark") },
  });
  label(button);
  return button;
}
