"""``answer``: a reply of the node's Redis client, with the type its caller knows it has.

redis-py annotates each command once for its synchronous and asyncio clients, and for clients
that decode replies and clients that do not: ``Awaitable[T] | T``, with ``str`` where ours (no
``decode_responses``) answers ``bytes``. Our clients are synchronous and answer bytes, so the
caller states the type it has, by annotating the variable it assigns.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

__all__ = ["answer"]


def answer(reply: Awaitable[Any] | Any) -> Any:
    """``reply`` as what a synchronous client answered; raises ``TypeError`` if it is an
    awaitable (an asyncio client where a synchronous one belongs)."""
    if isinstance(reply, Awaitable):
        msg = "an asyncio Redis client where a synchronous one is expected"
        raise TypeError(msg)
    return reply
