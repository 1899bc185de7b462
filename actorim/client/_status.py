"""The link state an application sees, derived from the circuit breaker and the link itself.

The breaker (:class:`~actorim.breaker.machine.CircuitBreaker`, run by
:class:`~actorim.breaker.actor.BreakerActor`) decides when to try again; the client knows
whether a WebSocket is up and restored. :class:`LinkStatus` combines the two, with no I/O and
no clock: feed it what happened, it answers the :class:`StateChange` if the state moved.
A change to CONNECTING or CIRCUIT_OPEN says, when the breaker has scheduled it, how long until
the next attempt (``retry_in``): the breaker's last transition carries the time.

====================================  ==========================  ================
started / stopped                      breaker                     link state
====================================  ==========================  ================
not started, or stopped               any                         DISCONNECTED
started                               OPEN                        CIRCUIT_OPEN
started, link up and restored         CLOSED                      CONNECTED
started, link down                    CLOSED (with failures or     CONNECTING
                                      none: the first connect)
started                               HALF_OPEN (the trial)       CONNECTING
====================================  ==========================  ================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from actorim.breaker.machine import BreakerState, Transition

__all__ = ["LinkState", "LinkStatus", "StateChange"]


class LinkState(StrEnum):
    """Where the client's link to the server is."""

    CONNECTING = "CONNECTING"
    """Connecting for the first time, reconnecting on the back-off schedule, or trying once
    after the circuit's cool-down. Commands wait (up to their timeout) and are sent when the
    link is back."""
    CONNECTED = "CONNECTED"
    """Connected, rooms re-joined and unanswered commands resent: commands go out at once."""
    DISCONNECTED = "DISCONNECTED"
    """Not started, closed by the application, or refused by the server for good."""
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    """Too many attempts failed in a row (or the server stopped answering heartbeats): no
    attempt is made until the cool-down is over."""


@dataclass(frozen=True, slots=True)
class StateChange:
    """The link state moved from ``previous`` to ``state`` because of ``reason``."""

    previous: LinkState
    state: LinkState
    reason: str
    retry_in: float | None = None
    """CONNECTING after a lost link, or CIRCUIT_OPEN: seconds from the change to the next
    attempt, as the breaker scheduled it; None when unknown (the first connect, the trial)."""


class LinkStatus:
    """See the module docstring.

    >>> status = LinkStatus()
    >>> status.start("connecting").state
    <LinkState.CONNECTING: 'CONNECTING'>
    >>> status.link_up("connected as alice").state
    <LinkState.CONNECTED: 'CONNECTED'>
    >>> lost = Transition(BreakerState.CLOSED, BreakerState.CLOSED, 7.0, "lost", 1, retry_at=10.0)
    >>> status.breaker_moved(lost) is None  # the link itself has not been seen to end yet
    True
    >>> status.link_down("the link ended (1001)").retry_in
    3.0
    """

    __slots__ = ("_breaker", "_failures", "_retry_in", "_started", "_state", "_stopped", "_up")

    def __init__(self) -> None:
        self._started = False
        self._stopped = False
        self._breaker = BreakerState.CLOSED
        self._failures = 0
        self._up = False
        self._state = LinkState.DISCONNECTED
        self._retry_in: float | None = None

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def breaker(self) -> BreakerState:
        """The breaker's state as last reported."""
        return self._breaker

    @property
    def failures(self) -> int:
        """Failed attempts since the link last worked, as the breaker counted them."""
        return self._failures

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self, reason: str) -> StateChange | None:
        """The application asked to connect."""
        if self._stopped:
            return None
        self._started = True
        return self._settle(reason)

    def breaker_moved(self, transition: Transition) -> StateChange | None:
        """The breaker published ``transition``."""
        self._breaker = transition.new
        self._failures = transition.failures
        retry_at = transition.retry_at
        self._retry_in = None if retry_at is None else max(0.0, retry_at - transition.at)
        if transition.new is BreakerState.OPEN:
            self._up = False
        return self._settle(transition.reason)

    def link_up(self, reason: str) -> StateChange | None:
        """A WebSocket is connected and the session restored on it."""
        self._up = True
        self._retry_in = None
        return self._settle(reason)

    def link_down(self, reason: str) -> StateChange | None:
        """The WebSocket ended (or was given up)."""
        self._up = False
        return self._settle(reason)

    def stop(self, reason: str) -> StateChange | None:
        """Closed for good: by the application, or refused by the server."""
        self._stopped = True
        self._up = False
        return self._settle(reason)

    def _derive(self) -> LinkState:
        if not self._started or self._stopped:
            return LinkState.DISCONNECTED
        if self._breaker is BreakerState.OPEN:
            return LinkState.CIRCUIT_OPEN
        if self._up and self._breaker is BreakerState.CLOSED:
            return LinkState.CONNECTED
        return LinkState.CONNECTING

    def _settle(self, reason: str) -> StateChange | None:
        previous, state = self._state, self._derive()
        if state is previous:
            return None
        self._state = state
        waiting = state is LinkState.CONNECTING or state is LinkState.CIRCUIT_OPEN
        return StateChange(previous, state, reason, self._retry_in if waiting else None)
