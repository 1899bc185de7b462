"""The circuit breaker's state machine, fed events at chosen times with a jitter we choose.

Scenarios are tables: each step is ``(time, event, result, state after)``. The result of ``allow``
and ``due`` is a bool; the result of any other event is the transition it caused, written
``"old>new"``, or None.
"""

from __future__ import annotations

import dataclasses
import doctest
import math
from typing import Any

import pytest

import actorim.breaker.machine
from actorim.breaker.machine import (
    BreakerEvent,
    BreakerPolicy,
    BreakerState,
    BreakerStateError,
    CircuitBreaker,
    Transition,
)
from supervisors import Backoff

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def most(low: float, high: float) -> float:
    """The jitter at its top, so that every delay is the ceiling of its range."""
    return high


def least(low: float, high: float) -> float:
    return low


# Reconnect delays with `most`: 1 + min(8, 2**n) = 2, 3, 5, 9, 9, ...
# Open durations with `most`: 10 + min(25, 10 * 2**n) = 20, 30, 35, 35, ...
POLICY = BreakerPolicy(
    failure_threshold=3,
    cooldown=10.0,
    cooldown_cap=25.0,
    backoff=Backoff(floor=1.0, cap=8.0),
    heartbeat_interval=5.0,
    heartbeat_timeout=2.0,
    missed_heartbeats=2,
)


def make(policy: BreakerPolicy = POLICY, rand: Any = most, now: float = 0.0) -> CircuitBreaker:
    return CircuitBreaker(policy, now=now, rand=rand)


def feed(breaker: CircuitBreaker, now: float, event: str) -> object:
    result: Transition | None
    if event == "allow":
        return breaker.allow(now)
    if event == "due":
        return breaker.heartbeat_due(now)
    if event == "sent":
        breaker.heartbeat_sent(now)
        return None
    if event == "answered":
        result = breaker.heartbeat_answered(now)
    elif event == "ok":
        result = breaker.record_success(now)
    elif event == "fail":
        result = breaker.record_failure(now, "connection refused")
    elif event == "check":
        result = breaker.check_heartbeat(now)
    else:
        raise AssertionError(f"unknown event {event!r}")
    return None if result is None else f"{result.old}>{result.new}"


Step = tuple[float, str, object, BreakerState]

OPEN_AT_2 = [  # three failures open it; the cool-down then lasts 20 s
    (0.0, "fail", "closed>closed", CLOSED),
    (1.0, "fail", None, CLOSED),
    (2.0, "fail", "closed>open", OPEN),
]

