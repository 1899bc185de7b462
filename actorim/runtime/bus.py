"""Where stored messages and user events go after the store accepted them.

The store actor hands every committed message to the node's ``Bus``. On one node the bus
delivers in-process: room messages to the room's actor (which fans out in ``seq`` order), direct
messages and receipts to the recipient's links. In cluster mode the Redis store's script has
published each message as it stored it, so the ``ClusterBus`` publishes only receipts; each
node's listener then calls the same local delivery below, so the path from Redis to a socket is
the same as on one node.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol

from pykka import ActorDeadError

from actorim.runtime.messages import Publish

if TYPE_CHECKING:
    from actorim.protocol.wire import WireFrame
    from actorim.runtime.context import Directory, NodeContext
    from actorim.runtime.link import Link

__all__ = ["Bus", "LocalBus", "deliver_to_user"]


class Bus(Protocol):
    """How committed messages and per-user events reach the links that want them."""

    live_copies_lag: bool
    """Whether a message's live copy can reach a link after a store read returned the message
    already (it travels apart from the store): a reader of stored messages must then drop such
    late copies itself."""

    def to_room(self, room: str, seq: int, frame: WireFrame, origin: Link | None) -> None:
        """A room message with its ``seq``; ``origin`` (the sending link) does not get it."""

    def to_user(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Link | None = None
    ) -> None:
        """An event for every link of ``user`` but ``origin``; ``mid`` marks a direct message."""


def deliver_to_user(
    directory: Directory,
    user: str,
    frame: WireFrame,
    *,
    mid: str | None = None,
    origin: Link | None = None,
) -> int:
    """Offer ``frame`` to each local link of ``user``; a link still paging out its offline
    backlog holds direct messages back so that they follow the backlog instead of overtaking
    it. Returns how many links got it."""
    count = 0
    for link in directory.links_of(user):
        if link is origin:
            continue
        count += 1
        offline = link.offline
        if mid is None or offline is None or not offline.hold(mid, frame):
            link.send_frame(frame)
    return count


class LocalBus:
    """The single-node bus: straight to the room actors and the links in this process."""

    live_copies_lag = False
    """The store actor hands each message on as it commits it, before it answers any later
    read: no copy arrives after a read that returned its message."""

    def __init__(self, ctx: NodeContext) -> None:
        self._directory = ctx.directory
        self._ctx = ctx

    def to_room(self, room: str, seq: int, frame: WireFrame, origin: Link | None) -> None:
        state = self._directory.rooms.get(room)
        if state is None or state.actor is None:
            return  # nobody is in the room on this node; the message waits in the store
        # A room actor that is restarting misses this one; its members see the jump in seq
        # and repair it with join ... since.
        with contextlib.suppress(ActorDeadError):
            state.actor.tell(Publish(seq, frame, origin))

    def to_user(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Link | None = None
    ) -> None:
        count = deliver_to_user(self._directory, user, frame, mid=mid, origin=origin)
        if mid is not None and count:
            self._ctx.metrics.delivered.inc(count)
