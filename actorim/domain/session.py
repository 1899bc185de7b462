"""A connection's session: where it is in its life, who it is, and what it is part of.

This is the half of a connection that needs no socket: its phase, the authenticated identity,
the session token handed out on ``connect``, the rooms it joined and the users it watches. The
runtime keeps one per connection (inside its ``Link``), and only that connection's actor
changes it: rooms and the presence tracker *tell* the connection what happened (it left a room,
its watch list changed), and the connection applies it here. So every change to a session is a
method call on this object, which is pure and is tested by feeding it those events.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable
    from collections.abc import Set as AbstractSet

    from actorim.domain.auth import Identity

__all__ = ["Left", "Notice", "Phase", "Session", "WatchChanged"]

R = TypeVar("R")

_NOBODY: frozenset[str] = frozenset()


class Phase(Enum):
    """Where a connection is in its life."""

    AWAITING_CONNECT = "awaiting_connect"
    CONNECTED = "connected"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Left(Generic[R]):
    """A room tells the connection it is not in ``name`` (the join was refused, or the room
    removed it); ``room`` is the room it refers to, so a later join of the same name stays."""

    name: str
    room: R


@dataclass(frozen=True, slots=True)
class WatchChanged:
    """The presence tracker tells the connection it now watches (or no longer watches)
    ``users``."""

    users: tuple[str, ...]
    watch: bool


Notice = Left[R] | WatchChanged


class Session(Generic[R]):
    """One connection's socket-free state; ``R`` is whatever stands for a joined room (the
    runtime keeps the room's shared state there, so a command reaches the room's actor)."""

    __slots__ = ("identity", "phase", "rooms", "token", "watching")

    def __init__(self) -> None:
        self.phase = Phase.AWAITING_CONNECT
        self.identity: Identity | None = None
        # Handed to the client on connect; names this connection in cluster presence.
        self.token = ""
        self.rooms: dict[str, R] = {}
        # Most connections never watch anyone: they share one empty frozenset until their first
        # ``watch`` (an empty set would cost each of them 216 bytes).
        self.watching: AbstractSet[str] = _NOBODY

    def __repr__(self) -> str:
        return f"<Session user={self.user!r} {self.phase.value}>"

    @property
    def user(self) -> str | None:
        """The authenticated user; None before ``connect`` succeeds."""
        return None if self.identity is None else self.identity.user

    # -- life ------------------------------------------------------------------------------------

    def authenticated(self, identity: Identity) -> None:
        """The token checked out: who this connection is (it is not connected until
        ``connected``, which comes once it is registered)."""
        self.identity = identity

    def refreshed(self, identity: Identity) -> list[str]:
        """The client proved itself again with a fresh token of the same user: its claims apply
        from now on. Returns the joined rooms the new ``rooms`` claim does not allow, which the
        connection is no longer in (the caller tells the rooms and the client)."""
        if self.identity is None or identity.user != self.identity.user:
            raise ValueError("a refreshed token must name the connection's own user")
        self.identity = identity
        dropped = [name for name in self.rooms if not identity.may_join(name)]
        return dropped

    def connected(self, token: str) -> None:
        """The connection is registered and announced: it takes every command now."""
        self.token = token
        self.phase = Phase.CONNECTED

    def closing(self) -> dict[str, R]:
        """The connection is closing: it is in no room any more; returns the rooms it was in
        (to be told it left)."""
        rooms, self.rooms = self.rooms, {}
        self.phase = Phase.CLOSING
        return rooms

    def closed(self) -> None:
        self.phase = Phase.CLOSED

    # -- rooms -----------------------------------------------------------------------------------

    def joining(self, name: str, room: R) -> None:
        """A join was sent to ``room``; the connection counts as in it from now on (so it may
        send to it) until the room refuses it or it leaves."""
        self.rooms[name] = room

    def left(self, name: str, room: R | None = None) -> R | None:
        """The connection is no longer in ``name``: it left, or the room refused it. With
        ``room``, only when that is still the room it joined (a later join of the same name
        stays). Returns the room it was in, or None."""
        current = self.rooms.get(name)
        if current is None or (room is not None and current is not room):
            return None
        del self.rooms[name]
        return current

    # -- presence --------------------------------------------------------------------------------

    def watch(self, users: Iterable[str]) -> None:
        watching = self.watching
        if isinstance(watching, set):
            watching.update(users)
        else:
            self.watching = set(users)

    def unwatch(self, users: Iterable[str]) -> None:
        watching = self.watching
        if isinstance(watching, set):
            watching.difference_update(users)

    # -- what others tell the connection -------------------------------------------------------

    def apply(self, notice: Notice[R]) -> None:
        """Take in what a room or the presence tracker told this connection."""
        if isinstance(notice, Left):
            self.left(notice.name, notice.room)
        elif notice.watch:
            self.watch(notice.users)
        else:
            self.unwatch(notice.users)

    def watching_after(self, notices: Iterable[Notice[R]]) -> set[str]:
        """The watch list once ``notices`` (told, not applied yet) are applied: what a
        restarted presence tracker rebuilds from, so a watch recorded just before it failed
        is not lost."""
        watching = set(self.watching)
        for notice in notices:
            if isinstance(notice, WatchChanged):
                if notice.watch:
                    watching.update(notice.users)
                else:
                    watching.difference_update(notice.users)
        return watching