SCENARIOS: dict[str, list[Step]] = {
    "closed lets every call through": [
        (0.0, "allow", True, CLOSED),
        (0.0, "allow", True, CLOSED),
        (1.0, "ok", None, CLOSED),
    ],
    "failure_threshold failures in a row open it": [
        *OPEN_AT_2,
        (2.0, "allow", False, OPEN),
    ],
    "a success between failures starts the count again": [
        (0.0, "fail", "closed>closed", CLOSED),
        (1.0, "fail", None, CLOSED),
        (1.5, "ok", "closed>closed", CLOSED),
        (2.0, "fail", "closed>closed", CLOSED),
        (3.0, "fail", None, CLOSED),
        (4.0, "fail", "closed>open", OPEN),
    ],
    "after the cool-down exactly one trial goes through": [
        *OPEN_AT_2,
        (21.9, "allow", False, OPEN),
        (22.0, "allow", True, HALF_OPEN),
        (22.0, "allow", False, HALF_OPEN),
        (23.0, "allow", False, HALF_OPEN),
    ],
    "a successful trial closes it": [
        *OPEN_AT_2,
        (22.0, "allow", True, HALF_OPEN),
        (22.5, "ok", "half_open>closed", CLOSED),
        (22.5, "allow", True, CLOSED),
    ],
    "a failed trial re-opens it with a longer cool-down, up to the cap": [
        *OPEN_AT_2,
        (22.0, "allow", True, HALF_OPEN),
        (22.0, "fail", "half_open>open", OPEN),
        (51.9, "allow", False, OPEN),  # open 30 s
        (52.0, "allow", True, HALF_OPEN),
        (52.0, "fail", "half_open>open", OPEN),
        (86.9, "allow", False, OPEN),  # open 35 s: 10 + the 25 s cap
        (87.0, "allow", True, HALF_OPEN),
        (87.0, "fail", "half_open>open", OPEN),
        (121.9, "allow", False, OPEN),  # still 35 s
        (122.0, "allow", True, HALF_OPEN),
    ],
    "closing resets the cool-down to its first length": [
        *OPEN_AT_2,
        (22.0, "allow", True, HALF_OPEN),
        (22.0, "fail", "half_open>open", OPEN),
        (52.0, "allow", True, HALF_OPEN),
        (52.0, "ok", "half_open>closed", CLOSED),
        (53.0, "fail", "closed>closed", CLOSED),
        (54.0, "fail", None, CLOSED),
        (55.0, "fail", "closed>open", OPEN),
        (74.9, "allow", False, OPEN),
        (75.0, "allow", True, HALF_OPEN),
    ],
    "an unanswered trial re-opens it": [
        *OPEN_AT_2,
        (22.0, "allow", True, HALF_OPEN),
        (23.9, "check", None, HALF_OPEN),
        (24.0, "check", "half_open>open", OPEN),
    ],
    "late outcomes of calls let through before it opened are ignored": [
        *OPEN_AT_2,
        (3.0, "ok", None, OPEN),
        (3.0, "fail", None, OPEN),
        (21.9, "allow", False, OPEN),
        (22.0, "allow", True, HALF_OPEN),
    ],
    "the first heartbeat is due at once, then every interval": [
        (0.0, "due", True, CLOSED),
        (0.0, "sent", None, CLOSED),
        (0.0, "due", False, CLOSED),
        (0.5, "answered", None, CLOSED),
        (4.9, "due", False, CLOSED),
        (5.0, "due", True, CLOSED),
    ],
    "missed heartbeats open it": [
        (0.0, "sent", None, CLOSED),
        (1.9, "check", None, CLOSED),
        (2.0, "check", None, CLOSED),  # the first miss
        (4.9, "due", False, CLOSED),
        (5.0, "due", True, CLOSED),
        (5.0, "sent", None, CLOSED),
        (7.0, "check", "closed>open", OPEN),
        (7.0, "due", False, OPEN),
        (26.9, "allow", False, OPEN),  # open 20 s
        (27.0, "allow", True, HALF_OPEN),
    ],
    "an answered heartbeat forgives an earlier miss": [
        (0.0, "sent", None, CLOSED),
        (2.0, "check", None, CLOSED),
        (5.0, "sent", None, CLOSED),
        (5.1, "answered", None, CLOSED),
        (10.0, "sent", None, CLOSED),
        (12.0, "check", None, CLOSED),
        (15.0, "sent", None, CLOSED),
        (17.0, "check", "closed>open", OPEN),
    ],
    "on a failing link the heartbeats are reconnect attempts on the back-off schedule": [
        (0.0, "sent", None, CLOSED),
        (0.1, "fail", "closed>closed", CLOSED),  # ends the heartbeat; retry at 0.1 + 2
        (2.0, "due", False, CLOSED),
        (2.1, "due", True, CLOSED),
        (2.1, "sent", None, CLOSED),
        (2.2, "fail", None, CLOSED),  # retry at 2.2 + 3
        (5.1, "due", False, CLOSED),
        (5.2, "due", True, CLOSED),
        (5.2, "sent", None, CLOSED),
        (5.3, "answered", "closed>closed", CLOSED),  # the link is back
        (10.2, "due", False, CLOSED),
        (10.3, "due", True, CLOSED),
    ],
    "an unanswered reconnect attempt is a failure": [
        (0.0, "fail", "closed>closed", CLOSED),
        (2.0, "sent", None, CLOSED),
        (4.0, "check", None, CLOSED),
        (7.0, "sent", None, CLOSED),
        (9.0, "check", "closed>open", OPEN),
    ],
    "a failure during a trial re-opens it even while heartbeats are quiet": [
        (0.0, "sent", None, CLOSED),
        (0.5, "fail", "closed>closed", CLOSED),
        (0.6, "fail", None, CLOSED),
        (0.7, "fail", "closed>open", OPEN),
        (20.7, "allow", True, HALF_OPEN),
        (20.7, "due", False, HALF_OPEN),
        (21.0, "fail", "half_open>open", OPEN),
    ],
}


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scenario(steps: list[Step]) -> None:
    breaker = make()
    for i, (now, event, expected, state) in enumerate(steps):
        got = feed(breaker, now, event)
        assert (got, breaker.state) == (expected, state), f"step {i}: {event} at {now}"


