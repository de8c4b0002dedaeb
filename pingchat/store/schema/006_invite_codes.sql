-- pingchat schema version 6: invite codes, for --registration invite.
-- Only the SHA-256 digest of a code is kept (like recovery codes): the code
-- is shown once, to the administrator who creates it.
CREATE TABLE invite_codes (
    id         INTEGER PRIMARY KEY,
    code_hash  BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER,
    uses_left  INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0,
    revoked_at INTEGER
);
