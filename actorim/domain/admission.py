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

``limit`` is the most admitted at once. A node whose set-ups wait on something slower than
its core (its store, Redis) completes only so many a second however many it starts, and each
one more in flight waits that much longer: while the recent set-ups took more than half of
:data:`TARGET_SETUP_S`, the gate admits only what the node completes in that time (Little's
law: in flight = rate x time), so that those it admits are answered well before their clients
give up, and the rest are sent away at once. Hints are capped (:data:`MAX_HINT_S`): a queue
longer than that is not booked ahead.

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
    "MAX_HINT_S",
    "MIN_SAMPLES",
    "MIN_SETUPS",
    "RATE_WINDOW_S",
    "STALE_SETUP_S",
    "TARGET_SETUP_S",
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

TARGET_SETUP_S = 2.0
"""How long a set-up should take, upgrade to ``connect`` reply, well within the clients'
patience (5 s in the Python client, 10 s in the bench's). While the recent set-ups took more
than half of it, the node is behind (its store or its core is the bottleneck) and sets up at
most *its rate x this* at once, fewer than ``limit``: more in flight would only wait longer."""

MIN_SETUPS = 8
"""The fewest set-ups admitted at once however slow the node: it must keep measuring."""

MAX_HINT_S = 48.0
"""The longest delay handed out before the random stretch (at most 60 s after it, the longest
a client honours: ``actorim.protocol.restart.MAX_RESTART_DELAY_S``). Slots past it are not
booked: a client sent away for longer would come back at 60 s anyway, together with the rest."""


class SetupGate:
    """Connections setting up, oldest first, at most ``limit``; the recent completions (the
    time each ended and how long it took)."""

    __slots__ = ("_done", "_horizon", "_limit", "_pending", "_rand", "_took")

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
        self._took: deque[float] = deque()
        """How long each set-up in ``_done`` took."""
        self._horizon = 0.0
        """The time of the last slot handed to a refused client."""

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, key: object, now: float) -> float | None:
        """A connection starts its set-up: None when it may go on, else the seconds it should
        wait before it comes back (it is not counted)."""
        pending = self._pending
        limit = self.limit(now)
        if len(pending) >= limit:
            self._forget_stale(now)
        if len(pending) < limit:
            pending[key] = now
            return None
        return self.hint(now)

    def limit(self, now: float) -> int:
        """Set-ups admitted at once now: ``limit``, or while the recent ones took more than
        half of :data:`TARGET_SETUP_S` on average, as many as the node completes in that time
        (at least :data:`MIN_SETUPS`).

        >>> gate = SetupGate(limit=100)
        >>> for t in range(40):  # 40 set-ups over 4 s, each took 3 s: 10 a second
        ...     gate.admit(t, t / 10); gate.done(t, t / 10 + 3, connected=True)
        >>> gate.limit(7.0)
        20
        """
        rate = self.rate(now)
        took = self._took
        if len(took) < MIN_SAMPLES or sum(took) / len(took) <= TARGET_SETUP_S / 2:
            return self._limit
        return max(MIN_SETUPS, min(self._limit, int(rate * TARGET_SETUP_S)))

    def hint(self, now: float) -> float:
        """Seconds a client sent away at ``now`` should wait: the time to the next free slot
        after the set-ups in progress and the clients sent away before it. Takes that slot."""
        rate = self.rate(now)
        slot = max(self._horizon + 1.0 / rate, now + len(self._pending) / rate)
        slot = min(slot, now + MAX_HINT_S)
        self._horizon = slot
        return round((slot - now) * self._rand(1.0, 1.0 + HINT_JITTER), 3)

    def done(self, key: object, now: float, *, connected: bool) -> None:
        """The set-up of ``key`` ended: ``connected`` (it counts toward the rate), or the
        connection closed first. Nothing happens for a key that is not setting up."""
        started = self._pending.pop(key, None)
        if started is not None and connected:
            self._done.append(now)
            self._took.append(now - started)
            self._prune(now)

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
        self._prune(now)
        done = self._done
        if len(done) < MIN_SAMPLES:
            return self._limit / ASSUMED_SETUP_S
        return len(done) / min(RATE_WINDOW_S, max(1.0, now - done[0]))

    def _prune(self, now: float) -> None:
        done, took = self._done, self._took
        while done and done[0] < now - RATE_WINDOW_S:
            done.popleft()
            took.popleft()

    def _forget_stale(self, now: float) -> None:
        pending = self._pending
        while pending:
            key, started = next(iter(pending.items()))
            if started >= now - STALE_SETUP_S:
                return
            del pending[key]
