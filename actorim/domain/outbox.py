"""A connection's queue of outgoing frames, bounded so a slow client hurts nobody else.

Every actor that has something for a client (its room, the router, the presence tracker, the
store) *offers* a finished frame to the client's outbox. The first frame into an empty outbox
calls ``wake``: the link then takes all waiting frames in a hub callback and writes them in one
non-blocking write, putting back the tail the socket did not take (``put_back``) for the
connection's actor to write, blocking, from its greenlet (see ``Link.wake``). Offering never
blocks: when the client does not read fast enough and the queue passes its bound in frames or
bytes, the outbox marks itself overflowed and refuses further frames, and the connection is
closed with 1013. Pongs and close replies the protocol owes go past the bounds
(``offer_control``), one pong for the latest ping only (``offer_pong``).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Outbox"]


class Outbox:
    """Pending frames for one client; ``wake`` tells the link that there is work to flush."""

    __slots__ = (
        "_pong_at",
        "_wake",
        "frames",
        "max_bytes",
        "max_frames",
        "overflowed",
        "queued_bytes",
    )

    def __init__(self, *, max_frames: int, max_bytes: int, wake: Callable[[], None]) -> None:
        # A list, swapped out whole by take(): a deque's first block alone is 600 bytes, and an
        # idle connection's outbox is empty nearly all the time.
        self.frames: list[bytes] = []
        self.queued_bytes = 0
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.overflowed = False
        self._wake = wake
        self._pong_at: int | None = None

    def offer(self, frame: bytes) -> bool:
        """Queue a frame; False (and the outbox overflowed) when the client is too far behind."""
        if self.overflowed:
            return False
        frames = self.frames
        queued = len(frames)
        size = self.queued_bytes + len(frame)
        if queued >= self.max_frames or size > self.max_bytes:
            self.overflowed = True
            self.frames = []
            self.queued_bytes = 0
            self._pong_at = None
            self._wake()
            return False
        frames.append(frame)
        self.queued_bytes = size
        if not queued:
            self._wake()
        return True

    def offer_control(self, frame: bytes) -> None:
        """Queue a control frame (pong, close reply) past the bounds: the protocol owes it."""
        self.frames.append(frame)
        self.queued_bytes += len(frame)
        if len(self.frames) == 1:
            self._wake()

    def offer_pong(self, frame: bytes) -> None:
        """Queue the pong for the client's latest ping, in place of one not yet written.

        RFC 6455 §5.5.3 lets a pong answer only the most recent ping: a client that pings and
        never reads is owed one frame, not one per ping.
        """
        at = self._pong_at
        if at is not None:
            self.queued_bytes += len(frame) - len(self.frames[at])
            self.frames[at] = frame
            return
        self._pong_at = len(self.frames)
        self.offer_control(frame)

    def put_back(self, data: bytes) -> None:
        """Return the unwritten tail of a write to the front of the queue."""
        self.frames.insert(0, data)
        self.queued_bytes += len(data)
        if self._pong_at is not None:
            self._pong_at += 1

    def take(self) -> list[bytes]:
        """Everything waiting, in order, for one write."""
        frames, self.frames = self.frames, []
        self.queued_bytes = 0
        self._pong_at = None
        return frames

    def __len__(self) -> int:
        return len(self.frames)
