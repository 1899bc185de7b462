"""The limits of the WebSocket read path, in one value handed from the node to the handler.

An application object offers them as ``websocket_limits``; without it the handler uses these
defaults. Each field says what it bounds; the defaults and where their numbers come from live
beside the code that enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass

from actorim.domain.ratelimit import (
    DEFAULT_FRAME_BURST,
    DEFAULT_FRAME_RATE_PER_S,
    DEFAULT_FRAMES_PER_READ,
)
from actorim.protocol.frames import (
    DEFAULT_CLOSING_READ_LIMIT,
    DEFAULT_MAX_FRAGMENTS,
    DEFAULT_MAX_MESSAGE_SIZE,
)
from actorim.web.handshakes import DEFAULT_HANDSHAKE_TIMEOUT_S, DEFAULT_MAX_HANDSHAKES
from actorim.web.headers import DEFAULT_MAX_HEADER_BYTES

__all__ = ["WireLimits"]


@dataclass(frozen=True, slots=True)
class WireLimits:
    """What one client may cost the server before and after its upgrade."""

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    """Largest message, all fragments together (then close 1009)."""
    max_fragments: int = DEFAULT_MAX_FRAGMENTS
    """Most frames one message may be split into (then close 1009)."""
    frame_rate: float = DEFAULT_FRAME_RATE_PER_S
    """Frames per second a connection's reader parses, data and control; more wait in TCP."""
    frame_burst: float = DEFAULT_FRAME_BURST
    """Frames a connection may send at once before `frame_rate` applies."""
    frames_per_read: int = DEFAULT_FRAMES_PER_READ
    """Most frames parsed for one connection before the hub turns to other sockets."""
    closing_read_limit: int = DEFAULT_CLOSING_READ_LIMIT
    """Bytes read after the server's close frame before the socket is shut anyway."""
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT_S
    """Seconds a client has to send its whole request head (then 408 and close)."""
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    """Bytes all request header lines may take together (then 431)."""
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES
    """Connections in their request head at once; past it the oldest is dropped."""
