"""Erasing a user's messages: the deletes that do it, a bounded number at a time.

The server API and ``Node`` (``actorim.runtime.operations``, which stores the deletes through
the node's store actor so that they are published like a user's own) and the ``Publisher``
(``append_batch`` on the cluster's Redis store, whose script publishes them) plan the same
deletes here. Each is the delete the author would make (``kind`` delete, ``sender`` the author,
``target`` the message): the same tombstone, the same ``delete`` event to connected members,
the same ``message.deleted`` webhook event. Its ``cid`` is ``erase:<mid>``, so an erase that is
repeated (a retry after a timeout) stores nothing twice; and an erased message is no longer the
author's live message, so the next call goes on with the ones left.

Everywhere (neither a room nor another user named) is every conversation where the user has
live messages, rooms they left included (``Store.authored_conversations``, an index by user):
an operator answering a request for erasure cannot know which rooms those are.

Work is bounded per call: at most ``limit`` messages (``erase_limit``) are deleted, and
``more`` says whether the user has messages left there; the caller calls again until it is
false. A conversation is read through ``Store.authored`` (an index by sender); everywhere reads
at most ``limit + 1`` conversations of the index by user, each holding at least one message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from actorim.domain.messages import DELETE, NewMessage, dm_conv, room_conv

if TYPE_CHECKING:
    from actorim.store.base import Store

__all__ = ["ERASE_CID_PREFIX", "conversations_of", "erase_plan"]

ERASE_CID_PREFIX = "erase:"
"""The ``cid`` of an erase's delete is this and the mid of the message it deletes."""


def erase_plan(
    store: Store,
    user: str,
    *,
    room: str | None = None,
    with_: str | None = None,
    limit: int,
    now_ms: int,
) -> tuple[list[NewMessage], bool]:
    """The deletes of the first ``limit`` of ``user``'s live messages where
    ``conversations_of`` looks, and whether more of them are left."""
    convs = conversations_of(store, user, room=room, with_=with_, limit=limit)
    return _deletes(store, user, convs, limit=limit, now_ms=now_ms)


def conversations_of(
    store: Store, user: str, *, room: str | None = None, with_: str | None = None, limit: int
) -> list[str]:
    """Where an erase of at most ``limit`` of ``user``'s messages looks: ``room``, the direct
    conversation ``with_`` another user, or (neither) everywhere: the first ``limit + 1``
    conversations where they have live messages (enough to plan ``limit`` deletes and know
    whether more are left), rooms they left included; then the rooms they belong to and
    their direct conversations not among those, which hold messages the index by user may
    not know of (a Redis store's stored before its authored sets were filled)."""
    if room is not None and with_ is not None:
        raise ValueError("give at most one of room and with")
    if room is not None:
        return [room_conv(room)]
    if with_ is not None:
        return [dm_conv(user, with_)]
    authored = store.authored_conversations(user, limit=limit + 1)
    rooms = [room_conv(room) for room in store.rooms_of(user)]
    partners = [dm_conv(user, other) for other in store.dm_partners(user)]
    return list(dict.fromkeys([*authored, *rooms, *partners]))


def _deletes(
    store: Store, user: str, convs: Sequence[str], *, limit: int, now_ms: int
) -> tuple[list[NewMessage], bool]:
    """The deletes of the first ``limit`` of ``user``'s live messages in ``convs`` (in that
    order, oldest first within each), and whether more of them are left."""
    deletes: list[NewMessage] = []
    for conv in convs:
        found = store.authored(conv, user, limit=limit - len(deletes) + 1)
        for message in found:
            if len(deletes) == limit:
                return deletes, True
            deletes.append(
                NewMessage(
                    conv=message.conv,
                    sender=user,
                    kind=DELETE,
                    body=b"",
                    ts=now_ms,
                    cid=ERASE_CID_PREFIX + message.mid,
                    room=message.room,
                    to=message.to,
                    target=message.mid,
                )
            )
    return deletes, False
