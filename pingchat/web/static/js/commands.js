// What the composer understands: plain text, or a few IRC-style commands.

import { isAccountName, roomName, isRoomName } from "./format.js";

export const MAX_TEXT_BYTES = 4096;

export const HELP = [
  ["/me waves", "an action: “* you waves”"],
  ["/join #room [key]", "join a room (creates it when new)"],
  ["/part [reason]", "leave this room"],
  ["/topic text", "set this room's topic"],
  ["/msg user text", "a direct message"],
  ["/away [text]", "mark yourself away; /back to return"],
  ["//text", "send a line that starts with /"],
];

function bytes(text) {
  return new TextEncoder().encode(text).length;
}

/** Parse a line typed into the composer. */
export function parseInput(line) {
  const text = String(line).replace(/\s+$/, "");
  if (!text.trim()) return { kind: "empty" };
  if (!text.startsWith("/") || text.startsWith("//")) {
    return checked({ kind: "say", text: text.startsWith("//") ? text.slice(1) : text });
  }
  const match = text.match(/^\/(\S+)\s*([\s\S]*)$/);
  const name = match[1].toLowerCase();
  const rest = match[2];
  switch (name) {
    case "me":
      if (!rest.trim()) return { kind: "error", message: "/me needs an action: /me waves" };
      return checked({ kind: "say", text: `\x01ACTION ${rest}\x01` });
    case "join":
    case "j": {
      const [room, key] = rest.trim().split(/\s+/);
      if (!room) return { kind: "error", message: "/join needs a room: /join #room" };
      const name = roomName(room);
      if (!isRoomName(name)) return { kind: "error", message: `${room} is not a room name: # and 1–49 characters, no spaces or commas` };
      return { kind: "join", room: name, key: key || null };
    }
    case "part":
    case "leave":
      return { kind: "part", reason: rest.trim() || null };
    case "topic":
      return { kind: "topic", topic: rest.trim() };
    case "msg":
    case "query": {
      const m = rest.match(/^(\S+)\s*([\s\S]*)$/);
      if (!m) return { kind: "error", message: "/msg needs a user: /msg alice hello" };
      if (!isAccountName(m[1])) return { kind: "error", message: `${m[1]} is not a user name` };
      if (!m[2].trim()) return { kind: "open", to: m[1] };
      return checked({ kind: "msg", to: m[1], text: m[2] });
    }
    case "away":
      return { kind: "away", text: rest.trim() || null };
    case "back":
      return { kind: "away", text: null };
    case "help":
      return { kind: "help" };
    default:
      return { kind: "error", message: `unknown command /${name}: /help lists them; start a line with // to send it as it is` };
  }
}

function checked(cmd) {
  const size = bytes(cmd.text);
  if (size > MAX_TEXT_BYTES) {
    return { kind: "error", message: `This message is ${size} bytes; the limit is ${MAX_TEXT_BYTES}. Send it in parts.` };
  }
  return cmd;
}
