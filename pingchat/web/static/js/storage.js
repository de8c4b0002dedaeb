// Where the client keeps things between page loads.
//
// The session token lives in sessionStorage (this tab, until it closes) or,
// when the user ticks "remember this browser", in localStorage. Small
// per-account lists (the DM conversations, read markers) go to the same place
// as the token. The E2E device key and the keys seen of others live in
// IndexedDB (`openKv`), which holds binary keys and is not sent anywhere.

const TOKEN = "pingchat.session";

function safeGet(storage, key) {
  try {
    return storage ? storage.getItem(key) : null;
  } catch {
    return null;
  }
}

function safeSet(storage, key, value) {
  try {
    if (storage) storage.setItem(key, value);
  } catch {
    // quota or privacy mode: the value lives only as long as the page
  }
}

function safeRemove(storage, key) {
  try {
    if (storage) storage.removeItem(key);
  } catch {
    // nothing to do
  }
}

export class SessionStore {
  constructor({ local, session }) {
    this.local = local;
    this.session = session;
  }

  /** `{user, token, remember}` or null. */
  load() {
    for (const [storage, remember] of [[this.session, false], [this.local, true]]) {
      const raw = safeGet(storage, TOKEN);
      if (!raw) continue;
      try {
        const saved = JSON.parse(raw);
        if (saved && typeof saved.user === "string" && typeof saved.token === "string") {
          return { user: saved.user, token: saved.token, remember };
        }
      } catch {
        safeRemove(storage, TOKEN);
      }
    }
    return null;
  }

  save(user, token, remember) {
    this.forget();
    safeSet(remember ? this.local : this.session, TOKEN, JSON.stringify({ user, token }));
  }

  forget() {
    safeRemove(this.session, TOKEN);
    safeRemove(this.local, TOKEN);
  }

  /** Where this account's small lists go: with the token. */
  storageFor(remember) {
    return remember ? this.local : this.session;
  }

  getJson(storage, key, fallback) {
    const raw = safeGet(storage, key);
    if (!raw) return fallback;
    try {
      return JSON.parse(raw);
    } catch {
      return fallback;
    }
  }

  setJson(storage, key, value) {
    safeSet(storage, key, JSON.stringify(value));
  }

  removeAll(user) {
    for (const storage of [this.local, this.session]) {
      for (const key of ["dms", "read", "active"]) safeRemove(storage, `pingchat.${key}.${user}`);
    }
  }
}

/** A tiny async key-value store over IndexedDB (`get`, `set`, `delete`,
 * `deletePrefix`), or null when the browser has none (some private modes). */
export function openKv(indexedDB, name = "pingchat") {
  if (!indexedDB) return Promise.resolve(null);
  return new Promise((resolve) => {
    let request;
    try {
      request = indexedDB.open(name, 1);
    } catch {
      resolve(null);
      return;
    }
    request.onupgradeneeded = () => request.result.createObjectStore("kv");
    request.onerror = () => resolve(null);
    request.onblocked = () => resolve(null);
    request.onsuccess = () => {
      const db = request.result;
      const run = (mode, fn) => new Promise((ok, fail) => {
        const tx = db.transaction("kv", mode);
        const req = fn(tx.objectStore("kv"));
        tx.oncomplete = () => ok(req.result);
        tx.onerror = () => fail(tx.error);
        tx.onabort = () => fail(tx.error);
      });
      resolve({
        get: (key) => run("readonly", (s) => s.get(key)),
        set: (key, value) => run("readwrite", (s) => s.put(value, key)).then(() => undefined),
        delete: (key) => run("readwrite", (s) => s.delete(key)).then(() => undefined),
        // Every key that starts with *prefix*: the keys sort as strings, so
        // they are the range [prefix, prefix + U+FFFF).
        deletePrefix: (prefix) => run("readwrite", (s) => s.delete(IDBKeyRange.bound(prefix, prefix + "\uffff", false, true)))
          .then(() => undefined),
      });
    };
  });
}

/** The same interface over a Map: for tests, and when IndexedDB is missing
 * (then keys last only as long as the page). */
export function memoryKv() {
  const map = new Map();
  return {
    map,
    get: async (key) => map.get(key),
    set: async (key, value) => {
      map.set(key, value);
    },
    delete: async (key) => {
      map.delete(key);
    },
    deletePrefix: async (prefix) => {
      for (const key of [...map.keys()]) if (String(key).startsWith(prefix)) map.delete(key);
    },
  };
}
