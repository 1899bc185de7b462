"""``WebhookDispatcher``: delivers the store's webhook outbox to the configured endpoints.

An actor of its own under the node's supervisor, so that nothing a receiver does reaches
chat: every ``webhook_poll`` seconds it claims, per endpoint, as many due entries as that
endpoint has free slots (``webhook_concurrency``), each under a lease of ``webhook_lease``
seconds (``Store.outbox_due``; on a cluster, one node holds an entry at a time), and posts
each in a greenlet of its own, bounded by ``webhook_timeout``. Nothing is queued beyond the
free slots: what is not claimed waits in the store. While a claim finds as many as it asked for,
each freed slot claims again at once, so a backlog drains at the endpoint's pace, not the
poll's. The answer comes back to the actor,
which settles the entry in the store: delivered (a 2xx answer) entries are forgotten, failed
ones are tried again after a back-off with full jitter (``RetryPolicy``), and after
``webhook_max_attempts`` they move to the dead-letter queue.

A due ``push.needed`` entry is decided before it is posted (``PushDecider``, from the user's
status and counts then): posted with its final payload, dropped (forgotten as if delivered), or,
when it could not be decided (the presence tracker or the store away), tried again after a
back-off that does not count against the endpoint's breaker.

Each endpoint is behind a circuit breaker (``actorim.breaker.machine``): after
``webhook_breaker_failures`` failures in a row nothing is claimed for it until
``webhook_breaker_cooldown`` has passed; then one entry is the trial, whose success closes the
circuit. A dead receiver therefore costs one claim per cool-down, not one per entry.

A crash of this actor loses nothing: an entry under way stays leased in the store, and is
claimed again (by the restarted actor, or another node) when its lease ran out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from types import TracebackType
from typing import Any

import gevent
from gevent.pool import Pool
from pykka import ActorDeadError

from actorim.breaker.machine import BreakerPolicy, BreakerState, CircuitBreaker
from actorim.domain.push import PUSH_EVENT
from actorim.domain.webhooks import (
    SIGNATURE_HEADER,
    Endpoint,
    OutboxEntry,
    RetryPolicy,
    envelope,
    signature,
)
from actorim.ports import WebhookPost
from actorim.runtime.context import NodeContext, Unavailable
from actorim.runtime.messages import Call, OutboxRequest, call_later
from actorim.runtime.push import Decision, PushDecider
from actorim.store.base import Store
from supervisors import GeventActor

__all__ = ["WebhookDispatcher"]

logger = logging.getLogger("actorim.webhooks")

MAX_ERROR_CHARS = 200
"""What is kept of a failure's description on its entry (and shown in the dead-letter queue)."""


@dataclass(slots=True)
class _Target:
    """One endpoint as the dispatcher drives it."""

    endpoint: Endpoint
    breaker: CircuitBreaker
    in_flight: set[str] = field(default_factory=set)
    claiming: bool = False
    more: bool = False
    """The last claim took all it asked for: more may be due, so a freed slot claims again at
    once instead of waiting for the next poll."""


