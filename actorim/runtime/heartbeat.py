"""``HeartbeatActor``: one timer for the whole node instead of one per connection.

Once a second it walks the live links: it pings each connected client every ``heartbeat``
seconds, closes a connection from which no frame at all (pongs included) came within
``idle_timeout`` (1001), and closes one that has not authenticated within ``connect_timeout``
(1008). It also enforces each connection's token expiry (``actorim.runtime.tokens``): the
``refresh`` event ``token_refresh_notice`` seconds before ``exp``, close 4001 once
``token_expiry_grace`` seconds past it. A close still pending after ``close_timeout`` means
the connection's actor is stuck writing to a client that stopped reading: the TCP connection
is cut, which fails the write.
Ten thousand links cost a few milliseconds per sweep.
"""

from __future__ import annotations

import time
from typing import Any

from actorim.protocol.frames import CloseCode, encode_ping
from actorim.runtime.context import NodeContext
from actorim.runtime.link import Phase
from actorim.runtime.messages import Call, call_later
from actorim.runtime.tokens import check_expiry, policy_of
from supervisors import GeventActor

__all__ = ["SWEEP_INTERVAL_S", "HeartbeatActor"]

# How often the links are swept; bounds how late a timeout or a ping can be.
SWEEP_INTERVAL_S = 1.0


_PING = encode_ping(b"")


class HeartbeatActor(GeventActor):
    """See the module docstring."""

    def __init__(self, ctx: NodeContext, *, interval: float = SWEEP_INTERVAL_S) -> None:
        super().__init__()
        self.ctx = ctx
        self.interval = min(interval, ctx.config.heartbeat, ctx.config.connect_timeout)
        self._timer: Any = None
        self._tokens = policy_of(ctx)

    def on_start(self) -> None:
        self.ctx.refs.heartbeat = self.actor_ref
        self._arm()

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
        self.ctx.refs.heartbeat = None

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Call):
            return message.func(*message.args)
        return super().on_receive(message)

    def _arm(self) -> None:
        self._timer = call_later(self.actor_ref, self.interval, self.sweep)

    def sweep(self, now: float | None = None, wall: float | None = None) -> None:
        config = self.ctx.config
        now = time.monotonic() if now is None else now
        wall = time.time() if wall is None else wall  # token times are wall-clock seconds
        tokens = self._tokens
        self.ctx.revocations.prune(wall)
        for link in list(self.ctx.directory.links.values()):
            if link.close_request is not None:
                # A close still pending after close_timeout while the connection's actor is
                # stuck writing to a peer that stopped reading (a half-open TCP connection):
                # cutting the socket fails the write, and the actor cleans up. A close that
                # only waits for its actor's turn (a draining node closing thousands of
                # connections on a busy core) is left to the actor: cut, the client would get
                # no close frame, so neither the code nor the hint of when to come back.
                overdue = now - link.close_requested_at > config.close_timeout
                if overdue and link.phase is not Phase.CLOSED and link.ws.writing:
                    link.ws.abort()
                continue
            if link.phase is Phase.AWAITING_CONNECT:
                if now - link.opened_at > config.connect_timeout:
                    link.request_close(CloseCode.POLICY_VIOLATION, "no connect within the timeout")
                continue
            if link.phase is not Phase.CONNECTED:
                continue
            check_expiry(self.ctx, link, tokens, wall)
            if link.close_request is not None:
                continue
            if now - link.ws.last_received > config.idle_timeout:
                link.request_close(CloseCode.GOING_AWAY, "no frame within the idle timeout")
            elif now - link.last_ping >= config.heartbeat:
                link.last_ping = now
                link.outbox.offer_control(_PING)
        self._arm()
