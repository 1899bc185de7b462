"""How much one connection may send, and when sending too many is abuse.

Each connection owns a :class:`RateLimiter`. A command within the budget is allowed; one over
it is answered ``rate_limited`` and dropped; a client that keeps sending while refused is
abusive and its connection is closed with policy violation (WebSocket close code 1008). A
history page is charged by its bytes after it was built (``charge``), and a connection in debt
gets no page until the debt is paid off (``in_debt``). Below the commands, a
:class:`FrameBudget` bounds the WebSocket frames the read path parses per turn and per second.
Beside them, a node's :class:`TypingThrottle` decides which typing indicators are relayed.
Time is an argument (seconds from any monotonic clock), so the decisions are replayable.

>>> limiter = RateLimiter(now=0.0, rate=1, burst=2)
>>> [limiter.check(0.0) for _ in range(3)]
[<Verdict.ALLOW: 'allow'>, <Verdict.ALLOW: 'allow'>, <Verdict.REJECT: 'reject'>]
>>> limiter.check(1.0)
<Verdict.ALLOW: 'allow'>
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable

__all__ = [
    "DEFAULT_ABUSE_REJECTIONS",
    "DEFAULT_ABUSE_WINDOW_S",
    "DEFAULT_BURST",
    "DEFAULT_FRAMES_PER_READ",
    "DEFAULT_FRAME_BURST",
    "DEFAULT_FRAME_RATE_PER_S",
    "DEFAULT_RATE_PER_S",
    "DEFAULT_TYPING_THROTTLE_S",
    "DEFAULT_TYPING_TTL_S",
    "FrameBudget",
    "RateLimiter",
    "TokenBucket",
    "TypingThrottle",
    "Verdict",
]

DEFAULT_RATE_PER_S = 100.0
"""Sustained commands per second per connection: far above a person typing, below a flood."""

DEFAULT_BURST = 200.0
"""Commands a connection may send at once, e.g. joining many rooms right after connecting."""

DEFAULT_ABUSE_REJECTIONS = 200
"""Refused commands tolerated within the abuse window before the connection is closed.

A client that honours ``rate_limited`` stops or slows down after a few refusals; one that
is refused two hundred times in ten seconds is ignoring them, and each refusal still costs
the server a decode and a reply.
"""

DEFAULT_ABUSE_WINDOW_S = 10.0
"""The window over which refusals are counted: long enough that a short burst of refusals
from a reconnecting client is forgiven, short enough to close a flood within seconds."""


DEFAULT_FRAME_RATE_PER_S = 500.0
"""Sustained frames per second per connection, data and control together: the command rate
(100 per second) with room for pongs, pings and the odd fragmented message. Parsing a frame costs
about 15 µs of the hub, so a connection at this rate uses under 1 % of it."""

DEFAULT_FRAME_BURST = 1000.0
"""Frames a connection may send at once: the command burst (200) five times over."""

DEFAULT_FRAMES_PER_READ = 64
"""Most frames parsed in one turn of the event loop for one connection: about 1 ms of parsing,
after which the hub serves every other socket before this one's next frames."""

DEFAULT_TYPING_THROTTLE_S = 2.0
"""Shortest time between two typing indicators relayed for one user in one conversation.
A client renews its indicator every few seconds while its user types; a room of 1,000 members
hears each typist at most once in this time, however fast the typist's client sends."""

DEFAULT_TYPING_TTL_S = 5.0
"""How long a relayed typing indicator lasts without a renewal (its ``ttl_ms``): longer than
the throttle, so that a renewal relayed at the throttle's pace keeps it shown without a gap."""


