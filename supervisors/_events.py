"""Supervision events for logs, metrics and tests: who crashed, restarted or escalated."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum

from supervisors._exit import Exit

__all__ = ["EventKind", "SupervisorEvent", "subscribe"]

logger = logging.getLogger("supervisors")


class EventKind(StrEnum):
    """What happened to a child (or to the supervisor itself, for ``ESCALATED``)."""

    STARTED = "started"
    EXITED = "exited"
    CRASHED = "crashed"
    RESTARTED = "restarted"
    START_FAILED = "start_failed"
    ESCALATED = "escalated"


@dataclass(frozen=True, slots=True)
class SupervisorEvent:
    """One supervision event; ``supervisor`` is the supervisor's name."""

    kind: EventKind
    supervisor: str
    child_id: Hashable | None = None
    reason: Exit | None = None


Listener = Callable[[SupervisorEvent], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener(event)`` for every supervision event; returns the unsubscribe function.

    Listeners run on the hub inside the supervisor: keep them short (count, log, ``tell``).
    """
    _listeners.append(listener)

    def unsubscribe() -> None:
        if listener in _listeners:
            _listeners.remove(listener)

    return unsubscribe


def emit(event: SupervisorEvent) -> None:
    for listener in tuple(_listeners):
        try:
            listener(event)
        except Exception:
            logger.exception("supervision event listener %r raised", listener)
