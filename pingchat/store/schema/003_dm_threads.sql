-- One row per DM conversation, with its latest message, so that listing a
-- user's conversations (CHATHISTORY TARGETS) reads their rows instead of
-- scanning every message. _add_dm keeps it current.
CREATE TABLE dm_threads (
    low_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    high_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    last_id INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    PRIMARY KEY (low_id, high_id)
) WITHOUT ROWID;
CREATE INDEX dm_threads_high ON dm_threads (high_id);

-- The DMs already stored. With one max() SQLite takes the bare column (ts)
-- from the row holding the maximum.
INSERT INTO dm_threads (low_id, high_id, last_id, last_ts)
    SELECT min(sender_id, recipient_id), max(sender_id, recipient_id), max(id), ts
    FROM messages
    WHERE recipient_id IS NOT NULL AND sender_id IS NOT NULL
    GROUP BY min(sender_id, recipient_id), max(sender_id, recipient_id);
