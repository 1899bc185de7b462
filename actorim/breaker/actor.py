"""``BreakerActor``: one link's circuit breaker, with the timers and probes it needs.

The decisions are in :class:`~actorim.breaker.machine.CircuitBreaker` (pure); this actor feeds it
the time and what happened, and acts on what it says is due:

* heartbeats every ``heartbeat_interval`` while the link is healthy, reconnect attempts on the
  back-off schedule while it fails, and one trial when the cool-down of an open circuit ends.
  Each is one call of ``probe``, run in a greenlet of its own under a ``gevent.Timeout`` of
  ``heartbeat_timeout``: a peer that hangs costs a miss, never a blocked actor;
* one timer, set for the breaker's next deadline;
* its subscribers, told every :class:`~actorim.breaker.machine.Transition` in order.

The owner of the link reports what its own calls saw (``report_failure``, ``report_success``)
and asks ``call_allowed()`` before a guarded call; the breaker holds no lock while the call
runs. ``probe`` raises on failure; which exceptions are link failures is decided by
``is_link_failure`` (by default any ``Exception``; a ``GreenletExit`` or a foreign
``gevent.Timeout`` is not, and such a probe counts as unanswered when its time is up).

Example::

    ref = BreakerActor.start(BreakerPolicy(), probe=redis_client.ping, name="redis")
    ref.proxy().subscribe(lambda transition: print(transition)).get()
    if ref.proxy().call_allowed().get():
        ...  # the call; then ref.tell(ReportSuccess()) or ref.tell(ReportFailure("reset"))
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias

import gevent
from pykka import ActorDeadError, ActorRef

from actorim.breaker.machine import BreakerPolicy, BreakerState, CircuitBreaker, Transition
from supervisors import GeventActor, MailboxFull

__all__ = [
    "STOP_GRACE_S",
    "BreakerActor",
    "CallAllowed",
    "GetState",
    "ReportFailure",
    "ReportSuccess",
    "RetryLater",
    "Subscribe",
    "Subscriber",
    "Unsubscribe",
    "is_link_failure",
]

logger = logging.getLogger("actorim.breaker")

Subscriber: TypeAlias = Callable[[Transition], object] | ActorRef[Any]

# How long on_stop waits for a killed probe to run its clean-up (closing a half-made connection).
STOP_GRACE_S = 1.0


def is_link_failure(exc: BaseException) -> bool:
    """The default classification: an ``Exception`` from the probe means the link failed; a
    ``BaseException`` (the probe's greenlet killed, a ``Timeout`` it did not catch, an exit of
    the process) says nothing about the peer."""
    return isinstance(exc, Exception)


class RetryLater(Exception):
    """What a probe raises when the peer refused the attempt and said when to try again (a
    server too busy to set up the connection: close 1013 with a hint). The next attempt waits
    ``retry_after`` seconds plus the back-off's jitter, and, as after a restart's announcement,
    the failure does not count toward opening the circuit within the policy's
    ``restart_grace``: a peer that keeps answering "later" is alive, and paces its clients."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Tell ``target`` every transition from now on; the answer is the current state."""

    target: Subscriber


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    target: Subscriber


@dataclass(frozen=True, slots=True)
class ReportFailure:
    """The owner of the link saw it fail (a failure it classifies as one of the link);
    ``going_away``: the peer said it is going away (see ``BreakerPolicy.restart_grace``), and
    asked to be tried again no sooner than ``retry_after`` seconds from now."""

    reason: str
    going_away: bool = False
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class ReportSuccess:
    """The owner of the link saw a call to the peer succeed."""


@dataclass(frozen=True, slots=True)
class GetState:
    """Ask for the breaker's :class:`~actorim.breaker.machine.BreakerState`."""


@dataclass(frozen=True, slots=True)
class CallAllowed:
    """Ask whether a guarded call may go to the peer now (see ``BreakerActor.call_allowed``)."""


class _Kind(Enum):
    HEARTBEAT = "heartbeat"
    TRIAL = "trial"


