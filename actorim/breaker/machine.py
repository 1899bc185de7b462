"""A link's circuit breaker, as a pure state machine: events in with the time they happened.

The breaker decides; it does no I/O and reads no clock.
:class:`~actorim.breaker.actor.BreakerActor` owns the timers and the probes and feeds it what
happened.

States:

* ``CLOSED``: calls go through. The link is *healthy* while no failure has been recorded since
  the last success; heartbeats go out every ``heartbeat_interval``. After a failure it is
  *failing*: its heartbeats become reconnect attempts on the back-off schedule, and
  ``failure_threshold`` consecutive failures open the circuit.
* ``OPEN``: calls are refused at once, for a cool-down that grows with each re-opening.
* ``HALF_OPEN``: the cool-down is over and exactly one trial call (or probe) is out. Its success
  closes the circuit; anything else (a failure, or no answer within ``heartbeat_timeout``)
  re-opens it.

A peer that announces it is going away (a server draining for a restart) may be given
``restart_grace``: failed attempts within that time after the announcement are retried on the
back-off schedule without counting toward ``failure_threshold``; past it they count again. It
may also say when to come back (``retry_after``): the first attempt then waits that long plus
the back-off's own jitter, and the grace starts when that wait ends.

Only failures the caller classifies as link failures are recorded: an exception of the caller
itself (a ``GreenletExit``, its own ``Timeout``) is not a sign that the peer is gone, and a caller
that records nothing for a trial lets it time out, which re-opens the circuit.

>>> breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown=5.0), now=0.0,
...                          rand=lambda a, b: a)
>>> breaker.record_failure(1.0, "connection refused").new
<BreakerState.OPEN: 'open'>
>>> breaker.allow(5.9), breaker.allow(6.0), breaker.allow(6.0)
(False, True, False)
>>> breaker.record_success(6.2).new
<BreakerState.CLOSED: 'closed'>
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from supervisors import Backoff

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

Rand = Callable[[float, float], float]

DEFAULT_FAILURE_THRESHOLD = 5
"""Consecutive failures that open the circuit: enough to ride out a restart of the peer, few
enough that a dead peer is not hammered for long."""

DEFAULT_COOLDOWN_S = 5.0
"""Least time the circuit stays open before one trial is let through."""

DEFAULT_COOLDOWN_CAP_S = 60.0
"""Most jitter added to the cool-down after repeated re-opening: a peer that stays down is
tried about once a minute."""

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
"""Time between heartbeats on a healthy link."""

DEFAULT_HEARTBEAT_TIMEOUT_S = 2.0
"""A heartbeat (or trial) not answered within this is missed: far above a round trip on a
working network, short enough to notice a hung TCP connection."""

DEFAULT_MISSED_HEARTBEATS = 2
"""Misses in a row that open the circuit: one late answer is not a dead peer."""

DEFAULT_RESTART_GRACE_S = 0.0
"""No grace after a going-away announcement unless a policy asks for it: a peer that never
announces (Redis) is unaffected."""


class BreakerState(StrEnum):
    """Where a link's breaker is; see the module docstring."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerEvent(StrEnum):
    """What can happen to a breaker; the keys of its transition table."""

    SUCCESS = "success"
    FAILURE = "failure"
    THRESHOLD_REACHED = "threshold_reached"
    COOLDOWN_ELAPSED = "cooldown_elapsed"
    HEARTBEAT_SENT = "heartbeat_sent"
    HEARTBEAT_ANSWERED = "heartbeat_answered"
    HEARTBEAT_MISSED = "heartbeat_missed"
    HEARTBEATS_LOST = "heartbeats_lost"
    TRIAL_TIMED_OUT = "trial_timed_out"


_S = BreakerState
_E = BreakerEvent

