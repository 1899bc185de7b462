"""Who does what in a load test, and when: pure arithmetic, shared by every process.

Every process computes the same answers from the same numbers, so the processes need no
coordination beyond a common start time: client ``i`` lives in process ``i % processes``, sits
in room ``i % rooms`` and sends when ``i < senders``. Striding (rather than blocks) spreads the
senders over the processes and gives every process members of every room.

Sends at a fixed rate are one global sequence, evenly spaced: message ``n`` belongs to sender
``n % senders`` and is due at `Schedule.offset_ns(n)` after the start, whatever happens to the
messages before it (open loop: a sender that stalls does not push the schedule back, and
latency is measured from the due time).

>>> layout = Layout(clients=10, processes=3, rooms=2, senders=4)
>>> list(layout.clients_of(1)), layout.room_of(7), layout.members(0)
([1, 4, 7], 1, 5)
>>> Schedule(rate=100.0, ramp_s=0.0).offset_ns(3)
30000000
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DRAIN_TIMEOUT_S",
    "NS",
    "REPLY_TIMEOUT_S",
    "Layout",
    "Schedule",
    "Window",
    "ramp_start_ns",
]

NS = 1_000_000_000
"""Nanoseconds per second: times on the wire and in the plan are integer nanoseconds."""

CONNECT_TIMEOUT_S = 10.0
"""Time one client has to fetch a token, open its socket, connect and join."""

REPLY_TIMEOUT_S = 10.0
"""After the last send, how long replies are awaited before the rest count as ``no_reply``."""

DRAIN_TIMEOUT_S = 10.0
"""After the replies, how long missing deliveries are awaited before they count as lost."""


@dataclass(frozen=True, slots=True)
class Layout:
    """How clients are spread over processes and rooms, and which of them send."""

    clients: int
    processes: int
    rooms: int
    senders: int

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise ValueError(f"clients must be 1 or more, got {self.clients}")
        if not 1 <= self.processes <= self.clients:
            raise ValueError(f"processes must be 1 to {self.clients}, got {self.processes}")
        if not 1 <= self.rooms <= self.clients:
            raise ValueError(f"rooms must be 1 to {self.clients}, got {self.rooms}")
        if not 0 <= self.senders <= self.clients:
            raise ValueError(f"senders must be 0 to {self.clients}, got {self.senders}")

    def process_of(self, client: int) -> int:
        return client % self.processes

    def clients_of(self, process: int) -> range:
        return range(process, self.clients, self.processes)

    def senders_of(self, process: int) -> range:
        return range(process, self.senders, self.processes)

    def room_of(self, client: int) -> int:
        return client % self.rooms

    def is_sender(self, client: int) -> bool:
        return client < self.senders

    def members(self, room: int) -> int:
        """Clients placed in ``room``."""
        return len(range(room, self.clients, self.rooms))

    def fan_out(self) -> float:
        """Deliveries one message makes on average: the other members of its sender's room."""
        if self.senders == 0:
            return 0.0
        return sum(self.members(self.room_of(s)) - 1 for s in range(self.senders)) / self.senders


@dataclass(frozen=True, slots=True)
class Schedule:
    """Due times of an open-loop run: ``rate`` messages/s in all, reached after ``ramp_s``.

    During the ramp the rate grows linearly from 0, so the number of messages due by time t is
    ``rate * t**2 / (2 * ramp_s)``, then ``rate * (t - ramp_s / 2)``; `offset_ns` inverts it.
    """

    rate: float
    ramp_s: float

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be above 0, got {self.rate}")
        if self.ramp_s < 0:
            raise ValueError(f"ramp must be 0 or more, got {self.ramp_s}")

    def offset_ns(self, n: int) -> int:
        """When message ``n`` (0-based, over all senders) is due, after the start."""
        ramp_messages = self.rate * self.ramp_s / 2
        if n < ramp_messages:
            seconds = math.sqrt(2 * n * self.ramp_s / self.rate)
        else:
            seconds = n / self.rate + self.ramp_s / 2
        return round(seconds * NS)

    def due_before(self, offset_ns: int) -> int:
        """How many messages are due strictly before ``offset_ns``."""
        seconds = offset_ns / NS
        if seconds <= self.ramp_s:
            estimate = self.rate * seconds * seconds / (2 * self.ramp_s) if self.ramp_s else 0
        else:
            estimate = self.rate * (seconds - self.ramp_s / 2)
        # Float estimate, then exact correction against offset_ns itself.
        n = max(0, math.floor(estimate) - 1)
        while self.offset_ns(n) < offset_ns:
            n += 1
        while n > 0 and self.offset_ns(n - 1) >= offset_ns:
            n -= 1
        return n


def ramp_start_ns(ramp_s: float, sender: int, senders: int) -> int:
    """When a closed-loop (``--max``) sender starts: senders join evenly over the ramp."""
    return round(ramp_s * sender / max(senders, 1) * NS)


@dataclass(frozen=True, slots=True)
class Window:
    """The run after its start: ``warmup`` (sent, not measured), then ``duration`` (measured).

    Whether a message counts is decided by its due time alone, so the sender and every receiver,
    in any process, classify it the same way.
    """

    warmup_ns: int
    duration_ns: int

    @classmethod
    def of_seconds(cls, warmup_s: float, duration_s: float) -> Window:
        return cls(round(warmup_s * NS), round(duration_s * NS))

    @property
    def end_ns(self) -> int:
        """Offset at which sending stops."""
        return self.warmup_ns + self.duration_ns

    def measured(self, offset_ns: int) -> bool:
        return self.warmup_ns <= offset_ns < self.end_ns
