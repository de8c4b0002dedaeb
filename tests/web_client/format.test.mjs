import assert from "node:assert/strict";
import { test } from "node:test";
import { js } from "./helpers.mjs";

const f = await import(js("format.js"));

test("names fold like the server's ASCII case mapping", () => {
  assert.equal(f.fold("Alice[x]"), "alice[x]");
  assert.equal(f.fold("#Lobby"), "#lobby");
});

test("account and room names are checked as the protocol defines them", () => {
  assert.ok(f.isAccountName("alice_1"));
  assert.ok(f.isAccountName("_x[1]`{}|^-"));
  assert.ok(!f.isAccountName("1alice"));
  assert.ok(!f.isAccountName("a".repeat(33)));
  assert.ok(f.isRoomName("#lobby"));
  assert.ok(!f.isRoomName("#a b"));
  assert.ok(!f.isRoomName("#a,b"));
  assert.ok(!f.isRoomName("#" + "x".repeat(50)));
  assert.equal(f.roomName(" lobby "), "#lobby");
  assert.equal(f.roomName("#Lobby"), "#Lobby");
});

test("IRC formatting codes are removed so IRC users' messages look like everyone's", () => {
  assert.equal(f.stripFormatting("\x02bold\x02 \x0304,12red\x03 \x1ditalic\x1d\x0f"), "bold red italic");
  assert.equal(f.stripFormatting("\x04ff0000hex\x04"), "hex");
});

test("a CTCP ACTION is an action, other CTCP markers are dropped", () => {
  assert.deepEqual(f.messageBody("\x01ACTION waves\x01"), { text: "waves", action: true });
  assert.deepEqual(f.messageBody("\x01VERSION\x01"), { text: "VERSION", action: false });
  assert.deepEqual(f.messageBody("plain"), { text: "plain", action: false });
});

test("http and https URLs become links, nothing else does", () => {
  const segs = f.segments("see https://example.org/x?y=1, then http://a.b/c.", "me");
  assert.deepEqual(segs, [
    { type: "text", value: "see " },
    { type: "link", value: "https://example.org/x?y=1", href: "https://example.org/x?y=1" },
    { type: "text", value: ", then " },
    { type: "link", value: "http://a.b/c", href: "http://a.b/c" },
    { type: "text", value: "." },
  ]);
  for (const bad of ["javascript:alert(1)", "data:text/html,<b>x</b>", "JaVaScRiPt:alert(1)", "ftp://x/y", "<a href=x>y</a>"]) {
    assert.ok(f.segments(bad, "me").every((s) => s.type === "text"), bad);
  }
  assert.equal(f.safeUrl("javascript:alert(1)"), null);
  assert.equal(f.safeUrl("https://x/"), "https://x/");
});

test("a closing bracket stays in a URL that opened it", () => {
  const links = (t) => f.segments(t, "").filter((s) => s.type === "link").map((s) => s.value);
  assert.deepEqual(links("(see https://en.wikipedia.org/wiki/Foo_(bar))"), ["https://en.wikipedia.org/wiki/Foo_(bar)"]);
  assert.deepEqual(links("(https://x.org/a)"), ["https://x.org/a"]);
});

test("mentions match the whole name, in any case, not inside a longer name", () => {
  assert.ok(f.mentions("hi Alice!", "alice"));
  assert.ok(f.mentions("@alice: look", "alice"));
  assert.ok(f.mentions("alice", "alice"));
  assert.ok(!f.mentions("alice2 is here", "alice"));
  assert.ok(!f.mentions("malice", "alice"));
  assert.ok(!f.mentions("alice_bot", "alice"));
  assert.ok(f.mentions("\x01ACTION pokes alice\x01", "alice"));
  assert.ok(!f.mentions("hi", ""));
  assert.deepEqual(f.segments("hey bob, bob2 and BOB", "bob").filter((s) => s.type === "mention").map((s) => s.value), ["bob", "BOB"]);
});

test("times are shown as local HH:MM, with the date when it is not today", () => {
  const ts = new Date(2026, 10, 21, 9, 5).toISOString();
  assert.equal(f.clock(ts), "09:05");
  assert.equal(f.clock(ts, { full: true, now: new Date(2026, 10, 21, 23, 0) }), "09:05");
  assert.equal(f.clock(ts, { full: true, now: new Date(2026, 10, 23) }), "2026-11-21 09:05");
  assert.equal(f.clock("nonsense"), "");
  assert.equal(f.dayLabel(ts, new Date(2026, 10, 21, 12)), "Today");
  assert.equal(f.dayLabel(ts, new Date(2026, 10, 22, 12)), "Yesterday");
});

test("a device label names the browser and the system", () => {
  assert.equal(f.deviceLabel("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"), "Firefox on Linux");
  assert.equal(f.deviceLabel("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"), "Safari on iOS");
  assert.equal(f.deviceLabel("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36 Edg/126.0"), "Edge on Windows");
  assert.equal(f.deviceLabel(""), "A browser");
});
