-- pingchat schema version 7: deleting messages (native message.delete, IRC REDACT).
-- A deleted message stays as a tombstone: its id, time, conversation, sender
-- and kind, and when and by whom it was deleted. Its body, ciphertext, nonce,
-- envelopes and sending device are set to NULL; the connection's
-- secure_delete overwrites the old bytes in the file (docs/admin.md).
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted_by TEXT;
