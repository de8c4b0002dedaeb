-- pingchat schema version 2: second factor, recovery codes, contacts, E2E keys.

ALTER TABLE accounts ADD COLUMN otp_secret TEXT;
ALTER TABLE accounts ADD COLUMN otp_pending TEXT;
ALTER TABLE accounts ADD COLUMN otp_enabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN otp_last_step INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN public_key TEXT;

-- One-time recovery codes: only SHA-256 digests of random codes are stored.
CREATE TABLE recovery_codes (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash  BLOB NOT NULL,
    used_at    INTEGER
);
CREATE INDEX recovery_codes_account ON recovery_codes (account_id);

-- A row means "account asked to be contacts with peer"; both rows: mutual.
CREATE TABLE contacts (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    peer_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, peer_id)
);
CREATE INDEX contacts_peer ON contacts (peer_id);

-- Contact events for accounts that were offline when they happened.
CREATE TABLE pending_events (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    payload    TEXT NOT NULL
);
CREATE INDEX pending_events_account ON pending_events (account_id, id);
