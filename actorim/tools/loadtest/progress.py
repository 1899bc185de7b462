"""The live view of a run on standard error: a redrawn bar on a terminal, else a line now and then.

`Progress` decides what to print and when from the counters and the time it is given; it has
no clock and no knowledge of processes.

>>> progress_line(Counters(connected=20, sent=50, received=400), phase="running",
...               fraction=0.5, deliveries_per_s=812.4, clients=20)
'[##########..........]  50% running    20/20 connected  50 sent  400 delivered  812/s  0 errors'
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TextIO

__all__ = ["Counters", "Progress", "progress_line"]

BAR_WIDTH = 20
TTY_REDRAW_S = 0.1
"""A terminal is redrawn at most ten times a second."""
PLAIN_EVERY_S = 5.0
"""Without a terminal (CI logs, a pipe) one line every five seconds, and at each phase change."""


@dataclass(slots=True)
class Counters:
    """Running totals over the whole run, warm-up included."""

    connected: int = 0
    sent: int = 0
    acked: int = 0
    received: int = 0
    errors: int = 0

    @classmethod
    def total(cls, parts: list[Counters]) -> Counters:
        names = [f.name for f in fields(cls)]
        return cls(**{name: sum(getattr(p, name) for p in parts) for name in names})


def progress_line(
    counters: Counters, *, phase: str, fraction: float, deliveries_per_s: float, clients: int
) -> str:
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return (
        f"[{bar}] {fraction:4.0%} {phase:<10} {counters.connected}/{clients} connected  "
        f"{counters.sent} sent  {counters.received} delivered  {deliveries_per_s:.0f}/s  "
        f"{counters.errors} errors"
    )


class Progress:
    """Prints the progress of a run to ``stream``; call `update` often, `close` once."""

    def __init__(self, stream: TextIO, *, tty: bool, clients: int) -> None:
        self._stream = stream
        self._tty = tty
        self._clients = clients
        self._printed_at = float("-inf")
        self._phase = ""
        self._drawn = False
        self._rate_at: float | None = None
        self._rate_received = 0
        self._rate = 0.0

    def update(self, counters: Counters, *, phase: str, fraction: float, now: float) -> None:
        self._measure_rate(counters.received, now)
        new_phase = phase != self._phase
        self._phase = phase
        every = TTY_REDRAW_S if self._tty else PLAIN_EVERY_S
        if not new_phase and now - self._printed_at < every:
            return
        self._printed_at = now
        line = progress_line(
            counters,
            phase=phase,
            fraction=fraction,
            deliveries_per_s=self._rate,
            clients=self._clients,
        )
        if self._tty:
            self._stream.write("\r" + line + "\x1b[K")
            self._drawn = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

    def _measure_rate(self, received: int, now: float) -> None:
        """Deliveries per second over the last second or so."""
        if self._rate_at is None:
            self._rate_at, self._rate_received = now, received
            return
        elapsed = now - self._rate_at
        if elapsed >= 1.0:
            self._rate = (received - self._rate_received) / elapsed
            self._rate_at, self._rate_received = now, received
