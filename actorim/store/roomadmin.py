"""The application's changes to rooms and membership, written once for every caller.

The server API and ``Node`` (through ``actorim.runtime.operations``, on the node's store actor)
and the ``Publisher`` (straight on the cluster's Redis store) make the same changes the same
way: each function here makes its change in the store, keeps its webhook events in the store's
outbox beside it, and answers what the change asks of the broker afterwards (``Effects``),
which ``announce`` hands to any broker: a node's (local or Redis) or the Publisher's (Redis).

What reaches connections is what a WebSocket ``join`` or ``leave`` sends today: the ``member``
event about the user themself, on the user's channel, makes every connection of the user, on
every node, subscribe to the room (if its token allows it) or unsubscribe from it at once. A
room's new title or topic is the ``room`` event on the room's channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from actorim.domain.messages import room_conv
from actorim.protocol.events import room_frame, self_member_frame

if TYPE_CHECKING:
    from actorim.domain.rooms import RoomInfo
    from actorim.protocol.webhooks import Webhooks
    from actorim.protocol.wire import WireFrame
    from actorim.store.base import JoinOutcome, Store

__all__ = [
    "Announcer",
    "Conflict",
    "Effects",
    "NotFound",
    "add_member",
    "announce",
    "create_room",
    "delete_room",
    "member_webhook",
    "remove_member",
    "room_json",
    "update_room",
]


class NotFound(LookupError):
    """What an operation names does not exist (a room); ``message`` says what. Nothing
    changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Conflict(Exception):
    """The operation contradicts what is stored (the room exists, the user belongs to as many
    rooms as a user may); ``message`` says what. Nothing changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def no_room(room: str) -> NotFound:
    """The error of an operation on a room that does not exist."""
    return NotFound(f"no room {room!r}: create it first")


def room_exists(room: str) -> Conflict:
    """The error of creating a room that exists."""
    return Conflict(f"room {room!r} exists already: change it with update_room")


def too_many_rooms(user: str, max_rooms: int) -> Conflict:
    """The error of adding a user who belongs to ``max_rooms`` rooms."""
    return Conflict(
        f"{user!r} is a member of {max_rooms} rooms, as many as a user may be (max_rooms_per_user)"
    )


def room_json(info: RoomInfo) -> dict[str, Any]:
    """A room's info as the server API, ``Node`` and the Publisher answer it."""
    return {
        "room": info.room,
        "title": info.title,
        "topic": info.topic,
        "public": info.public,
        "members": info.members,
    }


class Announcer(Protocol):
    """The part of ``ports.Broker`` a change needs (the Publisher's ``RedisBroker`` has it)."""

    def publish_to_user(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Any = None
    ) -> None: ...

    def publish_ephemeral(self, room: str, frame: WireFrame, origin: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Effects:
    """Events to publish once the store made a change: to every connection of a user, and to
    every connection subscribed to a room, on every node."""

    to_users: tuple[tuple[str, WireFrame], ...] = ()
    to_rooms: tuple[tuple[str, WireFrame], ...] = ()


NOTHING = Effects()


def announce(broker: Announcer, effects: Effects) -> None:
    """Publish ``effects`` through ``broker``."""
    for user, frame in effects.to_users:
        broker.publish_to_user(user, frame)
    for room, frame in effects.to_rooms:
        broker.publish_ephemeral(room, frame, None)


def member_webhook(
    store: Store,
    webhooks: Webhooks | None,
    room: str,
    users: Sequence[str],
    *,
    added: bool,
    by: str,
    now_ms: int,
) -> None:
    """Keep the ``room.member_added`` (or ``_removed``) events of ``users`` in the outbox; call
    it in the ``store.atomically()`` block of the change it tells of."""
    if not webhooks or not users:
        return
    entries = [
        entry
        for user in users
        for entry in webhooks.for_member(room, user, added=added, by=by, ts=now_ms)
    ]
    store.outbox_add(entries)


def _membership(
    room: str, users: Sequence[str], *, joined: bool, seq: int | None = None
) -> Effects:
    """The ``member`` events about themselves that ``users``' connections follow; a join
    carries the room's latest ``seq`` so that no message after it is missed."""
    return Effects(
        to_users=tuple((u, self_member_frame(room, u, joined=joined, seq=seq)) for u in users)
    )


def create_room(
    store: Store,
    room: str,
    *,
    title: str,
    topic: str,
    public: bool,
    members: Sequence[str],
    max_rooms: int,
    webhooks: Webhooks | None,
    now_ms: int,
) -> tuple[RoomInfo | None, list[str], Effects]:
    """Make ``room`` and add ``members``: the room's metadata after, and the members refused
    because they belong to ``max_rooms`` rooms already; None (nothing changed) when the room
    exists."""
    seq = store.last_seq(room_conv(room))  # read first: a failed read changes nothing
    with store.atomically():
        made = store.create_room(room, title=title, topic=topic, public=public)
        if made is None:
            return None, [], NOTHING
        added: list[str] = []
        full: list[str] = []
        for user in members:
            outcome = store.join_room(user, room, max_rooms=max_rooms)
            (full if outcome == "full" else added).append(user)
        member_webhook(store, webhooks, room, added, added=True, by="application", now_ms=now_ms)
    info = store.room_info([room]).get(room, made)
    return info, full, _membership(room, added, joined=True, seq=seq)


def update_room(
    store: Store,
    room: str,
    *,
    title: str | None,
    topic: str | None,
    public: bool | None,
) -> tuple[RoomInfo | None, Effects]:
    """Change what is given of ``room``'s metadata; None when there is no such room. A new
    title or topic reaches the room's subscribers as the ``room`` event."""
    info = store.set_room(room, title=title, topic=topic, public=public)
    if info is None:
        return None, NOTHING
    if title is None and topic is None:
        return info, NOTHING
    return info, Effects(to_rooms=((room, room_frame(info)),))


def delete_room(
    store: Store, room: str, *, webhooks: Webhooks | None, now_ms: int
) -> tuple[list[str] | None, Effects]:
    """Delete ``room``: the members it had (each one's connections leave it), or None when
    there is no such room."""
    with store.atomically():
        members = store.delete_room(room)
        if members is None:
            return None, NOTHING
        member_webhook(store, webhooks, room, members, added=False, by="application", now_ms=now_ms)
    return members, _membership(room, members, joined=False)


def add_member(
    store: Store,
    room: str,
    user: str,
    *,
    max_rooms: int,
    webhooks: Webhooks | None,
    now_ms: int,
) -> tuple[JoinOutcome | None, Effects]:
    """Make ``user`` a member of the existing ``room`` (private or public): ``joined``,
    ``member`` (already one, nothing changed), ``full``, or None when there is no such room.
    What it reads comes before what it writes, so a failed read changes nothing."""
    if not store.room_info([room]):
        return None, NOTHING
    seq = store.last_seq(room_conv(room))
    with store.atomically():
        outcome = store.join_room(user, room, max_rooms=max_rooms)
        if outcome != "joined":
            return outcome, NOTHING
        member_webhook(store, webhooks, room, [user], added=True, by="application", now_ms=now_ms)
    return outcome, _membership(room, [user], joined=True, seq=seq)


def remove_member(
    store: Store, room: str, user: str, *, webhooks: Webhooks | None, now_ms: int
) -> tuple[bool, Effects]:
    """End ``user``'s membership of ``room``; False when they were not a member."""
    with store.atomically():
        if not store.leave_room(user, room):
            return False, NOTHING
        member_webhook(store, webhooks, room, [user], added=False, by="application", now_ms=now_ms)
    return True, _membership(room, [user], joined=False)
