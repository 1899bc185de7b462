"""A connection's side of lasting membership: asking the store, and subscribing the connection
to the rooms its user belongs to.

Membership belongs to the user and lives in the store; a connection *subscribes* to each of
its user's rooms (the room actor's member list, as a join did before) so that it receives
their events. It subscribes to all of them at ``connect`` (one router ask for every room, one
tell to each room, no reply awaited), and to one more or one less when another device of the
user joins or leaves: that device's ``member`` event about the user themself reaches every
connection of the user through the user's delivery path, on every node, and the delivery
turns it into a :class:`MembershipChanged` notice for each connection (applied by its actor).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gevent.event import AsyncResult
from pykka import ActorDeadError, Timeout

from actorim.protocol.errors import CommandError, ErrorCode
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.messages import Check, JoinRoom, LeaveRoom, RoomsFor, RoomsRequest
from actorim.runtime.replies import ConnectionReplies

if TYPE_CHECKING:
    from actorim.runtime.link import Link
    from actorim.runtime.roomstate import RoomState
    from actorim.store.base import Store

__all__ = [
    "MembershipChanged",
    "RouterBusy",
    "StoreBusy",
    "apply_membership",
    "ask_router",
    "ask_store",
    "subscribe",
    "tell_join",
    "unsubscribe",
]

# How long a connection waits for a membership or inbox answer from the store before
# answering overloaded; the store answers in milliseconds unless it is restarting.
STORE_TIMEOUT_S = 10.0

# How long a connection waits for the router (registering, finding rooms) before answering
# overloaded. The router answers in microseconds unless it is restarting.
ROUTER_TIMEOUT_S = 5.0


class RouterBusy(Unavailable):
    """The router did not answer within ``ROUTER_TIMEOUT_S``: its mailbox is deep (a
    reconnect storm). What was asked may still be done when it gets there."""


class StoreBusy(Unavailable):
    """The store did not answer within ``STORE_TIMEOUT_S``: its queue is deep (a reconnect
    storm), unlike a store whose link is down, which answers Unavailable at once."""


@dataclass(frozen=True, slots=True)
class MembershipChanged:
    """Told to each of a user's connections: the user joined (or left) ``room`` on another
    device; the connection subscribes to it (or unsubscribes)."""

    room: str
    joined: bool
    since: int | None = None
    """The room's latest seq when the user joined (None: not known): what follows it reaches
    the connection, replayed if it came before the subscription."""


class _Waiter:
    """A ``ReplyTo`` that runs the store's answer at once, for a connection waiting on it."""

    def tell(self, message: Any) -> None:
        message.func(*message.args)


def ask_store(ctx: NodeContext, run: Callable[[Store], Any], what: str) -> Any:
    """Run ``run(store)`` on the store and wait for its answer (the connection's greenlet
    waits; every other actor runs meanwhile). Unavailable when the store is down or slow."""
    result: AsyncResult = AsyncResult()

    def done(value: Any, error: BaseException | None) -> None:
        result.set((value, error))

    ctx.refs.tell_store(RoomsRequest(run, _Waiter(), done))
    if not result.wait(STORE_TIMEOUT_S):
        raise StoreBusy(f"the store did not answer in time to {what}")
    value, error = result.get()
    if isinstance(error, Unavailable):
        raise error
    if error is not None:
        raise CommandError(ErrorCode.INTERNAL, f"could not {what}; retry")
    return value


def ask_router(ctx: NodeContext, message: Any) -> Any:
    """Ask the router and wait for its answer (it answers in microseconds unless it is
    restarting: then Unavailable, or swamped: then RouterBusy); a refusal it answers with is
    raised."""
    router = ctx.refs.router
    if router is None:
        raise Unavailable("the router is restarting")
    try:
        answer = router.ask(message, timeout=ROUTER_TIMEOUT_S)
    except ActorDeadError:
        raise Unavailable("the router is restarting") from None
    except Timeout:
        raise RouterBusy("the server is busy") from None
    if isinstance(answer, Exception):
        raise answer
    return answer


def subscribe(
    ctx: NodeContext, link: Link, rooms: Sequence[tuple[str, int | None, int | None]]
) -> None:
    """Subscribe ``link`` to each of ``rooms`` it is not subscribed to yet: (name, the seq the
    connection saw there, whose successors are replayed, and the room's latest seq as just
    read, which a room not running starts from); nothing is answered."""
    wanted = [room for room in rooms if room[0] not in link.rooms]
    if not wanted:
        return
    names = tuple(name for name, _, _ in wanted)
    states = ask_router(ctx, RoomsFor(names, tuple(latest for _, _, latest in wanted)))
    for (_, since, _), state in zip(wanted, states, strict=True):
        join = JoinRoom(link, None, since=since, epoch=ctx.epoch if since is not None else None)
        tell_join(state, join)
    started = [
        (state, latest)
        for (_, _, latest), state in zip(wanted, states, strict=True)
        if latest is not None and state.known_seq is not None
    ]
    if started:
        _check_after(ctx, link, started)


def _check_after(ctx: NodeContext, link: Link, rooms: list[tuple[RoomState, int]]) -> None:
    """Rooms subscribed knowing the latest seq the inbox read: read their last seqs again (one
    read for all, now that they are subscribed) and tell each one that missed a message in
    between."""
    convs = [state.conv for state, _ in rooms]

    def done(seqs: Any, error: BaseException | None) -> None:
        if error is not None:
            return  # the next message shows the room its gap
        for state, latest in rooms:
            if seqs[state.conv] <= latest:
                continue
            if state.actor is None and state.starting:
                state.waiting.append(Check(seqs[state.conv]))  # the actor takes it as it starts
            elif state.actor is not None:
                with contextlib.suppress(ActorDeadError):
                    state.actor.tell(Check(seqs[state.conv]))

    with contextlib.suppress(Unavailable):
        ctx.refs.tell_store(
            RoomsRequest(lambda store: store.last_seqs(convs), ConnectionReplies(link), done)
        )


def tell_join(state: RoomState, join: JoinRoom) -> bool:
    """Count ``join.link`` in the room ``state`` and hand the join to the room's actor (or
    park it while the actor starts); False, and not counted in, when the actor is gone."""
    link = join.link
    link.session.joining(state.name, state)
    if state.starting and state.actor is None:
        state.waiting.append(join)  # the room's actor takes it when it starts
        return True
    try:
        assert state.actor is not None
        state.actor.tell(join)
    except (ActorDeadError, AssertionError):
        link.session.left(state.name, state)
        return False
    return True


def unsubscribe(link: Link, room: str) -> bool:
    """Unsubscribe ``link`` from ``room``; False when it was not subscribed."""
    state = link.session.left(room)
    if state is None:
        return False
    if state.actor is not None:
        with contextlib.suppress(ActorDeadError):
            state.actor.tell(LeaveRoom(link))
    return True


def apply_membership(ctx: NodeContext, link: Link, change: MembershipChanged) -> None:
    """Another device of the user joined or left ``change.room``: follow it (a room the
    connection's token does not allow stays unsubscribed)."""
    identity = link.identity
    if identity is None:
        return
    if not change.joined:
        unsubscribe(link, change.room)
    elif identity.may_join(change.room):
        with contextlib.suppress(Unavailable):
            subscribe(ctx, link, [(change.room, change.since, change.since)])