class FrameBudget:
    """How many frames a connection's reader may parse now.

    Frames (data and control alike) refill at ``rate`` per second up to ``burst``, and one turn
    on the event loop parses at most ``per_read`` of them. A connection whose budget is spent is
    not closed: its reader stops reading until ``wait`` has passed, so TCP slows the client
    down. Time is an argument, as for :class:`RateLimiter`.

    >>> budget = FrameBudget(now=0.0, rate=10, burst=20, per_read=8)
    >>> budget.allowance(0.0)
    8
    >>> budget.spend(0.0, 20)
    >>> budget.allowance(0.0), budget.wait(0.0)
    (0, 0.1)
    >>> budget.allowance(0.5)
    5
    """

    __slots__ = ("_burst", "_per_read", "_rate", "_stamp", "_tokens")

    def __init__(
        self,
        now: float,
        *,
        rate: float = DEFAULT_FRAME_RATE_PER_S,
        burst: float = DEFAULT_FRAME_BURST,
        per_read: int = DEFAULT_FRAMES_PER_READ,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        if per_read < 1:
            raise ValueError(f"per_read must be at least 1, got {per_read!r}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._per_read = per_read
        self._tokens = float(burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now

    def allowance(self, now: float) -> int:
        """Frames that may be parsed in this turn: 0 when the budget is spent."""
        self._refill(now)
        return max(0, min(self._per_read, int(self._tokens + _EPSILON)))

    def spend(self, now: float, frames: int) -> None:
        """Count ``frames`` parsed at ``now``."""
        self._refill(now)
        self._tokens -= frames

    def wait(self, now: float) -> float:
        """Seconds until at least one frame may be parsed again (0 if one may now)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= _EPSILON else round(missing / self._rate, 9)


class Verdict(enum.Enum):
    """What to do with one command."""

    ALLOW = "allow"
    """Process the command."""
    REJECT = "reject"
    """Answer ``rate_limited`` and drop the command."""
    ABUSE = "abuse"
    """Close the connection (1008, policy violation); every later check says the same."""


_EPSILON = 1e-9
"""Float slack when comparing tokens: refills like ``(5.1 - 5.0) * 10`` fall just short of 1."""


class TokenBucket:
    """The classic token bucket: ``burst`` tokens, refilled at ``rate`` tokens per second.

    It starts full. A clock that goes backwards refills nothing rather than draining the bucket.
    """

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = now

    @property
    def tokens(self) -> float:
        """Tokens left at the last call (not refilled to any later time)."""
        return self._tokens

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough; a cost over ``burst`` never fits."""
        self._refill(now)
        if self._tokens + _EPSILON >= cost:
            self._tokens = max(0.0, self._tokens - cost)
            return True
        return False

    def debit(self, now: float, cost: float) -> None:
        """Take ``cost`` tokens for work already done, going into debt of at most ``burst``.

        Nothing fits until the bucket has refilled past zero, so a debt of a whole burst costs
        its owner ``2 * burst / rate`` seconds of refusals at most.

        >>> bucket = TokenBucket(rate=10, burst=20, now=0.0)
        >>> bucket.debit(0.0, 25); bucket.tokens
        -5.0
        >>> bucket.take(0.5), bucket.take(0.6)
        (False, True)
        """
        self._refill(now)
        self._tokens = max(-self._burst, self._tokens - cost)

    def available(self, now: float) -> float:
        """The tokens there are at ``now`` (negative in debt); takes nothing."""
        self._refill(now)
        return self._tokens

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now


class RateLimiter:
    """Decides ALLOW, REJECT or ABUSE for each command of one connection.

    Refusals are counted in a window that opens at the first refusal and lasts
    ``abuse_window_s``; the refusal that makes the count exceed ``abuse_rejections`` is ABUSE.
    When the window ends, the next refusal opens a new one. Every refusal counted lies within
    one window of the latest, so ABUSE is only ever given for more than ``abuse_rejections``
    refusals within ``abuse_window_s``; a steady flood is caught within two windows. Two
    numbers per connection instead of a timestamp per refusal.
    """

    __slots__ = (
        "_abuse_rejections",
        "_abuse_window_s",
        "_abusive",
        "_bucket",
        "_rejections",
        "_window_start",
    )

    def __init__(
        self,
        now: float,
        *,
        rate: float = DEFAULT_RATE_PER_S,
        burst: float = DEFAULT_BURST,
        abuse_rejections: int = DEFAULT_ABUSE_REJECTIONS,
        abuse_window_s: float = DEFAULT_ABUSE_WINDOW_S,
    ) -> None:
        if abuse_rejections < 0:
            raise ValueError(f"abuse_rejections must be >= 0, got {abuse_rejections!r}")
        if abuse_window_s <= 0:
            raise ValueError(f"abuse_window_s must be positive, got {abuse_window_s!r}")
        self._bucket = TokenBucket(rate, burst, now)
        self._abuse_rejections = abuse_rejections
        self._abuse_window_s = float(abuse_window_s)
        self._window_start = now
        self._rejections = 0
        self._abusive = False

    @property
    def abusive(self) -> bool:
        """Whether ABUSE has been decided; it is final for the connection."""
        return self._abusive

    def charge(self, now: float, cost: float) -> None:
        """Charge ``cost`` tokens for a command's reply after the fact (a large ``history``
        page): the commands that follow are refused until the bucket has refilled."""
        self._bucket.debit(now, cost)

    def in_debt(self, now: float) -> bool:
        """Whether charges leave the bucket below empty at ``now``; takes nothing. Heavy work
        already admitted asks before it starts: what was charged meanwhile may owe its turn."""
        return self._bucket.available(now) < -_EPSILON

    def check(self, now: float, cost: float = 1.0) -> Verdict:
        """The verdict for one command arriving at ``now``."""
        if self._abusive:
            return Verdict.ABUSE
        if self._bucket.take(now, cost):
            return Verdict.ALLOW
        if self._rejections == 0 or now - self._window_start >= self._abuse_window_s:
            self._window_start = now
            self._rejections = 0
        self._rejections += 1
        if self._rejections > self._abuse_rejections:
            self._abusive = True
            return Verdict.ABUSE
        return Verdict.REJECT


class TypingThrottle:
    """Which typing indicators a node relays: at most one per key (a user in a conversation)
    every ``interval_s`` seconds; the others are answered but not relayed.

    ``clear`` forgets a key (its user sent a message there), so that the user's next indicator
    is relayed at once. Keys older than the interval are forgotten as time goes by: the throttle
    holds only the keys relayed in the last ``interval_s`` seconds, which the connections' rate
    limits bound. ``now`` must not go backwards (a monotonic clock).

    >>> throttle = TypingThrottle(2.0)
    >>> [throttle.admit(("ann", "r:lobby"), t) for t in (0.0, 1.0, 1.9, 2.0, 3.0)]
    [True, False, False, True, False]
    >>> throttle.admit(("bob", "r:lobby"), 3.0)
    True
    >>> throttle.clear(("ann", "r:lobby")); throttle.admit(("ann", "r:lobby"), 3.1)
    True
    >>> len(throttle), throttle.admit(("cid", "r:x"), 10.0), len(throttle)
    (2, True, 1)
    """

    __slots__ = ("_interval_s", "_relayed")

    def __init__(self, interval_s: float = DEFAULT_TYPING_THROTTLE_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self._interval_s = float(interval_s)
        # key -> when its last indicator was relayed, oldest first.
        self._relayed: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._relayed)

    def admit(self, key: Hashable, now: float) -> bool:
        """Whether an indicator for ``key`` arriving at ``now`` is relayed (and is recorded)."""
        relayed = self._relayed
        while relayed:  # forget the keys whose interval is over: they would be admitted anyway
            oldest, at = next(iter(relayed.items()))
            if now - at < self._interval_s:
                break
            del relayed[oldest]
        if key in relayed:
            return False
        relayed[key] = now
        return True

    def clear(self, key: Hashable) -> None:
        """Forget ``key``: its next indicator is relayed at once."""
        self._relayed.pop(key, None)
