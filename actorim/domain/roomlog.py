"""A room's log, decided without I/O: ordering, gap hold and repair, replay merge, membership.

The room actor is a shell around one :class:`RoomLog`: it feeds the log what happened (a
published message, what the store read back, a member joining or leaving) and carries out the
effects the log returns (fan a message out, tell the members a gap was skipped, read the
store, try again later). The log keeps what must survive the actor's restart, so the actor's
state is the log and a few bookkeeping fields.

Ordering: messages go out once each, in ``seq`` order. A message beyond the next seq means
messages were missed (the broker was away, or the actor restarted): the log holds it and what
follows, asks for the missed ones (:class:`ReadSince`), and fans the repair out at once when
it fits the replay bounds (``max_messages``, ``max_bytes``): queued at once, a thousand large
messages overflowed every member's outbox and closed the whole room with 1013, at every retry.
Beyond the bounds it skips the gap (:class:`ReadLast`, then :class:`Skip`): the clients page
``history`` over the seqs it names, as they do after ``recovered: false``.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Msg:
...     seq: int
>>> log = RoomLog[Msg, str](size=lambda m: 10, max_messages=3, max_bytes=100)
>>> log.publish(Msg(1)), log.seq
([Deliver(item=Msg(seq=1))], 1)
>>> log.publish(Msg(1)), log.publish(Msg(4)), log.publish(Msg(5))
([], [ReadSince(after=1)], [])
>>> for effect in log.gap_read([Msg(2)], complete=True):
...     print(effect)
Deliver(item=Msg(seq=2))
Skip(gap=Gap(after=2, seq=3))
Deliver(item=Msg(seq=4))
Deliver(item=Msg(seq=5))
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Protocol, TypeVar

__all__ = [
    "Deliver",
    "Effect",
    "Gap",
    "JoinReplay",
    "ReadLast",
    "ReadSince",
    "RetryLater",
    "RoomLog",
    "Sequenced",
    "Skip",
    "fits",
    "in_order",
    "join_replay",
    "union",
]


class Sequenced(Protocol):
    """What the log orders: anything with a room ``seq``."""

    @property
    def seq(self) -> int: ...


T = TypeVar("T", bound=Sequenced)
M = TypeVar("M", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Gap:
    """The room skipped the messages after ``after`` up to and including ``seq``: its members
    fetch them with ``history {room, after, before: seq + 1}``."""

    after: int
    seq: int

    def __str__(self) -> str:
        return f"gap after {self.after} through {self.seq}"


@dataclass(frozen=True, slots=True)
class Deliver(Generic[T]):
    """Fan ``item`` out to the members (those replaying their own gap hold it)."""

    item: T


@dataclass(frozen=True, slots=True)
class Skip:
    """Tell the members that ``gap`` is not coming: they page it from history."""

    gap: Gap


@dataclass(frozen=True, slots=True)
class ReadSince:
    """Read the store after ``after`` within the replay bounds; answer with
    :meth:`RoomLog.gap_read` or :meth:`RoomLog.gap_read_failed`."""

    after: int


@dataclass(frozen=True, slots=True)
class ReadLast:
    """Read the room's latest seq from the store; answer with :meth:`RoomLog.last_read`."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """The store could not be read: call :meth:`RoomLog.retry` after a while."""


Effect = Deliver[T] | Skip | ReadSince | ReadLast | RetryLater


def fits(
    items: Iterable[T], size: Callable[[T], int], *, max_messages: int, max_bytes: int
) -> bool:
    """Whether ``items`` may be queued to every member at once: at most ``max_messages`` of
    them and ``max_bytes`` by ``size``."""
    total = 0
    for count, item in enumerate(items, 1):
        total += size(item)
        if count > max_messages or total > max_bytes:
            return False
    return True


def in_order(seq: int, items: Iterable[T]) -> list[T | Gap]:
    """The fan-out after ``seq``: ``items`` once each in ``seq`` order, those at or below
    ``seq`` dropped (fanned out already), and a :class:`Gap` wherever seqs are missing.

    >>> from collections import namedtuple
    >>> M = namedtuple("M", "seq")
    >>> steps = in_order(3, map(M, [7, 4, 3, 5]))
    >>> [str(step) if isinstance(step, Gap) else step.seq for step in steps]
    [4, 5, 'gap after 5 through 6', 7]
    """
    steps: list[T | Gap] = []
    last = seq
    for item in sorted({i.seq: i for i in items if i.seq > seq}.values(), key=_seq):
        if item.seq > last + 1:
            steps.append(Gap(last, item.seq - 1))
        steps.append(item)
        last = item.seq
    return steps


def union(read: Sequence[T], held: Sequence[T]) -> list[T]:
    """The messages a repair would fan out: those read back from the store and those that
    arrived meanwhile, each seq once (a held message is often in the store's page too)."""
    return list({i.seq: i for i in [*read, *held]}.values())


def _seq(item: Sequenced) -> int:
    return item.seq


class JoinReplay(Enum):
    """What a ``join`` with ``since`` gets (see :func:`join_replay`)."""

    NONE = "none"  # no since: nothing to recover
    RECOVERED = "recovered"  # nothing was missed
    REFUSED = "refused"  # another epoch, a future seq, or more than a replay may hold
    REPLAY = "replay"  # read what was missed from the store, holding live messages meanwhile


def join_replay(since: int | None, *, seq: int, same_epoch: bool, max_messages: int) -> JoinReplay:
    """Decide a joining member's recovery from the numbers alone.

    >>> join_replay(3, seq=5, same_epoch=True, max_messages=10)
    <JoinReplay.REPLAY: 'replay'>
    >>> join_replay(3, seq=50, same_epoch=True, max_messages=10)
    <JoinReplay.REFUSED: 'refused'>
    """
    if since is None:
        return JoinReplay.NONE
    if not same_epoch or since > seq or seq - since > max_messages:
        return JoinReplay.REFUSED
    if since == seq:
        return JoinReplay.RECOVERED
    return JoinReplay.REPLAY


