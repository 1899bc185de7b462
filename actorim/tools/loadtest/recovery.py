"""What a reconnect-storm client decides and counts, with no I/O and no clock of its own.

`SeqLog` is one client's record of a room: the seq it had when it joined, how often each later
seq arrived, and the seq it has caught up to. At the end, the publisher's acknowledged seqs of
the room say what the client should hold: `SeqLog.count` answers how many of those never came
(lost) and how many arrivals were repeats (duplicated). One byte per seq keeps 10,000 clients
of a few thousand messages each within tens of MiB.

`reconnect_delay` is the client's wait before an attempt: the server's hint (the drain's
``reconnect in <ms> ms``) plus the client's own jitter on the first attempt, then a capped
back-off with full jitter while the node refuses (it may still be restarting), after the hint
of a node that sent the client away (1013, too busy to set it up) if it gave one.

>>> log = SeqLog(base=10)
>>> for seq in (11, 12, 12, 14):
...     log.arrived(seq)
>>> log.caught_up, log.count([11, 12, 13, 14])
(12, (1, 1))
>>> for seq in (13, 14):  # paged from history after a gap: what was there is no repeat
...     log.paged(seq)
>>> log.caught_up, log.count([11, 12, 13, 14])
(14, (0, 1))
>>> reconnect_delay(0, hint=2.0, rand=lambda a, b: b)
2.2
>>> [reconnect_delay(n, hint=None, rand=lambda a, b: b) for n in (1, 2, 5, 9)]
[0.3, 0.5, 3.3, 8.0]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

__all__ = [
    "RETRY_CAP_S",
    "RETRY_FLOOR_S",
    "SeqLog",
    "reconnect_delay",
]

RETRY_FLOOR_S = 0.1
"""The least wait before an attempt, and the first step of the back-off (the Python client's own
floor is 0.25 s; the bench's clients come back a little sooner, which loads the node harder)."""

RETRY_CAP_S = 8.0
"""The longest wait between two refused attempts, the Python client's own cap: 10,000 clients
trying again every 2 s at most kept a restarting node on this machine too busy refusing them
to recover any."""


def reconnect_delay(
    attempt: int, *, hint: float | None, rand: Callable[[float, float], float]
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first after the close).

    The hint (none: 0) plus ``floor + random(0, min(cap - floor, floor * 2**attempt))``: one
    back-off step of jitter on the first attempt, a growing one while the node refuses.
    """
    step = RETRY_FLOOR_S + rand(0.0, min(RETRY_CAP_S - RETRY_FLOOR_S, RETRY_FLOOR_S * 2**attempt))
    return round((hint or 0.0) + step, 6)


class SeqLog:
    """One client's arrivals in one room after ``base`` (the room's seq when it joined)."""

    __slots__ = ("_counts", "base", "caught_up")

    def __init__(self, base: int) -> None:
        self.base = base
        self.caught_up = base
        """The highest seq up to which every seq arrived."""
        self._counts = bytearray()

    def arrived(self, seq: int) -> None:
        offset = seq - self.base - 1
        if offset < 0:
            return  # before the client's time in the room: not counted either way
        counts = self._counts
        if offset >= len(counts):
            counts.extend(bytes(offset + 1 - len(counts)))
        if counts[offset] < 255:
            counts[offset] += 1
        if seq == self.caught_up + 1:
            caught = self.caught_up
            while caught - self.base < len(counts) and counts[caught - self.base]:
                caught += 1
            self.caught_up = caught

    def paged(self, seq: int) -> None:
        """``seq`` read from history (a gap the server announced), not received live: it
        fills a hole, and is no repeat of a copy already there."""
        offset = seq - self.base - 1
        if offset < 0 or (offset < len(self._counts) and self._counts[offset]):
            return
        self.arrived(seq)

    def count(self, acked: Iterable[int]) -> tuple[int, int]:
        """(lost, duplicated): the acknowledged seqs after ``base`` that never arrived, and the
        arrivals that repeated a seq already there."""
        counts = self._counts
        lost = 0
        for seq in acked:
            offset = seq - self.base - 1
            if offset >= 0 and (offset >= len(counts) or not counts[offset]):
                lost += 1
        duplicated = sum(c - 1 for c in counts if c > 1)
        return lost, duplicated
