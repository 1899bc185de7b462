"""Erasing a user's messages: the deletes that do it, a bounded number at a time.

The server API and ``Node`` (``actorim.runtime.operations``, which stores the deletes through
the node's store actor so that they are published like a user's own) and the ``Publisher``
(``append_batch`` on the cluster's Redis store, whose script publishes them) plan the same
deletes here. Each is the delete the author would make (``kind`` delete, ``sender`` the author,
``target`` the message): the same tombstone, the same ``delete`` event to connected members,
the same ``message.deleted`` webhook event. Its ``cid`` is ``erase:<mid>``, so an erase that is
repeated (a retry after a timeout) stores nothing twice; and an erased message is no longer the
author's live message, so the next call goes on with the ones left.

Work is bounded per call: at most ``limit`` messages (``erase_limit``) are deleted, and
``more`` says whether the user has messages left there; the caller calls again until it is
false. A conversation is read through ``Store.authored`` (an index by sender).
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


def conversations_of(
    store: Store, user: str, *, room: str | None = None, with_: str | None = None
) -> list[str]:
    """Where an erase of ``user``'s messages looks: ``room``, the direct conversation
    ``with_`` another user, or (neither) every conversation ``user`` takes part in now: the
    rooms they belong to and their direct conversations. A room they left is not among them:
    name it to erase there."""
    if room is not None and with_ is not None:
        raise ValueError("give at most one of room and with")
    if room is not None:
        return [room_conv(room)]
    if with_ is not None:
        return [dm_conv(user, with_)]
    rooms = [room_conv(room) for room in store.rooms_of(user)]
    return rooms + [dm_conv(user, other) for other in store.dm_partners(user)]


def erase_plan(
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
