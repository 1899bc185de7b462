"""How fast a ``--max`` sender may go: as fast as the server allows, found by backing off.

The server answers ``rate_limited`` (or ``overloaded``) when a connection exceeds its allowance;
keeping on would soon get the connection closed for abuse (close 1008). So a refusal doubles
the gap the sender leaves between sends, and every accepted send shrinks it a little, until the
sender runs unpaced again: the usual additive-increase, multiplicative-decrease search. All the
refusals of sends already in flight when the gap grew count as one, or a window of eight
refusals would double the gap eight times.

Times are plain seconds from any monotonic clock, passed in.

>>> throttle = Throttle()
>>> throttle.refused(sent_at=1.0, now=1.0); throttle.gap_s
0.01
>>> throttle.refused(sent_at=0.9, now=1.01); throttle.gap_s  # in flight before: same refusal
0.01
"""

from __future__ import annotations

__all__ = ["Throttle"]

FIRST_GAP_S = 0.01
"""Gap after a first refusal: one send per 10 ms is the server's default allowance (100/s)."""

MIN_GAP_S = 0.0005
"""Below half a millisecond the sender goes unpaced again."""

MAX_GAP_S = 2.0
"""The slowest a sender backs off to: still one try every two seconds."""

RECOVERY = 0.98
"""Each accepted send shortens the gap by 2 %: some 35 sends to halve it."""


class Throttle:
    __slots__ = ("_backed_off_at", "gap_s")

    def __init__(self) -> None:
        self.gap_s = 0.0
        self._backed_off_at = float("-inf")

    def refused(self, *, sent_at: float, now: float) -> None:
        """A send made at ``sent_at`` was refused (``rate_limited``, ``overloaded``)."""
        if sent_at < self._backed_off_at:
            return
        self.gap_s = min(MAX_GAP_S, max(FIRST_GAP_S, self.gap_s * 2))
        self._backed_off_at = now

    def accepted(self) -> None:
        if self.gap_s:
            self.gap_s *= RECOVERY
            if self.gap_s < MIN_GAP_S:
                self.gap_s = 0.0

    def next_send_at(self, last_send_at: float) -> float:
        return last_send_at + self.gap_s
