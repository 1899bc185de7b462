"""Which connections are still in their HTTP request, and which one gives way to a new one.

A connection holds a descriptor, a greenlet and a read buffer from the moment it is accepted;
until its request head is in, the client has proved nothing. ``HandshakeGate`` counts those
connections and, at its cap, names the oldest to be dropped so that a new one can start: clients
that finish their request in milliseconds always get through, and a flood of unfinished
requests only ever evicts itself. Pure: it holds keys, the handler closes the sockets.

>>> gate = HandshakeGate(limit=2)
>>> gate.admit("a"), gate.admit("b"), gate.admit("c")
(None, None, 'a')
>>> gate.done("b"); gate.admit("d"), len(gate)
(None, 2)
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT_S", "DEFAULT_MAX_HANDSHAKES", "HandshakeGate"]

DEFAULT_MAX_HANDSHAKES = 512
"""Connections that may be in their request head at once. A legitimate head arrives within a
round trip, so even a burst of thousands of reconnecting clients keeps few of them in it; 512 of
them hold at most 512 x (16 KiB of headers + an 8 KiB read buffer), about 12 MiB."""

DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0
"""Seconds a client has to send its whole request head: a slow mobile link needs a few round
trips, not ten seconds; one byte now and then (slowloris) is refused at the deadline."""


class HandshakeGate:
    """Connections still in their request head, oldest first, at most ``limit`` of them."""

    __slots__ = ("_limit", "_pending")

    def __init__(self, limit: int = DEFAULT_MAX_HANDSHAKES) -> None:
        if limit < 1:
            raise ValueError(f"limit must be 1 or more, got {limit}")
        self._limit = limit
        self._pending: dict[Hashable, None] = {}

    def admit(self, key: Hashable) -> Hashable | None:
        """A new connection starts its request; returns the one to drop for it, if any."""
        evicted = None
        if len(self._pending) >= self._limit:
            evicted = next(iter(self._pending))
            del self._pending[evicted]
        self._pending[key] = None
        return evicted

    def done(self, key: Hashable) -> None:
        """The connection's request head is in (or the connection ended): it no longer counts."""
        self._pending.pop(key, None)

    def __len__(self) -> int:
        return len(self._pending)
