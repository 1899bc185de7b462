"""The breaker actor against a fake peer we control: real timers of tens of milliseconds, and
every wait is for an event (a transition, a probe reaching the peer), never a fixed sleep.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import pytest
from pykka import ActorRegistry

from actorim.breaker.actor import (
    BreakerActor,
    CallAllowed,
    GetState,
    ReportFailure,
    ReportSuccess,
    RetryLater,
    Subscribe,
)
from actorim.breaker.machine import BreakerPolicy, BreakerState, Transition
from supervisors import Backoff, GeventActor

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
WAIT = 3.0  # seconds; a generous bound for what takes tens of milliseconds

# A dead peer is noticed within 2 * 0.05 + 0.03 s; the circuit opens after 2 failures and stays
# open 0.06 s (no jitter: the fake rand returns the low end).
FAST = BreakerPolicy(
    failure_threshold=2,
    cooldown=0.06,
    cooldown_cap=0.06,
    backoff=Backoff(floor=0.01, cap=0.01),
    heartbeat_interval=0.05,
    heartbeat_timeout=0.03,
    missed_heartbeats=2,
)


def no_jitter(low: float, high: float) -> float:
    return low


class Peer:
    """The far end of the link: ``up`` answers at once, ``down`` refuses, ``hang`` never answers
    (until ``release``). Counts the probes that reached it and those that ended."""

    def __init__(self, mode: str = "up") -> None:
        self.mode = mode
        self.calls = 0
        self.ended = 0
        self._gate = gevent.event.Event()
        self._changed = gevent.event.Event()

    def probe(self) -> None:
        self.calls += 1
        self._changed.set()
        try:
            if self.mode == "down":
                raise ConnectionRefusedError("connection refused")
            if self.mode == "hang":
                self._gate.wait()
        finally:
            self.ended += 1
            self._changed.set()

    def wait_until(self, predicate: Callable[[], bool], what: str) -> None:
        with gevent.Timeout(WAIT, AssertionError(f"still waiting for {what}")):
            while not predicate():
                self._changed.clear()
                self._changed.wait()

    def wait_calls(self, n: int) -> None:
        self.wait_until(lambda: self.calls >= n, f"{n} probes (got {self.calls})")


class Transitions:
    """A subscriber that records what it is told, and can be awaited."""

    def __init__(self) -> None:
        self.items: list[Transition] = []
        self._changed = gevent.event.Event()

    def __call__(self, transition: Transition) -> None:
        self.items.append(transition)
        self._changed.set()

    @property
    def moves(self) -> list[tuple[BreakerState, BreakerState]]:
        return [(t.old, t.new) for t in self.items]

    def wait_for(self, predicate: Callable[[list[Transition]], bool]) -> list[Transition]:
        with gevent.Timeout(WAIT, AssertionError(f"still waiting; got {self.moves}")):
            while not predicate(self.items):
                self._changed.clear()
                self._changed.wait()
        return self.items

    def wait_until_in(self, state: BreakerState, *, count: int = 1) -> list[Transition]:
        return self.wait_for(lambda items: sum(t.new is state for t in items) >= count)


class Forwarder(GeventActor):
    """An actor subscriber: hands what it is told to a callable."""

    def __init__(self, sink: Callable[[Any], None]) -> None:
        super().__init__()
        self.sink = sink

    def on_receive(self, message: Any) -> None:
        self.sink(message)


@pytest.fixture(autouse=True)
def _stop_every_actor() -> Iterator[None]:
    yield
    for ref in reversed(ActorRegistry.get_all()):
        ref.stop()


def start(peer: Peer, policy: BreakerPolicy = FAST, **kwargs: Any) -> Any:
    kwargs.setdefault("rand", no_jitter)
    return BreakerActor.start(policy, probe=peer.probe, name="test-link", **kwargs)


def subscribed(ref: Any) -> Transitions:
    seen = Transitions()
    assert ref.proxy().subscribe(seen).get(timeout=WAIT) is CLOSED
    return seen


def test_subscribers_receive_every_transition_in_order() -> None:
    peer = Peer("up")
    ref = start(peer)
    seen = subscribed(ref)
    by_actor = Transitions()
    assert ref.ask(Subscribe(Forwarder.start(by_actor))) is CLOSED
    peer.wait_calls(1)
    peer.mode = "down"
    seen.wait_until_in(OPEN, count=2)
    peer.mode = "up"
    seen.wait_until_in(CLOSED, count=2)  # lost (closed -> closed), then closed again
    expected = [
        (CLOSED, CLOSED),  # the link is lost
        (CLOSED, OPEN),  # a second failure in a row
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),  # the trial failed
    ]
    moves = seen.moves
    assert moves[:4] == expected
    assert moves[-2:] == [(OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert seen.items[-1].failures == 0
    by_actor.wait_for(lambda items: len(items) == len(seen.items))
    assert by_actor.items == seen.items


def test_a_hanging_peer_is_missed_and_opens_the_circuit_without_blocking_the_actor() -> None:
    peer = Peer("up")
    ref = start(peer)
    seen = subscribed(ref)
    peer.wait_calls(1)
    peer.mode = "hang"
    peer.wait_calls(2)
    assert ref.ask(GetState(), timeout=WAIT) is CLOSED
    assert peer.ended == peer.calls - 1  # the actor answered while the probe hung
    opened = seen.wait_until_in(OPEN)[-1]
    assert seen.moves == [(CLOSED, OPEN)]
    assert opened.reason == "2 heartbeats in a row not answered within 0.03s"
    # Each hanging probe is stopped when its time is up.
    peer.wait_until(lambda: peer.ended == peer.calls, "the hanging probes to end")


def test_recovery_closes_the_circuit_and_heartbeats_resume() -> None:
    peer = Peer("hang")
    ref = start(peer)
    seen = subscribed(ref)
    seen.wait_until_in(OPEN)
    peer.mode = "up"
    closed = seen.wait_until_in(CLOSED)[-1]
    assert closed.old is HALF_OPEN
    assert ref.proxy().state().get(timeout=WAIT) is CLOSED
    calls = peer.calls
    peer.wait_calls(calls + 2)  # heartbeats go on while it is closed
    assert seen.items[-1] is closed


def test_a_refused_heartbeat_is_a_link_failure_and_reconnects_on_the_back_off() -> None:
    peer = Peer("up")
    policy = BreakerPolicy(
        failure_threshold=5,
        cooldown=1.0,
        backoff=Backoff(floor=0.02, cap=0.02),
        heartbeat_interval=0.05,
        heartbeat_timeout=0.03,
    )
    ref = start(peer, policy)
    seen = subscribed(ref)
    peer.wait_calls(1)
    peer.mode = "down"
    lost = seen.wait_until_in(CLOSED)[0]
    assert (lost.failures, lost.reason) == (
        1,
        "link lost: ConnectionRefusedError: connection refused",
    )
    peer.mode = "up"
    back = seen.wait_until_in(CLOSED, count=2)[1]
    assert (back.old, back.new, back.failures, back.reason) == (CLOSED, CLOSED, 0, "link is back")


def test_a_peer_sending_attempts_away_with_a_hint_is_tried_after_it_and_the_circuit_stays_closed():
    """A busy server closes each attempt 1013 with a hint: the next attempt waits the hint, and
    refusals past the failure threshold do not open the circuit (within the restart grace)."""
    refusals = 4
    peer = Peer("up")

    def probe() -> None:
        peer.probe()
        if peer.calls <= refusals:
            raise RetryLater("the server is busy", 0.2)

    policy = BreakerPolicy(
        failure_threshold=2,
        cooldown=5.0,
        backoff=Backoff(floor=0.01, cap=0.01),
        heartbeat_interval=5.0,
        heartbeat_timeout=1.0,
        restart_grace=30.0,
    )
    ref = BreakerActor.start(policy, probe=probe, name="test-link", rand=no_jitter)
    seen = subscribed(ref)
    first = seen.wait_until_in(CLOSED)[0]
    # Told at the first refusal: the next attempt is the hint plus one back-off step away.
    assert first.retry_at is not None
    assert first.retry_at - first.at == pytest.approx(0.2 + 0.01)
    back = seen.wait_for(lambda items: any(t.reason == "link is back" for t in items))[-1]
    assert (back.new, peer.calls) == (CLOSED, refusals + 1)
    assert OPEN not in [t.new for t in seen.items]
    # Four waits of at least the hint each.
    assert back.at - first.at >= (refusals - 1) * 0.2


def test_a_probe_ending_in_a_base_exception_is_not_a_link_failure() -> None:
    """A probe killed by something of its own (here GreenletExit) gives no answer: it is counted
    as unanswered, never as a failure of the link."""
    peer = Peer("up")

    def probe() -> None:
        peer.probe()
        raise gevent.GreenletExit

    ref = BreakerActor.start(FAST, probe=probe, name="test-link", rand=no_jitter)
    seen = subscribed(ref)
    opened = seen.wait_until_in(OPEN)[0]
    assert seen.moves[0] == (CLOSED, OPEN)
    assert opened.failures == 0
    assert "not answered" in opened.reason


def test_the_owner_of_the_link_drives_it_with_messages_and_holds_the_only_trial() -> None:
    now = [0.0]
    peer = Peer("up")
    policy = BreakerPolicy(failure_threshold=2, cooldown=10.0, heartbeat_interval=60.0)
    ref = start(peer, policy, clock=lambda: now[0])
    seen = subscribed(ref)
    peer.wait_calls(1)  # the first heartbeat, at start
    assert ref.ask(CallAllowed()) is True
    ref.tell(ReportFailure("reset by peer"))
    ref.tell(ReportFailure("reset by peer"))
    assert ref.ask(GetState()) is OPEN
    assert seen.items[-1].reason == "2 failures in a row, the last: reset by peer"
    assert ref.ask(CallAllowed()) is False
    now[0] = 10.0
    assert [ref.ask(CallAllowed()) for _ in range(3)] == [True, False, False]
    assert peer.calls == 1  # the owner holds the trial: the actor sent no probe of its own
    ref.tell(ReportSuccess())
    assert ref.ask(GetState()) is CLOSED
    assert seen.moves == [(CLOSED, CLOSED), (CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_a_failing_or_stopped_subscriber_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    ref = start(Peer("up"), BreakerPolicy(failure_threshold=1), clock=lambda: now[0])

    def broken(transition: Transition) -> None:
        raise RuntimeError("subscriber bug")

    gone = Forwarder.start(Transitions())
    gone.stop()
    ref.proxy().subscribe(broken).get(timeout=WAIT)
    ref.ask(Subscribe(gone))
    first, second = subscribed(ref), subscribed(ref)
    ref.tell(ReportFailure("reset"))
    assert ref.ask(GetState()) is OPEN
    assert first.moves == second.moves == [(CLOSED, OPEN)]
    assert "subscriber bug" in caplog.text

    ref.proxy().unsubscribe(first).get(timeout=WAIT)
    now[0] = 100.0
    assert ref.ask(CallAllowed()) is True
    assert first.moves == [(CLOSED, OPEN)]
    assert second.moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def _live_greenlets() -> set[gevent.Greenlet[..., Any]]:
    return {g for g in gc.get_objects() if isinstance(g, gevent.Greenlet) and not g.dead}


def test_stopping_cancels_its_timer_and_its_probe() -> None:
    before = _live_greenlets()
    peer = Peer("hang")
    policy = BreakerPolicy(heartbeat_interval=5.0, heartbeat_timeout=5.0)
    ref = start(peer, policy)
    peer.wait_calls(1)
    assert len(_live_greenlets() - before) == 2  # the timer and the hanging probe
    ref.stop()
    assert _live_greenlets() - before == set()
    assert peer.ended == 1