@dataclass(eq=False)
class RoomLog(Generic[T, M]):
    """A room's seq, its held repair, its members' own replays, and who is in it.

    ``size`` is what an item takes queued to a member, for the replay bounds. The log has no
    clock and does no I/O: every method returns the effects for the caller to carry out.
    """

    size: Callable[[T], int]
    max_messages: int
    max_bytes: int
    seq: int = 0
    # Held behind a gap being repaired (None: no repair under way), and whether a store read
    # for it is in flight.
    held: list[T] | None = None
    reading: bool = False
    members: dict[M, None] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    # A member replaying its own gap: the live items (and skips) held for it until its replay.
    recovering: dict[M, list[tuple[int, T | Gap]]] = field(default_factory=dict)

    # -- ordering and gap repair -----------------------------------------------------------------

    def publish(self, item: T) -> list[Effect[T]]:
        """A message was published: deliver it, drop it (seen already), or hold it."""
        if item.seq <= self.seq:
            return []  # fanned out already (a replay and the live copy of one message)
        if self.held is not None:
            self.held.append(item)
            return []
        if item.seq > self.seq + 1:
            self.held = [item]
            return self._read()
        self.seq = item.seq
        return [Deliver(item)]

    def repair(self) -> list[Effect[T]]:
        """The broker is back: read what may have been missed since the last seq."""
        if self.held is None:
            self.held = []
            return self._read()
        if not self.reading:  # an earlier read failed: try again now
            return self._read()
        return []

    def retry(self) -> list[Effect[T]]:
        """The wait after a failed read is over."""
        if self.held is not None and not self.reading:
            return self._read()
        return []

    def restarted(self) -> list[Effect[T]]:
        """The actor restarted: a read in flight is lost; publish what was held again."""
        held, self.held = self.held, None
        self.reading = False
        effects: list[Effect[T]] = []
        for item in held or []:
            effects += self.publish(item)
        return effects

    def gap_read(self, items: Sequence[T], *, complete: bool) -> list[Effect[T]]:
        """The store answered :class:`ReadSince`: ``items`` (``complete``: all there is)."""
        self.reading = False
        repair = union([i for i in items if i.seq > self.seq], self.held or [])
        if complete and self._fits(repair):
            self.held = None
            return self._in_order(repair)
        self.reading = True  # beyond the bounds: find the latest seq, to skip up to it
        return [ReadLast()]

    def gap_read_failed(self) -> list[Effect[T]]:
        """The store could not answer :class:`ReadSince`: wait while what is held fits the
        replay bounds; beyond them skip the gap and what waited."""
        self.reading = False
        held = self.held or []
        if self._fits(held):
            return [RetryLater()]
        self.held = None
        return self._skip_to(max(item.seq for item in held))

    def last_read(self, last: int | None) -> list[Effect[T]]:
        """The store answered :class:`ReadLast` with ``last`` (None: it could not)."""
        self.reading = False
        held = self.held or []
        if last is None:
            if not held:
                return [RetryLater()]
            last = 0
        self.held = None
        # Everything that waited is at or below the store's latest: members page it too. What
        # is published later has a higher seq and goes out live.
        return self._skip_to(max([last, *(item.seq for item in held)]))

    def _read(self) -> list[Effect[T]]:
        self.reading = True
        return [ReadSince(self.seq)]

    def _fits(self, items: Iterable[T]) -> bool:
        return fits(items, self.size, max_messages=self.max_messages, max_bytes=self.max_bytes)

    def _in_order(self, items: Iterable[T]) -> list[Effect[T]]:
        effects: list[Effect[T]] = []
        for step in in_order(self.seq, items):
            if isinstance(step, Gap):
                effects += self._skip_to(step.seq)
            else:
                self.seq = step.seq
                effects.append(Deliver(step))
        return effects

    def _skip_to(self, seq: int) -> list[Effect[T]]:
        if seq <= self.seq:
            return []
        gap = Gap(self.seq, seq)
        self.seq = seq
        return [Skip(gap)]

    # -- members ---------------------------------------------------------------------------------

    def join(self, member: M, user: str) -> bool | None:
        """Count ``member`` in: whether it is ``user``'s first connection here (None: a
        member already)."""
        if member in self.members:
            return None
        self.members[member] = None
        count = self.users.get(user, 0)
        self.users[user] = count + 1
        return count == 0

    def leave(self, member: M, user: str) -> bool | None:
        """Count ``member`` out: whether it was ``user``'s last connection here (None: not a
        member)."""
        if member not in self.members:
            return None
        del self.members[member]
        self.recovering.pop(member, None)
        count = self.users.get(user, 0) - 1
        if count <= 0:
            self.users.pop(user, None)
        else:
            self.users[user] = count
        return count <= 0

    # -- a member's own replay -------------------------------------------------------------------

    def hold_for(self, member: M) -> None:
        """``member`` is replaying its gap: hold what goes out until :meth:`replayed` (a second
        replay while one is under way keeps what the first holds)."""
        self.recovering.setdefault(member, [])

    def holding(self, member: M) -> list[tuple[int, T | Gap]] | None:
        """Where to hold what goes to ``member`` (None: send it now)."""
        return self.recovering.get(member)

    def replayed(self, member: M, last: int) -> list[T | Gap] | None:
        """``member``'s replay went out up to ``last``: what was held for it beyond that, in
        order (None: it left meanwhile)."""
        held = self.recovering.pop(member, [])
        if member not in self.members:
            return None
        return [item for seq, item in held if seq > last]
