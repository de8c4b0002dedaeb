import assert from "node:assert/strict";
import { test } from "node:test";
import { FakeTimers, fakeWebSocketClass, js, settle } from "./helpers.mjs";

const { Connection, ConnectionLost, NotConnected, RequestError, webSocketUrl } = await import(js("connection.js"));

function setup(options = {}) {
  const timers = new FakeTimers();
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const conn = new Connection({ url: "ws://h/ws", WebSocket: FakeWebSocket, timers, random: () => 0.5, ...options });
  const states = [];
  const events = [];
  const ready = [];
  conn.onState = (s, d) => states.push([s, d]);
  conn.onEvent = (e) => events.push(e);
  conn.onReady = (hello) => ready.push(hello);
  conn.start();
  return { conn, timers, sockets, states, events, ready };
}

test("the URL is ws:// on http and wss:// on https, at /ws of the same host", () => {
  assert.equal(webSocketUrl({ protocol: "http:", host: "localhost:8080" }), "ws://localhost:8080/ws");
  assert.equal(webSocketUrl({ protocol: "https:", host: "chat.example" }), "wss://chat.example/ws");
});

test("after the server's hello the application is asked to log in", async () => {
  const { sockets, ready, states } = setup();
  assert.equal(sockets.length, 1);
  sockets[0].open();
  await settle();
  assert.equal(ready.length, 1);
  assert.equal(ready[0].server, "test");
  assert.deepEqual(states.map((s) => s[0]), ["connecting", "open"]);
});

test("replies are matched to requests by id, even out of order", async () => {
  const { conn, sockets } = setup();
  sockets[0].open();
  const a = conn.request("say", { room: "#a", text: "one" });
  const b = conn.request("say", { room: "#a", text: "two" });
  const [ra, rb] = sockets[0].sent;
  assert.equal(ra.op, "say");
  assert.notEqual(ra.id, rb.id);
  sockets[0].receive({ id: rb.id, ok: true, msg_id: 2 });
  sockets[0].receive({ id: ra.id, ok: true, msg_id: 1 });
  assert.equal((await a).msg_id, 1);
  assert.equal((await b).msg_id, 2);
});

test("an error reply rejects with its code, message and retry_after", async () => {
  const { conn, sockets } = setup();
  sockets[0].open();
  const p = conn.request("login", { user: "a", password: "b" });
  sockets[0].receive({ id: sockets[0].last().id, ok: false, error: { code: "rate_limited", message: "slow down", retry_after: 2.5 } });
  await assert.rejects(p, (e) => e instanceof RequestError && e.code === "rate_limited" && e.message === "slow down" && e.retryAfter === 2.5);
});

test("events go to onEvent; an error without an id becomes an error event", async () => {
  const { sockets, events } = setup();
  sockets[0].open();
  sockets[0].receive({ event: "message", room: "#a", from: "bob", text: "hi", msg_id: 1 });
  sockets[0].receive({ id: null, ok: false, error: { code: "line_too_long", message: "too long" } });
  sockets[0].onmessage({ data: "not json" });
  assert.deepEqual(events.map((e) => e.event), ["message", "error"]);
  assert.equal(events[1].error.code, "line_too_long");
});

test("a request without a connection fails at once with NotConnected", async () => {
  const { conn, sockets } = setup();
  await assert.rejects(conn.request("ping"), NotConnected); // connecting, no hello yet
  sockets[0].open();
  sockets[0].drop();
  await assert.rejects(conn.request("ping"), NotConnected);
});

test("a drop fails the requests in flight with ConnectionLost", async () => {
  const { conn, sockets } = setup();
  sockets[0].open();
  const p = conn.request("say", { room: "#a", text: "x" });
  sockets[0].drop();
  await assert.rejects(p, ConnectionLost);
});

