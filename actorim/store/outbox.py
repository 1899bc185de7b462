"""The webhook outbox and dead-letter queue kept in memory: the memory store's, by delegation.

Entries live in one dict by key; a live entry has ``dead`` None. Claims scan the endpoint's
live entries, which is enough for a store that holds one process's test or development data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from actorim.domain.webhooks import OutboxEntry

__all__ = ["MemoryOutbox"]


class MemoryOutbox:
    """``Store``'s outbox operations over a dict (see ``actorim.store.base.Store``)."""

    def __init__(self) -> None:
        self._entries: dict[str, OutboxEntry] = {}

    def add(self, entries: Sequence[OutboxEntry]) -> None:
        for entry in entries:
            kept = self._entries.setdefault(entry.key, entry)
            if entry.merges and kept.dead is None and kept.due == entry.due:
                self._entries[entry.key] = replace(kept, data=entry.data)

    def due(self, endpoint: str, *, now_ms: int, limit: int, lease_ms: int) -> list[OutboxEntry]:
        ready = sorted(
            (e for e in self._entries.values() if e.dead is None and e.endpoint == endpoint),
            key=lambda e: (e.due, e.key),
        )
        claimed = [e for e in ready if e.due <= now_ms][:limit]
        for entry in claimed:
            self._entries[entry.key] = replace(entry, due=now_ms + lease_ms)
        return claimed

    def done(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.dead is None:
            del self._entries[key]

    def keep(self, entry: OutboxEntry) -> None:
        """Replace the live entry of the same key (a retry, or a burial)."""
        current = self._entries.get(entry.key)
        if current is not None and current.dead is None:
            self._entries[entry.key] = entry

    def dead(self, *, limit: int, after: str | None) -> list[OutboxEntry]:
        dead = sorted(
            (
                e
                for e in self._entries.values()
                if e.dead is not None and (after is None or e.key > after)
            ),
            key=lambda e: e.key,
        )
        return dead[:limit]

    def revive(self, key: str, *, now_ms: int) -> bool:
        entry = self._entries.get(key)
        if entry is None or entry.dead is None:
            return False
        self._entries[key] = entry.revived(now=now_ms)
        return True

    def delete_dead(self, key: str) -> bool:
        entry = self._entries.get(key)
        if entry is None or entry.dead is None:
            return False
        del self._entries[key]
        return True

    def clear(self) -> None:
        self._entries.clear()
