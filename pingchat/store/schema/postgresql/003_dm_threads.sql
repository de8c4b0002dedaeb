-- PostgreSQL's version of schema/003_dm_threads.sql (see pingchat/store/migrations.py):
-- the backfill picks each conversation's latest message with DISTINCT ON,
-- where SQLite took a bare column beside max() and used scalar min()/max().
CREATE TABLE dm_threads (
    low_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    high_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    last_id BIGINT NOT NULL,
    last_ts BIGINT NOT NULL,
    PRIMARY KEY (low_id, high_id)
);
CREATE INDEX dm_threads_high ON dm_threads (high_id);

INSERT INTO dm_threads (low_id, high_id, last_id, last_ts)
    SELECT DISTINCT ON (LEAST(sender_id, recipient_id), GREATEST(sender_id, recipient_id))
        LEAST(sender_id, recipient_id), GREATEST(sender_id, recipient_id), id, ts
    FROM messages
    WHERE recipient_id IS NOT NULL AND sender_id IS NOT NULL
    ORDER BY LEAST(sender_id, recipient_id), GREATEST(sender_id, recipient_id), id DESC;
