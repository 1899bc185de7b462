"""Restart intensity: OTP's sliding window of restart times, as a pure object."""

from __future__ import annotations

from collections import deque

__all__ = ["RestartIntensity"]


class RestartIntensity:
    """Decides whether one more restart stays within ``max_restarts`` in ``max_seconds``.

    As in OTP, the limit is exceeded when *more than* ``max_restarts`` restarts fall within the
    window; ``max_restarts=0`` therefore means "never restart, escalate at the first failure".
    Times are passed in, so the window is tested without a clock.
    """

    __slots__ = ("_times", "max_restarts", "max_seconds")

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        if max_restarts < 0:
            msg = f"max_restarts must be >= 0, got {max_restarts}"
            raise ValueError(msg)
        if max_seconds <= 0:
            msg = f"max_seconds must be > 0, got {max_seconds}"
            raise ValueError(msg)
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        # Made at the first restart: most supervised things never restart, and an empty deque
        # costs 600 bytes (one per connection adds up).
        self._times: deque[float] | None = None

    def record(self, now: float) -> bool:
        """Record a restart at ``now``; False when that restart exceeds the intensity."""
        times = self._times
        if times is None:
            times = self._times = deque()
        times.append(now)
        horizon = now - self.max_seconds
        while times and times[0] <= horizon:
            times.popleft()
        return len(times) <= self.max_restarts

    def __len__(self) -> int:
        return len(self._times) if self._times is not None else 0
