"""The local log's SQLite schema: the tables of schema 1, what schemas 2 and 3 added, and the
version stored in `PRAGMA user_version` (a file migrates forward from it on open:
`LogFile._migrate`)."""

from __future__ import annotations

SCHEMA_VERSION = 3
"""Stored in `PRAGMA user_version`; a later schema migrates forward from it on open."""

_SCHEMA = (
    # Envelopes of every room. origin: 'self', 'peer:<device>' or 'server'; server_cursor is set
    # once the server is known to hold the envelope.
    """CREATE TABLE messages (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        author TEXT NOT NULL,
        lamport INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        text TEXT NOT NULL,
        sig TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        origin TEXT NOT NULL
            CHECK (origin IN ('self', 'server') OR origin LIKE 'peer:%'),
        server_cursor INTEGER,
        PRIMARY KEY (room, device, seq)
    )""",
    "CREATE INDEX messages_display_order ON messages (room, lamport, device, seq)",
    # Per device with any envelope held: the highest contiguous seq (the version vector entry)
    # and the highest seq; kept in the same transaction as every insert.
    """CREATE TABLE heads (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        contiguous INTEGER NOT NULL,
        highest INTEGER NOT NULL,
        PRIMARY KEY (room, device)
    ) WITHOUT ROWID""",
    # The next seq this agent's device uses in a room; only ever grows.
    """CREATE TABLE own_seq (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        next_seq INTEGER NOT NULL,
        PRIMARY KEY (room, device)
    ) WITHOUT ROWID""",
    # Envelopes the server is not known to hold yet, whoever authored them.
    """CREATE TABLE outbox (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (room, device, seq),
        FOREIGN KEY (room, device, seq) REFERENCES messages (room, device, seq)
    ) WITHOUT ROWID""",
    # Ids the server said it stored before this log held them, so they skip the outbox on
    # arrival; pruned once the server cursor passes them.
    """CREATE TABLE server_known (
        room TEXT NOT NULL,
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        cursor INTEGER NOT NULL,
        PRIMARY KEY (room, device, seq)
    ) WITHOUT ROWID""",
    """CREATE TABLE sync_state (
        room TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (room, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE keys (
        device TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        public_key TEXT NOT NULL,
        source TEXT NOT NULL,
        learnt_at INTEGER NOT NULL
    )""",
)

# Added by schema 2: what this device saw of each message's journey (docs/network-view.md),
# for the network view's "path"; `detail` is a JSON object of the step's other fields.
_SCHEMA_2 = (
    """CREATE TABLE message_path (
        room TEXT NOT NULL,
        id TEXT NOT NULL,
        at INTEGER NOT NULL,
        what TEXT NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX message_path_by_id ON message_path (room, id)",
)

# Added by schema 3: the outbox keeps each envelope's Lamport time, indexed in display order,
# so the next batch to upload is read from the outbox alone. Before, the read walked the
# room's messages in display order from the first, looking each up in the outbox: every
# upload round cost the whole room (33 ms a round in a room of 100,000 messages), and a long
# outbox drained in quadratic time.
_SCHEMA_3 = (
    "ALTER TABLE outbox ADD COLUMN lamport INTEGER NOT NULL DEFAULT 0",
    """UPDATE outbox SET lamport = COALESCE((SELECT m.lamport FROM messages m
        WHERE m.room = outbox.room AND m.device = outbox.device AND m.seq = outbox.seq), 0)""",
    "CREATE INDEX outbox_order ON outbox (room, lamport, device, seq)",
    # The room's messages in arrival order (an index holds the rowid): the unread count reads
    # those after the read marker, not the whole room.
)
