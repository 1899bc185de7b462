"""O(1) actor lookups: by URN in Pykka's ``ActorRegistry``, and by name.

Pykka 4.5 keeps running actors in a list: ``unregister`` and ``get_by_urn`` scan it, so with
10,000 actors every lookup costs about a millisecond of hub time and removing a thousand dynamic
children is quadratic. :func:`install` swaps that list for an insertion-ordered index with the
same list interface Pykka's classmethods use (``append``, ``remove``, ``in``, slicing,
iteration), and gives ``get_by_urn`` a dictionary lookup. Start order is kept, so
``ActorRegistry.stop_all()`` still stops actors in reverse start order.

Names are a separate, explicit registry (``register_name`` / ``whereis``) like Erlang's
``register/2``: a name belongs to one live actor and is released when that actor ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, overload

from pykka import ActorDeadError, ActorRef

from supervisors._pykka_compat import replace_registry_refs, set_get_by_urn

__all__ = ["NameTaken", "install", "register_name", "unregister_name", "whereis"]


class _RefIndex:
    """Ordered set of refs, speaking the subset of ``list`` that ``ActorRegistry`` uses."""

    __slots__ = ("_by_urn", "_refs")

    def __init__(self, refs: list[ActorRef[Any]] | None = None) -> None:
        self._refs: dict[ActorRef[Any], None] = dict.fromkeys(refs or ())
        self._by_urn: dict[str, ActorRef[Any]] = {ref.actor_urn: ref for ref in self._refs}

    def append(self, ref: ActorRef[Any]) -> None:
        self._refs[ref] = None
        self._by_urn[ref.actor_urn] = ref

    def remove(self, ref: ActorRef[Any]) -> None:
        del self._refs[ref]
        self._by_urn.pop(ref.actor_urn, None)
        _release_names(ref)

    def __contains__(self, ref: object) -> bool:
        return ref in self._refs

    @overload
    def __getitem__(self, index: int) -> ActorRef[Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[ActorRef[Any]]: ...
    def __getitem__(self, index: int | slice) -> ActorRef[Any] | list[ActorRef[Any]]:
        return list(self._refs)[index]

    def __iter__(self) -> Iterator[ActorRef[Any]]:
        return iter(list(self._refs))

    def __len__(self) -> int:
        return len(self._refs)

    def by_urn(self, urn: str) -> ActorRef[Any] | None:
        return self._by_urn.get(urn)


_index: _RefIndex | None = None


def install() -> None:
    """Give ``ActorRegistry`` O(1) registration, removal and URN lookup (idempotent)."""
    global _index
    if _index is not None:
        return
    _index = replace_registry_refs(_RefIndex)
    set_get_by_urn(_index.by_urn)


class NameTaken(Exception):
    """The name is already registered to another live actor."""


_names: dict[str, ActorRef[Any]] = {}
_names_of: dict[ActorRef[Any], set[str]] = {}


def register_name(name: str, ref: ActorRef[Any]) -> None:
    """Give a live actor a name; :func:`whereis` finds it until the actor ends.

    Raises :class:`NameTaken` if another live actor holds the name, and ``ActorDeadError`` if
    ``ref`` has already ended (its name could never be released).
    """
    if not ref.is_alive():
        msg = f"{ref} has ended: it cannot take the name {name!r}"
        raise ActorDeadError(msg)
    current = _names.get(name)
    if current is not None and current is not ref and current.is_alive():
        msg = f"name {name!r} is taken by {current}"
        raise NameTaken(msg)
    if current is not None and current is not ref:
        _names_of.get(current, set()).discard(name)
    _names[name] = ref
    _names_of.setdefault(ref, set()).add(name)


def unregister_name(name: str) -> None:
    """Release a name (no error if it is not registered)."""
    ref = _names.pop(name, None)
    if ref is not None:
        _names_of.get(ref, set()).discard(name)


def whereis(name: str) -> ActorRef[Any] | None:
    """The live actor registered under ``name``, or None."""
    ref = _names.get(name)
    if ref is None or not ref.is_alive():
        return None
    return ref


def _release_names(ref: ActorRef[Any]) -> None:
    for name in _names_of.pop(ref, ()):
        if _names.get(name) is ref:
            del _names[name]