test("after a drop it reconnects by itself, waiting longer each time, up to 30 s", async () => {
  const { sockets, timers, states } = setup();
  const waits = [];
  for (let i = 0; i < 7; i++) {
    sockets[sockets.length - 1].drop();
    const [delay] = timers.pendingDelays();
    waits.push(delay);
    assert.equal(states[states.length - 1][0], "waiting");
    assert.equal(states[states.length - 1][1].delay, delay);
    timers.advance(delay);
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.equal(sockets.length, 8);
});

test("the back-off starts again once the application has logged in", async () => {
  const { conn, sockets, timers } = setup();
  sockets[0].drop();
  timers.advance(1000);
  sockets[1].drop();
  assert.deepEqual(timers.pendingDelays(), [2000]);
  timers.advance(2000);
  sockets[2].open();
  conn.authenticated();
  sockets[2].drop();
  assert.deepEqual(timers.pendingDelays(), [1000]);
});

test("jitter spreads the reconnections of many clients", () => {
  const delays = [0, 1].map((r) => {
    const { conn } = setup({ random: () => r });
    return conn.delay();
  });
  assert.deepEqual(delays, [800, 1200]);
});

test("reconnectNow skips the wait", () => {
  const { conn, sockets, timers } = setup();
  sockets[0].drop();
  assert.equal(sockets.length, 1);
  conn.reconnectNow();
  assert.equal(sockets.length, 2);
  assert.deepEqual(timers.pendingDelays(), [15000]); // only the wait for its hello
});

test("a connection that stops answering pings is dropped and made again", async () => {
  const { sockets, timers } = setup({ heartbeat: 25000, heartbeatTimeout: 10000 });
  sockets[0].open();
  timers.advance(25000);
  const ping = sockets[0].last();
  assert.equal(ping.op, "ping");
  sockets[0].receive({ id: ping.id, ok: true, pong: true });
  await settle();
  timers.advance(25000);
  assert.equal(sockets[0].last().op, "ping");
  assert.notEqual(sockets[0].last().id, ping.id);
  timers.advance(10000); // no answer this time
  await settle();
  assert.ok(sockets[0].closed);
  timers.advance(1000);
  assert.equal(sockets.length, 2);
});

test("stop() ends it for good", async () => {
  const { conn, sockets, timers, states } = setup();
  sockets[0].open();
  const p = conn.request("ping");
  conn.stop();
  await assert.rejects(p, ConnectionLost);
  timers.advance(60000);
  assert.equal(sockets.length, 1);
  assert.equal(states[states.length - 1][0], "stopped");
});

test("a socket that never says hello is given up and made again", async () => {
  const { sockets, timers, states } = setup({ helloTimeout: 15000 });
  sockets[0].readyState = 1; // open, but silent
  timers.advance(14999);
  assert.equal(states[states.length - 1][0], "connecting");
  timers.advance(1);
  assert.ok(sockets[0].closed);
  assert.equal(states[states.length - 1][0], "waiting");
  assert.equal(states[states.length - 1][1].reason, "the server did not answer");
  timers.advance(1000);
  sockets[1].open();
  timers.advance(20000); // the hello arrived: no more giving up
  assert.ok(!sockets[1].closed);
});

test("restart leaves the connection, not listening to it any more, and opens a new one at once", async () => {
  const { conn, sockets, events, timers, states } = setup();
  sockets[0].open();
  await settle();
  const pending = conn.request("ping");
  conn.restart();
  await assert.rejects(pending, (e) => e instanceof ConnectionLost);
  assert.equal(sockets[0].closed, true);
  assert.equal(sockets.length, 2, "the new connection is opened at once");
  assert.deepEqual(timers.pendingDelays().filter((ms) => ms !== 15000), [], "no back-off: only the hello timeout");
  assert.equal(states[states.length - 1][0], "connecting");
  sockets[0].receive({ event: "disconnect", reason: "your account has been deleted" });
  sockets[0].drop(1000);
  assert.deepEqual(events, [], "the old connection's goodbye is not heard");
  assert.equal(sockets.length, 2);
  sockets[1].open();
  await settle();
  assert.equal(conn.state, "open");
});
