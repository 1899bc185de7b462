"""The reconnect hint: how a server that sends a client away tells it when to come back.

A node that drains closes every connection with 1012 (*service restart*, RFC 6455 §7.4.2 and
the IANA registry: "the server is restarting"), whose reason carries a delay picked for that
connection: ``service restart; reconnect in 2350 ms``. The delays are spread uniformly over
``drain_reconnect_spread``, so that the clients of a drained node come back over that window
instead of all at once; a client waits the hinted delay (plus its own small jitter), then
reconnects to the same URL (behind a load balancer, another node) and resumes with ``since``.

The reason is text on purpose: a client that does not know the hint still sees a readable
reason and a code that says "reconnect", and the browser's ``CloseEvent.reason`` is all a web
page gets. A hint is only advice: clients clamp it to :data:`MAX_RESTART_DELAY_S`, so a
misbehaving server cannot park them for long.

A node too busy to set up one more connection before the client would give up on it (admission
control, ``actorim.domain.admission``) accepts the upgrade and closes at once with 1013 (*try
again later*) and the same kind of hint, ``try again later; reconnect in 800 ms``: the delay
spreads the refused clients over the time the node needs for those ahead of them. Clients treat
it as they treat a restart's: wait the hint plus their own jitter, reconnect, resume with
``since``. A 1013 without a hint (a node that drains, an outbox that overflowed) is an ordinary
loss: the client's own back-off applies.

>>> restart_reason(2.3504)
'service restart; reconnect in 2350 ms'
>>> restart_delay(1012, "service restart; reconnect in 2350 ms")
2.35
>>> restart_delay(1012, "service restart"), restart_delay(1008, "reconnect in 5 ms")
(None, None)
>>> restart_delay(1012, "reconnect in 99999999 ms")
60.0
>>> try_later_reason(0.8), restart_delay(1013, try_later_reason(0.8))
('try again later; reconnect in 800 ms', 0.8)
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_RESTART_DELAY_S",
    "RESTART_CLOSE_CODE",
    "TRY_AGAIN_LATER",
    "TRY_AGAIN_LATER_CODE",
    "restart_delay",
    "restart_reason",
    "try_later_reason",
]

RESTART_CLOSE_CODE = 1012
"""Service restart (RFC 6455 registry): the code a draining node closes its connections with."""

MAX_RESTART_DELAY_S = 60.0
"""The longest hint a client honours: a rolling restart spreads its clients over seconds, never
minutes; anything longer is clamped to this."""

TRY_AGAIN_LATER_CODE = 1013
"""Try Again Later (RFC 6455 registry): the code a node too busy to set up a connection closes
it with, at once after the upgrade, with a hint."""

_HINTED_CODES = frozenset({RESTART_CLOSE_CODE, TRY_AGAIN_LATER_CODE})

_HINT = re.compile(r"reconnect in (\d{1,9}) ms")


def restart_reason(delay_s: float) -> str:
    """The close reason that tells a client to come back after ``delay_s`` seconds (whole
    milliseconds; well under the 123 bytes a close reason may take)."""
    return f"service restart; reconnect in {max(0, round(delay_s * 1000))} ms"


TRY_AGAIN_LATER = "try again later"
"""How the reason of a 1013 with a hint begins."""


def try_later_reason(delay_s: float) -> str:
    """The close reason (with 1013) that sends a client away until ``delay_s`` seconds from now."""
    return f"{TRY_AGAIN_LATER}; reconnect in {max(0, round(delay_s * 1000))} ms"


def restart_delay(code: int, reason: str) -> float | None:
    """The delay, in seconds, a close with ``code`` (1012 or 1013) and ``reason`` asks the
    client to wait before it reconnects; None when the close carries no hint."""
    if code not in _HINTED_CODES:
        return None
    found = _HINT.search(reason)
    if found is None:
        return None
    return min(MAX_RESTART_DELAY_S, int(found.group(1)) / 1000)
