"""The webhook outbox and dead-letter queue in the SQLite store: the statements on the
``webhook_outbox`` table (schema version 5), each run inside a transaction the store opened.

Entries are written in the transaction of the messages they tell of (``SqliteStore.write_batch``),
so a committed message's entries are committed with it. A claim moves the claimed entries' due
time past the lease in the same transaction that reads them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from actorim.domain.webhooks import OutboxEntry

__all__ = ["add", "dead", "delete_dead", "done", "due", "keep", "revive"]

_COLUMNS = "key, event, type, ts, endpoint, data, attempts, due, error, dead"
_ADD = f"INSERT OR IGNORE INTO webhook_outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# A pending push takes the data of its latest message while it waits for its first due time
# (neither claimed nor retried: both move ``due``).
_MERGE = (
    f"INSERT INTO webhook_outbox ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET data = excluded.data"
    " WHERE dead IS NULL AND due = excluded.due"
)
_DUE = (
    f"SELECT {_COLUMNS} FROM webhook_outbox"
    " WHERE endpoint = ? AND dead IS NULL AND due <= ? ORDER BY due, key LIMIT ?"
)
_LEASE = "UPDATE webhook_outbox SET due = ? WHERE key = ?"
_DONE = "DELETE FROM webhook_outbox WHERE key = ? AND dead IS NULL"
_KEEP = (
    "UPDATE webhook_outbox SET attempts = ?, due = ?, error = ?, dead = ?"
    " WHERE key = ? AND dead IS NULL"
)
_DEAD = (
    f"SELECT {_COLUMNS} FROM webhook_outbox WHERE dead IS NOT NULL AND key > ? ORDER BY key LIMIT ?"
)
_REVIVE = (
    "UPDATE webhook_outbox SET attempts = 0, due = ?, dead = NULL"
    " WHERE key = ? AND dead IS NOT NULL"
)
_DELETE_DEAD = "DELETE FROM webhook_outbox WHERE key = ? AND dead IS NOT NULL"


def _entry(row: Any) -> OutboxEntry:
    key, event, kind, ts, endpoint, data, attempts, due_at, error, dead_at = row
    return OutboxEntry(
        key, event, kind, ts, endpoint, bytes(data), attempts, due_at, error, dead_at
    )


def add(conn: sqlite3.Connection, entries: Sequence[OutboxEntry]) -> None:
    plain = [e.row() for e in entries if not e.merges]
    if plain:
        conn.executemany(_ADD, plain)
    merged = [e.row() for e in entries if e.merges]
    if merged:  # in order: of entries under one key, the last one's data is kept
        conn.executemany(_MERGE, merged)


def due(
    conn: sqlite3.Connection, endpoint: str, *, now_ms: int, limit: int, lease_ms: int
) -> list[OutboxEntry]:
    claimed = [_entry(row) for row in conn.execute(_DUE, (endpoint, now_ms, limit))]
    conn.executemany(_LEASE, [(now_ms + lease_ms, e.key) for e in claimed])
    return claimed


def done(conn: sqlite3.Connection, key: str) -> None:
    conn.execute(_DONE, (key,))


def keep(conn: sqlite3.Connection, entry: OutboxEntry) -> None:
    conn.execute(_KEEP, (entry.attempts, entry.due, entry.error, entry.dead, entry.key))


def dead(conn: sqlite3.Connection, *, limit: int, after: str | None) -> list[OutboxEntry]:
    return [_entry(row) for row in conn.execute(_DEAD, (after or "", limit))]


def revive(conn: sqlite3.Connection, key: str, *, now_ms: int) -> bool:
    return conn.execute(_REVIVE, (now_ms, key)).rowcount == 1


def delete_dead(conn: sqlite3.Connection, key: str) -> bool:
    return conn.execute(_DELETE_DEAD, (key,)).rowcount == 1
