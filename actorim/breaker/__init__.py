"""Resilience for one link: the pure circuit-breaker machine and the actor that drives it.

Used by the server (its Redis link) and by the Python client (its WebSocket link), so it
depends on neither. The machine's names are re-exported here: ``from actorim.breaker import
BreakerPolicy`` is the path the client docs name. The actor is imported from
``actorim.breaker.actor`` so that the pure machine can be had without Pykka.
"""

from actorim.breaker.machine import (
    DEFAULT_COOLDOWN_CAP_S,
    DEFAULT_COOLDOWN_S,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_HEARTBEAT_TIMEOUT_S,
    DEFAULT_MISSED_HEARTBEATS,
    DEFAULT_RESTART_GRACE_S,
    BreakerEvent,
    BreakerPolicy,
    BreakerState,
    BreakerStateError,
    CircuitBreaker,
    Transition,
)

__all__ = [
    "DEFAULT_COOLDOWN_CAP_S",
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_HEARTBEAT_INTERVAL_S",
    "DEFAULT_HEARTBEAT_TIMEOUT_S",
    "DEFAULT_MISSED_HEARTBEATS",
    "DEFAULT_RESTART_GRACE_S",
    "BreakerEvent",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStateError",
    "CircuitBreaker",
    "Transition",
]