class _Outcome(Enum):
    ANSWERED = "answered"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class _Tick:
    """The timer fired: something may be due."""


@dataclass(frozen=True, slots=True)
class _ProbeDone:
    token: int
    outcome: _Outcome
    reason: str = ""
    retry_after: float | None = None


_TICK = _Tick()


class BreakerActor(GeventActor):
    """See the module docstring. Every public method also works through a proxy, and each has
    a message class for ``tell``/``ask``."""

    def __init__(
        self,
        policy: BreakerPolicy,
        *,
        probe: Callable[[], object],
        name: str,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[float, float], float] = random.uniform,
        is_link_failure: Callable[[BaseException], bool] = is_link_failure,
    ) -> None:
        super().__init__()
        self.name = name
        self.policy = policy
        self._probe_func = probe
        self._clock = clock
        self._is_link_failure = is_link_failure
        self._breaker = CircuitBreaker(policy, now=clock(), rand=rand)
        self._subscribers: dict[Subscriber, None] = {}
        self._timer: gevent.Greenlet[..., Any] | None = None
        self._timer_at: float | None = None
        self._probe: gevent.Greenlet[..., Any] | None = None
        self._probe_kind = _Kind.HEARTBEAT
        # Bumped whenever a probe is started or abandoned: answers carrying an older token are
        # from a probe whose answer the breaker no longer awaits.
        self._token = 0

    def __str__(self) -> str:
        return f"BreakerActor({self.name})"

    # -- life cycle --------------------------------------------------------------------------

    def on_start(self) -> None:
        self._advance(self._clock())

    def on_stop(self) -> None:
        gevent.killall(self._release(), block=True, timeout=STOP_GRACE_S)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        gevent.killall(self._release(), block=False)

    def _release(self) -> list[gevent.Greenlet[..., Any]]:
        greenlets = [g for g in (self._timer, self._probe) if g is not None]
        self._timer = self._probe = None
        self._token += 1
        self._subscribers.clear()
        return greenlets

    def on_receive(self, message: Any) -> Any:
        match message:
            case _Tick():
                self._advance(self._clock())
            case _ProbeDone():
                self._probe_done(message)
            case Subscribe(target):
                return self.subscribe(target)
            case Unsubscribe(target):
                self.unsubscribe(target)
            case ReportFailure(reason, going_away, retry_after):
                self.report_failure(reason, going_away=going_away, retry_after=retry_after)
            case ReportSuccess():
                self.report_success()
            case GetState():
                return self.state()
            case CallAllowed():
                return self.call_allowed()
            case _:
                return super().on_receive(message)
        return None

    # -- the public surface ------------------------------------------------------------------

    def subscribe(self, target: Subscriber) -> BreakerState:
        """Tell ``target`` every transition from now on: an ``ActorRef`` is told the
        :class:`~actorim.breaker.machine.Transition`, a callable is called with it inside this actor
        (keep it short; what it raises is logged). Returns the current state."""
        self._subscribers[target] = None
        return self._breaker.state

    def unsubscribe(self, target: Subscriber) -> None:
        self._subscribers.pop(target, None)

    def report_failure(
        self, reason: str, *, going_away: bool = False, retry_after: float = 0.0
    ) -> None:
        now = self._clock()
        self._breaker.record_failure(now, reason, going_away=going_away, retry_after=retry_after)
        self._advance(now)

    def report_success(self) -> None:
        now = self._clock()
        self._breaker.record_success(now)
        self._advance(now)

    def state(self) -> BreakerState:
        return self._breaker.state

    def call_allowed(self) -> bool:
        """May a guarded call go to the peer now? True while closed; False while open; when the
        cool-down has just ended, True once: the caller then holds the circuit's only trial and
        must report its outcome within ``heartbeat_timeout``, or the circuit re-opens."""
        now = self._clock()
        allowed = self._breaker.allow(now)
        self._advance(now)
        return allowed

    # -- the shell ---------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Settle what is overdue, start what is due, publish, and set the timer."""
        breaker = self._breaker
        breaker.check_heartbeat(now)
        launch: _Kind | None = None
        if breaker.state is BreakerState.OPEN and breaker.allow(now):
            launch = _Kind.TRIAL
        elif breaker.heartbeat_due(now):
            breaker.heartbeat_sent(now)
            launch = _Kind.HEARTBEAT
        self._publish()
        if launch is not None:
            self._launch(launch)
        self._arm(now)

    def _publish(self) -> None:
        transitions = self._breaker.drain_transitions()
        trial_over = any(t.old is BreakerState.HALF_OPEN for t in transitions)
        if self._probe is not None:
            if self._probe_kind is _Kind.HEARTBEAT:
                awaited = self._breaker.heartbeat_outstanding
            else:
                awaited = not trial_over
            if not awaited:
                self._abandon_probe()
        for transition in transitions:
            logger.info(
                "%s: %s -> %s (%s)", self, transition.old, transition.new, transition.reason
            )
            for target in list(self._subscribers):
                self._notify(target, transition)

    def _notify(self, target: Subscriber, transition: Transition) -> None:
        if isinstance(target, ActorRef):
            try:
                target.tell(transition)
            except ActorDeadError:
                self._subscribers.pop(target, None)
            except MailboxFull:
                logger.warning("%s: subscriber %s is full; it missed %s", self, target, transition)
            return
        try:
            target(transition)
        except Exception:
            logger.exception("%s: subscriber %r raised on %s", self, target, transition)

    def _launch(self, kind: _Kind) -> None:
        self._abandon_probe()
        self._probe_kind = kind
        self._probe = gevent.spawn(self._run_probe, self._token)

    def _abandon_probe(self) -> None:
        self._token += 1
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.kill(block=False)

    def _run_probe(self, token: int) -> None:
        """In the probe's own greenlet: one call of ``probe``, its outcome told to the actor."""
        timeout = gevent.Timeout(self.policy.heartbeat_timeout)
        timeout.start()
        try:
            self._probe_func()
        except gevent.Timeout as exc:
            if exc is timeout:
                done = _ProbeDone(token, _Outcome.TIMED_OUT)
            elif self._is_link_failure(exc):
                done = _ProbeDone(token, _Outcome.FAILED, _describe(exc))
            else:
                raise
        except BaseException as exc:
            if not self._is_link_failure(exc):
                raise
            after = exc.retry_after if isinstance(exc, RetryLater) else None
            done = _ProbeDone(token, _Outcome.FAILED, _describe(exc), after)
        else:
            done = _ProbeDone(token, _Outcome.ANSWERED)
        finally:
            timeout.close()
        with contextlib.suppress(ActorDeadError):
            self.actor_ref.tell(done)

    def _probe_done(self, done: _ProbeDone) -> None:
        if done.token != self._token:
            return
        self._probe = None
        now = self._clock()
        breaker = self._breaker
        if done.outcome is _Outcome.ANSWERED:
            if self._probe_kind is _Kind.HEARTBEAT:
                breaker.heartbeat_answered(now)
            else:
                breaker.record_success(now)
        elif done.retry_after is not None:
            # Sent away with a hint: like a restart's announcement (see ``RetryLater``).
            breaker.record_failure(now, done.reason, going_away=True, retry_after=done.retry_after)
        elif done.outcome is _Outcome.FAILED:
            breaker.record_failure(now, done.reason)
        self._advance(now)

    def _arm(self, now: float) -> None:
        deadline = self._breaker.next_deadline()
        timer = self._timer
        if timer is not None and not timer.dead and self._timer_at == deadline:
            return
        if timer is not None:
            timer.kill(block=False)
        self._timer_at = deadline
        self._timer = gevent.spawn_later(max(0.0, deadline - now), self._wake)

    def _wake(self) -> None:
        with contextlib.suppress(ActorDeadError, MailboxFull):
            self.actor_ref.tell(_TICK)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
