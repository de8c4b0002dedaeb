-- pingchat schema version 4: known devices, for login throttling.
-- A row says "a client holding the secret whose SHA-256 is device_hash logged
-- in to this account with its password". Only the hash is stored. A known
-- device is let in past the account-wide login ceiling (never past its own
-- (account, address) back-off); a password change forgets them all.

CREATE TABLE devices (
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device_hash  BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, device_hash)
);
