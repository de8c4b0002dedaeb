-- pingchat schema version 5: end-to-end keys per device (docs/e2e.md).
-- An account publishes one X25519 key per device (a terminal client's config
-- dir, a browser profile) instead of one key for the account; a DM may be
-- sealed once per device (messages.envelopes).

CREATE TABLE device_keys (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device       TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    label        TEXT,
    published_at INTEGER NOT NULL,
    UNIQUE (account_id, device)
);

-- The one key an account had becomes its device 'default'. When it was
-- published is not known: the account's creation stands in for it.
INSERT INTO device_keys (account_id, device, public_key, label, published_at)
    SELECT id, 'default', public_key, NULL, created_at
    FROM accounts WHERE public_key IS NOT NULL
    ORDER BY id;

ALTER TABLE accounts DROP COLUMN public_key;

-- The sending device of a DM sealed per device, and its envelopes: the
-- compact JSON list of {user, device, ciphertext, nonce}, relayed unread.
ALTER TABLE messages ADD COLUMN sender_device TEXT;
ALTER TABLE messages ADD COLUMN envelopes TEXT;
