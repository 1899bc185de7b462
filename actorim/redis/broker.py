"""``RedisBroker``: the broker of a node in a cluster, over the node's ``ClusterLink``.

Storing and publishing a message are one step in a cluster: the Redis store's append script
stores, sequences and publishes every message on its conversation's channel (a direct message
on both users' channels) at once. So ``publish_stored`` has nothing to do for a room message and
``publish_to_user`` nothing for a direct message (``mid`` given): every node's listener, this
one's too, hands the published copy to its local fan-out. Only events that are not stored
(receipts) are published here.

Presence and membership are counted cluster-wide by the link's Lua scripts, which announce each
change once for the whole cluster on the presence or room channel; the listener brings the
announcement back to every node's tracker and room actors, so this node's own actors announce
nothing themselves. Every call is guarded by the link (a Redis error reaches its breaker, never
the caller); what a failed call would have changed is re-counted by the ``resync_*`` methods
when the link is healthy again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError, ActorRef, Timeout

from actorim.ports import Membership, Origin
from actorim.redis.link import ClusterLink
from actorim.redis.listener import Unwant, Want
from actorim.redis.sessions import (
    DISCONNECT_EVENT,
    close_session,
    open_session,
    prune_sessions,
    user_sessions,
)

if TYPE_CHECKING:
    from actorim.domain.presence import Announcement, Status
    from actorim.protocol.wire import WireFrame

__all__ = ["RedisBroker"]

logger = logging.getLogger("actorim.cluster")

# How long an actor waits for its subscription to be confirmed before going on without it.
WANT_TIMEOUT_S = 5.0


class RedisBroker:
    """The cluster's broker; see the module docstring."""

    live_copies_lag = True
    """A message's copy comes through Redis pub/sub and this node's listener, apart from the
    store's reads: a read can return a message before its copy arrives."""

    def __init__(self, link: ClusterLink, listener: Callable[[], ActorRef[Any] | None]) -> None:
        self._link = link
        self._listener = listener

    # -- health ----------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._link.healthy

    @property
    def refusing(self) -> bool:
        return self._link.refusing

    def link_failed(self, what: str, error: BaseException) -> bool:
        self._link.report_failure(what, error)
        return True

    # -- publishing ------------------------------------------------------------------------

    def publish_stored(self, room: str, seq: int, frame: WireFrame, origin: Any) -> None:
        """Published by the store's append script as it stored the message."""

    def publish_ephemeral(self, room: str, frame: WireFrame, origin: Origin | None) -> None:
        """Published on the room's channel for every node's listener (this one's too)."""
        node_origin = None if origin is None else f"{self._link.node_id}/{origin.conn_id}"
        self._link.publish_to_room(room, frame.obj, node_origin)

    def publish_to_user(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Any = None
    ) -> None:
        if mid is None:  # a direct message (mid) was published by the store's append script
            node_origin = None if origin is None else f"{self._link.node_id}/{origin.conn_id}"
            self._link.publish_to_user(user, frame.obj, node_origin)

    # -- sessions ------------------------------------------------------------------------

    def sessions(self, user: str) -> list[dict[str, Any]] | None:
        return user_sessions(self._link, user)

    def disconnect(self, user: str, session: str | None, code: int, reason: str) -> None:
        """Published on the user's channel: every node with a connection of ``user`` hears
        it (this one's listener too)."""
        event = {"t": DISCONNECT_EVENT, "user": user, "session": session, "code": code}
        self._link.publish_to_user(user, {**event, "reason": reason})

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe_room(self, room: str) -> None:
        self._want(self._link.keys.room_channel(room))

    def unsubscribe_room(self, room: str) -> None:
        self._unwant(self._link.keys.room_channel(room))

    def subscribe_user(self, user: str) -> None:
        self._want(self._link.keys.user_channel(user))

    def unsubscribe_user(self, user: str) -> None:
        self._unwant(self._link.keys.user_channel(user))

    def _want(self, channel: str) -> bool:
        """Subscribe the node to ``channel`` and wait for Redis to confirm; False if it could
        not be confirmed now (it is made when the listener (re)connects)."""
        listener = self._listener()
        if listener is None:
            wanted = self._link.wanted
            wanted[channel] = wanted.get(channel, 0) + 1
            return False
        try:
            return bool(listener.ask(Want(channel), timeout=WANT_TIMEOUT_S))
        except (ActorDeadError, Timeout) as exc:
            logger.warning("subscription to %s not confirmed: %s", channel, exc)
            return False

    def _unwant(self, channel: str) -> None:
        """One wanter of ``channel`` less."""
        listener = self._listener()
        if listener is None:
            wanted = self._link.wanted
            count = wanted.get(channel, 0) - 1
            if count > 0:
                wanted[channel] = count
            else:
                wanted.pop(channel, None)
            return
        with contextlib.suppress(ActorDeadError):
            listener.tell(Unwant(channel))

    # -- presence --------------------------------------------------------------------------

    def connected(self, user: str, session: str, address: str | None) -> None:
        self._link.presence_adjust(user, +1)
        open_session(self._link, user, session, address)

    def disconnected(self, user: str, session: str) -> None:
        self._link.presence_adjust(user, -1)
        close_session(self._link, session)

    def announce(self, announcements: list[Announcement]) -> list[Announcement]:
        # Redis announces once for the whole cluster (online when the count becomes positive);
        # here only a grace that ended is reported, and Redis decides.
        for a in announcements:
            if a.status == "offline":
                self._link.presence_settle(a.user, a.ts_ms)
        return []

    def settle(self, user: str, ts_ms: int | None = None) -> None:
        self._link.presence_settle(user, ts_ms)

    def statuses(self, users: Iterable[str]) -> dict[str, Status] | None:
        return self._link.statuses(users)

    def resync_presence(self, connections: Mapping[str, list[tuple[str, str | None]]]) -> bool:
        link = self._link
        recorded = link.node_user_counts()
        if recorded is None:
            return False
        for user, sessions in connections.items():
            for session, address in sessions:
                open_session(link, user, session, address)
        prune_sessions(link, [s for sessions in connections.values() for s, _ in sessions])
        for user in set(recorded) | set(connections):
            delta = len(connections.get(user, ())) - recorded.get(user, 0)
            if delta:
                link.presence_adjust(user, delta)
            if not connections.get(user):
                link.presence_settle(user)
        return True

    # -- membership ------------------------------------------------------------------------

    def member_adjust(self, room: str, user: str, delta: int) -> Membership:
        return Membership(self._link.member_adjust(room, user, delta), announced=True)

    def members(self, room: str) -> list[str] | None:
        return self._link.members(room)

    def resync_members(self, room: str, users: Mapping[str, int]) -> None:
        recorded = self._link.node_member_counts(room, list(users))
        if recorded is None:
            return
        for user in set(recorded) | set(users):
            delta = users.get(user, 0) - recorded.get(user, 0)
            if delta:
                self._link.member_adjust(room, user, delta)

    def resync_rooms(self, rooms: Iterable[str]) -> None:
        live = set(rooms)
        records = self._link.node_member_records()
        for (room, user), count in (records or {}).items():
            if count > 0 and room not in live:
                self._link.member_adjust(room, user, -count)
