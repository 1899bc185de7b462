"""The seams between the runtime and the adapters below and beside it: small protocols that
the actors program against, so that no actor names the web layer or a concrete adapter.

Today: ``Transport``, what a connection's actors need of its WebSocket (implemented by
``actorim.web.websocket.ServerWebSocket``), and ``ConnectionClosed``, what a write raises once
the socket is gone. The Store protocol is ``actorim.store.base.Store``.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ConnectionClosed", "Transport"]


class ConnectionClosed(Exception):
    """The WebSocket is closing or its socket is gone: nothing more can be written to it."""


class Transport(Protocol):
    """One client's socket as the runtime sees it: frames already encoded go out, and the time
    the last frame came in is known (the idle check)."""

    last_received: float
    """When the client last sent bytes, on the socket's monotonic clock."""

    @property
    def writing(self) -> bool:
        """Whether a write is under way, possibly blocked on a client that stopped reading."""
        ...

    def write(self, data: bytes | list[bytes]) -> None:
        """Write encoded frames, waiting for the socket; raises ``ConnectionClosed``."""
        ...

    def take_control_output(self) -> bytes:
        """Pongs and close replies the reader owes the client, for the writer to send in order."""
        ...

    def try_write(self, data: bytes) -> int:
        """Write what the socket takes now without waiting: bytes written, or -1 when closed."""
        ...

    def abort(self) -> None:
        """End the connection now, with no closing handshake."""
        ...

    def close(self, code: int = ..., reason: str = "") -> None:
        """Close with the closing handshake."""
        ...
