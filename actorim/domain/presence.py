"""Who is online, with a grace period so that a quick reconnect does not flap.

A user is online while they have at least one connection. When the last one closes the user
enters a grace period (``grace_s``); reconnecting within it announces nothing, and only when it
ends is the user announced offline. Connections watch users and are told when those users come
online or go offline.

The book is pure: events come in with the time they happened, announcements go out, and the
presence actor sends them to ``watchers_of(announcement.user)``. Every call first settles the
grace periods that ended by its ``now``, so the result does not depend on how punctually the
actor calls :meth:`PresenceBook.expire`; :meth:`PresenceBook.next_deadline` says when to.

>>> book = PresenceBook(grace_s=5.0)
>>> book.connected("alice", "conn-1", now=0.0)
[Announcement(user='alice', status='online', ts_ms=0)]
>>> book.disconnected("alice", "conn-1", now=1.0), book.status("alice"), book.next_deadline()
([], 'online', 6.0)
>>> book.expire(now=6.0)
[Announcement(user='alice', status='offline', ts_ms=6000)]
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

__all__ = [
    "DEFAULT_GRACE_S",
    "DEFAULT_MAX_WATCHES_PER_CONN",
    "OFFLINE",
    "ONLINE",
    "Announcement",
    "PresenceBook",
    "Status",
    "WatchLimitError",
]

Status = Literal["online", "offline"]
ONLINE: Final = "online"
OFFLINE: Final = "offline"

DEFAULT_GRACE_S = 5.0
"""Time between the last connection closing and the offline announcement: covers a page
reload or a mobile network hand-over, short enough that "online" stays truthful."""

DEFAULT_MAX_WATCHES_PER_CONN = 1000
"""Users one connection may watch at once: a large contact list. Each watch costs memory in
two sets, and a connection must not be able to grow them without bound."""

_COMPACT_MIN_HEAP = 64
"""Below this many deadlines the heap is never rebuilt; stale entries are cheaper to skip."""


@dataclass(frozen=True, slots=True)
class Announcement:
    """A user came online or went offline at ``ts_ms`` (milliseconds, the book's clock).

    An offline announcement carries the time the grace period ended, so it is the same
    however late the actor's timer fired.
    """

    user: str
    status: Status
    ts_ms: int


class WatchLimitError(ValueError):
    """A connection asked to watch more users than allowed; nothing was changed."""


C = TypeVar("C", bound=Hashable)
"""A connection, of whatever type the actor keeps: the book only hashes and compares them, and
gives back from ``watchers_of`` and ``connections_of`` the type it was given."""


def _ms(now: float) -> int:
    return round(now * 1000)


class PresenceBook(Generic[C]):
    """Connections per user, grace deadlines and watchers, for one presence actor.

    Memory is a set of connections per online user, a deadline per user in grace and a set
    per watched user and per watching connection; nothing is kept for offline users.
    """

    __slots__ = (
        "_conns",
        "_deadlines",
        "_grace",
        "_grace_s",
        "_max_watches",
        "_watched_by",
        "_watching",
    )

    def __init__(
        self,
        *,
        grace_s: float = DEFAULT_GRACE_S,
        max_watches_per_conn: int = DEFAULT_MAX_WATCHES_PER_CONN,
    ) -> None:
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0, got {grace_s!r}")
        if max_watches_per_conn < 0:
            raise ValueError(f"max_watches_per_conn must be >= 0, got {max_watches_per_conn!r}")
        self._grace_s = float(grace_s)
        self._max_watches = max_watches_per_conn
        # user -> its live connections; a user is here only while it has at least one. A
        # tuple, not a set: a user nearly always has one or two connections (bounded by
        # max_connections_per_user), and a set is four times the memory of a short tuple.
        self._conns: dict[str, tuple[C, ...]] = {}
        # user -> the end of its grace period; a user is here only while in grace.
        self._grace: dict[str, float] = {}
        # (deadline, user) for every grace period started; entries whose deadline no longer
        # matches self._grace are stale and skipped.
        self._deadlines: list[tuple[float, str]] = []
        # user -> connections watching it, and connection -> users it watches.
        self._watched_by: dict[str, set[C]] = {}
        self._watching: dict[C, set[str]] = {}

    # -- connections -------------------------------------------------------------------------

    def connected(self, user: str, conn: C, now: float) -> list[Announcement]:
        """Record a new connection; the user is announced online only if they were offline."""
        announcements = self.expire(now)
        conns = self._conns.get(user)
        if conns is not None:
            if conn not in conns:
                self._conns[user] = (*conns, conn)
            return announcements
        self._conns[user] = (conn,)
        if self._grace.pop(user, None) is None:
            announcements.append(Announcement(user, ONLINE, _ms(now)))
        return announcements

    def disconnected(self, user: str, conn: C, now: float) -> list[Announcement]:
        """Forget a connection and its watches; the last one starts the user's grace period.

        With ``grace_s`` 0 the user is announced offline at once. An unknown connection is
        ignored, so a repeated close is harmless.
        """
        announcements = self.expire(now)
        self.drop_watcher(conn)
        conns = self._conns.get(user)
        if conns is None or conn not in conns:
            return announcements
        rest = tuple(c for c in conns if c != conn)
        if rest:
            self._conns[user] = rest
        else:
            del self._conns[user]
            announcements.extend(self._start_grace(user, now))
        return announcements

    def expire(self, now: float) -> list[Announcement]:
        """Announce offline every user whose grace period ended at or before ``now``."""
        announcements: list[Announcement] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            deadline, user = heapq.heappop(heap)
            if self._grace.get(user) == deadline:
                del self._grace[user]
                announcements.append(Announcement(user, OFFLINE, _ms(deadline)))
        return announcements

    def next_deadline(self) -> float | None:
        """When the next grace period ends (call :meth:`expire` then), or None if none runs."""
        heap = self._deadlines
        while heap and self._grace.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def rebuild(self, live: Iterable[tuple[str, C]], now: float) -> list[Announcement]:
        """Reset the connections to ``live`` (user, connection) pairs, e.g. after a restart.

        Users with a live connection are online and announced to nobody: as far as watchers
        know they never left. Users the book had online who have no live connection enter
        grace, as if their last connection had just closed. Watches of connections that are
        not live are dropped.
        """
        announcements = self.expire(now)
        conns: dict[str, tuple[C, ...]] = {}
        for user, conn in live:
            known = conns.get(user, ())
            if conn not in known:
                conns[user] = (*known, conn)
        vanished = [user for user in self._conns if user not in conns]
        self._conns = conns
        for user in conns:
            self._grace.pop(user, None)
        for user in vanished:
            announcements.extend(self._start_grace(user, now))
        live_conns = {conn for user_conns in conns.values() for conn in user_conns}
        for conn in [conn for conn in self._watching if conn not in live_conns]:
            self.drop_watcher(conn)
        self._compact()
        return announcements

    # -- queries -----------------------------------------------------------------------------

    def status(self, user: str) -> Status:
        """``online`` while the user has a connection or is in grace, else ``offline``."""
        return ONLINE if user in self._conns or user in self._grace else OFFLINE

    def statuses(self, users: Iterable[str]) -> dict[str, Status]:
        """The status of each of ``users``, e.g. the first answer to a watch."""
        return {user: self.status(user) for user in users}

    def online_users(self) -> set[str]:
        """Every user whose status is ``online`` (including those in grace)."""
        return self._conns.keys() | self._grace.keys()

    def connections_of(self, user: str) -> frozenset[C]:
        """The user's live connections (none while in grace)."""
        return frozenset(self._conns.get(user, ()))

    # -- watchers ----------------------------------------------------------------------------

    def watch(self, conn: C, users: Iterable[str]) -> None:
        """Let ``conn`` be told when any of ``users`` comes online or goes offline.

        Raises :class:`WatchLimitError`, changing nothing, if ``conn`` would then watch more
        than ``max_watches_per_conn`` users.
        """
        wanted = set(users)
        watching = self._watching.get(conn, set())
        total = len(watching | wanted)
        if total > self._max_watches:
            raise WatchLimitError(
                f"a connection may watch at most {self._max_watches} users, "
                f"this would make {total}: unwatch some first"
            )
        if not wanted:
            return
        self._watching[conn] = watching
        watching |= wanted
        for user in wanted:
            self._watched_by.setdefault(user, set()).add(conn)

    def unwatch(self, conn: C, users: Iterable[str]) -> None:
        """Stop telling ``conn`` about ``users``; users it does not watch are ignored."""
        watching = self._watching.get(conn)
        if watching is None:
            return
        for user in users:
            if user in watching:
                watching.discard(user)
                self._forget_watcher(user, conn)
        if not watching:
            del self._watching[conn]

    def drop_watcher(self, conn: C) -> None:
        """Stop telling ``conn`` about anyone, e.g. when it closes."""
        for user in self._watching.pop(conn, ()):
            self._forget_watcher(user, conn)

    def watchers_of(self, user: str) -> set[C]:
        """The connections to send ``user``'s announcements to (a copy, safe to keep)."""
        return set(self._watched_by.get(user, ()))

    def watched_by(self, conn: C) -> frozenset[str]:
        """The users ``conn`` watches."""
        return frozenset(self._watching.get(conn, ()))

    # -- internals ---------------------------------------------------------------------------

    def _start_grace(self, user: str, now: float) -> list[Announcement]:
        if self._grace_s == 0:
            return [Announcement(user, OFFLINE, _ms(now))]
        deadline = now + self._grace_s
        self._grace[user] = deadline
        heapq.heappush(self._deadlines, (deadline, user))
        if len(self._deadlines) > 2 * len(self._grace) + _COMPACT_MIN_HEAP:
            self._compact()
        return []

    def _compact(self) -> None:
        """Drop stale deadlines, so a user who flaps often cannot grow the heap."""
        self._deadlines = [(deadline, user) for user, deadline in self._grace.items()]
        heapq.heapify(self._deadlines)

    def _forget_watcher(self, user: str, conn: C) -> None:
        watchers = self._watched_by.get(user)
        if watchers is not None:
            watchers.discard(conn)
            if not watchers:
                del self._watched_by[user]
