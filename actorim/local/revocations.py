"""Token revocations of a node that shares nothing: in memory, or in a small SQLite file.

A single node hands a revocation to its own runtime as it makes it, so these only keep what
is in force for the next start. SQLite keeps them in ``revocations.sqlite3`` beside the
message store (its own file: the message store's thread and group commit have nothing to do
with a handful of rare writes); the memory adapter forgets them with the process, like the
memory message store forgets messages.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from actorim.domain.tokens import Revocation

__all__ = ["MemoryRevocations", "SqliteRevocations"]


def _key(revocation: Revocation) -> str:
    return f"{revocation.kind}\x1f{revocation.subject}\x1f{revocation.before}"


class MemoryRevocations:
    """``ports.Revocations`` in this process's memory."""

    def __init__(self) -> None:
        self._kept: dict[str, Revocation] = {}

    def add(self, revocation: Revocation) -> None:
        key = _key(revocation)
        kept = self._kept.get(key)
        if kept is None or kept.until < revocation.until:
            self._kept[key] = revocation

    def current(self, now: float) -> list[Revocation]:
        for key in [key for key, kept in self._kept.items() if kept.until <= now]:
            del self._kept[key]
        return list(self._kept.values())

    def close(self) -> None:
        pass


class SqliteRevocations:
    """``ports.Revocations`` in a SQLite file of its own.

    Each call is one short statement on the caller's thread: revocations are rare (an
    administrator's action) and read once at start.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS revocations"
            " (key TEXT PRIMARY KEY, until REAL NOT NULL, revocation TEXT NOT NULL)"
        )

    def add(self, revocation: Revocation) -> None:
        self._db.execute(
            "INSERT INTO revocations (key, until, revocation) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET until = max(until, excluded.until),"
            " revocation = CASE WHEN excluded.until > until THEN excluded.revocation"
            " ELSE revocation END",
            (_key(revocation), revocation.until, json.dumps(revocation.to_map())),
        )
        # Expired ones go as new ones come, so the table holds about what is in force.
        self._db.execute("DELETE FROM revocations WHERE until <= ?", (time.time(),))

    def current(self, now: float) -> list[Revocation]:
        self._db.execute("DELETE FROM revocations WHERE until <= ?", (now,))
        rows = self._db.execute("SELECT revocation FROM revocations").fetchall()
        return [Revocation.from_map(json.loads(row[0])) for row in rows]

    def close(self) -> None:
        self._db.close()
