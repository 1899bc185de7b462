"""``RoomActor``: one per room with members on this node; fans messages out in ``seq`` order.

The room's lasting state (members, users, the latest ``seq``) is a ``RoomState`` kept in the
node's directory, so a room actor that crashes is restarted with its members and sequence
intact. Fan-out offers one shared, once-encoded frame to every member's outbox: no per-member
encoding and no per-member message to another actor.

A member that joins with ``since`` first gets what it missed, read from the store, then the
live messages that arrived meanwhile (held back until the replay is done), so it sees the room
in ``seq`` order with no gap. A gap larger than the replay bounds (``replay_max_messages``,
``replay_max_bytes``) is not replayed at all: queued at once it would overflow the member's
outbox and close it with 1013, at every retry. The reply says ``recovered: false`` with the
latest ``seq`` instead, and the client fills the gap from ``history`` a page at a time.

A gap in the room's own fan-out (Redis was away, or this actor restarted and missed publishes)
is repaired for every member at once, within the same bounds; a larger one is skipped with a
``gap`` event that names the missed seqs, and the clients fill it from ``history`` in the same
way (see :mod:`actorim.runtime.gaps`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pykka import ActorDeadError

from actorim.domain.heard import Heard
from actorim.domain.messages import room_conv
from actorim.logs import context as log_context
from actorim.protocol.codec import Encoding
from actorim.protocol.errors import ErrorCode
from actorim.protocol.events import message_frame
from actorim.protocol.wire import WireFrame
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.faults import FaultInjectable
from actorim.runtime.gaps import Gap, fits, in_order, union
from actorim.runtime.link import Phase
from actorim.runtime.messages import (
    Call,
    JoinRoom,
    LeaveRoom,
    Publish,
    RemoteEvent,
    Repair,
    RoomEvent,
    call_later,
)
from actorim.runtime.store import query, query_wait
from supervisors import GeventActor

if TYPE_CHECKING:
    from pykka import ActorRef

    from actorim.runtime.link import Link

__all__ = ["RoomActor", "RoomIdle", "RoomState"]

logger = logging.getLogger("actorim.room")

# How long a room waits before asking the store again for a gap it could not read (the store,
# or the cluster's Redis, was away). The messages after the gap wait with it while they fit
# the replay bounds; beyond them the room skips the gap and what waited (see actorim.runtime.gaps).
GAP_RETRY_S = 1.0


@dataclass(eq=False)
class RoomState:
    """What a room knows that must survive its actor's restart."""

    name: str
    members: dict[Link, None] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    seq: int = 0
    loaded: bool = False
    actor: ActorRef[Any] | None = None
    generation: int = 0
    joins_forwarded: int = 0
    joins_handled: int = 0
    recovering: dict[Link, list[tuple[int, WireFrame]]] = field(default_factory=dict)
    repairing: list[Publish] | None = None
    replaying: bool = False
    # In a cluster: who this node's members were told is in the room ("joined" / "left").
    heard: Heard[str, str] = field(default_factory=lambda: Heard(absent="left"))

    @property
    def conv(self) -> str:
        return room_conv(self.name)


@dataclass(frozen=True, slots=True)
class RoomIdle:
    """To the router: the room has no members left after handling ``joins_handled`` joins."""

    name: str
    joins_handled: int
    state: RoomState


