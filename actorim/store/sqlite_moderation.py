"""The SQLite store's room roles, bans, mutes and audit logs.

Functions over an open connection, each run by ``SqliteStore`` inside one of its transactions
(writes) or reads; the tables are the moderation step of the schema (``actorim.store.sqlite``):
``standings`` (one row per room and user whose standing is not the default, with an index of
the mutes by user, which a connect reads) and ``audit`` (a room's log, keyed by room and id so
that a page is one index range).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from actorim.domain.moderation import AuditEntry, Standing

__all__ = ["MIGRATION", "audit", "moderate", "mutes_of", "standings"]

# The moderation step, self-contained.
MIGRATION: tuple[str, ...] = (
    """CREATE TABLE standings (
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        role TEXT NOT NULL DEFAULT 'member',
        banned_until INTEGER NOT NULL DEFAULT 0,
        muted_until INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (room, user)
    ) WITHOUT ROWID""",
    "CREATE INDEX standings_mutes ON standings (user, room) WHERE muted_until > 0",
    """CREATE TABLE audit (
        room TEXT NOT NULL,
        id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        until INTEGER NOT NULL,
        mid TEXT,
        role TEXT,
        PRIMARY KEY (room, id)
    ) WITHOUT ROWID""",
)

_PLAIN = Standing()


def standings(conn: sqlite3.Connection, room: str, users: Sequence[str]) -> dict[str, Standing]:
    found: dict[str, Standing] = {}
    for start in range(0, len(users), 500):
        chunk = tuple(users[start : start + 500])
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT user, role, banned_until, muted_until FROM standings"
            f" WHERE room = ? AND user IN ({marks})",
            (room, *chunk),
        )
        for user, role, banned, muted in rows:
            found[user] = Standing(role, banned, muted)
    return found


def mutes_of(conn: sqlite3.Connection, user: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT room, muted_until FROM standings WHERE user = ? AND muted_until > 0", (user,)
    )
    return dict(rows.fetchall())


def moderate(
    conn: sqlite3.Connection, room: str, user: str, standing: Standing, entry: AuditEntry
) -> None:
    if standing == _PLAIN:
        conn.execute("DELETE FROM standings WHERE room = ? AND user = ?", (room, user))
    else:
        conn.execute(
            "INSERT OR REPLACE INTO standings (room, user, role, banned_until, muted_until)"
            " VALUES (?, ?, ?, ?, ?)",
            (room, user, standing.role, standing.banned_until, standing.muted_until),
        )
    conn.execute(
        "INSERT OR REPLACE INTO audit"
        " (room, id, ts, actor, action, target, reason, until, mid, role)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.room,
            entry.id,
            entry.ts,
            entry.actor,
            entry.action,
            entry.target,
            entry.reason,
            entry.until,
            entry.mid,
            entry.role,
        ),
    )


def audit(conn: sqlite3.Connection, room: str, before: str | None, limit: int) -> list[AuditEntry]:
    rows = conn.execute(
        "SELECT id, room, ts, actor, action, target, reason, until, mid, role FROM audit"
        " WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
        (room, "\U0010ffff" if before is None else before, limit),
    )
    return [AuditEntry(*row) for row in rows]
