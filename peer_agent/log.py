"""The agent's local log: one SQLite file in its data dir with every room's envelopes, its own
seq counters, the outbox of uploads, the server cursor, the device keys it has learnt and the
steps of each message's path (for the network view).

Its merge rules are protocol.MessageLog's, on disk: one envelope per id (the first one stored
wins), the display order (lamport, device, seq), version vectors of contiguous seqs, and the
same "what does the peer lack" answer. Envelopes given to it must already be verified.

Calls are short and synchronous; the agent makes them from a thread (`asyncio.to_thread`) or in
small batches. One connection per LocalLog, guarded by a lock, so threads may share one.

Durability: the file is in WAL mode with `synchronous = NORMAL`, so a commit is an append to
the WAL with no fsync. A committed transaction survives the process being killed (SIGKILL, a
crash): the WAL is in the kernel's page cache and the next open replays it. Only a power loss
or a kernel crash can take back the last commits before the next checkpoint, and the file stays
consistent even then. That is the line drawn for received envelopes, receipts, path steps and
the server's bookkeeping: everything a receipt or the UI vouched for is on disk once the call
that stored it returns, and what a power loss takes back comes again from the peers or the
server. This device's own messages are the exception: `author_message` commits with
`synchronous = FULL` (an fsync of the WAL, which also makes every earlier commit durable),
because a seq handed out and sent to peers must never be handed out again, even after a power
loss. The agent commits its posts in groups instead (`author_message(durable=False)`, then
`sync()`: one fsync of the WAL for every post committed before it began, at the end of the
event loop's turn when fsyncs are fast, else in a worker thread;
`peer_agent.group_sync`): a post is neither sent nor acknowledged to the UI before that fsync, so
a seq a power loss could take back was never seen by anyone. (Measured by
`python -m bench.receive_path` and `bench.mesh`; docs/benchmarks.md. Deferring commits to the
end of an event-loop turn instead was not done: a receipt or a UI push queued in that turn
could leave before the commit.)

The log is in parts, one class each over the one connection, and `LocalLog` is all of them:
the file, its lock and transactions (log_file.py), the schema and its migrations
(log_schema.py), the envelopes with the version vector and gaps (log_envelopes.py), the
outbox and server cursors (log_server.py), read markers and message paths (log_marks.py), and
the device keys (log_keys.py).
"""

from __future__ import annotations

from .log_envelopes import EnvelopeStore
from .log_file import LogFile
from .log_keys import AUTHORITATIVE_SOURCES, KeyStore
from .log_marks import SERVER_STEPS, MessagePaths, PathStep, ReadMarkers
from .log_schema import SCHEMA_VERSION
from .log_server import ServerBookkeeping

__all__ = ["AUTHORITATIVE_SOURCES", "SCHEMA_VERSION", "SERVER_STEPS", "LocalLog", "LogFile",
           "PathStep"]


class LocalLog(EnvelopeStore, ServerBookkeeping, ReadMarkers, MessagePaths, KeyStore):
    """The agent's SQLite log, opened (and created or migrated) at `path`.

    `clock` gives the current time in seconds, for `received_at` and key bookkeeping.
    `conflicts` counts envelopes refused because their id held different content.
    """
