"""``LocalBroker``: the broker of a node that shares nothing with another.

Everything published goes straight to this node's fan-out (the runtime's ``Delivery``): a room
message to the room's actor, a user's events to their links. There is nothing to subscribe to,
nothing to count beyond what this node's actors count themselves, and no link that can fail: so
presence is announced by the node's tracker to its watchers and membership by each room to its
members, and the broker is always healthy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from actorim.ports import Delivery, Membership, Origin

if TYPE_CHECKING:
    from actorim.domain.presence import Announcement, Status
    from actorim.protocol.wire import WireFrame

__all__ = ["LocalBroker"]

_LOCAL_ONLY = Membership(members=None, announced=False)


class LocalBroker:
    """The in-process broker; see the module docstring."""

    live_copies_lag = False
    """The store actor hands each message on as it commits it, before it answers any later
    read: no copy arrives after a read that returned its message."""

    healthy = True
    refusing = False

    def __init__(self, delivery: Delivery) -> None:
        self._delivery = delivery

    def link_failed(self, what: str, error: BaseException) -> bool:
        return False  # no link: the caller handles its own failure

    def publish_stored(self, room: str, seq: int, frame: WireFrame, origin: Any) -> None:
        self._delivery.room_message(room, seq, frame, origin)

    def publish_ephemeral(self, room: str, frame: WireFrame, origin: Origin | None) -> None:
        self._delivery.room_event(room, frame, origin)

    def publish_to_user(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Any = None
    ) -> None:
        self._delivery.user_event(user, frame, mid=mid, origin=origin)

    def sessions(self, user: str) -> list[dict[str, Any]] | None:
        return None  # this node's links are every session there is

    def disconnect(self, user: str, session: str | None, code: int, reason: str) -> None:
        self._delivery.disconnect(user, session, code, reason)

    def subscribe_room(self, room: str) -> None:
        pass

    def unsubscribe_room(self, room: str) -> None:
        pass

    def subscribe_user(self, user: str) -> None:
        pass

    def unsubscribe_user(self, user: str) -> None:
        pass

    def connected(self, user: str, session: str, address: str | None) -> None:
        pass

    def disconnected(self, user: str, session: str) -> None:
        pass

    def announce(self, announcements: list[Announcement]) -> list[Announcement]:
        return announcements  # the tracker's watchers are every watcher there is

    def settle(self, user: str, ts_ms: int | None = None) -> None:
        pass

    def statuses(self, users: Iterable[str]) -> dict[str, Status] | None:
        return None

    def resync_presence(self, connections: Mapping[str, list[tuple[str, str | None]]]) -> bool:
        return False

    def member_adjust(self, room: str, user: str, delta: int) -> Membership:
        return _LOCAL_ONLY

    def members(self, room: str) -> list[str] | None:
        return None

    def resync_members(self, room: str, users: Mapping[str, int]) -> None:
        pass

    def resync_rooms(self, rooms: Iterable[str]) -> None:
        pass
