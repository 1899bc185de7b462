"""Asking the node's listener for a channel, from any actor; a no-op on a single node."""

from __future__ import annotations

import contextlib
import logging

from pykka import ActorDeadError, Timeout

from actorim.runtime.context import NodeContext

__all__ = ["unwant_channel", "want_channel"]

logger = logging.getLogger("actorim.cluster")

# How long an actor waits for its subscription to be confirmed before going on without it.
WANT_TIMEOUT_S = 5.0


def want_channel(ctx: NodeContext, channel: str) -> bool:
    """Subscribe the node to ``channel`` and wait for Redis to confirm; False if it could not
    be confirmed now (it is made when the link recovers)."""
    from actorim.redis.listener import Want

    listener = ctx.refs.listener
    if listener is None:
        ctx.cluster.wanted[channel] = ctx.cluster.wanted.get(channel, 0) + 1  # type: ignore[union-attr]
        return False
    try:
        return bool(listener.ask(Want(channel), timeout=WANT_TIMEOUT_S))
    except (ActorDeadError, Timeout) as exc:
        logger.warning("subscription to %s not confirmed: %s", channel, exc)
        return False


def unwant_channel(ctx: NodeContext, channel: str) -> None:
    """One wanter of ``channel`` less."""
    from actorim.redis.listener import Unwant

    listener = ctx.refs.listener
    if listener is None:
        wanted = ctx.cluster.wanted  # type: ignore[union-attr]
        count = wanted.get(channel, 0) - 1
        if count > 0:
            wanted[channel] = count
        else:
            wanted.pop(channel, None)
        return
    with contextlib.suppress(ActorDeadError):
        listener.tell(Unwant(channel))
