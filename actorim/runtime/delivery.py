"""``NodeDelivery``: the fan-out on this node that a broker hands what it carries to.

Room messages go to the room's actor (which fans out in ``seq`` order), direct messages and
per-user events to the user's links, member events announced by the cluster to the room's actor,
presence events to the presence tracker, and token revocations to the node's revocation list
(closing the connections they name). The single-node broker calls it as it publishes;
in a cluster the node's Redis listener calls it with what it hears, so the path from the broker
to a socket is the same either way.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from pykka import ActorDeadError

from actorim.runtime.membership import MembershipChanged
from actorim.runtime.messages import Publish, RemoteEvent, RoomEvent
from actorim.runtime.moderation import notice_of
from actorim.runtime.tokens import apply_revocation

if TYPE_CHECKING:
    from actorim.domain.tokens import Revocation
    from actorim.protocol.wire import WireFrame
    from actorim.runtime.context import Directory, NodeContext
    from actorim.runtime.link import Link

__all__ = ["NodeDelivery", "deliver_to_user"]


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
    change = _own_membership(user, frame)
    sanction = notice_of(user, frame)
    for link in directory.links_of(user):
        if link is origin:
            continue
        count += 1
        if change is not None:
            link.notify(change)
        if sanction is not None:
            link.notify(sanction)
        offline = link.offline
        if mid is None or offline is None or not offline.hold(mid, frame):
            link.send_frame(frame)
    return count


def _own_membership(user: str, frame: WireFrame) -> MembershipChanged | None:
    """The change a ``member`` event about ``user`` themself, sent to ``user``, asks of their
    connections: the user joined or left the room on another device."""
    obj = frame.obj
    if obj.get("t") != "member" or obj.get("user") != user:
        return None
    room, state, seq = obj.get("room"), obj.get("state"), obj.get("seq")
    if not isinstance(room, str) or state not in ("joined", "left"):
        return None
    since = seq if type(seq) is int and seq >= 0 else None
    return MembershipChanged(room, state == "joined", since)


class NodeDelivery:
    """``ports.Delivery`` for this node's room actors and links."""

    def __init__(self, ctx: NodeContext) -> None:
        self._directory = ctx.directory
        self._ctx = ctx

    def room_message(self, room: str, seq: int, frame: WireFrame, origin: Link | None) -> None:
        state = self._directory.rooms.get(room)
        if state is not None and state.actor is None and state.starting:
            # Heard between the starting actor's subscription and its registering: it takes
            # the message as it starts (its log drops it if its start read it already).
            state.waiting.append(Publish(seq, frame, origin))
            return
        if state is None or state.actor is None:
            return  # nobody is in the room on this node; the message waits in the store
        # A room actor that is restarting misses this one; its members see the jump in seq
        # and repair it with join ... since.
        with contextlib.suppress(ActorDeadError):
            state.actor.tell(Publish(seq, frame, origin))

    def room_event(self, room: str, frame: WireFrame, origin: Link | None) -> None:
        state = self._directory.rooms.get(room)
        if state is None or state.actor is None:
            return  # nobody is in the room on this node
        with contextlib.suppress(ActorDeadError):
            state.actor.tell(RoomEvent(frame, origin))

    def user_event(
        self, user: str, frame: WireFrame, *, mid: str | None = None, origin: Link | None = None
    ) -> None:
        count = deliver_to_user(self._directory, user, frame, mid=mid, origin=origin)
        if mid is not None and count:
            self._ctx.metrics.delivered.inc(count)

    def member_event(self, room: str, frame: WireFrame, user: str | None) -> None:
        state = self._directory.rooms.get(room)
        if state is None or state.actor is None:
            return  # nobody is in the room on this node
        with contextlib.suppress(ActorDeadError):
            state.actor.tell(RemoteEvent(frame, user))

    def presence_event(self, frame: WireFrame, user: str | None) -> None:
        presence = self._ctx.refs.presence
        if presence is None:
            return  # the tracker is restarting: its watchers here miss this change
        with contextlib.suppress(ActorDeadError):
            presence.tell(RemoteEvent(frame, user))

    def revoked(self, revocation: Revocation) -> None:
        apply_revocation(self._ctx, revocation)

    def disconnect(self, user: str, session: str | None, code: int, reason: str) -> None:
        for link in self._directory.links_of(user):
            if session is None or link.session.token == session:
                link.request_close(code, reason)

    def local_origin(self, conn_id: int) -> Link | None:
        return self._directory.links.get(conn_id)