# -- the reconnect schedule -------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2.0, 3.0])
def test_reconnect_delays_are_floor_plus_full_jitter_up_to_the_cap(factor: float) -> None:
    backoff = Backoff(floor=0.5, cap=10.0, factor=factor)
    draws: list[tuple[float, float]] = []

    def rand(low: float, high: float) -> float:
        draws.append((low, high))
        return high / 2

    breaker = make(BreakerPolicy(backoff=backoff, failure_threshold=100), rand)
    delays = [breaker.next_retry_delay() for _ in range(8)]
    ceilings = [min(10.0, 0.5 * factor**n) for n in range(8)]
    assert draws == [(0.0, c) for c in ceilings]
    assert delays == [0.5 + c / 2 for c in ceilings]


def test_each_failure_schedules_the_next_attempt_from_when_it_failed() -> None:
    breaker = make(BreakerPolicy(backoff=Backoff(floor=1.0, cap=8.0), failure_threshold=100))
    scheduled = []
    for now in (0.0, 10.0, 20.0, 30.0, 40.0, 50.0):
        breaker.record_failure(now, "refused")
        scheduled.append(breaker.retry_at(now))
    assert scheduled == [2.0, 13.0, 25.0, 39.0, 49.0, 59.0]


def test_a_success_starts_the_attempts_again_from_the_floor() -> None:
    breaker = make(BreakerPolicy(backoff=Backoff(floor=1.0, cap=8.0), failure_threshold=100))
    for now in (0.0, 1.0, 2.0):
        breaker.record_failure(now, "refused")
    assert breaker.retry_at(2.0) == 2.0 + 5.0
    breaker.record_success(3.0)
    assert breaker.retry_at(3.0) is None
    breaker.record_failure(4.0, "refused")
    assert breaker.retry_at(4.0) == 4.0 + 2.0


def test_retry_at_is_the_end_of_the_cool_down_while_open_and_never_in_the_past() -> None:
    breaker = make()
    for now in (0.0, 1.0, 2.0):
        breaker.record_failure(now, "refused")
    assert breaker.retry_at(3.0) == 22.0
    assert breaker.retry_at(30.0) == 30.0
    breaker.allow(30.0)
    assert breaker.retry_at(30.0) is None


def test_the_cool_down_is_jittered_between_cooldown_and_twice_cooldown_at_first() -> None:
    for rand, expected in ((least, 10.0), (most, 20.0)):
        breaker = make(rand=rand)
        for now in (0.0, 0.0, 0.0):
            breaker.record_failure(now, "refused")
        assert breaker.retry_at(0.0) == expected


# -- heartbeats -------------------------------------------------------------------------------


@pytest.mark.parametrize("dies_at", [0.1, 2.5, 4.9, 5.0, 7.3])
def test_a_hung_peer_is_noticed_within_the_detection_time(dies_at: float) -> None:
    """Drive the breaker as its actor does, waking at each deadline; the peer answers at once
    until it hangs."""
    breaker = make()
    now = 0.0
    while breaker.state is CLOSED:
        breaker.check_heartbeat(now)
        if breaker.heartbeat_due(now):
            breaker.heartbeat_sent(now)
            if now < dies_at:
                breaker.heartbeat_answered(now)
        now = breaker.next_deadline()
    assert breaker.opened_at is not None
    assert dies_at < breaker.opened_at <= dies_at + POLICY.detection_time


def test_a_reported_failure_ends_the_outstanding_heartbeat() -> None:
    breaker = make()
    breaker.heartbeat_sent(0.0)
    breaker.record_failure(0.5, "reset by peer")
    assert not breaker.heartbeat_outstanding
    assert breaker.check_heartbeat(10.0) is None
    assert breaker.failures == 1