# state -> event -> next state. A pair missing from the table is an illegal call. A success or a
# failure while open is the late outcome of a call let through before it opened: legal, ignored.
_TRANSITIONS: dict[BreakerState, dict[BreakerEvent, BreakerState]] = {
    _S.CLOSED: {
        _E.SUCCESS: _S.CLOSED,
        _E.FAILURE: _S.CLOSED,
        _E.THRESHOLD_REACHED: _S.OPEN,
        _E.HEARTBEAT_SENT: _S.CLOSED,
        _E.HEARTBEAT_ANSWERED: _S.CLOSED,
        _E.HEARTBEAT_MISSED: _S.CLOSED,
        _E.HEARTBEATS_LOST: _S.OPEN,
    },
    _S.OPEN: {
        _E.SUCCESS: _S.OPEN,
        _E.FAILURE: _S.OPEN,
        _E.COOLDOWN_ELAPSED: _S.HALF_OPEN,
    },
    _S.HALF_OPEN: {
        _E.SUCCESS: _S.CLOSED,
        _E.FAILURE: _S.OPEN,
        _E.TRIAL_TIMED_OUT: _S.OPEN,
    },
}


class BreakerStateError(RuntimeError):
    """A call the breaker cannot take in its current state: a bug in the code driving it."""

    def __init__(self, state: BreakerState, event: BreakerEvent, detail: str = "") -> None:
        self.state = state
        self.event = event
        message = f"circuit breaker cannot handle {event.value} in state {state.value}"
        super().__init__(f"{message}: {detail}" if detail else message)


@dataclass(frozen=True, slots=True)
class Transition:
    """The breaker moved from ``old`` to ``new`` at ``at`` because of ``reason``.

    Besides changes of state, a closed breaker records ``CLOSED -> CLOSED`` when its link is
    lost (``failures`` becomes 1) and when it is back (``failures`` becomes 0), so that a client
    can tell CONNECTED (closed, no failures) from CONNECTING (closed with failures, or half-open).
    """

    old: BreakerState
    new: BreakerState
    at: float
    reason: str
    failures: int = 0
    retry_at: float | None = None
    """When the next attempt goes out (the back-off schedule, or the end of the cool-down);
    None while healthy or while the trial is out."""


def _require(name: str, value: object, ok: bool, requirement: str) -> None:
    if not ok:
        raise ValueError(f"BreakerPolicy.{name} must be {requirement}, got {value!r}")


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """How one link's breaker behaves; every field is validated when the policy is made.

    ``failure_threshold`` (default 5): consecutive link failures that open the circuit.
    ``cooldown`` (default 5 s): least time open before a trial. The n-th re-opening in a row
    (0 for the first opening) stays open ``cooldown + random(0, min(cooldown_cap,
    cooldown * backoff.factor**n))``: the jitter spreads the clients that lost the server at the
    same instant. ``cooldown_cap`` (default 60 s) bounds that jitter.
    ``backoff`` (default ``Backoff()``: 0.1 s floor, 30 s cap): delays between reconnect
    attempts while the link fails and the circuit is still closed.
    ``heartbeat_interval`` (default 5 s): time between heartbeats on a healthy link.
    ``heartbeat_timeout`` (default 2 s, at most ``heartbeat_interval``): a heartbeat, reconnect
    attempt or trial not answered within it is missed.
    ``missed_heartbeats`` (default 2): misses in a row that open the circuit.
    ``restart_grace`` (default 0: none): after the peer announced it is going away
    (``record_failure(..., going_away=True)``), failed attempts within this many seconds do not
    count toward ``failure_threshold``: a restart is ridden out on the back-off schedule instead
    of opening the circuit. Warning: it is a bound, not a promise; a peer that stays down longer
    opens the circuit ``failure_threshold`` attempts later.
    """

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cooldown: float = DEFAULT_COOLDOWN_S
    cooldown_cap: float = DEFAULT_COOLDOWN_CAP_S
    backoff: Backoff = field(default_factory=Backoff)
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL_S
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT_S
    missed_heartbeats: int = DEFAULT_MISSED_HEARTBEATS
    restart_grace: float = DEFAULT_RESTART_GRACE_S

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "missed_heartbeats"):
            value = getattr(self, name)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            _require(name, value, is_int and value >= 1, "an integer >= 1")
        for name in ("cooldown", "cooldown_cap", "restart_grace"):
            value = getattr(self, name)
            _require(name, value, _finite(value) and value >= 0, "a finite number >= 0")
        for name in ("heartbeat_interval", "heartbeat_timeout"):
            value = getattr(self, name)
            _require(name, value, _finite(value) and value > 0, "a finite number > 0")
        _require(
            "heartbeat_timeout",
            self.heartbeat_timeout,
            self.heartbeat_timeout <= self.heartbeat_interval,
            f"at most heartbeat_interval ({self.heartbeat_interval!r}), so that a heartbeat is "
            "answered or missed before the next one is due",
        )
        is_backoff = isinstance(self.backoff, Backoff)
        _require("backoff", self.backoff, is_backoff, "a supervisors.Backoff")

    @property
    def detection_time(self) -> float:
        """The longest a dead or hung peer goes unnoticed on a healthy link (timers on time)."""
        return self.missed_heartbeats * self.heartbeat_interval + self.heartbeat_timeout

    def open_for(self, reopenings: int, rand: Rand = random.uniform) -> float:
        """How long the circuit stays open after ``reopenings`` re-openings in a row."""
        schedule = Backoff(floor=self.cooldown, cap=self.cooldown_cap, factor=self.backoff.factor)
        return schedule.delay(reopenings, rand)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