class WebhookDispatcher(GeventActor):
    """Delivers the webhook outbox; see the module docstring."""

    def __init__(
        self,
        ctx: NodeContext,
        post: WebhookPost,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        config = ctx.config
        self.ctx = ctx
        self._post = post
        self._clock = clock
        self._policy = RetryPolicy(
            base=config.webhook_backoff_base,
            cap=config.webhook_backoff_cap,
            max_attempts=config.webhook_max_attempts,
        )
        breaker = BreakerPolicy(
            failure_threshold=config.webhook_breaker_failures,
            cooldown=config.webhook_breaker_cooldown,
            cooldown_cap=max(config.webhook_breaker_cooldown, 1.0),
        )
        now = clock()
        self._targets = [_Target(e, CircuitBreaker(breaker, now=now)) for e in config.webhooks]
        self._pool = Pool(len(self._targets) * config.webhook_concurrency or 1)
        self._timer: gevent.Greenlet | None = None
        self._push = PushDecider(ctx, self.actor_ref)

    def on_start(self) -> None:
        # At once: a restarted node delivers what its outbox kept without waiting a poll.
        self._timer = call_later(self.actor_ref, 0, self._poll)

    def on_stop(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
        # Requests under way are abandoned: their entries stay leased and are tried again.
        self._pool.kill(block=False)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.on_stop()
        super().on_failure(exception_type, exception_value, traceback)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Call):
            return message.func(*message.args)
        return super().on_receive(message)

    # -- claiming ----------------------------------------------------------------------------

    def _schedule(self) -> None:
        self._timer = call_later(self.actor_ref, self.ctx.config.webhook_poll, self._poll)

    def _poll(self) -> None:
        self._schedule()
        now = self._clock()
        for target in self._targets:
            if not target.claiming:
                self._claim(target, now)

    def _room(self, target: _Target, now: float) -> int:
        """How many entries ``target`` may take now: its free slots while the circuit is
        closed, one trial once an open circuit's cool-down is over, none otherwise."""
        breaker = target.breaker
        if breaker.state is BreakerState.CLOSED:
            return self.ctx.config.webhook_concurrency - len(target.in_flight)
        if target.in_flight:
            return 0
        if breaker.state is BreakerState.OPEN and not breaker.allow(now):
            return 0
        return 1  # half-open: the trial

    def _claim(self, target: _Target, now: float) -> None:
        limit = self._room(target, now)
        if limit < 1:
            return
        config = self.ctx.config
        url, now_ms, lease_ms = (
            target.endpoint.url,
            int(now * 1000),
            int(config.webhook_lease * 1000),
        )

        def run(store: Store) -> list[OutboxEntry]:
            return store.outbox_due(url, now_ms=now_ms, limit=limit, lease_ms=lease_ms)

        target.claiming = True  # before asking: a store that is down answers at once
        self._ask(run, partial(self._claimed, target, limit))

    def _claimed(
        self, target: _Target, limit: int, entries: Any, error: BaseException | None
    ) -> None:
        target.claiming = False
        target.more = error is None and len(entries) == limit
        if error is not None:
            logger.debug("webhook outbox claim for %s failed: %s", target.endpoint.url, error)
            return
        for entry in entries:
            target.in_flight.add(entry.key)
            if entry.type == PUSH_EVENT:
                self._push.decide(entry, partial(self._decided, target, entry))
            else:
                self._pool.spawn(self._send, target, entry, entry.data)

    def _decided(self, target: _Target, entry: OutboxEntry, decision: Decision) -> None:
        """A due push decided (``PushDecider``): send it, drop it, or try again later."""
        if isinstance(decision, bytes):
            self._pool.spawn(self._send, target, entry, decision)
            return
        target.in_flight.discard(entry.key)
        now = self._clock()
        if decision is None:
            self.ctx.metrics.webhook_attempts.labels("dropped").inc()
            self._settle(lambda store: store.outbox_done(entry))
        elif self._policy.exhausted(entry.attempts + 1):
            self.ctx.metrics.webhook_attempts.labels("dead").inc()
            logger.warning("push %s moved to the dead-letter queue: %s", entry.event, decision)
            dead = entry.buried(now=int(now * 1000), error=decision)
            self._settle(lambda store: store.outbox_bury(dead))
        else:  # undecided: the push waits a back-off; the endpoint is not to blame
            logger.debug("push %s not decided now: %s", entry.event, decision)
            self._retry(entry, decision, now)
        if target.more and not target.claiming:
            self._claim(target, now)

    # -- delivering --------------------------------------------------------------------------

    def _send(self, target: _Target, entry: OutboxEntry, data: bytes) -> None:
        """Post one entry with ``data`` as its payload (in a greenlet of the pool) and tell the
        actor how it went."""
        attempt = entry.attempts + 1
        body = envelope(replace(entry, data=data), attempt)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "actorim-webhooks",
            SIGNATURE_HEADER: signature(target.endpoint.secret, int(self._clock()), body),
            "Actorim-Event-Id": entry.event,
            "Actorim-Attempt": str(attempt),
        }
        try:
            status = self._post(target.endpoint.url, body, headers, self.ctx.config.webhook_timeout)
            error = "" if 200 <= status < 300 else f"HTTP {status}"
        except Exception as exc:  # anything the request raised is the receiver's failure
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        # Stopped meanwhile: the entry's lease runs out and it is tried again.
        with contextlib.suppress(ActorDeadError):
            self.actor_ref.tell(Call(self._finished, (target, entry, error)))

    def _finished(self, target: _Target, entry: OutboxEntry, error: str) -> None:
        target.in_flight.discard(entry.key)
        now = self._clock()
        self._settle_delivery(target, entry, error, now)
        if target.more and not target.claiming:
            self._claim(target, now)

    def _settle_delivery(self, target: _Target, entry: OutboxEntry, error: str, now: float) -> None:
        now_ms = int(now * 1000)
        attempts = self.ctx.metrics.webhook_attempts
        if not error:
            attempts.labels("delivered").inc()
            target.breaker.record_success(now)
            self._settle(lambda store: store.outbox_done(entry))
            return
        target.breaker.record_failure(now, error)
        tried = entry.attempts + 1
        if self._policy.exhausted(tried):
            attempts.labels("dead").inc()
            logger.warning(
                "webhook event %s (%s) to %s moved to the dead-letter queue after %d attempts: %s",
                entry.event,
                entry.type,
                entry.endpoint,
                tried,
                error,
            )
            dead = entry.buried(now=now_ms, error=error)
            self._settle(lambda store: store.outbox_bury(dead))
            return
        attempts.labels("retry").inc()
        self._retry(entry, error, now)

    def _retry(self, entry: OutboxEntry, error: str, now: float) -> None:
        """Try ``entry`` again after the back-off of its attempt."""
        due = int(now * 1000) + int(self._policy.delay(entry.attempts + 1) * 1000)
        later = entry.retried(due=due, error=error)
        self._settle(lambda store: store.outbox_retry(later))

    # -- the store ---------------------------------------------------------------------------

    def _settle(self, run: Callable[[Store], Any]) -> None:
        """Record how a delivery went; if the store cannot take it now, the entry's lease runs
        out and it is delivered again (at least once)."""

        def done(_result: Any, error: BaseException | None) -> None:
            if error is not None:
                logger.warning("webhook outbox update failed: %s", error)

        self._ask(run, done)

    def _ask(
        self, run: Callable[[Store], Any], done: Callable[[Any, BaseException | None], None]
    ) -> None:
        try:
            self.ctx.refs.tell_store(OutboxRequest(run, self.actor_ref, done))
        except Unavailable as exc:
            done(None, exc)