def test_next_deadline_follows_what_is_due() -> None:
    breaker = make()
    assert breaker.next_deadline() == -5.0 + 5.0  # the first heartbeat, at once
    breaker.heartbeat_sent(0.0)
    assert breaker.next_deadline() == 2.0  # its answer
    breaker.heartbeat_answered(0.1)
    assert breaker.next_deadline() == 5.0  # the next heartbeat
    breaker.record_failure(1.0, "refused")
    assert breaker.next_deadline() == 3.0  # the reconnect attempt
    breaker.record_failure(1.0, "refused")
    breaker.record_failure(1.0, "refused")
    assert breaker.next_deadline() == 21.0  # the end of the cool-down
    breaker.allow(21.0)
    assert breaker.next_deadline() == 23.0  # the trial's answer


# -- what subscribers see ----------------------------------------------------------------------


def test_transitions_are_drained_in_order_with_time_reason_and_failures() -> None:
    breaker = make()
    for now in (0.0, 1.0, 2.0):
        breaker.record_failure(now, "connection refused")
    breaker.allow(22.0)
    breaker.record_failure(22.5, "connection refused")
    breaker.allow(52.5)
    breaker.record_success(53.0)
    got = breaker.drain_transitions()
    assert [(t.old, t.new, t.at, t.failures) for t in got] == [
        (CLOSED, CLOSED, 0.0, 1),
        (CLOSED, OPEN, 2.0, 3),
        (OPEN, HALF_OPEN, 22.0, 3),
        (HALF_OPEN, OPEN, 22.5, 4),
        (OPEN, HALF_OPEN, 52.5, 4),
        (HALF_OPEN, CLOSED, 53.0, 0),
    ]
    assert got[0].reason == "link lost: connection refused"
    assert got[1].reason == "3 failures in a row, the last: connection refused"
    assert got[3].reason == "trial failed: connection refused"
    assert breaker.drain_transitions() == []


def test_transitions_say_when_the_next_attempt_goes_out() -> None:
    breaker = make()
    lost = breaker.record_failure(0.0, "connection refused")
    assert lost is not None and lost.retry_at == 2.0  # 1 + min(8, 1 * 2**0)
    breaker.record_failure(2.0, "connection refused")
    opened = breaker.record_failure(5.0, "connection refused")
    assert opened is not None and (opened.new, opened.retry_at) == (OPEN, 25.0)
    trial = breaker.allow(25.0) and breaker.drain_transitions()[-1]
    assert trial and (trial.new, trial.retry_at) == (HALF_OPEN, None)


# -- a peer that announces its restart ---------------------------------------------------------


def test_failures_within_the_restart_grace_after_going_away_do_not_open_the_circuit() -> None:
    breaker = make(dataclasses.replace(POLICY, restart_grace=30.0))
    breaker.record_failure(100.0, "closed 1001: server restarting", going_away=True)
    for now in (101.0, 105.0, 110.0, 120.0, 129.9):
        breaker.record_failure(now, "connection refused")
        assert breaker.state is CLOSED, now
    assert breaker.failures == 6 and not breaker.healthy
    # Past the grace, failures count again: three more open the circuit.
    for now in (130.0, 140.0):
        breaker.record_failure(now, "connection refused")
        assert breaker.state is CLOSED
    breaker.record_failure(150.0, "connection refused")
    assert breaker.state is OPEN


def test_a_success_ends_the_grace_and_the_next_loss_without_warning_counts() -> None:
    breaker = make(dataclasses.replace(POLICY, restart_grace=30.0))
    breaker.record_failure(0.0, "closed 1001", going_away=True)
    breaker.record_failure(1.0, "connection refused")
    breaker.record_success(2.0)
    for now in (3.0, 4.0, 5.0):
        breaker.record_failure(now, "connection reset")
    assert breaker.state is OPEN


def test_a_hinted_delay_comes_before_the_jitter_and_the_grace_starts_when_it_ends() -> None:
    breaker = make(dataclasses.replace(POLICY, restart_grace=30.0))
    lost = breaker.record_failure(100.0, "closed 1012", going_away=True, retry_after=4.0)
    assert lost is not None and lost.retry_at == 100.0 + 4.0 + POLICY.backoff.delay(0, most)
    assert breaker.retry_at(101.0) == lost.retry_at and not breaker.heartbeat_due(103.0)
    # Refusals up to 30 s after the hinted wait ended do not count; later ones do.
    for now in (105.0, 120.0, 133.9):
        breaker.record_failure(now, "connection refused")
    assert breaker.state is CLOSED
    for now in (134.0, 135.0, 136.0):
        breaker.record_failure(now, "connection refused")
    assert breaker.state is OPEN


