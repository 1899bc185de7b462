"""``ClusterBus``: in cluster mode Redis itself delivers what the store published.

The Redis store's append script publishes every message on its conversation's channel (and a
direct message on both users' channels) in the same step that stores it; every node's listener,
this one included, hands it to the local actors. So the bus has nothing to do for messages, and
only publishes events that are not stored: receipts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actorim.redis.link import ClusterLink

if TYPE_CHECKING:
    from actorim.protocol.wire import WireFrame
    from actorim.runtime.link import Link

__all__ = ["ClusterBus"]


class ClusterBus:
    """The cluster's bus; see the module docstring."""

    live_copies_lag = True
    """A message's copy comes through Redis pub/sub and this node's listener, apart from the
    store's reads: a read can return a message before its copy arrives."""

    def __init__(self, link: ClusterLink) -> None:
        self._link = link

    def to_room(self, room: str, seq: int, frame: WireFrame, origin: Link | None) -> None:
        """Published by the store's script already."""

    def to_user(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Link | None = None
    ) -> None:
        if mid is None:
            self._link.publish_to_user(user, frame.obj)
