import assert from "node:assert/strict";
import { test } from "node:test";
import { js } from "./helpers.mjs";

const { parseInput, MAX_TEXT_BYTES } = await import(js("commands.js"));

test("plain text is said; blank lines are nothing", () => {
  assert.deepEqual(parseInput("hello  "), { kind: "say", text: "hello" });
  assert.deepEqual(parseInput("   \n "), { kind: "empty" });
  assert.deepEqual(parseInput("two\nlines"), { kind: "say", text: "two\nlines" });
});

test("// sends a line that starts with a slash", () => {
  assert.deepEqual(parseInput("//etc/passwd is a file"), { kind: "say", text: "/etc/passwd is a file" });
});

test("/me is an IRC action", () => {
  assert.deepEqual(parseInput("/me waves"), { kind: "say", text: "\x01ACTION waves\x01" });
  assert.equal(parseInput("/me").kind, "error");
});

test("/join takes a room (the # may be left out) and a key", () => {
  assert.deepEqual(parseInput("/join lobby"), { kind: "join", room: "#lobby", key: null });
  assert.deepEqual(parseInput("/JOIN #x secret"), { kind: "join", room: "#x", key: "secret" });
  assert.equal(parseInput("/join").kind, "error");
  assert.equal(parseInput("/join #a,b").kind, "error");
});

test("/msg sends a DM, or opens the conversation without text", () => {
  assert.deepEqual(parseInput("/msg bob hi there"), { kind: "msg", to: "bob", text: "hi there" });
  assert.deepEqual(parseInput("/msg bob"), { kind: "open", to: "bob" });
  assert.equal(parseInput("/msg 1bob hi").kind, "error");
});

test("/part, /topic, /away, /back, /help", () => {
  assert.deepEqual(parseInput("/part bye all"), { kind: "part", reason: "bye all" });
  assert.deepEqual(parseInput("/topic Release on Friday"), { kind: "topic", topic: "Release on Friday" });
  assert.deepEqual(parseInput("/away lunch"), { kind: "away", text: "lunch" });
  assert.deepEqual(parseInput("/back"), { kind: "away", text: null });
  assert.deepEqual(parseInput("/help"), { kind: "help" });
});

test("an unknown command is an error that says what to do", () => {
  const r = parseInput("/frobnicate x");
  assert.equal(r.kind, "error");
  assert.match(r.message, /\/help/);
  assert.match(r.message, /\/\//);
});

test("text over the server's 4096-byte limit is refused before it is queued", () => {
  assert.equal(parseInput("x".repeat(MAX_TEXT_BYTES)).kind, "say");
  const r = parseInput("é".repeat(2049)); // 4098 bytes
  assert.equal(r.kind, "error");
  assert.match(r.message, /4098 bytes/);
});