def test_a_hint_without_going_away_is_ignored() -> None:
    breaker = make()
    lost = breaker.record_failure(0.0, "reset", retry_after=9.0)
    assert lost is not None and lost.retry_at == POLICY.backoff.delay(0, most)


def test_without_a_restart_grace_going_away_changes_nothing() -> None:
    breaker = make()
    for now in (0.0, 1.0, 2.0):
        breaker.record_failure(now, "closed 1001", going_away=True)
    assert breaker.state is OPEN


def test_each_call_returns_the_transition_it_recorded() -> None:
    breaker = make(BreakerPolicy(failure_threshold=1))
    returned = breaker.record_failure(0.0, "refused")
    assert breaker.drain_transitions() == [returned]
    assert breaker.opened_at == 0.0


def test_healthy_means_closed_without_failures() -> None:
    breaker = make()
    assert breaker.healthy
    breaker.record_failure(0.0, "refused")
    assert breaker.state is CLOSED and not breaker.healthy
    breaker.record_success(1.0)
    assert breaker.healthy and breaker.failures == 0


# -- illegal calls -----------------------------------------------------------------------------


def _opened() -> CircuitBreaker:
    breaker = make(BreakerPolicy(failure_threshold=1, cooldown=1.0))
    breaker.record_failure(0.0, "refused")
    return breaker


def _half_open() -> CircuitBreaker:
    breaker = _opened()
    assert breaker.allow(100.0)
    return breaker


def _heartbeat_out() -> CircuitBreaker:
    breaker = make()
    breaker.heartbeat_sent(0.0)
    return breaker


ILLEGAL = {
    "a heartbeat while open": (_opened, "sent", OPEN, BreakerEvent.HEARTBEAT_SENT),
    "a heartbeat while half-open": (_half_open, "sent", HALF_OPEN, BreakerEvent.HEARTBEAT_SENT),
    "a second heartbeat before the first is settled": (
        _heartbeat_out,
        "sent",
        CLOSED,
        BreakerEvent.HEARTBEAT_SENT,
    ),
    "an answer to no heartbeat": (make, "answered", CLOSED, BreakerEvent.HEARTBEAT_ANSWERED),
    "an answer while open": (_opened, "answered", OPEN, BreakerEvent.HEARTBEAT_ANSWERED),
    "an answer while half-open": (
        _half_open,
        "answered",
        HALF_OPEN,
        BreakerEvent.HEARTBEAT_ANSWERED,
    ),
}


@pytest.mark.parametrize(("build", "event", "state", "kind"), ILLEGAL.values(), ids=ILLEGAL.keys())
def test_illegal_calls_raise_naming_state_and_event(
    build: Any, event: str, state: BreakerState, kind: BreakerEvent
) -> None:
    breaker = build()
    with pytest.raises(BreakerStateError) as info:
        feed(breaker, 200.0, event)
    assert (info.value.state, info.value.event) == (state, kind)
    assert f"cannot handle {kind.value} in state {state.value}" in str(info.value)
    assert breaker.state is state


# -- the policy --------------------------------------------------------------------------------

BAD_POLICIES = {
    "failure_threshold": {"failure_threshold": 0},
    "missed_heartbeats": {"missed_heartbeats": 1.5},
    "cooldown": {"cooldown": -1.0},
    "cooldown_cap": {"cooldown_cap": math.inf},
    "heartbeat_interval": {"heartbeat_interval": 0},
    "heartbeat_timeout": {"heartbeat_timeout": 6.0, "heartbeat_interval": 5.0},
    "backoff": {"backoff": 0.1},
    "restart_grace": {"restart_grace": -1.0},
}


@pytest.mark.parametrize(("field", "kwargs"), BAD_POLICIES.items(), ids=BAD_POLICIES.keys())
def test_a_bad_policy_is_refused_naming_the_field(field: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=rf"BreakerPolicy\.{field} must be"):
        BreakerPolicy(**kwargs)


def test_policy_defaults_notice_a_dead_peer_within_twelve_seconds() -> None:
    policy = BreakerPolicy()
    assert (policy.failure_threshold, policy.cooldown, policy.missed_heartbeats) == (5, 5.0, 2)
    assert policy.detection_time == 12.0


def test_the_module_example_runs() -> None:
    assert doctest.testmod(actorim.breaker.machine).failed == 0
