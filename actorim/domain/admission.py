"""Admission control: how many connections may be setting up at once, and when to send the
rest away.

A connection's set-up runs from its upgrade to the reply to its ``connect`` (the token
checked, the connection registered, the user's inbox read): the part of a connection's cost
that a client waits for, and gives up on when it takes too long. After a restart every client of
a node comes back at once; past what the node sets up before the clients' patience runs out,
each extra set-up only makes all of them later, and the ones that time out are work nobody
waits for (the collapse of docs/performance.md, "Reconnect storm"). So a node sets up at most
``limit`` connections at once and refuses the next at once, cheaply (close 1013, *try again
later*), with a delay that spreads the refused clients over the time it needs for those ahead
of them.

The delay comes from a virtual queue: the node's recent set-up rate (completed set-ups per
second over the last :data:`RATE_WINDOW_S`, or a floor while it has completed few) gives each
refused client a slot after the set-ups in progress and after every client refused before it,
and the hint is the time to that slot, stretched by a random factor up to :data:`HINT_JITTER`
so that clients refused in the same instant do not come back in the same one. Each client adds
its own jitter on top.

Pure: keys in, times in, no clock and no I/O (the web layer calls it with the connection and
the time; ``actorim.web.admission``).

>>> gate = SetupGate(limit=2, rand=lambda a, b: a)
>>> gate.admit("a", 0.0), gate.admit("b", 0.0)
(None, None)
>>> gate.admit("c", 0.0)  # no set-up finished yet: the floor rate, 2 / 0.5 s = 4 a second
0.5
>>> gate.admit("d", 0.0)  # the next slot
0.75
>>> gate.done("a", 0.5, connected=True); gate.admit("e", 0.5), len(gate)
(None, 2)
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

__all__ = [
    "ASSUMED_SETUP_S",
    "DEFAULT_MAX_SETUPS",
    "HINT_JITTER",
    "MIN_SAMPLES",
    "RATE_WINDOW_S",
    "STALE_SETUP_S",
    "SetupGate",
]

DEFAULT_MAX_SETUPS = 256
"""Set-ups in progress at once. A set-up costs about a millisecond of the node's CPU (with
waits on the store and Redis in between), so 256 of them are done within a second or two even
on a loaded core: far within the clients' patience (5 s in the Python client, 10 s in the
bench's), and enough in flight to keep the core busy while some of them wait."""

RATE_WINDOW_S = 5.0
"""The set-ups completed over this many seconds give the node's current rate."""

MIN_SAMPLES = 16
"""Completed set-ups the measured rate needs; with fewer, the assumed one is used."""

ASSUMED_SETUP_S = 0.5
"""While the node has completed few set-ups (it has just started), it is assumed to finish
``limit`` of them in this long. Optimistic on purpose: a hint too short costs a cheap refusal
more, one too long keeps a client away for nothing."""

HINT_JITTER = 0.25
"""Each hint is its slot's delay times a random factor from 1 to 1 + this."""

STALE_SETUP_S = 60.0
"""A set-up never reported done (its actor could not start) stops counting after this long."""


class SetupGate:
    """Connections setting up, oldest first, at most ``limit``; the recent completions."""

    __slots__ = ("_done", "_horizon", "_limit", "_pending", "_rand")

    def __init__(
        self,
        limit: int = DEFAULT_MAX_SETUPS,
        *,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")
        self._limit = limit
        self._rand = rand
        self._pending: dict[object, float] = {}
        self._done: deque[float] = deque()
        self._horizon = 0.0
        """The time of the last slot handed to a refused client."""

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, key: object, now: float) -> float | None:
        """A connection starts its set-up: None when it may go on, else the seconds it should
        wait before it comes back (it is not counted)."""
        pending = self._pending
        if len(pending) >= self._limit:
            self._forget_stale(now)
        if len(pending) < self._limit:
            pending[key] = now
            return None
        return self.hint(now)

    def hint(self, now: float) -> float:
        """Seconds a client sent away at ``now`` should wait: the time to the next free slot
        after the set-ups in progress and the clients sent away before it. Takes that slot."""
        rate = self.rate(now)
        slot = max(self._horizon + 1.0 / rate, now + len(self._pending) / rate)
        self._horizon = slot
        return round((slot - now) * self._rand(1.0, 1.0 + HINT_JITTER), 3)

    def done(self, key: object, now: float, *, connected: bool) -> None:
        """The set-up of ``key`` ended: ``connected`` (it counts toward the rate), or the
        connection closed first. Nothing happens for a key that is not setting up."""
        if self._pending.pop(key, None) is not None and connected:
            done = self._done
            done.append(now)
            while done[0] < now - RATE_WINDOW_S:
                done.popleft()

    def rate(self, now: float) -> float:
        """Set-ups completed per second lately: over the last :data:`RATE_WINDOW_S`, or since
        the first of them if that is more recent (but at least a second); while fewer than
        :data:`MIN_SAMPLES` completed, ``limit / ASSUMED_SETUP_S``.

        >>> gate = SetupGate(limit=4)
        >>> for t in range(50):
        ...     gate.admit(t, 3 + t / 50); gate.done(t, 3 + t / 50, connected=True)
        >>> gate.rate(4.0), gate.rate(8.0), gate.rate(100.0)
        (50.0, 10.0, 8.0)
        """
        done = self._done
        while done and done[0] < now - RATE_WINDOW_S:
            done.popleft()
        if len(done) < MIN_SAMPLES:
            return self._limit / ASSUMED_SETUP_S
        return len(done) / min(RATE_WINDOW_S, max(1.0, now - done[0]))

    def _forget_stale(self, now: float) -> None:
        pending = self._pending
        while pending:
            key, started = next(iter(pending.items()))
            if started >= now - STALE_SETUP_S:
                return
            del pending[key]
