"""The webhook dispatcher inside in-process nodes and a receiver the test starts: a started node
delivers what its outbox kept at once, and a backlog drains at the endpoint's pace (each freed
slot claims again) rather than one claim per poll, never with more than
``webhook_concurrency`` requests in flight to one endpoint."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.event import Event
from pykka import ActorRegistry

from actorim.domain.webhooks import Endpoint, OutboxEntry, entry_key
from actorim.runtime.messages import Call, Statuses
from actorim.runtime.webhooks import WebhookDispatcher
from tests.support import RunningNode, wait_until
from tests.webhook_receiver import Receiver


@pytest.mark.slow
def test_a_kept_backlog_drains_at_start_between_polls_with_at_most_the_concurrency_in_flight(
    start_node: Callable[..., RunningNode], tmp_path: Path
) -> None:
    in_flight = peak = 0
    release = Event()

    def answer(event: dict[str, Any], nth: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        release.wait()
        gevent.sleep(0.01)
        in_flight -= 1
        return 200

    hook = Receiver("s", answer).start()
    try:
        # One poll a minute (five seconds for the second node), after the one at start: only
        # freed slots can claim the rest before it.
        settings: dict[str, Any] = {
            "store": "sqlite",
            "data_dir": str(tmp_path / "data"),
            "webhooks": [Endpoint(hook.url, "s", ("message.created",))],
            "webhook_poll": 60.0,
            "webhook_concurrency": 3,
            # What the first node may have claimed before it stopped is free again soon.
            "webhook_timeout": 1.0,
            "webhook_lease": 2.0,
        }
        first = start_node(**settings)
        hook.hold()  # what the first node claims hangs: it stops having delivered nothing
        for n in range(12):
            first.node.publish(f"n{n}", room="lobby")
        first.stop()
        claimed = len(hook.arrivals)  # held: leased to the stopped node for webhook_lease
        hook.arrivals.clear()
        hook.release()
        start_node(**{**settings, "webhook_poll": 5.0})
        wait_until(lambda: in_flight == 3, what="the start's first claim in flight")
        started = time.monotonic()
        release.set()
        # What the first node left unclaimed drains at once, a freed slot claiming the next,
        # long before the second poll; what it had claimed comes at a poll after its lease.
        hook.wait_for(12 - claimed, timeout=10, what="the unclaimed backlog")
        assert time.monotonic() - started < 2.5
        hook.wait_for(12, timeout=15, what="the rest, after the stopped node's leases")
        assert peak == 3
        bodies = sorted(a.event["data"]["body"] for a in hook.arrivals)
        assert bodies == sorted(f"n{n}" for n in range(12))
        assert all(a.status == 200 and a.signed for a in hook.arrivals)
    finally:
        hook.stop()


@pytest.mark.slow
def test_a_dead_receiver_behind_an_open_circuit_gets_one_trial_per_cool_down(
    start_node: Callable[..., RunningNode],
) -> None:
    hook = Receiver("s", lambda event, nth: 503).start()
    cooldown = 1.0
    try:
        node = start_node(
            webhooks=[Endpoint(hook.url, "s", ("message.created",))],
            webhook_poll=0.05,
            webhook_concurrency=1,
            webhook_backoff_base=0.05,
            webhook_backoff_cap=0.05,
            webhook_breaker_failures=2,
            webhook_breaker_cooldown=cooldown,
        )
        for n in range(5):
            node.node.publish(f"n{n}", room="lobby")
        arrivals = hook.wait_for(4, what="two failures, then two trials")
        gaps = [b.at - a.at for a, b in itertools.pairwise(arrivals)]
        # Two failures in a row open the circuit; each trial waits out a cool-down, which
        # grows up to twice the setting after a failed trial (plus a poll).
        assert gaps[0] < cooldown, gaps
        assert all(cooldown <= gap <= 2 * cooldown + 0.3 for gap in gaps[1:]), gaps
    finally:
        hook.stop()


def test_a_dispatcher_stopped_while_a_push_is_decided_leaves_the_presence_tracker_running(
    start_node: Callable[..., RunningNode],
) -> None:
    """The presence tracker answers a due push's status to the dispatcher that asked; that
    one may have stopped meanwhile (a restart), and the answer then goes nowhere."""
    running = start_node(
        webhooks=[Endpoint("http://127.0.0.1:9/push", "s", ("push.needed",))],
        webhook_poll=0.05,
        presence_grace=0.05,
        push_window=0.05,
    )
    ctx = running.node.ctx
    presence = ctx.refs.presence
    assert presence is not None
    [dispatcher] = ActorRegistry.get_by_class(WebhookDispatcher)
    gate = Event()
    presence.tell(Call(gate.wait))  # the tracker is busy until the gate opens
    running.node.publish("are you there?", to="bob", sender="ann")
    wait_until(lambda: len(presence.actor_inbox) > 0, what="the push's status asked for")
    dispatcher.stop()  # its supervisor starts another
    gate.set()
    answered = Event()
    presence.tell(Statuses(("bob",), lambda statuses: answered.set()))
    assert answered.wait(timeout=5), "the presence tracker did not answer"
    assert presence.is_alive() and ctx.refs.presence is presence


def test_an_entry_that_is_no_pending_push_ends_in_the_dead_letter_queue_unposted(
    start_node: Callable[..., RunningNode],
) -> None:
    """A ``push.needed`` entry the dispatcher cannot decide is tried again, never posted, and
    given up into the dead-letter queue after ``webhook_max_attempts``: it never crashes the
    dispatcher."""
    hook = Receiver("s").start()
    try:
        running = start_node(
            webhooks=[Endpoint(hook.url, "s", ("push.needed",))],
            webhook_poll=0.05,
            webhook_max_attempts=2,
            webhook_backoff_base=0.05,
            webhook_backoff_cap=0.05,
        )
        key = entry_key("ev_0000000000000000xx", hook.url)
        entry = OutboxEntry(key, "ev_0000000000000000xx", "push.needed", 0, hook.url, b"{}")
        running.node.operations._outbox(lambda store: store.outbox_add([entry]), 5.0)
        wait_until(lambda: running.node.dead_letters()["dead"], what="the entry given up")
        [dead] = running.node.dead_letters()["dead"]
        assert dead["id"] == key and dead["attempts"] == 2
        assert dead["error"].startswith("not a pending push")
        assert hook.arrivals == []
    finally:
        hook.stop()
