"""Admission control at the door: a connection past ``max_setups`` is sent away at once.

Called for each upgraded WebSocket before anything else is done for it (no actor, no token
check, no store read). The decision is ``NodeContext.admission`` (``actorim.domain.admission``);
this module only carries it out: a refused connection is closed with 1013 (*try again later*)
and a reason that says when to come back, ``try again later; reconnect in <ms> ms``
(``actorim.protocol.restart``), and counted (``actorim_setups_refused_total``). The upgrade is
accepted first, rather than refused with a 503, because a browser cannot read a refused
upgrade's status or headers, only a close's code and reason.
"""

from __future__ import annotations

import time

from actorim.protocol.restart import TRY_AGAIN_LATER_CODE, try_later_reason
from actorim.runtime.context import NodeContext
from actorim.web.websocket import ServerWebSocket

__all__ = ["refused", "started"]


def refused(ctx: NodeContext, ws: ServerWebSocket) -> bool:
    """True when ``ws`` was refused (and closed): the node is setting up ``max_setups``
    connections already. Else it counts as setting up until its actor reports the end."""
    delay = ctx.admission.admit(ws, time.monotonic())
    if delay is None:
        return False
    ctx.metrics.setups_refused.inc()
    ws.close(TRY_AGAIN_LATER_CODE, try_later_reason(delay))
    return True


def started(ctx: NodeContext, ws: ServerWebSocket) -> None:
    """``run_connection`` returned: if it closed ``ws`` (its actor did not start in time, or
    the node began to drain), its set-up is over; else its actor reports the end."""
    if ws.closed:
        ctx.admission.done(ws, time.monotonic(), connected=False)
