// The WebSocket client of the native protocol: one JSON object per text frame.
//
// It numbers requests and matches replies by id, hands events on, and comes
// back by itself after a drop, waiting longer each time (1 s, 2 s, 4 s ... 30 s,
// with jitter) until the application says the session is back
// (`authenticated()`). A ping every 25 s finds connections that died silently
// (a laptop that slept, a proxy that forgot us). Nothing here knows about
// accounts: after the server's `hello`, `onReady(hello)` lets the application
// resume or log in.

export class RequestError extends Error {
  constructor(code, message, reply = {}) {
    super(message || code);
    this.name = "RequestError";
    this.code = code;
    const error = reply.error || {};
    this.retryAfter = Number(error.retry_after ?? reply.retry_after ?? 0) || 0;
    this.reply = reply;
  }
}

/** The request never reached the server: there was no connection. */
export class NotConnected extends RequestError {
  constructor(message = "not connected") {
    super("not_connected", message);
    this.name = "NotConnected";
  }
}

/** The connection dropped after the request was sent: it may or may not have
 * been carried out. */
export class ConnectionLost extends RequestError {
  constructor(message = "the connection dropped") {
    super("connection_lost", message);
    this.name = "ConnectionLost";
  }
}

const OPEN = 1;

export function webSocketUrl(location) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
}

export class Connection {
  /**
   * @param {object} options
   * @param {string} options.url
   * @param {Function} options.WebSocket  the constructor (injected for tests)
   * @param {object} [options.timers]     {setTimeout, clearTimeout}
   * @param {Function} [options.random]   for the jitter
   */
  constructor({
    url,
    WebSocket,
    timers = globalThis,
    random = Math.random,
    minDelay = 1000,
    maxDelay = 30000,
    heartbeat = 25000,
    heartbeatTimeout = 10000,
    helloTimeout = 15000,
  }) {
    this.url = url;
    this.WebSocket = WebSocket;
    this.timers = timers;
    this.random = random;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.heartbeat = heartbeat;
    this.heartbeatTimeout = heartbeatTimeout;
    this.helloTimeout = helloTimeout;
    this.onEvent = () => {};
    this.onState = () => {};
    this.onReady = () => {};
    this.state = "idle"; // idle, connecting, open, waiting, stopped
    this.ws = null;
    this.ready = false;
    this.pending = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.retryTimer = null;
    this.beatTimer = null;
    this.retryAt = null;
  }

  start() {
    if (this.state === "connecting" || this.state === "open") return;
    this._connect();
  }

  /** Stop for good (the page goes away); pending requests fail. */
  stop() {
    this._clearTimers();
    this._drop(new ConnectionLost("the client stopped"));
    this._setState("stopped");
  }

  /** Try again now instead of waiting for the back-off (the browser came
   * back online, or the user asked). */
  reconnectNow() {
    if (this.state === "waiting" || this.state === "idle") {
      this._clearTimers();
      this._connect();
    }
  }

  /** Leave this connection and open a new one at once, without the back-off
   * (the account behind it was deleted: the server is about to close it, and
   * the next one starts at the login page). What it still sends, its
   * goodbye included, is not listened to. */
  restart() {
    if (this.state === "stopped") return;
    this._clearTimers();
    this._drop(new ConnectionLost("the connection was left"));
    this.attempt = 0;
    this._connect();
  }

  /** The application logged in on this connection: the next drop starts the
   * back-off from the beginning again. */
  authenticated() {
    this.attempt = 0;
  }

  /** Send one request; resolves with the reply, rejects with a RequestError
   * (NotConnected when it could not be sent, ConnectionLost when the
   * connection dropped before the reply). */
  request(op, args = {}) {
    if (!this.ready || !this.ws || this.ws.readyState !== OPEN) {
      return Promise.reject(new NotConnected());
    }
    const id = this.nextId++;
    const frame = JSON.stringify({ ...args, id, op });
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, op });
      try {
        this.ws.send(frame);
      } catch (e) {
        this.pending.delete(id);
        reject(new NotConnected(String(e && e.message || e)));
      }
    });
  }

  // -- internals ----------------------------------------------------------------

  _setState(state, detail = {}) {
    this.state = state;
    this.onState(state, detail);
  }

  _connect() {
    this._setState("connecting");
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (e) {
      this._scheduleRetry(String(e && e.message || e));
      return;
    }
    this.ws = ws;
    this.ready = false;
    // A socket that opens but never says hello (a proxy with no server
    // behind it) is given up like a dropped one.
    this.timers.clearTimeout(this.beatTimer);
    this.beatTimer = this.timers.setTimeout(() => {
      if (this.ws === ws && !this.ready) this._lost("the server did not answer");
    }, this.helloTimeout);
    ws.onmessage = (ev) => this._frame(ws, ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const why = ev && ev.code && ev.code !== 1000 && ev.code !== 1005
        ? `closed (${ev.code}${ev.reason ? ": " + ev.reason : ""})` : "closed";
      this._lost(why);
    };
    ws.onerror = () => {};
  }

  _frame(ws, data) {
    if (this.ws !== ws || typeof data !== "string") return;
    let obj;
    try {
      obj = JSON.parse(data);
    } catch {
      return;
    }
    if (!obj || typeof obj !== "object") return;
    if (typeof obj.event === "string") {
      if (obj.event === "hello") {
        this.ready = true;
        this._setState("open", { hello: obj });
        this._beat();
        Promise.resolve()
          .then(() => this.onReady(obj))
          .catch(() => {});
        return;
      }
      this.onEvent(obj);
      return;
    }
    const waiter = obj.id === undefined || obj.id === null ? undefined : this.pending.get(obj.id);
    if (!waiter) {
      if (obj.ok === false) this.onEvent({ event: "error", error: obj.error || {} });
      return;
    }
    this.pending.delete(obj.id);
    if (obj.ok) {
      waiter.resolve(obj);
    } else {
      const error = obj.error || {};
      waiter.reject(new RequestError(error.code || "error", error.message, obj));
    }
  }

  _beat() {
    this.timers.clearTimeout(this.beatTimer);
    this.beatTimer = this.timers.setTimeout(() => {
      const ws = this.ws;
      let answered = false;
      const deadline = this.timers.setTimeout(() => {
        if (!answered && this.ws === ws) this._lost("the server stopped answering");
      }, this.heartbeatTimeout);
      this.request("ping").then(
        () => {
          answered = true;
          this.timers.clearTimeout(deadline);
          if (this.ws === ws) this._beat();
        },
        () => {
          answered = true;
          this.timers.clearTimeout(deadline);
        },
      );
    }, this.heartbeat);
  }

  _lost(why) {
    this._drop(new ConnectionLost());
    this._scheduleRetry(why);
  }

  _drop(error) {
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    this.timers.clearTimeout(this.beatTimer);
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close();
      } catch {
        // already closed
      }
    }
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const waiter of pending) waiter.reject(error);
  }

  /** The back-off before the next attempt, in ms. */
  delay() {
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    return Math.round(base * (0.8 + 0.4 * this.random()));
  }

  _scheduleRetry(why) {
    if (this.state === "stopped") return;
    const wait = this.delay();
    this.attempt = Math.min(this.attempt + 1, 16);
    this.retryAt = Date.now() + wait;
    this._setState("waiting", { delay: wait, reason: why });
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = null;
      this._connect();
    }, wait);
  }

  _clearTimers() {
    this.timers.clearTimeout(this.retryTimer);
    this.timers.clearTimeout(this.beatTimer);
    this.retryTimer = null;
  }
}
