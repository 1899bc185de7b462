"""``Heard``: what a node last told its clients about others, per key (a room's member, a user).

Member and presence events reach a node by Redis pub/sub, which delivers to whoever is
subscribed at that instant and keeps nothing. Two things follow. A node whose link to Redis was
down misses the events published meanwhile, by the others' recovery too; and an event can reach a
node twice (once live, once as the difference a repair finds). So the node keeps the last value
it announced per key: an event is announced only if it changes that value, and after an outage
the cluster's state read from Redis is compared with it, each difference announced once.

Pure: no I/O, no clock; the room and presence actors feed it.

>>> members = Heard[str, str](absent="left")
>>> members.reset({"alice": "joined"})
>>> members.hear("bob", "joined"), members.hear("bob", "joined"), members.hear("dan", "left")
(True, False, False)
>>> members.reconcile({"bob": "joined", "carol": "joined"})
[('alice', 'left'), ('carol', 'joined')]
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

__all__ = ["Heard"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Heard(Generic[K, V]):
    """The last value announced per key; see the module docstring.

    ``absent`` is the value of a key nobody mentioned: for a room's members, "left" (whoever
    is not listed is not in the room); None (statuses) when a key never heard of is unknown.
    """

    def __init__(self, *, absent: V | None = None) -> None:
        self._values: dict[K, V] = {}
        self._absent = absent
        self.seeded = False

    def reset(self, values: Mapping[K, V]) -> None:
        """What the clients were just told in full (a join reply's member list)."""
        self._values = dict(values)
        self.seeded = True

    def seed(self, values: Mapping[K, V]) -> None:
        """Values the clients were told for keys not heard of yet (a presence answer)."""
        for key, value in values.items():
            self._values.setdefault(key, value)

    def hear(self, key: K, value: V) -> bool:
        """Record an event; True when it changes what was announced (announce it)."""
        if self._values.get(key, self._absent) == value:
            return False
        self._values[key] = value
        return True

    def reconcile(self, state: Mapping[K, V]) -> list[tuple[K, V]]:
        """The changes to announce so that the clients' view matches ``state``, the cluster's.

        With ``absent`` set, ``state`` is complete: a key it does not list takes ``absent``.
        Without, a key it does not list is left as it is, and a key never heard of is taken as
        it is with nothing to announce: nobody here was told anything about it.
        """
        absent = self._absent
        changes = []
        if absent is not None:
            for key in [k for k in self._values if k not in state]:
                if self._values.pop(key) != absent:
                    changes.append((key, absent))
        for key, value in state.items():
            before = self._values.get(key, absent)
            if before is not None and before != value:
                changes.append((key, value))
            self._values[key] = value
        return sorted(changes, key=lambda change: str(change[0]))

    def forget(self, keys: Iterable[K]) -> None:
        """Stop tracking ``keys`` (nobody here watches them any more)."""
        for key in keys:
            self._values.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._values