class RoomActor(FaultInjectable, GeventActor):
    """See the module docstring."""

    fault_kind = "room"
    fault_subject = "the room"

    def __init__(self, state: RoomState, ctx: NodeContext) -> None:
        super().__init__()
        self.state = state
        self.ctx = ctx
        self._subscribed = False

    def __str__(self) -> str:
        return f"RoomActor {self.state.name!r}"

    def on_start(self) -> None:
        state = self.state
        if not self._subscribed:
            # Subscribed before the last seq is read: every later message reaches this node.
            self._subscribed = True
            self.ctx.broker.subscribe_room(state.name)
        if not state.loaded:
            state.seq = max(state.seq, query_wait(self.ctx, "last_seq", state.conv))
            state.loaded = True
        state.actor = self.actor_ref
        if state.repairing is not None:  # a repair was under way when the last actor failed
            held, state.repairing = state.repairing, None
            state.replaying = False
            for publish in held:
                self._publish(publish)

    def on_stop(self) -> None:
        if self.state.actor is self.actor_ref:
            self.state.actor = None
        if self._subscribed:
            self.ctx.broker.unsubscribe_room(self.state.name)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Publish):
            self._publish(message)
        elif isinstance(message, JoinRoom):
            self._join(message)
        elif isinstance(message, LeaveRoom):
            self._leave(message)
        elif isinstance(message, RoomEvent):
            for member in self.state.members:  # ephemeral: no seq, nothing to order or repair
                if member is not message.origin:
                    member.send_frame(message.frame)
        elif isinstance(message, RemoteEvent):
            self._remote_member_event(message)
        elif isinstance(message, Repair):
            self._repair()
        elif isinstance(message, Call):
            return message.func(*message.args)
        else:
            return super().on_receive(message)
        return None

    # -- fan-out ---------------------------------------------------------------------------------

    def _publish(self, publish: Publish) -> None:
        state = self.state
        if publish.seq <= state.seq:
            return  # fanned out already (a replay and the live copy of one message)
        if state.repairing is not None:
            state.repairing.append(publish)
            return
        if publish.seq > state.seq + 1:
            # Messages were missed (Redis was away, or this actor was restarting): replay them
            # from the store first, holding this one and what follows until the gap is closed.
            state.repairing = [publish]
            self._replay_gap()
            return
        self._fan_out(publish)

    def _repair(self) -> None:
        """Replay what the store has beyond the last seq fanned out (after the link is back),
        and announce the arrivals and departures the node missed meanwhile."""
        broker = self.ctx.broker
        broker.resync_members(self.state.name, self.state.users)
        members = broker.members(self.state.name)
        if members is not None:  # the broker counts members beyond this node's: who changed?
            changes = self.state.heard.reconcile(dict.fromkeys(members, "joined"))
            if len(self.state.members) <= self.ctx.config.member_events_limit:
                for user, what in changes:
                    self._announce(user, what)
        if self.state.repairing is None:
            self.state.repairing = []
            self._replay_gap()
        elif not self.state.replaying:  # an earlier replay failed: try again now
            self._replay_gap()

    def _replay_gap(self) -> None:
        """Read what was missed after the last seq fanned out, within the replay bounds."""
        state = self.state
        state.replaying = True
        me = self.actor_ref
        config = self.ctx.config

        def done(result: Any, error: BaseException | None) -> None:
            with contextlib.suppress(ActorDeadError):
                me.tell(Call(self._gap_replayed, (result, error)))

        bounds = {"limit": config.replay_max_messages, "max_bytes": config.replay_max_bytes}
        try:
            query(self.ctx, "since", state.conv, state.seq, done=done, **bounds)
        except Unavailable as exc:
            self._gap_replayed(None, exc)

    def _retry_gap(self) -> None:
        if self.state.repairing is not None and not self.state.replaying:
            self._replay_gap()

    def _fits(self, publishes: list[Publish]) -> bool:
        """Whether ``publishes`` may go to every member at once (the replay bounds)."""
        config = self.ctx.config
        return fits(
            publishes, max_messages=config.replay_max_messages, max_bytes=config.replay_max_bytes
        )

    def _gap_replayed(self, result: Any, error: BaseException | None) -> None:
        state = self.state
        state.replaying = False
        held = state.repairing or []
        if error is not None:
            if self._fits(held):
                logger.warning(
                    "could not replay a gap, retrying in %.1fs: %s",
                    GAP_RETRY_S,
                    error,
                    extra=log_context(room=state.name),
                )
                call_later(self.actor_ref, GAP_RETRY_S, self._retry_gap)
                return
            # Too much has waited behind the gap to go out at once: skip all of it.
            logger.warning("could not replay a gap: %s", error, extra=log_context(room=state.name))
            state.repairing = None
            self._skip_to(max(publish.seq for publish in held))
            return
        messages, complete = result
        replayed = [Publish(m.seq, message_frame(m), None) for m in messages if m.seq > state.seq]
        repair = union(replayed, held)
        if complete and self._fits(repair):
            state.repairing = None
            self._fan_out_in_order(repair)
        else:
            self._skip_gap()

    def _skip_gap(self) -> None:
        """The gap is beyond the replay bounds: find the latest seq, to skip up to it."""
        state = self.state
        state.replaying = True
        me = self.actor_ref

        def done(result: Any, error: BaseException | None) -> None:
            with contextlib.suppress(ActorDeadError):
                me.tell(Call(self._gap_skipped, (result, error)))

        try:
            query(self.ctx, "last_seq", state.conv, done=done)
        except Unavailable as exc:
            self._gap_skipped(None, exc)

    def _gap_skipped(self, last: Any, error: BaseException | None) -> None:
        state = self.state
        state.replaying = False
        held = state.repairing or []
        if error is not None:
            if not held:
                call_later(self.actor_ref, GAP_RETRY_S, self._retry_gap)
                return
            last = 0
        state.repairing = None
        # Everything that waited is at or below the store's latest: members page it too. What
        # is published later has a higher seq and goes out live.
        self._skip_to(max([last, *(publish.seq for publish in held)]))

    def _fan_out_in_order(self, publishes: list[Publish]) -> None:
        for step in in_order(self.state.seq, publishes):
            if isinstance(step, Gap):
                self._skip_to(step.seq)
            else:
                self._fan_out(step)

    def _skip_to(self, seq: int) -> None:
        """Tell the members that the messages after the last seq fanned out, up to and
        including ``seq``, are not coming: they fetch them with ``history``."""
        state = self.state
        if seq <= state.seq:
            return
        gap = Gap(state.seq, seq)
        logger.warning(
            "room %r: skipped seq %d..%d (beyond the replay bounds, or lost); members page them "
            "from history",
            state.name,
            gap.after + 1,
            gap.seq,
            extra=log_context(room=state.name),
        )
        state.seq = seq
        frame = gap.frame(state.name)
        for link in state.members:
            held = state.recovering.get(link)
            if held is not None:
                held.append((seq, frame))
            else:
                link.send_frame(frame)

    def _fan_out(self, publish: Publish) -> None:
        state = self.state
        state.seq = publish.seq
        origin = publish.origin
        frame = publish.frame
        recovering = state.recovering
        self.ctx.metrics.observe_delivery(
            frame.obj["ts"], len(state.members) - (origin in state.members)
        )
        if recovering:
            for link in state.members:
                if link is origin:
                    continue
                held = recovering.get(link)
                if held is not None:
                    held.append((publish.seq, frame))
                else:
                    link.send_frame(frame)
        else:
            # The hot loop of a fan-out: one offer per member, the bytes looked up once for the
            # encoding nearly every member speaks.
            binary = frame.bytes_for(Encoding.MSGPACK)
            closed = Phase.CLOSED
            for link in state.members:
                if link is origin or link.phase is closed:
                    continue
                if link.encoding is Encoding.MSGPACK:
                    link.outbox.offer(binary)
                else:
                    link.send_frame(frame)

    # -- membership ------------------------------------------------------------------------------

    def _join(self, join: JoinRoom) -> None:
        state = self.state
        link = join.link
        state.joins_handled += 1
        user = link.user
        assert user is not None
        if link not in state.members:
            if len(state.members) >= self.ctx.config.max_members_per_room:
                link.rooms.pop(state.name, None)
                link.fail(
                    join.command_id,
                    ErrorCode.FORBIDDEN,
                    f"room {state.name!r} is full "
                    f"({self.ctx.config.max_members_per_room} connections)",
                )
                self._maybe_idle()
                return
            state.members[link] = None
            count = state.users.get(user, 0)
            state.users[user] = count + 1
            members = self._membership_changed(user, +1, first_or_last=count == 0)
        else:
            members = None
        if members is None:
            members = self._members()
        if not state.heard.seeded:
            state.heard.reset(dict.fromkeys(members, "joined"))
        reply: dict[str, Any] = {
            "room": state.name,
            "seq": state.seq,
            "epoch": self.ctx.epoch,
            "members": members[: self.ctx.config.member_list_limit],
            "members_total": len(members),
        }
        since = join.since
        if since is None:
            link.reply(join.command_id, reply)
            return
        if (
            (join.epoch is not None and join.epoch != self.ctx.epoch)
            or since > state.seq
            # More missed than a replay may hold, by the numbers alone: not worth reading.
            or state.seq - since > self.ctx.config.replay_max_messages
        ):
            reply["recovered"] = False
            link.reply(join.command_id, reply)
            return
        if since == state.seq:
            reply["recovered"] = True
            link.reply(join.command_id, reply)
            return
        self._replay(link, join.command_id, since, reply)

    def _replay(self, link: Link, command_id: int, since: int, reply: dict[str, Any]) -> None:
        state = self.state
        state.recovering[link] = []
        me = self.actor_ref

        def done(result: Any, error: BaseException | None) -> None:
            me.tell(Call(self._replayed, (link, command_id, reply, result, error)))

        config = self.ctx.config
        # The store stops reading at the byte bound: a gap of a thousand large messages, which
        # is refused anyway, is never held in memory whole.
        bounds = {"limit": config.replay_max_messages, "max_bytes": config.replay_max_bytes}
        try:
            query(self.ctx, "since", state.conv, since, done=done, **bounds)
        except Unavailable as exc:
            self._replayed(link, command_id, reply, None, exc)

    def _replayed(
        self,
        link: Link,
        command_id: int,
        reply: dict[str, Any],
        result: Any,
        error: BaseException | None,
    ) -> None:
        held = self.state.recovering.pop(link, [])
        if link not in self.state.members:
            return
        last = reply["seq"]
        frames: list[WireFrame] = []
        recovered = False
        if error is not None:
            logger.warning("replay failed: %s", error, extra=log_context(room=self.state.name))
        else:
            messages, complete = result
            if complete:
                frames = [message_frame(stored) for stored in messages]
                size = sum(len(frame.bytes_for(link.encoding)) for frame in frames)
                # Too large to queue at once: the client pages history instead.
                recovered = size <= self.ctx.config.replay_max_bytes
            if recovered:
                last = max([last, *(stored.seq for stored in messages)])
            else:
                frames = []
        # Not recovered: nothing is replayed, and the reply's seq is the latest, so the client
        # knows the gap to fill with history: after its since, up to and including seq.
        reply["recovered"] = recovered
        link.reply(command_id, reply)
        for frame in frames:
            link.send_frame(frame)
        for seq, frame in held:
            if seq > last:
                link.send_frame(frame)

    def _leave(self, leave: LeaveRoom) -> None:
        state = self.state
        link = leave.link
        if link in state.members:
            del state.members[link]
            state.recovering.pop(link, None)
            user = link.user
            assert user is not None
            count = state.users.get(user, 0) - 1
            if count <= 0:
                state.users.pop(user, None)
            else:
                state.users[user] = count
            self._membership_changed(user, -1, first_or_last=count <= 0)
        if leave.command_id is not None:
            link.reply(leave.command_id, {})
        self._maybe_idle()

    def _membership_changed(
        self, user: str, delta: int, *, first_or_last: bool
    ) -> list[str] | None:
        """Count a connection of ``user`` in or out; announce a user's arrival or departure.

        The broker counts it; a broker that counts across nodes (a cluster's, in Redis)
        announces once per user for all of them (its event comes back here too) and answers
        the members everywhere; otherwise the room announces to its members itself, once per
        user, and returns None to use its own members.
        """
        membership = self.ctx.broker.member_adjust(self.state.name, user, delta)
        limit = self.ctx.config.member_events_limit
        if not membership.announced and first_or_last and len(self.state.users) <= limit:
            self._announce(user, "joined" if delta > 0 else "left")
        return membership.members

    def _members(self) -> list[str]:
        members = self.ctx.broker.members(self.state.name)
        if members is not None:
            return members
        return list(self.state.users)

    def _remote_member_event(self, event: RemoteEvent) -> None:
        """A member event from Redis (this node's own changes come back this way too): told to
        the members once, however often it arrives."""
        user = event.user
        if user is None or not self.state.heard.hear(user, event.frame.obj.get("state")):
            return
        if len(self.state.members) <= self.ctx.config.member_events_limit:
            self._tell_members(user, event.frame)

    def _announce(self, user: str, what: str) -> None:
        frame = WireFrame({"t": "member", "room": self.state.name, "user": user, "state": what})
        self._tell_members(user, frame)

    def _tell_members(self, user: str, frame: WireFrame) -> None:
        for member in self.state.members:
            if member.user != user:
                member.send_frame(frame)

    def _maybe_idle(self) -> None:
        state = self.state
        if not state.members:
            with contextlib.suppress(Unavailable):
                self.ctx.refs.tell("router", RoomIdle(state.name, state.joins_handled, state))
