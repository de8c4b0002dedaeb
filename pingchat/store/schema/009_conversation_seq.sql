-- A sequence number per conversation (a room, or a DM thread), so that every
-- node of a cluster delivers a conversation's messages in one order and
-- notices one it has not received (docs/architecture.md, "The bus").
-- A message takes its room's (or thread's) next number in the transaction
-- that stores it, under that row's lock and before the message's id is
-- taken: within a conversation, numbers have no gaps, and both the numbers
-- and the ids grow in the order the messages were committed, on SQLite and
-- on PostgreSQL with several writers alike. Messages stored before this
-- migration have none (NULL); numbering starts at 1 after it.
ALTER TABLE rooms ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dm_threads ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN seq INTEGER;
