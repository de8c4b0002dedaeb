// Kiwi IRC's irc-framework, with its WebSocket transport, against pingchat's
// /irc: logs in with SASL PLAIN and does what the test says.
//
//   node client.mjs   (settings in the environment: IRC_HOST, IRC_PORT,
//                      IRC_PATH, IRC_TLS, IRC_NICK, IRC_PASSWORD)
//
// Standard output: one JSON object per line for each thing that happened
// ({"event": "registered", ...}, {"event": "privmsg", ...}). Standard input:
// one JSON command per line ({"join": "#room"}, {"say": TARGET, "text": TEXT},
// {"quit": "reason"}). tests/e2e/test_irc_framework.py drives it.

import { createInterface } from "node:readline";
import IRC from "irc-framework";
import WebSocketTransport from "irc-framework/src/transports/websocket.js";
import { WebSocket } from "ws";

// The transport uses the browser's WebSocket class. Node before 22 has none,
// so ws (the usual WebSocket of node programs) plays the browser's part, on
// every node version alike. It sends no Origin header: a program, not a page.
globalThis.WebSocket = WebSocket;

const env = process.env;
const out = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const client = new IRC.Client({
  host: env.IRC_HOST || "127.0.0.1",
  port: Number(env.IRC_PORT),
  path: env.IRC_PATH || "/irc",
  tls: env.IRC_TLS === "1",
  transport: WebSocketTransport,
  websocket_protocol: "text.ircv3.net",
  nick: env.IRC_NICK,
  username: env.IRC_NICK,
  gecos: "irc-framework",
  account: { account: env.IRC_NICK, password: env.IRC_PASSWORD },
  auto_reconnect: false,
});

client.on("loggedin", (e) => out("loggedin", { account: e.account }));
client.on("sasl failed", (e) => out("sasl failed", { reason: e.reason, message: e.message }));
client.on("registered", (e) => {
  const socket = client.connection.transport.socket;
  out("registered", { nick: e.nick, protocol: socket ? socket.protocol : null });
});
client.on("join", (e) => out("join", { nick: e.nick, channel: e.channel }));
client.on("privmsg", (e) => out("privmsg", { nick: e.nick, target: e.target, message: e.message }));
client.on("action", (e) => out("action", { nick: e.nick, target: e.target, message: e.message }));
client.on("irc error", (e) => out("irc error", { error: e.error, reason: e.reason }));
client.on("close", () => {
  out("close");
  process.exit(0);
});

createInterface({ input: process.stdin }).on("line", (line) => {
  const cmd = JSON.parse(line);
  if (cmd.join) client.join(cmd.join);
  if (cmd.say) client.say(cmd.say, cmd.text);
  if (cmd.quit !== undefined) client.quit(cmd.quit);
});

client.connect();
