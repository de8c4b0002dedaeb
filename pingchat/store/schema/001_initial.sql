-- pingchat schema version 1: accounts, tokens, rooms, messages, offline queue, audit.
-- Times are integer milliseconds since the Unix epoch (UTC).

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    name_folded   TEXT NOT NULL UNIQUE,
    password_hash BLOB NOT NULL,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    last_seen     INTEGER,
    dm_policy     TEXT NOT NULL DEFAULT 'anyone' CHECK (dm_policy IN ('anyone', 'contacts'))
);

-- Session tokens: only the SHA-256 of the token is stored.
CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX tokens_account ON tokens (account_id);

CREATE TABLE rooms (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    name_folded TEXT NOT NULL UNIQUE,
    topic       TEXT NOT NULL DEFAULT '',
    topic_by    TEXT,
    topic_at    INTEGER,
    created_at  INTEGER NOT NULL,
    modes       TEXT NOT NULL DEFAULT 'nt',
    room_key    TEXT,
    user_limit  INTEGER
);

CREATE TABLE room_members (
    room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    op         INTEGER NOT NULL DEFAULT 0,
    voice      INTEGER NOT NULL DEFAULT 0,
    joined_at  INTEGER NOT NULL,
    PRIMARY KEY (room_id, account_id)
);
CREATE INDEX room_members_account ON room_members (account_id);

CREATE TABLE room_bans (
    room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    mask    TEXT NOT NULL,
    set_by  TEXT NOT NULL,
    set_at  INTEGER NOT NULL,
    PRIMARY KEY (room_id, mask)
);

CREATE TABLE room_invites (
    room_id    INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    PRIMARY KEY (room_id, account_id)
);

-- Every message, room or direct. `conversation` is 'r:<room id>' for a room and
-- 'd:<lower account id>:<higher account id>' for a DM, so one index serves history.
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    ts           INTEGER NOT NULL,
    conversation TEXT NOT NULL,
    sender       TEXT NOT NULL,
    sender_id    INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    room_id      INTEGER REFERENCES rooms (id) ON DELETE CASCADE,
    recipient_id INTEGER REFERENCES accounts (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL DEFAULT 'privmsg',
    body         TEXT,
    ciphertext   TEXT,
    nonce        TEXT
);
CREATE INDEX messages_conversation ON messages (conversation, id);

-- DMs waiting for an account that had no session when they were sent.
CREATE TABLE offline_queue (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, message_id)
);

-- Security events. Never holds a password, token, OTP secret or code.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    ts      INTEGER NOT NULL,
    event   TEXT NOT NULL,
    account TEXT,
    actor   TEXT,
    address TEXT,
    detail  TEXT
);
CREATE INDEX audit_log_account ON audit_log (account, id);
