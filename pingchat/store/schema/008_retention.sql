-- pingchat schema version 8: account deletion and history retention.

-- Indexes for every foreign key that lacked one. Without them, deleting an
-- account (ON DELETE SET NULL / CASCADE on messages) or a room read every
-- message: about 300 ms of work for an account of 10,000 messages among
-- 1,000,000, 55-90 ms with them (bench/retention.py). Partial where most rows hold NULL: a
-- room message has no recipient, a DM no room, a guest no account.
CREATE INDEX messages_sender ON messages (sender_id) WHERE sender_id IS NOT NULL;
CREATE INDEX messages_recipient ON messages (recipient_id) WHERE recipient_id IS NOT NULL;
CREATE INDEX messages_room ON messages (room_id) WHERE room_id IS NOT NULL;
CREATE INDEX offline_queue_message ON offline_queue (message_id);
CREATE INDEX room_invites_account ON room_invites (account_id);

-- Deleting an account rewrites the audit rows naming it, whatever case the
-- name was typed in (a failed login keeps what was typed).
CREATE INDEX audit_log_account_folded ON audit_log (lower(account)) WHERE account IS NOT NULL;
CREATE INDEX audit_log_actor_folded ON audit_log (lower(actor)) WHERE actor IS NOT NULL;
-- ...and the tombstones it deleted (migration 007), under the placeholder.
CREATE INDEX messages_deleted_by_folded ON messages (lower(deleted_by))
    WHERE deleted_by IS NOT NULL;

-- A room's own retention in days (IRC mode +H); NULL: the server's --history-days.
ALTER TABLE rooms ADD COLUMN history_days INTEGER;

-- One row per account deletion, begun or finished. It holds no name: only
-- a keyed digest (HMAC-SHA256 under the data dir's secret.key) that keeps
-- the name from being registered again until reserved_until, and lets a
-- running server recognise the account in its memory when another process
-- (pingchat user delete) deleted it; once the name is free the digest is
-- blanked. Rows are never deleted, so an id is never reused: anonymised
-- messages carry the placeholder name 'deleted-<id>', and a server watching
-- for rows above the last it saw misses none.
CREATE TABLE deleted_accounts (
    id             INTEGER PRIMARY KEY,
    account_id     INTEGER NOT NULL,
    name_digest    BLOB NOT NULL,
    begun_at       INTEGER NOT NULL,
    finished_at    INTEGER,
    reserved_until INTEGER NOT NULL
);
CREATE INDEX deleted_accounts_digest ON deleted_accounts (name_digest);
