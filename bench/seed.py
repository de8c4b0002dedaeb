"""Fill a pingchat data dir with a long room history before the server starts.

Writing a million messages through the protocol would take minutes and
measure the writer, not history; this inserts them straight into the
``messages`` table (schema: ``pingchat/store/schema/*.sql``) in one
transaction, after pingchat's own migrations have created the schema.
"""

from __future__ import annotations

import time
from pathlib import Path

from pingchat.model import fold
from pingchat.store import migrations
from pingchat.store.database import connect

BATCH = 50_000


def seed_history(data_dir: Path, room: str, count: int) -> None:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    conn = connect(data_dir / "pingchat.sqlite3", synchronous="NORMAL")
    try:
        migrations.migrate(conn)
        now = int(time.time() * 1000)
        conn.execute("BEGIN")
        cur = conn.execute(
            "INSERT INTO rooms (name, name_folded, created_at) VALUES (?, ?, ?)",
            (room, fold(room), now - count),
        )
        conversation = f"r:{cur.lastrowid}"
        for start in range(0, count, BATCH):
            conn.executemany(
                "INSERT INTO messages (ts, conversation, sender, room_id, kind, body)"
                " VALUES (?, ?, ?, ?, 'privmsg', ?)",
                (
                    (now - count + i, conversation, f"user{i % 500}", cur.lastrowid,
                     f"message {i}: a line of history as long as a chat line usually is")
                    for i in range(start, min(count, start + BATCH))
                ),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
