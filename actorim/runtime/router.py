"""``RouterActor``: registers authenticated links by user and finds (or starts) room actors.

Lookups for delivery read the node's directory directly; what goes through this actor is every
*change* to it that needs a decision made in one place: the per-user connection limit, starting
a room's actor exactly once, and stopping an empty room's actor without racing a join.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Any

import gevent
from pykka import ActorDeadError
from pykka.messages import ProxyCall

from actorim.domain.session import Left
from actorim.protocol.errors import ErrorCode
from actorim.protocol.frames import CloseCode
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.link import Link
from actorim.runtime.messages import (
    Call,
    JoinRoom,
    Register,
    Repair,
    RepairRooms,
    RoomFor,
    RoomIdle,
    RoomsFor,
    Unregister,
)
from actorim.runtime.room import RoomActor
from actorim.runtime.roomstate import RoomState
from supervisors import ChildSpec, GeventActor, Restart

__all__ = ["RouterActor"]

logger = logging.getLogger("actorim.router")

# How often a room start's outcome asks again for a router while the router is restarting (a
# supervisor restart takes microseconds to milliseconds).
_ROUTER_BACK_POLL_S = 0.05

# How long a room actor's start may take before the joins waiting for it are refused. The
# router never waits for it (a greenlet of its own does); a room's on_start does no I/O, and
# the supervisor's own wait for it (ChildSpec.start_timeout, 5 s) ends first.
ROOM_START_TIMEOUT_S = 10.0

_generations = itertools.count(1)


class RouterActor(GeventActor):
    """See the module docstring."""

    def __init__(self, ctx: NodeContext) -> None:
        super().__init__()
        self.ctx = ctx

    def on_start(self) -> None:
        self.ctx.refs.router = self.actor_ref

    def on_stop(self) -> None:
        self.ctx.refs.router = None

    def on_failure(self, *_exc: object) -> None:
        self.ctx.refs.router = None

    def on_receive(self, message: Any) -> Any:
        # Refusals are answers, not failures: they are returned, never raised, so that an ask
        # that is refused does not crash the router.
        if isinstance(message, RoomFor):
            try:
                return self._room_for(message.name)
            except Unavailable as exc:
                return exc
        if isinstance(message, RoomsFor):
            seqs = message.seqs or (None,) * len(message.names)
            try:
                return [
                    self._room_for(name, seq) for name, seq in zip(message.names, seqs, strict=True)
                ]
            except Unavailable as exc:
                return exc
        if isinstance(message, Register):
            return self._register(message.link)
        if isinstance(message, Unregister):
            self._unregister(message.link)
        elif isinstance(message, RoomIdle):
            self._room_idle(message)
        elif isinstance(message, RepairRooms):
            self._repair_rooms()
        elif isinstance(message, Call):
            message.func(*message.args)
        else:
            return super().on_receive(message)
        return None

    def _repair_rooms(self) -> None:
        """The Redis link is back: every room replays what it missed and re-counts its members
        in Redis; the members of rooms this node left meanwhile are counted out."""
        rooms = self.ctx.directory.rooms
        self.ctx.broker.resync_rooms(list(rooms))
        for state in list(rooms.values()):
            if state.actor is not None:
                with contextlib.suppress(ActorDeadError):
                    state.actor.tell(Repair())

    def _register(self, link: Link) -> None:
        user = link.user
        assert user is not None
        by_user = self.ctx.directory.by_user
        links = by_user.get(user, ())
        if link in links:
            return
        subscribed = bool(links)
        limit = self.ctx.config.max_connections_per_user
        if len(links) >= limit:
            links = _make_room(links, user, limit)
        by_user[user] = (*links, link)
        if not subscribed:
            # Before connect answers: the user's direct messages reach this node from now on.
            self.ctx.broker.subscribe_user(user)

    def _unregister(self, link: Link) -> None:
        by_user = self.ctx.directory.by_user
        user = link.user
        if user is None:
            return
        links = by_user.get(user)
        if links is not None and link in links:
            rest = tuple(other for other in links if other is not link)
            if rest:
                by_user[user] = rest
            else:
                del by_user[user]
                self.ctx.broker.unsubscribe_user(user)

    def _room_for(self, name: str, known_seq: int | None = None) -> RoomState:
        rooms = self.ctx.directory.rooms
        state = rooms.get(name)
        if state is None:
            state = rooms[name] = RoomState.new(name, self.ctx.config)
            state.known_seq = known_seq
        state.joins_forwarded += 1
        if not state.starting and (state.actor is None or not state.actor.is_alive()):
            self._start_room(state)
        return state

    def _start_room(self, state: RoomState) -> None:
        supervisor = self.ctx.refs.rooms
        if supervisor is None:
            state.joins_forwarded -= 1
            raise Unavailable("the rooms supervisor is restarting")
        generation = state.generation = next(_generations)
        state.actor = None
        state.starting = True
        spec = ChildSpec(
            id=(state.name, generation),
            start=RoomActor.start,
            args=(state, self.ctx),
            restart=Restart.TRANSIENT,
        )
        refs = self.ctx.refs

        def start() -> None:
            # Waits in a greenlet of its own: the router answers the next ask meanwhile. The
            # outcome goes to the router running then (a restarted one too).
            error: Exception | None = None
            try:
                supervisor.ask(
                    ProxyCall(attr_path=("start_child",), args=(spec,), kwargs={}),
                    timeout=ROOM_START_TIMEOUT_S,
                )
            except Exception as exc:
                error = exc
            # The outcome must reach a router: while none runs (a restart in progress) the
            # room would stay "starting" and a failed start's joins would wait forever.
            while True:
                try:
                    refs.tell_router(Call(_room_started, (state, generation, error)))
                except (Unavailable, ActorDeadError):
                    gevent.sleep(_ROUTER_BACK_POLL_S)
                else:
                    return

        gevent.spawn(start)

    def _room_idle(self, idle: RoomIdle) -> None:
        rooms = self.ctx.directory.rooms
        state = rooms.get(idle.name)
        if (
            state is None
            or state is not idle.state
            or state.members
            or state.joins_forwarded != idle.joins_handled
        ):
            return  # a join is on its way to the room: keep it
        del rooms[idle.name]
        if state.actor is not None:
            state.actor.stop(block=False)


def _room_started(state: RoomState, generation: int, error: Exception | None) -> None:
    """In the router: the start of ``state``'s actor ended; if it failed, refuse the joins
    waiting for it."""
    if state.generation != generation:
        return
    state.starting = False
    if error is None:
        return
    logger.error("room %r could not start: %s", state.name, error)
    waiting, state.waiting = state.waiting, []
    for join in waiting:
        if not isinstance(join, JoinRoom):
            continue  # a Check or a message: the next actor reads the store afresh
        state.joins_forwarded -= 1
        join.link.notify(Left(state.name, state))
        if join.command_id is None:
            continue
        join.link.fail(
            "join",
            join.command_id,
            ErrorCode.OVERLOADED,
            f"room {state.name!r} could not start; retry in a moment",
        )


def _make_room(links: tuple[Link, ...], user: str, limit: int) -> tuple[Link, ...]:
    """``links`` less the one heard from least recently, which is closed 4009 for the new
    connection of ``user`` past ``limit``.

    The newest connection is the one its user is trying to use; the one silent longest is most
    likely a client already gone (a phone that switched networks, an attempt that timed out
    while the node was busy) that the idle timeout has not caught yet. Refusing the newest
    instead locked the user out until then, and for good in the clients, which cannot tell a
    stale connection from a live one. The replaced client is told why and stays away, so two
    devices past the limit do not take turns replacing each other."""
    stale = min(links, key=lambda other: other.ws.last_received)
    stale.request_close(
        CloseCode.REPLACED,
        f"replaced by a newer connection of {user!r}: at most {limit} at once",
    )
    return tuple(other for other in links if other is not stale)
