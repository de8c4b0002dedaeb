import assert from "node:assert/strict";
import { test } from "node:test";
import { js, memoryStorage } from "./helpers.mjs";

// Just enough of a DOM for ui/theme.js (and the dom.js helpers it builds with).
class FakeNode {
  constructor(tag) {
    this.tagName = tag;
    this.attributes = new Map();
    this.children = [];
    this.listeners = {};
    this.dataset = {};
    this.title = "";
    created.push(this);
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }

  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }

  addEventListener(type, fn) {
    (this.listeners[type] ||= []).push(fn);
  }

  append(...nodes) {
    this.children.push(...nodes);
  }

  replaceChildren(...nodes) {
    this.children = nodes;
  }

  click() {
    for (const fn of this.listeners.click || []) fn({});
  }
}

const created = [];
let systemDark = false;
const mediaListeners = [];
globalThis.Node = FakeNode;
globalThis.localStorage = memoryStorage();
globalThis.document = {
  documentElement: { dataset: {} },
  createElement: (tag) => new FakeNode(tag),
  createElementNS: (_ns, tag) => new FakeNode(tag),
  createTextNode: (text) => Object.assign(new FakeNode("#text"), { text }),
  querySelectorAll: (selector) => {
    assert.equal(selector, ".theme-button");
    return created.filter((n) => (n.getAttribute("class") || "").split(" ").includes("theme-button"));
  },
};
globalThis.matchMedia = (query) => {
  assert.equal(query, "(prefers-color-scheme: dark)");
  return {
    get matches() {
      return systemDark;
    },
    addEventListener: (type, fn) => type === "change" && mediaListeners.push(fn),
  };
};

function systemTurns(dark) {
  systemDark = dark;
  for (const fn of mediaListeners) fn({ matches: dark });
}

const { themeButton, currentTheme } = await import(js("ui/theme.js"));

const iconOf = (button) => button.children[0].children[0].getAttribute("d");

test("the theme button names the other theme, also after the system's theme changes", () => {
  systemTurns(false);
  const button = themeButton();
  assert.equal(button.getAttribute("aria-label"), "Switch to the dark theme");
  const moon = iconOf(button);

  // The system goes dark while the page is open (a dark mode at sunset):
  // the page follows it through CSS, and so must the button.
  systemTurns(true);
  assert.equal(currentTheme(), "dark");
  assert.equal(button.getAttribute("aria-label"), "Switch to the light theme");
  assert.equal(button.title, "Switch to the light theme");
  assert.notEqual(iconOf(button), moon);

  // A theme picked by hand wins over the system's.
  button.click();
  assert.equal(document.documentElement.dataset.theme, "light");
  assert.equal(localStorage.getItem("pingchat.theme"), "light");
  systemTurns(false);
  systemTurns(true);
  assert.equal(button.getAttribute("aria-label"), "Switch to the dark theme");
  assert.equal(iconOf(button), moon);
});
