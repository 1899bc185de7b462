"""Exponential back-off with full jitter and a floor, as a pure function of the attempt number.

Used to delay restarts of children that depend on an outside service (so that a database that is
down is not hammered by a restart loop) and by reconnect schedules. The formula is
``floor + random(0, min(cap, floor * factor**attempt))``: the floor keeps a minimum pause, the
full jitter spreads many clients that failed at the same instant.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """A back-off schedule.

    ``floor`` (default 0.1 s): the least delay. ``cap`` (default 30 s): the most jitter added.
    ``factor`` (default 2): growth per attempt. ``reset_after`` (default 60 s): a child that ran
    this long before failing starts again from attempt 0.
    """

    floor: float = 0.1
    cap: float = 30.0
    factor: float = 2.0
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        for name in ("floor", "cap", "reset_after"):
            if getattr(self, name) < 0:
                msg = f"Backoff.{name} must be >= 0, got {getattr(self, name)}"
                raise ValueError(msg)
        if self.factor < 1:
            msg = f"Backoff.factor must be >= 1, got {self.factor}"
            raise ValueError(msg)

    def ceiling(self, attempt: int) -> float:
        """The largest jitter for ``attempt`` (0-based)."""
        # min() before the power would overflow: factor**attempt grows without bound.
        if attempt > 64:
            return self.cap
        return min(self.cap, self.floor * self.factor**attempt)

    def delay(self, attempt: int, rand: Callable[[float, float], float] = random.uniform) -> float:
        """Seconds to wait before ``attempt``; ``rand(a, b)`` is injectable for tests."""
        return self.floor + rand(0.0, self.ceiling(attempt))
