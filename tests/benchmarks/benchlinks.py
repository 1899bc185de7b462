"""A connected link over a socket, as the benchmarks that skip the handshake need one.

``tests/benchmarks/quiet.py`` (a room's fan-out to its members) and
``tests/benchmarks/setup_costs.py sweep`` (the heartbeat's walk over connected links) both
measure code that runs on links past ``connect``: the link here is the one the node makes,
its session set to connected, with no actor and no handshake behind it.
"""

from __future__ import annotations

import socket

from actorim.domain.ratelimit import RateLimiter
from actorim.domain.session import Phase
from actorim.protocol.frames import FrameReader
from actorim.runtime.link import Link
from actorim.web.websocket import ServerWebSocket

__all__ = ["connected_link"]


def connected_link(sock: socket.socket) -> Link:
    """A link writing to ``sock``, its session connected (no identity: the caller's to set)."""
    link = Link(
        ServerWebSocket(sock, FrameReader()),
        limiter=RateLimiter(now=0.0),
        max_frames=1024,
        max_bytes=1 << 20,
    )
    link.session.phase = Phase.CONNECTED
    return link
