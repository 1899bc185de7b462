"""``RoomActor``: one per room with members on this node; a thin shell around its ``RoomLog``.

The room's rules (ordering, gap hold and repair, a joining member's replay merge, membership
counting) are decided by the pure :class:`actorim.domain.roomlog.RoomLog`; this actor feeds it
what happens and carries out the effects it returns: fan a message out, tell the members of a
skipped gap, read the store, retry later. The log is part of the room's ``RoomState``, kept in
the node's directory, so a room actor that crashes is restarted with its members and sequence
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
way.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from actorim.domain.roomlog import (
    Deliver,
    Effect,
    Gap,
    JoinReplay,
    ReadLast,
    ReadSince,
    RetryLater,
    Skip,
    join_replay,
)
from actorim.domain.session import Left
from actorim.logs import context as log_context
from actorim.protocol.codec import Encoding
from actorim.protocol.errors import ErrorCode
from actorim.protocol.events import gap_frame, message_frame
from actorim.protocol.wire import WireFrame
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.faults import FaultInjectable
from actorim.runtime.link import Phase
from actorim.runtime.messages import (
    Call,
    Check,
    JoinRoom,
    LastSeq,
    LeaveRoom,
    Publish,
    RemoteEvent,
    Repair,
    RoomEvent,
    RoomIdle,
    Since,
    call_later,
)
from supervisors import GeventActor

if TYPE_CHECKING:
    from actorim.runtime.link import Link
    from actorim.runtime.roomstate import RoomState

__all__ = ["RoomActor"]

logger = logging.getLogger("actorim.room")

# How long a room waits before asking the store again for a gap it could not read (the store,
# or the cluster's Redis, was away). The messages after the gap wait with it while they fit
# the replay bounds; beyond them the room skips the gap and what waited (see
# actorim.domain.roomlog).
GAP_RETRY_S = 1.0


# The room's messages that wait while its last seq is read (timers and store answers do not).
_WAITS_FOR_LOAD = (Publish, JoinRoom, LeaveRoom, RoomEvent, RemoteEvent, Repair, Check)
# What a room of a stopping node drops (``NodeContext.stopping``): its connections are closed,
# so nothing is left to deliver, and what it would count in Redis goes with the node's records.
_DROPPED_WHEN_STOPPING = _WAITS_FOR_LOAD


class RoomActor(FaultInjectable, GeventActor):
    """See the module docstring."""

    fault_kind = "room"
    fault_subject = "the room"

    def __init__(self, state: RoomState, ctx: NodeContext) -> None:
        super().__init__()
        self.state = state
        self.ctx = ctx
        self._subscribed = False
        # Reading the room's last seq from the store: the room's messages wait here meanwhile.
        self._loading = False
        self._queued: list[Any] = []

    def __str__(self) -> str:
        return f"RoomActor {self.state.name!r}"

    def on_start(self) -> None:
        state = self.state
        if not self._subscribed:
            # Subscribed before the last seq is read: every later message reaches this node.
            self._subscribed = True
            self.ctx.broker.subscribe_room(state.name)
        state.actor = self.actor_ref
        if state.loaded:
            # A repair under way when the last actor failed: its read is lost, start again.
            self._carry_out(state.log.restarted())
        elif state.known_seq is not None:
            # Read by a connect's inbox just before: the room starts from it at once; the
            # connection reads every room's last seq once more after subscribing (one read
            # for all) and tells a room that missed something (Check).
            state.log.seq = max(state.log.seq, state.known_seq)
            state.loaded = True
        else:
            # Never waited for here: the supervisor and the router would wait with it.
            self._load()
        waiting, state.waiting = state.waiting, []
        for join in waiting:
            self.on_receive(join)

    def on_stop(self) -> None:
        if self.state.actor is self.actor_ref:
            self.state.actor = None
        if self._subscribed:
            self.ctx.broker.unsubscribe_room(self.state.name)

    def on_receive(self, message: Any) -> Any:
        if self.ctx.stopping and isinstance(message, _DROPPED_WHEN_STOPPING):
            return None
        if not self.state.loaded and isinstance(message, _WAITS_FOR_LOAD):
            self._queued.append(message)
            if not self._loading:
                self._load()
            return None
        if isinstance(message, Publish):
            # Nothing waiting behind it: its deliveries are written at once (``_fan_out``).
            self._carry_out(self.state.log.publish(message), quiet=not self.actor_inbox.queue)
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
        elif isinstance(message, Check):
            if message.seq > self.state.log.seq:
                self._carry_out(self.state.log.repair())
        elif isinstance(message, Call):
            return message.func(*message.args)
        else:
            return super().on_receive(message)
        return None

    # -- loading the last seq --------------------------------------------------------------------

    def _load(self) -> None:
        """Read the room's last seq from the store; its messages wait until the answer."""
        self._loading = True
        try:
            self.ctx.refs.tell_store(LastSeq(self.state.conv, self.actor_ref, self._loaded))
        except Unavailable as exc:
            self._loaded(None, exc)

    def _loaded(self, last: Any, error: BaseException | None) -> None:
        state = self.state
        self._loading = False
        queued, self._queued = self._queued, []
        if error is None:
            state.log.seq = max(state.log.seq, int(last))
            state.loaded = True
            for message in queued:
                self.on_receive(message)
            return
        # Nobody is in the room yet (joins wait for the load): refuse the joins that waited,
        # drop the messages (the next load's last seq covers them), and let the room go.
        logger.warning("could not read the last seq: %s", error, extra=log_context(room=state.name))
        for message in queued:
            if isinstance(message, JoinRoom):
                state.joins_handled += 1
                message.link.notify(Left(state.name, state))
                if message.command_id is None:
                    continue
                message.link.fail(
                    "join",
                    message.command_id,
                    ErrorCode.OVERLOADED,
                    f"room {state.name!r} could not read its history; retry in a moment",
                )
            elif isinstance(message, LeaveRoom) and message.command_id is not None:
                message.link.reply("leave", message.command_id, {})
        self._maybe_idle()

    # -- carrying out the log's effects ----------------------------------------------------------

    def _carry_out(self, effects: list[Effect[Publish]], *, quiet: bool = False) -> None:
        last = len(effects) - 1
        for at, effect in enumerate(effects):
            if isinstance(effect, Deliver):
                self._fan_out(effect.item, quiet=quiet and at == last)
            elif isinstance(effect, Skip):
                self._skip(effect.gap)
            elif isinstance(effect, ReadSince):
                self._read_since(effect.after)
            elif isinstance(effect, ReadLast):
                self._read_last()
            elif isinstance(effect, RetryLater):
                call_later(self.actor_ref, GAP_RETRY_S, self._retry_gap)

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
        self._carry_out(self.state.log.repair())

    def _retry_gap(self) -> None:
        self._carry_out(self.state.log.retry())

    def _read_since(self, after: int) -> None:
        """Read what was missed after ``after``, within the replay bounds."""
        config = self.ctx.config
        read = Since(
            self.state.conv,
            after,
            config.replay_max_messages,
            config.replay_max_bytes,
            self.actor_ref,
            self._gap_replayed,
        )
        try:
            self.ctx.refs.tell_store(read)
        except Unavailable as exc:
            self._gap_replayed(None, exc)

    def _gap_replayed(self, result: Any, error: BaseException | None) -> None:
        log = self.state.log
        if error is not None:
            effects = log.gap_read_failed()
            retrying = any(isinstance(effect, RetryLater) for effect in effects)
            logger.warning(
                "could not replay a gap%s: %s",
                f", retrying in {GAP_RETRY_S:.1f}s" if retrying else "",
                error,
                extra=log_context(room=self.state.name),
            )
        else:
            messages, complete = result
            replayed = [Publish(m.seq, message_frame(m), None) for m in messages if m.seq > log.seq]
            effects = log.gap_read(replayed, complete=complete)
        self._carry_out(effects)

    def _read_last(self) -> None:
        """The gap is beyond the replay bounds: find the latest seq, to skip up to it."""
        try:
            self.ctx.refs.tell_store(LastSeq(self.state.conv, self.actor_ref, self._gap_skipped))
        except Unavailable as exc:
            self._gap_skipped(None, exc)

    def _gap_skipped(self, last: Any, error: BaseException | None) -> None:
        self._carry_out(self.state.log.last_read(None if error is not None else int(last)))

    def _skip(self, gap: Gap) -> None:
        """Tell the members that the messages of ``gap`` are not coming: they fetch them with
        ``history``."""
        state = self.state
        logger.warning(
            "room %r: skipped seq %d..%d (beyond the replay bounds, or lost); members page them "
            "from history",
            state.name,
            gap.after + 1,
            gap.seq,
            extra=log_context(room=state.name),
        )
        frame = gap_frame(state.name, gap)
        log = state.log
        for link in state.members:
            held = log.holding(link)
            if held is not None:
                held.append((gap.seq, gap))
            else:
                link.send_frame(frame)

    def _fan_out(self, publish: Publish, *, quiet: bool = False) -> None:
        """Offer a message to every member but its sender.

        ``quiet``: nothing waits behind this message (the room's mailbox is empty and it is
        the last of its effects), so nothing would be batched with it: each member's copy is
        written at once when the member has nothing queued (``Link.offer_now``). Otherwise
        the copies are queued and the flush pass writes what each member got in one write.
        """
        state = self.state
        origin = publish.origin
        frame = publish.frame
        recovering = state.log.recovering
        self.ctx.metrics.observe_delivery(
            frame.obj["ts"], len(state.members) - (origin in state.members)
        )
        if recovering:
            for link in state.members:
                if link is origin:
                    continue
                held = recovering.get(link)
                if held is not None:
                    held.append((publish.seq, publish))
                else:
                    link.send_frame(frame)
        else:
            # The hot loop of a fan-out: one offer per member, the bytes looked up once for the
            # encoding nearly every member speaks.
            binary = frame.bytes_for(Encoding.MSGPACK)
            closed = Phase.CLOSED
            msgpack = Encoding.MSGPACK
            for link in state.members:
                if link is origin or link.session.phase is closed:
                    continue
                if link.encoding is not msgpack:
                    link.send_frame(frame)
                elif quiet:
                    link.offer_now(binary)
                else:
                    link.outbox.offer(binary)

    # -- membership ------------------------------------------------------------------------------

    def _join(self, join: JoinRoom) -> None:
        state = self.state
        link = join.link
        state.joins_handled += 1
        user = link.user
        assert user is not None
        members: list[str] | None = None
        if link not in state.members:
            if len(state.members) >= self.ctx.config.max_members_per_room:
                link.notify(Left(state.name, state))
                if join.command_id is not None:
                    link.fail(
                        "join",
                        join.command_id,
                        ErrorCode.FORBIDDEN,
                        f"room {state.name!r} is full "
                        f"({self.ctx.config.max_members_per_room} connections)",
                    )
                self._maybe_idle()
                return
            first = state.log.join(link, user)
            members = self._membership_changed(user, +1, first_or_last=bool(first))
        if members is None:
            members = self.ctx.broker.members(state.name)
        if not state.heard.seeded:
            state.heard.reset(dict.fromkeys(state.users if members is None else members, "joined"))
        listed, total = self._listed(members)
        reply: dict[str, Any] = {
            "room": state.name,
            "seq": state.seq,
            "epoch": self.ctx.epoch,
            "members": listed,
            "members_total": total,
            "title": join.title,
            "topic": join.topic,
        }
        if not join.lasting:
            reply["lasting"] = False
        if join.role != "member":
            reply["role"] = join.role
        decision = join_replay(
            join.since,
            seq=state.seq,
            same_epoch=join.epoch is None or join.epoch == self.ctx.epoch,
            # More missed than a replay may hold, by the numbers alone: not worth reading.
            max_messages=self.ctx.config.replay_max_messages,
        )
        if decision is JoinReplay.REPLAY:
            assert join.since is not None
            self._replay(link, join.command_id, join.since, reply)
            return
        if decision is not JoinReplay.NONE:
            reply["recovered"] = decision is JoinReplay.RECOVERED
        if join.command_id is not None:
            link.reply("join", join.command_id, reply)
        elif decision is JoinReplay.REFUSED and join.since is not None:
            self._gap_for(link, join.since, state.seq)

    def _replay(
        self, link: Link, command_id: int | None, since: int, reply: dict[str, Any]
    ) -> None:
        state = self.state
        state.log.hold_for(link)
        done = partial(self._replayed, link, command_id, reply, since=since)
        config = self.ctx.config
        # The store stops reading at the byte bound: a gap of a thousand large messages, which
        # is refused anyway, is never held in memory whole.
        read = Since(
            state.conv,
            since,
            config.replay_max_messages,
            config.replay_max_bytes,
            self.actor_ref,
            done,
        )
        try:
            self.ctx.refs.tell_store(read)
        except Unavailable as exc:
            self._replayed(link, command_id, reply, None, exc, since=since)

    def _replayed(
        self,
        link: Link,
        command_id: int | None,
        reply: dict[str, Any],
        result: Any,
        error: BaseException | None,
        *,
        since: int,
    ) -> None:
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
                # Only what the room has fanned out itself: a stored message above its seq has
                # not reached the room yet (in a cluster the store is read straight from Redis,
                # the room hears over pub/sub a moment later); when it does, it goes to every
                # member, this one too, and replaying it now would deliver it twice.
                fanned = self.state.seq
                kept = [i for i, stored in enumerate(messages) if stored.seq <= fanned]
                frames = [frames[i] for i in kept]
                last = max([last, *(messages[i].seq for i in kept)])
            else:
                frames = []
        held = self.state.log.replayed(link, last)
        if held is None:
            return  # it left meanwhile
        # Not recovered: nothing is replayed, and the reply's seq is the latest, so the client
        # knows the gap to fill with history: after its since, up to and including seq.
        reply["recovered"] = recovered
        if command_id is not None:
            link.reply("join", command_id, reply)
        elif not recovered:
            self._gap_for(link, since, last)
        for frame in frames:
            link.send_frame(frame)
        for item in held:
            link.send_frame(
                gap_frame(self.state.name, item) if isinstance(item, Gap) else item.frame
            )

    def _gap_for(self, link: Link, since: int, seq: int) -> None:
        """A subscription resumed from ``since`` (no reply to say ``recovered: false``): the
        messages it cannot replay are announced as a gap, which clients page from history."""
        if since < seq:
            link.send_frame(gap_frame(self.state.name, Gap(since, seq)))

    def _leave(self, leave: LeaveRoom) -> None:
        state = self.state
        link = leave.link
        user = link.user
        assert user is not None
        last = state.log.leave(link, user)
        if last is not None:
            self._membership_changed(user, -1, first_or_last=last)
        if leave.command_id is not None:
            link.reply("leave", leave.command_id, {})
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

    def _listed(self, members: list[str] | None) -> tuple[list[str], int]:
        """The members a join reply lists (at most ``member_list_limit``) and their total;
        ``members`` is the broker's list, or None for this room's own users. Only the listed
        ones are copied: a join costs the same in a room of ten thousand as in one of ten."""
        limit = self.ctx.config.member_list_limit
        if members is not None:
            return members[:limit], len(members)
        users = self.state.users
        return list(itertools.islice(users, limit)), len(users)

    def _remote_member_event(self, event: RemoteEvent) -> None:
        """A member event from Redis (this node's own changes come back this way too): told to
        the members once, however often it arrives."""
        user, what = event.user, event.frame.obj.get("state")
        if user is None or not isinstance(what, str) or not self.state.heard.hear(user, what):
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
                self.ctx.refs.tell_router(RoomIdle(state.name, state.joins_handled, state))