class CircuitBreaker:
    """One link's breaker; see the module docstring. Every method takes the time it is called.

    Transitions are returned by the call that caused them and also queued for
    :meth:`drain_transitions`, so that a shell can publish them in order whichever call it made.
    """

    __slots__ = (
        "_attempt",
        "_excused",
        "_failures",
        "_heartbeat_sent_at",
        "_last_heartbeat",
        "_missed",
        "_open_until",
        "_opened_at",
        "_patient_until",
        "_policy",
        "_rand",
        "_reopenings",
        "_retry_at",
        "_state",
        "_transitions",
        "_trial_at",
    )

    def __init__(self, policy: BreakerPolicy, *, now: float, rand: Rand = random.uniform) -> None:
        self._policy = policy
        self._rand = rand
        self._state = BreakerState.CLOSED
        self._failures = 0
        # Failures within the restart grace: counted in ``failures`` (the link is failing) but
        # not toward the threshold.
        self._excused = 0
        self._patient_until: float | None = None
        self._attempt = 0
        self._retry_at: float | None = None
        self._opened_at: float | None = None
        self._open_until: float | None = None
        self._reopenings = 0
        self._trial_at: float | None = None
        self._heartbeat_sent_at: float | None = None
        # The first heartbeat is due at once: a link is checked as soon as its breaker exists.
        self._last_heartbeat = now - policy.heartbeat_interval
        self._missed = 0
        self._transitions: list[Transition] = []

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._state.value} failures={self._failures}>"

    # -- reading -----------------------------------------------------------------------------

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def failures(self) -> int:
        """Link failures since the last success."""
        return self._failures

    @property
    def healthy(self) -> bool:
        """Closed with no failure since the last success: the link is up."""
        return self._state is BreakerState.CLOSED and self._failures == 0

    @property
    def opened_at(self) -> float | None:
        """When the circuit last opened; None while closed."""
        return self._opened_at

    @property
    def heartbeat_outstanding(self) -> bool:
        """A heartbeat (or reconnect attempt) was sent and has not been answered or missed."""
        return self._heartbeat_sent_at is not None

    def retry_at(self, now: float) -> float | None:
        """When the next reconnect attempt may go out, never before ``now``.

        Closed and failing: the back-off schedule. Open: the end of the cool-down, when a trial
        goes through. None while healthy or while the trial is out.
        """
        if self._state is BreakerState.OPEN:
            assert self._open_until is not None
            return max(now, self._open_until)
        if self._retry_at is not None:
            return max(now, self._retry_at)
        return None

    def next_deadline(self) -> float:
        """The next time something is due: a heartbeat or reconnect attempt, an answer, or the
        end of the cool-down. A shell wakes up then and calls :meth:`check_heartbeat`,
        :meth:`allow` and :meth:`heartbeat_due`."""
        timeout = self._policy.heartbeat_timeout
        if self._state is BreakerState.OPEN:
            assert self._open_until is not None
            return self._open_until
        if self._state is BreakerState.HALF_OPEN:
            assert self._trial_at is not None
            return self._trial_at + timeout
        if self._heartbeat_sent_at is not None:
            return self._heartbeat_sent_at + timeout
        if self._retry_at is not None:
            return self._retry_at
        return self._last_heartbeat + self._policy.heartbeat_interval

    def drain_transitions(self) -> list[Transition]:
        """The transitions since the last drain, oldest first."""
        transitions, self._transitions = self._transitions, []
        return transitions

    # -- calls -------------------------------------------------------------------------------

    def allow(self, now: float) -> bool:
        """May a call go to the peer now? Closed: yes. Open: no, until the cool-down is over;
        then the circuit goes half-open and this returns True once, for the trial, whose
        outcome the caller must record. Half-open: no while the trial is out."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.HALF_OPEN:
            return False
        assert self._open_until is not None
        if now < self._open_until:
            return False
        self._fire(_E.COOLDOWN_ELAPSED, now, "cool-down over: one trial allowed")
        self._trial_at = now
        return True

    def record_success(self, now: float) -> Transition | None:
        """A call (or trial) to the peer succeeded."""
        if self._state is BreakerState.OPEN:
            return self._fire(_E.SUCCESS, now)
        self._missed = 0
        if self._state is BreakerState.HALF_OPEN:
            self._recover(now)
            return self._fire(_E.SUCCESS, now, "trial succeeded")
        if self._failures:
            self._recover(now)
            return self._fire(_E.SUCCESS, now, "link is back", always=True)
        return self._fire(_E.SUCCESS, now)

    def record_failure(
        self, now: float, reason: str, *, going_away: bool = False, retry_after: float = 0.0
    ) -> Transition | None:
        """A call (or trial, or reconnect attempt) failed in a way the caller classifies as a
        failure of the link. It ends any outstanding heartbeat.

        ``going_away``: the peer said it is going away (a restart). While closed, this failure
        and those within ``policy.restart_grace`` seconds after it do not count toward the
        threshold. ``retry_after`` (with ``going_away``): the peer asked to be tried again no
        sooner than this many seconds from now; the next attempt waits that long plus the
        back-off's delay, and the grace is counted from the end of that wait.

        >>> breaker = CircuitBreaker(BreakerPolicy(restart_grace=30.0), now=0.0,
        ...                          rand=lambda a, b: a)
        >>> breaker.record_failure(1.0, "closed 1012", going_away=True, retry_after=2.5).retry_at
        3.6
        """
        if self._state is BreakerState.OPEN:
            self._fire(_E.FAILURE, now)
            return None
        wait = max(0.0, retry_after) if going_away else 0.0
        if going_away and self._state is BreakerState.CLOSED and self._policy.restart_grace > 0:
            self._patient_until = now + wait + self._policy.restart_grace
        self._heartbeat_sent_at = None
        return self._failed(now, reason, wait)

    def patient(self, now: float) -> bool:
        """Within the restart grace: failures at ``now`` do not count toward the threshold."""
        until = self._patient_until
        return until is not None and now < until and self._state is BreakerState.CLOSED

    # -- heartbeats --------------------------------------------------------------------------

    def heartbeat_due(self, now: float) -> bool:
        """Should a heartbeat go out now? Only while closed and none is outstanding: every
        ``heartbeat_interval`` on a healthy link; on a failing link the heartbeats are the
        reconnect attempts, due on the back-off schedule."""
        if self._state is not BreakerState.CLOSED or self._heartbeat_sent_at is not None:
            return False
        if self._retry_at is not None:
            return now >= self._retry_at
        return now >= self._last_heartbeat + self._policy.heartbeat_interval

    def heartbeat_sent(self, now: float) -> None:
        """A heartbeat (or reconnect attempt) went out; answer it or let it be missed."""
        self._check(_E.HEARTBEAT_SENT)
        if self._heartbeat_sent_at is not None:
            raise BreakerStateError(
                self._state, _E.HEARTBEAT_SENT, "a heartbeat is already outstanding"
            )
        self._heartbeat_sent_at = now
        self._last_heartbeat = now

    def heartbeat_answered(self, now: float) -> Transition | None:
        """The outstanding heartbeat was answered: the peer is alive (a failing link is back)."""
        self._check(_E.HEARTBEAT_ANSWERED)
        if self._heartbeat_sent_at is None:
            raise BreakerStateError(
                self._state, _E.HEARTBEAT_ANSWERED, "no heartbeat is outstanding"
            )
        self._heartbeat_sent_at = None
        self._missed = 0
        if self._failures:
            self._recover(now)
            return self._fire(_E.HEARTBEAT_ANSWERED, now, "link is back", always=True)
        return self._fire(_E.HEARTBEAT_ANSWERED, now)

    def check_heartbeat(self, now: float) -> Transition | None:
        """Settle an answer that is overdue by ``now``.

        A heartbeat on a healthy link counts as missed, and ``missed_heartbeats`` misses in a row
        open the circuit; an unanswered reconnect attempt is a failure; an unanswered trial
        re-opens the circuit. Does nothing when nothing is overdue.
        """
        timeout = self._policy.heartbeat_timeout
        if self._state is BreakerState.HALF_OPEN:
            assert self._trial_at is not None
            if now < self._trial_at + timeout:
                return None
            return self._reopen(_E.TRIAL_TIMED_OUT, now, f"trial not answered within {timeout}s")
        sent = self._heartbeat_sent_at
        if sent is None or now < sent + timeout:
            return None
        self._heartbeat_sent_at = None
        if self._failures:
            return self._failed(now, f"reconnect attempt not answered within {timeout}s")
        self._missed += 1
        if self._missed < self._policy.missed_heartbeats:
            self._fire(_E.HEARTBEAT_MISSED, now)
            return None
        reason = f"{self._missed} heartbeats in a row not answered within {timeout}s"
        return self._open(_E.HEARTBEATS_LOST, now, reason)

    # -- reconnect schedule ------------------------------------------------------------------

    def next_retry_delay(self) -> float:
        """Draw the delay before the next reconnect attempt and count the attempt.

        ``floor + random(0, min(cap, floor * factor**attempt))`` from the policy's back-off;
        the count starts again at 0 after a success. :meth:`record_failure` draws from it to
        schedule :meth:`retry_at`.
        """
        delay = self._policy.backoff.delay(self._attempt, self._rand)
        self._attempt += 1
        return delay

    # -- internals ---------------------------------------------------------------------------

    def _check(self, event: BreakerEvent) -> BreakerState:
        try:
            return _TRANSITIONS[self._state][event]
        except KeyError:
            raise BreakerStateError(self._state, event) from None

    def _fire(
        self, event: BreakerEvent, now: float, reason: str = "", *, always: bool = False
    ) -> Transition | None:
        """Move along the table; record a transition when the state changes (or ``always``)."""
        old, new = self._state, self._check(event)
        self._state = new
        if old is new and not always:
            return None
        transition = Transition(
            old, new, now, reason or event.value, self._failures, self.retry_at(now)
        )
        self._transitions.append(transition)
        return transition

    def _failed(self, now: float, reason: str, wait: float = 0.0) -> Transition | None:
        """A link failure while closed or half-open; the next attempt waits ``wait`` seconds
        before its back-off delay."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN:
            return self._reopen(_E.FAILURE, now, f"trial failed: {reason}")
        if self.patient(now):
            self._excused += 1
        if self._failures - self._excused >= self._policy.failure_threshold:
            why = f"{self._failures} failures in a row, the last: {reason}"
            return self._open(_E.THRESHOLD_REACHED, now, why)
        self._retry_at = now + wait + self.next_retry_delay()
        return self._fire(_E.FAILURE, now, f"link lost: {reason}", always=self._failures == 1)

    def _reopen(self, event: BreakerEvent, now: float, reason: str) -> Transition | None:
        self._reopenings += 1
        return self._open(event, now, reason)

    def _open(self, event: BreakerEvent, now: float, reason: str) -> Transition | None:
        self._opened_at = now
        self._open_until = now + self._policy.open_for(self._reopenings, self._rand)
        self._retry_at = None
        self._trial_at = None
        self._heartbeat_sent_at = None
        self._missed = 0
        self._patient_until = None
        return self._fire(event, now, reason)

    def _recover(self, now: float) -> None:
        """The link works: start counting afresh, heartbeats every interval from now."""
        self._failures = 0
        self._excused = 0
        self._patient_until = None
        self._attempt = 0
        self._reopenings = 0
        self._retry_at = None
        self._opened_at = None
        self._open_until = None
        self._trial_at = None
        self._missed = 0
        self._last_heartbeat = now
