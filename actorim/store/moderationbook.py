"""``ModerationBook``: the memory store's room roles, bans, mutes and audit logs.

The memory store's half of the moderation part of the Store contract (``Store.standings`` and
the methods after it), kept apart from the messages like ``RoomBook``. Each room's audit log is
a list in id order (ids sort by time, so an append is nearly always at the end); a page is a
bisection.

>>> from actorim.domain.moderation import AuditEntry, Standing
>>> book = ModerationBook()
>>> entry = AuditEntry("a1", "lobby", 1, "al", "mute", "bo")
>>> book.moderate("lobby", "bo", Standing(muted_until=9), entry)
>>> book.standings("lobby", ["al", "bo"]), book.mutes_of("bo")
({'bo': Standing(role='member', banned_until=0, muted_until=9)}, {'lobby': 9})
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence

from actorim.domain.moderation import AuditEntry, Standing

__all__ = ["ModerationBook"]

_PLAIN = Standing()


class ModerationBook:
    """See the module docstring."""

    def __init__(self) -> None:
        self._standing: dict[tuple[str, str], Standing] = {}
        self._mutes: dict[str, dict[str, int]] = {}
        self._audit: dict[str, list[tuple[str, AuditEntry]]] = {}

    def standings(self, room: str, users: Sequence[str]) -> dict[str, Standing]:
        found = {user: self._standing.get((room, user)) for user in users}
        return {user: standing for user, standing in found.items() if standing is not None}

    def mutes_of(self, user: str) -> dict[str, int]:
        return dict(self._mutes.get(user, {}))

    def moderate(self, room: str, user: str, standing: Standing, entry: AuditEntry) -> None:
        if standing == _PLAIN:
            self._standing.pop((room, user), None)
        else:
            self._standing[room, user] = standing
        mutes = self._mutes.setdefault(user, {})
        if standing.muted_until:
            mutes[room] = standing.muted_until
        else:
            mutes.pop(room, None)
        if not mutes:
            del self._mutes[user]
        insort(self._audit.setdefault(room, []), (entry.id, entry))

    def audit(self, room: str, before: str | None, limit: int) -> list[AuditEntry]:
        log = self._audit.get(room, [])
        end = len(log) if before is None else bisect_left(log, (before,))
        return [entry for _, entry in reversed(log[max(0, end - limit) : end])]
